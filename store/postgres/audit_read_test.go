package postgres_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/scopegate/scopegate/store"
	"github.com/scopegate/scopegate/store/audit"
	"github.com/scopegate/scopegate/store/audit/audittest"
	"github.com/scopegate/scopegate/store/postgres"
)

var _ store.AuditReader = (*postgres.DB)(nil)

// TestReadAudit: records written by the sink read back through
// ReadAudit, oldest first, filtered by client and time; a schema no
// replica wrote to has no audit log.
func TestReadAudit(t *testing.T) {
	db, _ := openTestDB(t, store.PostgresOptions{})
	ctx := context.Background()
	if ok, err := db.ReadAudit(ctx, audit.Query{}, func(*audit.Record) error { return nil }); ok || err != nil {
		t.Fatalf("before any write: ok %v, err %v; want no audit log", ok, err)
	}
	sink, err := db.NewAuditSink()
	if err != nil {
		t.Fatal(err)
	}
	l, err := audit.New(audit.Options{Sinks: []audit.Sink{sink}})
	if err != nil {
		t.Fatal(err)
	}
	f := audittest.New(t)
	web := f.Token(t, "alice", "web-app", "orders:read")
	mobile := f.Token(t, "bob", "mobile-app", "orders:read")
	for i, tok := range []string{web, mobile, web, web} {
		r, d := f.Decide("GET", "/orders/1", tok)
		l.Record(ctx, audit.ExtAuthz, &r, &d, audittest.Now.Add(time.Duration(3-i)*time.Minute), "")
	}
	cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := l.Close(cctx); err != nil {
		t.Fatal(err)
	}
	var times []time.Time
	q := audit.Query{ClientID: "web-app", From: audittest.Now, To: audittest.Now.Add(3 * time.Minute)}
	ok, err := db.ReadAudit(ctx, q, func(r *audit.Record) error {
		if r.ClientID != "web-app" || !slices.Equal(r.ScopesUsed, []string{"orders:read"}) {
			t.Errorf("record %+v", r)
		}
		times = append(times, r.Time)
		return nil
	})
	if !ok || err != nil {
		t.Fatalf("ok %v, err %v", ok, err)
	}
	want := []time.Time{audittest.Now, audittest.Now.Add(time.Minute)}
	if !slices.EqualFunc(times, want, time.Time.Equal) {
		t.Errorf("times %v; want %v (oldest first, [from, to), web-app only)", times, want)
	}
}
