package postgres_test

import (
	"context"
	"testing"
	"time"

	"github.com/scopegate/scopegate/store"
	"github.com/scopegate/scopegate/store/audit"
	"github.com/scopegate/scopegate/store/audit/audittest"
	"github.com/scopegate/scopegate/store/usage"
	"github.com/scopegate/scopegate/store/usage/usagetest"
)

func TestUsageConformance(t *testing.T) {
	usagetest.TestStore(t, func(t *testing.T) usage.Store {
		db, _ := openTestDB(t, store.PostgresOptions{})
		return db.UsageStore()
	})
}

// TestUsageTwoReplicas: two aggregators (two replicas) persist into one
// database; the report of either covers both, and a third started later
// (a restart) still sees it all.
func TestUsageTwoReplicas(t *testing.T) {
	db, _ := openTestDB(t, store.PostgresOptions{})
	f := audittest.New(t)
	ctx := context.Background()
	newAgg := func() *usage.Aggregator {
		a, err := usage.New(usage.Options{Store: db.UsageStore(), Policy: f.Engine.Policy, FlushInterval: time.Hour,
			Clock: func() time.Time { return audittest.Now.Add(2 * time.Hour) }})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = a.Close(ctx) })
		return a
	}
	r1, r2 := newAgg(), newAgg()
	tok := f.Token(t, "alice", "cli", "orders:read billing:read admin:all")
	feed := func(a *usage.Aggregator, path string, at time.Time) {
		_, d := f.Decide("GET", path, tok)
		if !d.Allow {
			t.Fatalf("%s denied: %v", path, d.Code)
		}
		a.Observe(&audit.Event{Decision: d, Time: at})
	}
	feed(r1, "/orders/1", audittest.Now)
	feed(r2, "/orders/2", audittest.Now.Add(time.Minute))
	feed(r2, "/invoices/2", audittest.Now.Add(-time.Hour))
	if err := r1.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if err := r2.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	for name, a := range map[string]*usage.Aggregator{"replica 1": r1, "replica 2": r2, "restarted": newAgg()} {
		rep, err := a.Report(ctx, usage.Query{ClientID: "cli"})
		if err != nil {
			t.Fatal(err)
		}
		if len(rep) != 1 {
			t.Fatalf("%s: %+v", name, rep)
		}
		got := map[string]usage.ScopeUsage{}
		for _, s := range rep[0].Scopes {
			got[s.Scope] = s
		}
		if s := got["orders:read"]; s.Count != 2 || !s.LastUsed.Equal(audittest.Now.Add(time.Minute)) || !s.Granted {
			t.Errorf("%s: orders:read = %+v, want 2 uses, the last at +1m", name, s)
		}
		if s := got["billing:read"]; s.Count != 1 || !s.LastUsed.Equal(audittest.Now.Add(-time.Hour)) {
			t.Errorf("%s: billing:read = %+v", name, s)
		}
		if s := got["admin:all"]; s.Used || !s.Granted {
			t.Errorf("%s: admin:all = %+v, want granted and unused", name, s)
		}
		// Over-scoped: unused for an hour at +2h is billing:read (used at
		// -1h) and admin:all (never).
		over, err := a.Report(ctx, usage.Query{ClientID: "cli", UnusedFor: 150 * time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, s := range over[0].Scopes {
			names = append(names, s.Scope)
		}
		if len(names) != 2 || names[0] != "admin:all" || names[1] != "billing:read" {
			t.Errorf("%s: unused for 2.5h = %v, want [admin:all billing:read]", name, names)
		}
	}
}
