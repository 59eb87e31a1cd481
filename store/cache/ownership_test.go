package cache

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// fakeStore answers from a map and counts calls; gate, when set, holds every
// call until it is closed or the call's ctx ends.
type fakeStore struct {
	mu      sync.Mutex
	data    map[string][]string // lookup+"/"+key → owners
	err     error
	gate    chan struct{}
	started chan struct{} // receives once per call, if set
	calls   atomic.Int64
	lastCtx context.Context
}

func (f *fakeStore) Owners(ctx context.Context, lookup, key string) ([]string, bool, error) {
	f.calls.Add(1)
	f.mu.Lock()
	f.lastCtx = ctx
	gate, started := f.gate, f.started
	f.mu.Unlock()
	if started != nil {
		started <- struct{}{}
	}
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return nil, false, ctx.Err()
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return nil, false, f.err
	}
	o, ok := f.data[lookup+"/"+key]
	return o, ok, nil
}

func (f *fakeStore) set(lookup, key string, owners ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.data == nil {
		f.data = map[string][]string{}
	}
	if owners == nil {
		delete(f.data, lookup+"/"+key)
		return
	}
	f.data[lookup+"/"+key] = owners
}

func (f *fakeStore) setErr(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.err = err
}

func newCache(t testing.TB, inner *fakeStore, cfg Config) *Ownership {
	t.Helper()
	c, err := NewOwnership(inner, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// ask calls Owners and lets the asynchronous cache write land.
func ask(t *testing.T, c *Ownership, lookup, key string) ([]string, bool, error) {
	t.Helper()
	owners, found, err := c.Owners(t.Context(), lookup, key)
	c.Wait()
	return owners, found, err
}

func TestCachesAnswersUntilTheirTTL(t *testing.T) {
	cases := map[string]struct {
		cfg        Config
		lookup     string
		owners     []string // nil: the key does not exist
		wantCached bool
		wait       time.Duration // after which the answer must be gone
	}{
		"found answer cached for TTL": {
			cfg: Config{TTL: 150 * time.Millisecond}, lookup: "orders", owners: []string{"alice"}, wantCached: true, wait: 300 * time.Millisecond,
		},
		"not-found answer cached for NegativeTTL": {
			cfg: Config{TTL: time.Hour, NegativeTTL: 150 * time.Millisecond}, lookup: "orders", wantCached: true, wait: 300 * time.Millisecond,
		},
		"found caching disabled": {
			cfg: Config{TTL: -1}, lookup: "orders", owners: []string{"alice"},
		},
		"not-found caching disabled": {
			cfg: Config{NegativeTTL: -1}, lookup: "orders",
		},
		"per-lookup TTL overrides": {
			cfg:    Config{TTL: time.Hour, Lookups: map[string]TTLs{"orders": {TTL: 150 * time.Millisecond}}},
			lookup: "orders", owners: []string{"alice"}, wantCached: true, wait: 300 * time.Millisecond,
		},
		"per-lookup zero keeps the global value": {
			cfg:    Config{NegativeTTL: -1, Lookups: map[string]TTLs{"orders": {TTL: time.Hour}}},
			lookup: "orders",
		},
		"per-lookup disable": {
			cfg:    Config{Lookups: map[string]TTLs{"orders": {TTL: -1}}},
			lookup: "orders", owners: []string{"alice"},
		},
	}
	for name, tc := range cases {
		// In a synctest bubble the wait past the TTL takes no real time,
		// and the coarse clock ticks in the bubble's time.
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				inner := &fakeStore{}
				inner.set(tc.lookup, "k", tc.owners...)
				c := newCache(t, inner, tc.cfg)
				for range 3 {
					owners, found, err := ask(t, c, tc.lookup, "k")
					if err != nil || found != (tc.owners != nil) || !slices.Equal(owners, tc.owners) {
						t.Fatalf("Owners = %q, %v, %v; want %q", owners, found, err, tc.owners)
					}
				}
				wantCalls := int64(3)
				if tc.wantCached {
					wantCalls = 1
				}
				if got := inner.calls.Load(); got != wantCalls {
					t.Fatalf("inner calls = %d; want %d", got, wantCalls)
				}
				st := c.Stats()
				if st.Hits+st.Misses != 3 || st.Misses != uint64(wantCalls) {
					t.Errorf("stats = %+v; want %d misses of 3", st, wantCalls)
				}
				if tc.wantCached {
					time.Sleep(tc.wait)
					ask(t, c, tc.lookup, "k")
					if got := inner.calls.Load(); got != 2 {
						t.Errorf("after the TTL: inner calls = %d; want 2", got)
					}
				}
			})
		})
	}
}

