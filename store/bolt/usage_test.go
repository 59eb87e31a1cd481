package bolt_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/scopegate/scopegate/store"
	"github.com/scopegate/scopegate/store/bolt"
	"github.com/scopegate/scopegate/store/usage"
	"github.com/scopegate/scopegate/store/usage/usagetest"
)

func TestUsageConformance(t *testing.T) {
	usagetest.TestStore(t, func(t *testing.T) usage.Store { return openTemp(t).UsageStore() })
}

// TestUsageSurvivesReopen: tallies persisted by one process are there for
// the next one on the same file.
func TestUsageSurvivesReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "scopegate.db")
	ctx := context.Background()
	at := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	db, err := bolt.Open(path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.UsageStore().AddUsage(ctx, []usage.Tally{{ClientID: "web", Scope: "orders:read", Count: 2, LastUsed: at}}); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if err := db.UsageStore().AddUsage(ctx, []usage.Tally{{ClientID: "web", Scope: "x", Count: 1}}); err == nil {
		t.Error("AddUsage after Close succeeded")
	}
	db, err = bolt.Open(path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	got, err := db.UsageStore().LoadUsage(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Count != 2 || !got[0].LastUsed.Equal(at) || !got[0].LastSeen.IsZero() {
		t.Errorf("after reopen: %+v", got)
	}
}

func TestUsageRejectsNUL(t *testing.T) {
	db := openTemp(t)
	err := db.UsageStore().AddUsage(context.Background(), []usage.Tally{{ClientID: "a\x00b", Scope: "x", Count: 1}})
	if err == nil {
		t.Error("a client id with a NUL byte was stored")
	}
}
