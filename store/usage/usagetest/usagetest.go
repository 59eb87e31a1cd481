// Package usagetest is the conformance suite every usage.Store runs, so
// that usage reports read the same from every backend. A backend's test
// calls:
//
//	func TestUsageConformance(t *testing.T) {
//		usagetest.TestStore(t, func(t *testing.T) usage.Store { return openTestDB(t).UsageStore() })
//	}
//
// newStore must return a fresh, empty store for each call and arrange its
// cleanup.
package usagetest

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/scopegate/scopegate/store/usage"
)

var t0 = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

func sorted(ts []usage.Tally) []usage.Tally {
	out := slices.Clone(ts)
	slices.SortFunc(out, func(a, b usage.Tally) int {
		if c := strings.Compare(a.ClientID, b.ClientID); c != 0 {
			return c
		}
		return strings.Compare(a.Scope, b.Scope)
	})
	return out
}

func equal(a, b []usage.Tally) bool {
	return slices.EqualFunc(sorted(a), sorted(b), func(x, y usage.Tally) bool {
		return x.ClientID == y.ClientID && x.Scope == y.Scope && x.Count == y.Count &&
			x.LastUsed.Equal(y.LastUsed) && x.LastSeen.Equal(y.LastSeen)
	})
}

// TestStore checks the usage.Store contract.
func TestStore(t *testing.T, newStore func(t *testing.T) usage.Store) {
	t.Helper()
	ctx := context.Background()
	cases := map[string]struct {
		batches [][]usage.Tally
		client  string
		want    []usage.Tally
	}{
		"empty": {},
		"one batch": {
			batches: [][]usage.Tally{{
				{ClientID: "web", Scope: "orders:read", Count: 3, LastUsed: t0, LastSeen: t0},
				{ClientID: "web", Scope: "admin", LastSeen: t0},
			}},
			want: []usage.Tally{
				{ClientID: "web", Scope: "orders:read", Count: 3, LastUsed: t0, LastSeen: t0},
				{ClientID: "web", Scope: "admin", LastSeen: t0},
			},
		},
		"counts add, later times win": {
			batches: [][]usage.Tally{
				{{ClientID: "web", Scope: "orders:read", Count: 3, LastUsed: t0.Add(time.Hour), LastSeen: t0}},
				{{ClientID: "web", Scope: "orders:read", Count: 4, LastUsed: t0, LastSeen: t0.Add(2 * time.Hour)}},
				{{ClientID: "web", Scope: "orders:read", Count: 0}},
			},
			want: []usage.Tally{{ClientID: "web", Scope: "orders:read", Count: 7, LastUsed: t0.Add(time.Hour), LastSeen: t0.Add(2 * time.Hour)}},
		},
		"duplicates in one batch": {
			batches: [][]usage.Tally{{
				{ClientID: "web", Scope: "s", Count: 1, LastUsed: t0},
				{ClientID: "web", Scope: "s", Count: 2, LastUsed: t0.Add(time.Minute)},
			}},
			want: []usage.Tally{{ClientID: "web", Scope: "s", Count: 3, LastUsed: t0.Add(time.Minute)}},
		},
		"client filter is exact": {
			batches: [][]usage.Tally{{
				{ClientID: "web", Scope: "a", Count: 1},
				{ClientID: "web2", Scope: "a", Count: 2},
				{ClientID: "we", Scope: "a", Count: 3},
			}},
			client: "web",
			want:   []usage.Tally{{ClientID: "web", Scope: "a", Count: 1}},
		},
		"unicode and sub-second times survive": {
			batches: [][]usage.Tally{{{ClientID: "app-é", Scope: "patient/*.read", Count: 1, LastUsed: t0.Add(123456 * time.Microsecond)}}},
			want:    []usage.Tally{{ClientID: "app-é", Scope: "patient/*.read", Count: 1, LastUsed: t0.Add(123456 * time.Microsecond)}},
		},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			s := newStore(t)
			for _, b := range c.batches {
				if err := s.AddUsage(ctx, b); err != nil {
					t.Fatal(err)
				}
			}
			got, err := s.LoadUsage(ctx, c.client)
			if err != nil {
				t.Fatal(err)
			}
			if !equal(got, c.want) {
				t.Errorf("LoadUsage(%q)\n got %+v\nwant %+v", c.client, got, c.want)
			}
		})
	}
	t.Run("concurrent writers add up", func(t *testing.T) {
		s := newStore(t)
		var wg sync.WaitGroup
		errs := make(chan error, 8)
		for w := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range 10 {
					batch := []usage.Tally{
						{ClientID: "a", Scope: "x", Count: 1, LastUsed: t0.Add(time.Duration(w*10+i) * time.Second)},
						{ClientID: "b", Scope: "y", Count: 2},
					}
					if err := s.AddUsage(ctx, batch); err != nil {
						errs <- err
						return
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		got, err := s.LoadUsage(ctx, "")
		if err != nil {
			t.Fatal(err)
		}
		want := []usage.Tally{{ClientID: "a", Scope: "x", Count: 40, LastUsed: t0.Add(39 * time.Second)}, {ClientID: "b", Scope: "y", Count: 80}}
		if !equal(got, want) {
			t.Errorf("got %+v\nwant %+v", got, want)
		}
	})
	t.Run("cancelled context", func(t *testing.T) {
		s := newStore(t)
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		if err := s.AddUsage(cctx, []usage.Tally{{ClientID: "a", Scope: "x", Count: 1}}); err == nil {
			t.Error("AddUsage with a cancelled context succeeded")
		}
		got, err := s.LoadUsage(ctx, "")
		if err != nil || len(got) != 0 {
			t.Errorf("after a cancelled add: %+v, %v; want nothing stored", got, err)
		}
	})
}