func TestErrorsAreNeverCached(t *testing.T) {
	inner := &fakeStore{}
	inner.set("orders", "k", "alice")
	inner.setErr(errors.New("database down"))
	c := newCache(t, inner, Config{})
	for range 3 {
		if _, found, err := ask(t, c, "orders", "k"); err == nil || found {
			t.Fatalf("Owners = found %v, err %v; want the inner error", found, err)
		}
	}
	if got := inner.calls.Load(); got != 3 {
		t.Errorf("inner calls = %d; want 3 (errors must not be cached)", got)
	}
	inner.setErr(nil)
	if owners, found, err := ask(t, c, "orders", "k"); err != nil || !found || !slices.Equal(owners, []string{"alice"}) {
		t.Errorf("after recovery: %q %v %v", owners, found, err)
	}
	if st := c.Stats(); st.Errors != 3 {
		t.Errorf("Stats.Errors = %d; want 3", st.Errors)
	}
}

func TestLookupsAndKeysDoNotCollide(t *testing.T) {
	inner := &fakeStore{}
	inner.set("a", "b\x00c", "one")
	inner.set("a\x00b", "c", "two")
	inner.set("ab", "c", "three")
	c := newCache(t, inner, Config{})
	for range 2 {
		for _, tc := range []struct{ lookup, key, want string }{{"a", "b\x00c", "one"}, {"a\x00b", "c", "two"}, {"ab", "c", "three"}} {
			owners, _, _ := ask(t, c, tc.lookup, tc.key)
			if !slices.Equal(owners, []string{tc.want}) {
				t.Errorf("Owners(%q, %q) = %q; want [%s]", tc.lookup, tc.key, owners, tc.want)
			}
		}
	}
}

func TestHashCollisionReadsAsMiss(t *testing.T) {
	inner := &fakeStore{}
	inner.set("orders", "mine", "alice")
	c := newCache(t, inner, Config{})
	// Plant another resource's answer under this resource's hash.
	c.c.Set(c.hash("orders", "mine"), &entry{lookup: "orders", key: "theirs", owners: []string{"mallory"}, found: true, expires: time.Now().Add(time.Hour).UnixNano()}, 1)
	c.Wait()
	owners, _, err := c.Owners(t.Context(), "orders", "mine")
	if err != nil || !slices.Equal(owners, []string{"alice"}) {
		t.Errorf("Owners = %q, %v; want [alice] from the backend", owners, err)
	}
	if inner.calls.Load() != 1 {
		t.Errorf("inner calls = %d; want 1", inner.calls.Load())
	}
}

func TestConcurrentMissesShareOneBackendCall(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		inner := &fakeStore{gate: make(chan struct{}), started: make(chan struct{}, 100)}
		inner.set("orders", "k", "alice")
		c := newCache(t, inner, Config{})
		const n = 20
		var wg sync.WaitGroup
		results := make(chan []string, n)
		for range n {
			wg.Go(func() {
				owners, _, err := c.Owners(t.Context(), "orders", "k")
				if err != nil {
					t.Error(err)
				}
				results <- owners
			})
		}
		<-inner.started
		// Once every caller is blocked on the call in flight, release it.
		synctest.Wait()
		if st := c.Stats(); st.Misses != n {
			t.Fatalf("Stats.Misses = %d with every caller waiting; want %d", st.Misses, n)
		}
		close(inner.gate)
		wg.Wait()
		close(results)
		for owners := range results {
			if !slices.Equal(owners, []string{"alice"}) {
				t.Errorf("a caller got %q", owners)
			}
		}
		if got := inner.calls.Load(); got != 1 {
			t.Errorf("inner calls = %d; want 1", got)
		}
		if st := c.Stats(); st.Coalesced != n {
			t.Errorf("Stats.Coalesced = %d; want %d", st.Coalesced, n)
		}
	})
}

func TestEachCallerKeepsItsOwnDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		inner := &fakeStore{gate: make(chan struct{}), started: make(chan struct{}, 10)}
		inner.set("orders", "k", "alice")
		c := newCache(t, inner, Config{})

		leaderDone := make(chan error, 1)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_, _, err := c.Owners(ctx, "orders", "k")
			leaderDone <- err
		}()
		<-inner.started

		// A follower with a short deadline gives up on time; the call goes on.
		ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, _, err := c.Owners(ctx, "orders", "k")
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("follower err = %v; want DeadlineExceeded", err)
		}
		if d := time.Since(start); d != 50*time.Millisecond {
			t.Errorf("follower gave up after %s, not at its 50ms deadline", d)
		}
		close(inner.gate)
		if err := <-leaderDone; err != nil {
			t.Errorf("leader err = %v", err)
		}
	})
}

func TestLeaderCancellationDoesNotFailFollowers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		inner := &fakeStore{gate: make(chan struct{}), started: make(chan struct{}, 10)}
		inner.set("orders", "k", "alice")
		c := newCache(t, inner, Config{})

		leaderCtx, cancelLeader := context.WithTimeout(t.Context(), 5*time.Second)
		leaderDone := make(chan error, 1)
		go func() {
			_, _, err := c.Owners(leaderCtx, "orders", "k")
			leaderDone <- err
		}()
		<-inner.started
		followerDone := make(chan []string, 1)
		go func() {
			owners, _, err := c.Owners(t.Context(), "orders", "k")
			if err != nil {
				t.Error(err)
			}
			followerDone <- owners
		}()
		synctest.Wait() // the follower has joined the call in flight
		if st := c.Stats(); st.Misses != 2 {
			t.Fatalf("Stats.Misses = %d with both callers waiting; want 2", st.Misses)
		}
		cancelLeader()
		if err := <-leaderDone; !errors.Is(err, context.Canceled) {
			t.Errorf("leader err = %v; want Canceled", err)
		}
		close(inner.gate)
		if owners := <-followerDone; !slices.Equal(owners, []string{"alice"}) {
			t.Errorf("follower got %q; want [alice]", owners)
		}
		// The shared call kept the leader's deadline.
		inner.mu.Lock()
		_, hasDeadline := inner.lastCtx.Deadline()
		inner.mu.Unlock()
		if !hasDeadline {
			t.Error("the backend call lost the leader's deadline")
		}
	})
}

func TestCancelledContextOnMissIsAnError(t *testing.T) {
	inner := &fakeStore{}
	inner.set("orders", "k", "alice")
	c := newCache(t, inner, Config{})
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, found, err := c.Owners(ctx, "orders", "k"); !errors.Is(err, context.Canceled) || found {
		t.Errorf("Owners = found %v, err %v; want Canceled", found, err)
	}
	if inner.calls.Load() != 0 {
		t.Error("a cancelled miss still called the backend")
	}
}

