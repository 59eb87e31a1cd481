package store_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/scopegate/scopegate/decision"
	"github.com/scopegate/scopegate/store"
	"github.com/scopegate/scopegate/store/storetest"
)

func TestMemoryRevocationConformance(t *testing.T) {
	storetest.TestRevocations(t, func(t *testing.T) store.RevocationStore { return store.NewMemoryRevocations(nil) })
}

func TestNewRevocationID(t *testing.T) {
	base := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	seen := map[string]bool{}
	var ids []string
	for i := range 1000 {
		id := store.NewRevocationID(base.Add(time.Duration(i) * time.Millisecond))
		if len(id) != 26 || store.CheckRevocationID(id) != nil {
			t.Fatalf("id %q: want 26 base32 characters", id)
		}
		if seen[id] {
			t.Fatalf("id %q generated twice", id)
		}
		seen[id] = true
		ids = append(ids, id)
	}
	if !sort.StringsAreSorted(ids) {
		t.Error("ids of increasing times do not sort in time order")
	}
}

// sink records what a syncer gives the engine.
type sink struct {
	set    atomic.Pointer[decision.RevocationSet]
	synced atomic.Int64
	sets   atomic.Int32
}

func (s *sink) SetRevocations(rs *decision.RevocationSet) { s.set.Store(rs); s.sets.Add(1) }
func (s *sink) MarkRevocationsSynced(t time.Time)         { s.synced.Store(t.UnixNano()) }

func (s *sink) has(id string) bool {
	_, ok := s.set.Load().Get(id)
	return ok
}

// flaky wraps a store: it can fail every call, block ListRevocations, and
// notify watchers of its own writes like a shared database would.
type flaky struct {
	*store.MemoryRevocations
	fail     atomic.Bool
	block    atomic.Pointer[chan struct{}] // ListRevocations waits on it
	listing  chan struct{}                 // signalled when a List starts
	mu       sync.Mutex
	watchers []func(store.RevocationChange)
	// quietWatch leaves out the Resync a watch starts with, so that no
	// resync runs but the ones a test starts.
	quietWatch bool
}

var errDown = errors.New("store down")

func newFlaky() *flaky {
	return &flaky{MemoryRevocations: store.NewMemoryRevocations(nil), listing: make(chan struct{}, 16)}
}

// ListRevocations takes its snapshot, then signals listing and waits on
// block, so a test can write after the snapshot and before the return.
func (f *flaky) ListRevocations(ctx context.Context) ([]decision.Revocation, error) {
	list, err := f.MemoryRevocations.ListRevocations(ctx)
	select {
	case f.listing <- struct{}{}:
	default:
	}
	if b := f.block.Load(); b != nil {
		<-*b
	}
	if f.fail.Load() {
		return nil, errDown
	}
	return list, err
}

func (f *flaky) GetRevocation(ctx context.Context, id string) (decision.Revocation, bool, error) {
	if f.fail.Load() {
		return decision.Revocation{}, false, errDown
	}
	return f.MemoryRevocations.GetRevocation(ctx, id)
}

func (f *flaky) WatchRevocations(ctx context.Context, fn func(store.RevocationChange)) error {
	f.mu.Lock()
	f.watchers = append(f.watchers, fn)
	f.mu.Unlock()
	if !f.quietWatch {
		fn(store.RevocationChange{Resync: true})
	}
	<-ctx.Done()
	return ctx.Err()
}

// notify tells the watchers, as another replica's write would.
func (f *flaky) notify(c store.RevocationChange) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, fn := range f.watchers {
		fn(c)
	}
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func startSyncer(t *testing.T, src store.RevocationStore, opts store.SyncOptions) (*store.RevocationSyncer, *sink, error) {
	t.Helper()
	k := &sink{}
	if opts.Logger == nil {
		opts.Logger = quiet()
	}
	s, err := store.NewRevocationSyncer(src, k, opts)
	if err != nil {
		t.Fatal(err)
	}
	err = s.Start(t.Context())
	t.Cleanup(s.Stop)
	return s, k, err
}

// settled waits, in a synctest bubble, until every goroutine of the
// bubble is blocked, and fails t unless cond then holds: no polling, and
// no wait longer than the work takes.
func settled(t *testing.T, what string, cond func() bool) {
	t.Helper()
	synctest.Wait()
	if !cond() {
		t.Fatalf("%s: not so once the syncer is idle", what)
	}
}

