package postgres_test

import (
	"context"
	"testing"
	"time"

	"github.com/scopegate/scopegate/store"
	"github.com/scopegate/scopegate/store/postgres"
)

// Two pools on one schema, as two replicas: one holds the lease at a
// time; the other takes it once it expires or is released.
func TestLeaseOneHolder(t *testing.T) {
	a, schema := openTestDB(t, store.PostgresOptions{})
	b, err := postgres.Open(context.Background(), testDSN(t), store.Options{Postgres: store.PostgresOptions{Schema: schema}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	la, lb := a.Leaser(), b.Leaser()
	ctx := t.Context()
	const ttl = 300 * time.Millisecond
	acquire := func(l store.Leaser, holder string) bool {
		t.Helper()
		held, err := l.Acquire(ctx, "poll:idp", holder, ttl)
		if err != nil {
			t.Fatal(err)
		}
		return held
	}
	if !acquire(la, "a") {
		t.Fatal("a could not take a lease nobody holds")
	}
	if acquire(lb, "b") {
		t.Fatal("b took a lease a holds")
	}
	if !acquire(la, "a") {
		t.Fatal("a could not renew its own lease")
	}
	// Another name is another lease.
	if held, err := lb.Acquire(ctx, "poll:other", "b", ttl); err != nil || !held {
		t.Fatalf("b could not take another name's lease: %v %v", held, err)
	}
	// a stops renewing: b takes over after the ttl, not before.
	start := time.Now()
	for !acquire(lb, "b") {
		if time.Since(start) > 3*ttl {
			t.Fatal("b never took the expired lease")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if took := time.Since(start); took < ttl-50*time.Millisecond {
		t.Errorf("b took the lease after %v, before a's %v expired", took, ttl)
	}
	if acquire(la, "a") {
		t.Error("a renewed a lease b has taken over")
	}
	// Release by another holder changes nothing; by the holder frees it.
	if err := la.Release(ctx, "poll:idp", "a"); err != nil {
		t.Fatal(err)
	}
	if acquire(la, "a") {
		t.Error("a's release of a lease it did not hold freed it")
	}
	if err := lb.Release(ctx, "poll:idp", "b"); err != nil {
		t.Fatal(err)
	}
	if !acquire(la, "a") {
		t.Error("a could not take a released lease at once")
	}
}
