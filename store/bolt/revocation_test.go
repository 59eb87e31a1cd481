package bolt_test

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/scopegate/scopegate/decision"
	"github.com/scopegate/scopegate/store"
	"github.com/scopegate/scopegate/store/bolt"
	"github.com/scopegate/scopegate/store/storetest"
)

func TestRevocationConformance(t *testing.T) {
	storetest.TestRevocations(t, func(t *testing.T) store.RevocationStore { return openTemp(t).Revocations() })
}

// The embedded store keeps one node's revocations across restarts.
func TestRevocationsSurviveReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "scopegate.db")
	db, err := bolt.Open(path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	kept, err := db.Revoke(t.Context(), decision.Revocation{Kind: decision.RevokeClient, ClientID: "web-app", Scope: "billing:write", Reason: "INC-7", Until: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	gone, err := db.Revoke(t.Context(), decision.Revocation{Kind: decision.RevokeSubject, Subject: "bob", Reason: "r"})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Unrevoke(t.Context(), gone.ID); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	again, err := bolt.Open(path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	list, err := again.ListRevocations(t.Context())
	if err != nil || len(list) != 1 || list[0].ID != kept.ID || list[0].Scope != "billing:write" || !list[0].Until.Equal(kept.Until) {
		t.Fatalf("after reopen: %+v %v; want only %+v", list, err, kept)
	}
}

func TestRevocationsAfterClose(t *testing.T) {
	db := openTemp(t)
	_ = db.Close()
	if _, err := db.ListRevocations(t.Context()); err == nil {
		t.Error("ListRevocations after Close succeeded")
	}
	if _, err := db.Revoke(t.Context(), decision.Revocation{Kind: decision.RevokeSubject, Subject: "a", Reason: "r"}); err == nil {
		t.Error("Revoke after Close succeeded")
	}
}