func revoke(t *testing.T, s store.RevocationStore, subject string) decision.Revocation {
	t.Helper()
	r, err := s.Revoke(t.Context(), decision.Revocation{Kind: decision.RevokeSubject, Subject: subject, Reason: "test"})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestSyncerLoadsAndAppliesLocalChanges(t *testing.T) {
	src := newFlaky()
	a := revoke(t, src, "a")
	s, k, err := startSyncer(t, src, store.SyncOptions{Resync: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if !k.has(a.ID) || k.synced.Load() == 0 || s.SyncedAt().IsZero() {
		t.Fatalf("after Start: has=%v synced=%v", k.has(a.ID), s.SyncedAt())
	}
	// A change this process made applies before Put returns.
	b := revoke(t, src, "b")
	s.Put(b)
	if !k.has(b.ID) {
		t.Error("Put did not apply at once")
	}
	if err := src.Unrevoke(t.Context(), a.ID); err != nil {
		t.Fatal(err)
	}
	s.Remove(a.ID)
	if k.has(a.ID) {
		t.Error("Remove did not apply at once")
	}
}

func TestSyncerFollowsNotifications(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newFlaky()
		_, k, err := startSyncer(t, src, store.SyncOptions{Resync: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		settled(t, "watcher registered", func() bool { src.mu.Lock(); defer src.mu.Unlock(); return len(src.watchers) > 0 })
		r := revoke(t, src, "remote")
		src.notify(store.RevocationChange{ID: r.ID})
		settled(t, "notified revocation applied", func() bool { return k.has(r.ID) })
		if err := src.Unrevoke(t.Context(), r.ID); err != nil {
			t.Fatal(err)
		}
		src.notify(store.RevocationChange{ID: r.ID, Deleted: true})
		settled(t, "notified removal applied", func() bool { return !k.has(r.ID) })
		// A put whose revocation is gone again by the time it is fetched is a
		// removal.
		gone := revoke(t, src, "gone")
		k2 := k.set.Load().Apply([]decision.Revocation{gone}, nil)
		k.SetRevocations(k2)
		_ = src.Unrevoke(t.Context(), gone.ID)
		src.notify(store.RevocationChange{ID: gone.ID})
		settled(t, "vanished revocation removed", func() bool { return !k.has(gone.ID) })
	})
}

// TestSyncerOnPutCarriesSourceEventTime: a revocation learned from the
// store's notifications is reported to OnPut once it is in force, with its
// source event time (for the SSF lag on every replica); this process's own
// change, notified back, is not reported again.
func TestSyncerOnPutCarriesSourceEventTime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newFlaky()
		var mu sync.Mutex
		var heard []decision.Revocation
		var k *sink
		s, k, err := startSyncer(t, src, store.SyncOptions{Resync: time.Hour, OnPut: func(r decision.Revocation) {
			mu.Lock()
			defer mu.Unlock()
			if !k.has(r.ID) {
				t.Errorf("OnPut(%s) before the revocation is in force", r.ID)
			}
			heard = append(heard, r)
		}})
		if err != nil {
			t.Fatal(err)
		}
		settled(t, "watcher registered", func() bool { src.mu.Lock(); defer src.mu.Unlock(); return len(src.watchers) > 0 })
		at := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
		r, err := src.Revoke(t.Context(), decision.Revocation{Kind: decision.RevokeSubject, Subject: "remote", Reason: "ssf", SourceEventTime: at})
		if err != nil {
			t.Fatal(err)
		}
		src.notify(store.RevocationChange{ID: r.ID})
		settled(t, "OnPut called", func() bool { mu.Lock(); defer mu.Unlock(); return len(heard) == 1 })
		mu.Lock()
		if !heard[0].SourceEventTime.Equal(at) || heard[0].ID != r.ID {
			t.Errorf("OnPut got %+v; want %s with its source event time", heard[0], r.ID)
		}
		mu.Unlock()
		local := revoke(t, src, "local")
		s.Put(local)
		src.notify(store.RevocationChange{ID: local.ID})
		settled(t, "local change notified back", func() bool { return k.has(local.ID) })
		mu.Lock()
		if len(heard) != 1 {
			t.Errorf("OnPut called %d times; want once, for the notified revocation only", len(heard))
		}
		mu.Unlock()
	})
}

