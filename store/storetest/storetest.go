// Package storetest is the conformance suite every store backend runs, so
// that a policy behaves the same whichever backend an operator picks. A
// backend's test calls, for example:
//
//	func TestConformance(t *testing.T) {
//		storetest.TestOwnership(t, func(t *testing.T) store.Store { return openTestDB(t) })
//	}
//
// newStore must return a fresh, empty store for each call and arrange its
// cleanup (t.Cleanup); the suite closes nothing itself except in the subtest
// that checks behaviour after Close.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/scopegate/scopegate/store"
)

// TestOwnership checks the ownership read and write contract.
func TestOwnership(t *testing.T, newStore func(t *testing.T) store.Store) {
	t.Helper()
	type step struct {
		put    []string // owners to put; nil with del=false means no write
		del    bool
		lookup string // defaults to "orders"
		key    string
	}
	type want struct {
		lookup, key string
		owners      []string
		found       bool
	}
	cases := map[string]struct {
		steps []step
		want  []want
	}{
		"put then get": {
			steps: []step{{key: "o-1", put: []string{"alice"}}},
			want:  []want{{key: "o-1", owners: []string{"alice"}, found: true}},
		},
		"several owners come back sorted and deduplicated": {
			steps: []step{{key: "o-1", put: []string{"carol", "alice", "bob", "alice"}}},
			want:  []want{{key: "o-1", owners: []string{"alice", "bob", "carol"}, found: true}},
		},
		"unknown key in a known lookup": {
			steps: []step{{key: "o-1", put: []string{"alice"}}},
			want:  []want{{key: "o-2"}},
		},
		"unknown lookup": {
			want: []want{{lookup: "nothing-here", key: "o-1"}},
		},
		"delete removes the record": {
			steps: []step{{key: "o-1", put: []string{"alice"}}, {key: "o-1", del: true}},
			want:  []want{{key: "o-1"}},
		},
		"delete of a missing record is not an error": {
			steps: []step{{key: "missing", del: true}, {lookup: "never-written", key: "x", del: true}},
			want:  []want{{key: "missing"}},
		},
		"overwrite replaces every owner": {
			steps: []step{{key: "o-1", put: []string{"alice", "bob"}}, {key: "o-1", put: []string{"carol"}}},
			want:  []want{{key: "o-1", owners: []string{"carol"}, found: true}},
		},
		"put after delete": {
			steps: []step{{key: "o-1", put: []string{"alice"}}, {key: "o-1", del: true}, {key: "o-1", put: []string{"bob"}}},
			want:  []want{{key: "o-1", owners: []string{"bob"}, found: true}},
		},
		"lookups are separate namespaces": {
			steps: []step{{lookup: "orders", key: "1", put: []string{"alice"}}, {lookup: "invoices", key: "1", put: []string{"bob"}}},
			want: []want{
				{lookup: "orders", key: "1", owners: []string{"alice"}, found: true},
				{lookup: "invoices", key: "1", owners: []string{"bob"}, found: true},
			},
		},
		"keys differing only in case or by a prefix": {
			steps: []step{{key: "abc", put: []string{"lower"}}, {key: "ABC", put: []string{"upper"}}},
			want: []want{
				{key: "abc", owners: []string{"lower"}, found: true},
				{key: "ABC", owners: []string{"upper"}, found: true},
				{key: "ab"},
				{key: "abcd"},
			},
		},
		"unicode keys, lookups and owners": {
			steps: []step{{lookup: "commandes", key: "Ω-ünïcødé-注文-🧾", put: []string{"josé", "用户"}}},
			want:  []want{{lookup: "commandes", key: "Ω-ünïcødé-注文-🧾", owners: []string{"josé", "用户"}, found: true}},
		},
		"keys with separators, quotes and SQL": {
			steps: []step{
				{key: "a/b/../c d", put: []string{"slash"}},
				{key: `x'; DROP TABLE scopegate_ownership; --`, put: []string{"quote"}},
				{key: "%_*", put: []string{"wild"}},
			},
			want: []want{
				{key: "a/b/../c d", owners: []string{"slash"}, found: true},
				{key: `x'; DROP TABLE scopegate_ownership; --`, owners: []string{"quote"}, found: true},
				{key: "%_*", owners: []string{"wild"}, found: true},
				{key: "%"},
				{key: "a/b/../c"},
			},
		},
		"keys no writer accepts are not found": {
			want: []want{{key: ""}, {key: "bad\x00key"}, {key: "\xff\xfe"}, {key: strings.Repeat("k", store.MaxKeyBytes+1)}, {lookup: "bad\x00lookup", key: "1"}},
		},
		"limits are inclusive": {
			steps: []step{{key: strings.Repeat("k", store.MaxKeyBytes), put: []string{strings.Repeat("o", store.MaxOwnerBytes)}}},
			want:  []want{{key: strings.Repeat("k", store.MaxKeyBytes), owners: []string{strings.Repeat("o", store.MaxOwnerBytes)}, found: true}},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			s := newStore(t)
			ctx := t.Context()
			for i, st := range tc.steps {
				lookup := orDefault(st.lookup, "orders")
				var err error
				if st.del {
					err = s.DeleteOwners(ctx, lookup, st.key)
				} else {
					err = s.PutOwners(ctx, lookup, st.key, st.put)
				}
				if err != nil {
					t.Fatalf("step %d (%s %q): %v", i, lookup, st.key, err)
				}
			}
			for _, w := range tc.want {
				lookup := orDefault(w.lookup, "orders")
				owners, found, err := s.Ownership().Owners(ctx, lookup, w.key)
				if err != nil {
					t.Fatalf("Owners(%q, %.40q): %v", lookup, w.key, err)
				}
				if found != w.found || !slices.Equal(owners, w.owners) {
					t.Errorf("Owners(%q, %.40q) = %q, found=%v; want %q, found=%v", lookup, w.key, owners, found, w.owners, w.found)
				}
			}
		})
	}

	t.Run("invalid writes are rejected and change nothing", func(t *testing.T) {
		s := newStore(t)
		ctx := t.Context()
		if err := s.PutOwners(ctx, "orders", "o-1", []string{"alice"}); err != nil {
			t.Fatal(err)
		}
		bad := map[string]struct {
			lookup, key string
			owners      []string
		}{
			"no owners":            {"orders", "o-1", nil},
			"empty owner":          {"orders", "o-1", []string{"bob", ""}},
			"owner with NUL":       {"orders", "o-1", []string{"b\x00b"}},
			"owner too long":       {"orders", "o-1", []string{strings.Repeat("o", store.MaxOwnerBytes+1)}},
			"too many owners":      {"orders", "o-1", manyOwners(store.MaxOwners + 1)},
			"empty key":            {"orders", "", []string{"bob"}},
			"key with NUL":         {"orders", "o\x001", []string{"bob"}},
			"key not UTF-8":        {"orders", "o\xff", []string{"bob"}},
			"key too long":         {"orders", strings.Repeat("k", store.MaxKeyBytes+1), []string{"bob"}},
			"empty lookup":         {"", "o-1", []string{"bob"}},
			"lookup with newline":  {"ord\ners", "o-1", []string{"bob"}},
			"lookup too long":      {strings.Repeat("l", store.MaxLookupBytes+1), "o-1", []string{"bob"}},
			"owner not UTF-8":      {"orders", "o-1", []string{"\xc3"}},
			"only invalid in list": {"orders", "o-1", []string{"bob", "\xff"}},
		}
		for name, b := range bad {
			if err := s.PutOwners(ctx, b.lookup, b.key, b.owners); err == nil {
				t.Errorf("%s: PutOwners accepted it", name)
			}
		}
		for name, k := range map[string]string{"empty key": "", "key with NUL": "a\x00"} {
			if err := s.DeleteOwners(ctx, "orders", k); err == nil {
				t.Errorf("%s: DeleteOwners accepted it", name)
			}
		}
		owners, found, err := s.Ownership().Owners(ctx, "orders", "o-1")
		if err != nil || !found || !slices.Equal(owners, []string{"alice"}) {
			t.Errorf("after rejected writes: Owners = %q, %v, %v; want [alice], true, nil", owners, found, err)
		}
	})

	t.Run("returned owners are the caller's to keep", func(t *testing.T) {
		s := newStore(t)
		ctx := t.Context()
		in := []string{"bob", "alice"}
		if err := s.PutOwners(ctx, "orders", "o-1", in); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(in, []string{"bob", "alice"}) {
			t.Errorf("PutOwners modified its argument: %q", in)
		}
		first, _, _ := s.Ownership().Owners(ctx, "orders", "o-1")
		if err := s.PutOwners(ctx, "orders", "o-1", []string{"carol"}); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(first, []string{"alice", "bob"}) {
			t.Errorf("an earlier result changed after a write: %q", first)
		}
	})

	t.Run("cancelled context is an error, not an answer", func(t *testing.T) {
		s := newStore(t)
		if err := s.PutOwners(t.Context(), "orders", "o-1", []string{"alice"}); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		owners, found, err := s.Ownership().Owners(ctx, "orders", "o-1")
		if err == nil || !errors.Is(err, context.Canceled) {
			t.Errorf("Owners with a cancelled context = %q, %v, %v; want an error wrapping context.Canceled", owners, found, err)
		}
		if found || owners != nil {
			t.Errorf("Owners with an error also answered %q, found=%v", owners, found)
		}
		if err := s.PutOwners(ctx, "orders", "o-2", []string{"bob"}); err == nil {
			t.Error("PutOwners with a cancelled context succeeded")
		}
		if err := s.DeleteOwners(ctx, "orders", "o-1"); err == nil {
			t.Error("DeleteOwners with a cancelled context succeeded")
		}
		if _, found, _ := s.Ownership().Owners(t.Context(), "orders", "o-2"); found {
			t.Error("PutOwners with a cancelled context wrote the record")
		}
		if _, found, _ := s.Ownership().Owners(t.Context(), "orders", "o-1"); !found {
			t.Error("DeleteOwners with a cancelled context deleted the record")
		}
	})

	t.Run("expired deadline is an error", func(t *testing.T) {
		s := newStore(t)
		ctx, cancel := context.WithDeadline(t.Context(), time.Now().Add(-time.Second))
		defer cancel()
		if _, _, err := s.Ownership().Owners(ctx, "orders", "o-1"); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Owners past its deadline: err = %v; want context.DeadlineExceeded", err)
		}
	})

	t.Run("concurrent readers and writers", func(t *testing.T) {
		s := newStore(t)
		ctx := t.Context()
		const workers, rounds = 4, 25
		var wg sync.WaitGroup
		errs := make(chan error, workers*rounds*2)
		for w := range workers {
			wg.Go(func() {
				for r := range rounds {
					key := fmt.Sprintf("k-%d-%d", w, r)
					owner := fmt.Sprintf("u-%d", r)
					if err := s.PutOwners(ctx, "orders", key, []string{owner}); err != nil {
						errs <- err
						continue
					}
					owners, found, err := s.Ownership().Owners(ctx, "orders", key)
					if err != nil || !found || !slices.Equal(owners, []string{owner}) {
						errs <- fmt.Errorf("read back %s: %q %v %v", key, owners, found, err)
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
	})

	t.Run("ping, then close makes calls fail", func(t *testing.T) {
		s := newStore(t)
		ctx := t.Context()
		if err := s.Ping(ctx); err != nil {
			t.Fatalf("Ping on a fresh store: %v", err)
		}
		if err := s.PutOwners(ctx, "orders", "o-1", []string{"alice"}); err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		if _, found, err := s.Ownership().Owners(ctx, "orders", "o-1"); err == nil || found {
			t.Errorf("Owners after Close = found %v, err %v; want an error", found, err)
		}
		if err := s.Ping(ctx); err == nil {
			t.Error("Ping after Close succeeded")
		}
		if err := s.PutOwners(ctx, "orders", "o-2", []string{"bob"}); err == nil {
			t.Error("PutOwners after Close succeeded")
		}
		if err := s.Close(); err != nil {
			t.Errorf("second Close: %v", err)
		}
	})
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func manyOwners(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("u%d", i)
	}
	return out
}