func TestInvalidateAndClear(t *testing.T) {
	inner := &fakeStore{}
	inner.set("orders", "k", "alice")
	inner.set("orders", "j", "bob")
	c := newCache(t, inner, Config{})
	ask(t, c, "orders", "k")
	ask(t, c, "orders", "j")
	inner.set("orders", "k", "carol")
	inner.set("orders", "j", "dave")
	c.Invalidate("orders", "k")
	if owners, _, _ := ask(t, c, "orders", "k"); !slices.Equal(owners, []string{"carol"}) {
		t.Errorf("after Invalidate: %q; want [carol]", owners)
	}
	if owners, _, _ := ask(t, c, "orders", "j"); !slices.Equal(owners, []string{"bob"}) {
		t.Errorf("untouched key: %q; want the cached [bob]", owners)
	}
	c.Clear()
	if owners, _, _ := ask(t, c, "orders", "j"); !slices.Equal(owners, []string{"dave"}) {
		t.Errorf("after Clear: %q; want [dave]", owners)
	}
}

func TestNewOwnershipRejectsBadConfig(t *testing.T) {
	cases := map[string]struct {
		inner *fakeStore
		cfg   Config
		want  string
	}{
		"nil inner":        {nil, Config{}, "inner ownership store is nil"},
		"negative size":    {&fakeStore{}, Config{MaxEntries: -1}, "MaxEntries"},
		"empty lookup key": {&fakeStore{}, Config{Lookups: map[string]TTLs{"": {}}}, "empty lookup name"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			var err error
			if tc.inner == nil {
				_, err = NewOwnership(nil, tc.cfg)
			} else {
				_, err = NewOwnership(tc.inner, tc.cfg)
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v; want it to mention %q", err, tc.want)
			}
		})
	}
}

func TestHitAllocatesNothing(t *testing.T) {
	inner := &fakeStore{}
	inner.set("orders", "order-12345", "alice", "bob")
	c := newCache(t, inner, Config{})
	ask(t, c, "orders", "order-12345")
	ctx := t.Context()
	allocs := testing.AllocsPerRun(1000, func() {
		if _, found, _ := c.Owners(ctx, "orders", "order-12345"); !found {
			t.Fatal("miss")
		}
	})
	if allocs != 0 {
		t.Errorf("a cache hit allocates %v times; want 0", allocs)
	}
}

func BenchmarkOwnersHit(b *testing.B) {
	inner := &fakeStore{}
	inner.set("orders", "order-12345", "alice", "bob")
	c := newCache(b, inner, Config{})
	ctx := context.Background()
	c.Owners(ctx, "orders", "order-12345")
	c.Wait()
	b.ReportAllocs()
	for b.Loop() {
		if _, found, _ := c.Owners(ctx, "orders", "order-12345"); !found {
			b.Fatal("miss")
		}
	}
}

func BenchmarkOwnersHitParallel(b *testing.B) {
	inner := &fakeStore{}
	inner.set("orders", "order-12345", "alice", "bob")
	c := newCache(b, inner, Config{})
	ctx := context.Background()
	c.Owners(ctx, "orders", "order-12345")
	c.Wait()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, found, _ := c.Owners(ctx, "orders", "order-12345"); !found {
				b.Error("miss")
				return
			}
		}
	})
}

func TestCachedOwnersNeverCallsTheBackend(t *testing.T) {
	inner := &fakeStore{}
	inner.set("orders", "42", "alice")
	c := newCache(t, inner, Config{})
	if _, _, hit := c.CachedOwners("orders", "42"); hit {
		t.Fatal("hit before any lookup")
	}
	if inner.calls.Load() != 0 {
		t.Fatalf("CachedOwners called the backend %d times", inner.calls.Load())
	}
	if _, _, err := ask(t, c, "orders", "42"); err != nil {
		t.Fatal(err)
	}
	owners, found, hit := c.CachedOwners("orders", "42")
	if !hit || !found || len(owners) != 1 || owners[0] != "alice" {
		t.Fatalf("CachedOwners = %v, %v, %v; want [alice], true, true", owners, found, hit)
	}
	if _, _, hit := c.CachedOwners("orders", "43"); hit {
		t.Fatal("hit for a key never looked up")
	}
	if n := inner.calls.Load(); n != 1 {
		t.Fatalf("backend calls = %d, want 1", n)
	}
}