func TestSyncerResyncHealsMissedChanges(t *testing.T) {
	src := newFlaky()
	s, k, err := startSyncer(t, src, store.SyncOptions{Resync: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	r := revoke(t, src, "missed") // no notification
	if k.has(r.ID) {
		t.Fatal("applied without a notification or resync")
	}
	if err := s.Resync(t.Context()); err != nil {
		t.Fatal(err)
	}
	if !k.has(r.ID) {
		t.Error("resync did not pick up the missed revocation")
	}
	// Nothing changed: the set in force is kept.
	before := k.sets.Load()
	if err := s.Resync(t.Context()); err != nil {
		t.Fatal(err)
	}
	if k.sets.Load() != before {
		t.Error("an unchanged resync replaced the set")
	}
	_ = src.Unrevoke(t.Context(), r.ID)
	if err := s.Resync(t.Context()); err != nil {
		t.Fatal(err)
	}
	if k.has(r.ID) {
		t.Error("resync did not drop the missed removal")
	}
}

func TestSyncerKeepsTheLastListWhenTheStoreIsDown(t *testing.T) {
	now := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	var clock atomic.Pointer[time.Time]
	clock.Store(&now)
	src := newFlaky()
	r := revoke(t, src, "kept")
	s, k, err := startSyncer(t, src, store.SyncOptions{Resync: time.Hour, Clock: func() time.Time { return *clock.Load() }})
	if err != nil {
		t.Fatal(err)
	}
	src.fail.Store(true)
	later := now.Add(90 * time.Second)
	clock.Store(&later)
	if err := s.Resync(t.Context()); !errors.Is(err, errDown) {
		t.Fatalf("Resync with the store down = %v", err)
	}
	if !k.has(r.ID) {
		t.Error("the last list was dropped while the store is down")
	}
	if age := s.SyncAge(); age != 90*time.Second {
		t.Errorf("SyncAge = %s; want 1m30s", age)
	}
	if got := time.Unix(0, k.synced.Load()); !got.Equal(now) {
		t.Errorf("the engine was marked synced at %v; want %v", got, now)
	}
	src.fail.Store(false)
	if err := s.Resync(t.Context()); err != nil {
		t.Fatal(err)
	}
	if s.SyncAge() != 0 {
		t.Errorf("SyncAge after recovery = %s", s.SyncAge())
	}
}

// TestSyncerRetriesAFailedFirstLoad runs on a synctest bubble's clock, so
// the retry's backoff is checked to the bounds of its jitter without
// waiting for it.
func TestSyncerRetriesAFailedFirstLoad(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newFlaky()
		r := revoke(t, src, "early")
		src.fail.Store(true)
		s, k, err := startSyncer(t, src, store.SyncOptions{Resync: time.Hour})
		if !errors.Is(err, errDown) {
			t.Fatalf("Start = %v; want the load error", err)
		}
		if set := k.set.Load(); set == nil || set.Len() != 0 || k.synced.Load() != 0 {
			t.Fatalf("before the first load the engine must have an empty, never-synced set")
		}
		// Let the syncer's loops meet the store down (the watch fails too
		// and asks for a resync, which fails: a second failure) before it
		// comes back.
		synctest.Wait()
		src.fail.Store(false)
		// No retry before the shortest backoff (half the minimum retry
		// wait); one by the longest a second failure allows (twice it).
		time.Sleep(time.Second/2 - time.Millisecond)
		settled(t, "no retry before the backoff", func() bool { return !k.has(r.ID) })
		time.Sleep(2*time.Second - time.Second/2 + time.Millisecond)
		settled(t, "retried load", func() bool { return k.has(r.ID) })
		if s.SyncedAt().IsZero() {
			t.Error("not marked synced after the retried load")
		}
	})
}

// A change applied while a resync is loading survives the resync, even
// though the list was read before the change.
func TestSyncerReplaysChangesDuringAResync(t *testing.T) {
	src := newFlaky()
	src.quietWatch = true
	s, k, err := startSyncer(t, src, store.SyncOptions{Resync: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	<-src.listing // Start's load
	gate := make(chan struct{})
	src.block.Store(&gate)
	done := make(chan error, 1)
	go func() { done <- s.Resync(t.Context()) }()
	<-src.listing // the resync has taken its snapshot
	r, err := src.Revoke(t.Context(), decision.Revocation{ID: "local", Kind: decision.RevokeClient, ClientID: "web-app", Reason: "r"})
	if err != nil {
		t.Fatal(err)
	}
	s.Put(r) // as the admin API does after storing
	src.block.Store(nil)
	close(gate)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !k.has("local") {
		t.Error("a change made during the resync was lost")
	}
}

func TestSyncerRejectsBadOptions(t *testing.T) {
	if _, err := store.NewRevocationSyncer(nil, &sink{}, store.SyncOptions{}); err == nil {
		t.Error("nil store accepted")
	}
	if _, err := store.NewRevocationSyncer(store.NewMemoryRevocations(nil), &sink{}, store.SyncOptions{Resync: -time.Second}); err == nil {
		t.Error("negative Resync accepted")
	}
}
