package postgres_test

import (
	"context"
	"testing"

	"github.com/scopegate/scopegate/decision"
	"github.com/scopegate/scopegate/store"
	"github.com/scopegate/scopegate/store/postgres"
	"github.com/scopegate/scopegate/store/storetest"
)

func TestRevocationConformance(t *testing.T) {
	testDSN(t)
	storetest.TestRevocations(t, func(t *testing.T) store.RevocationStore {
		db, _ := openTestDB(t, store.PostgresOptions{})
		return db.Revocations()
	})
}

// Two pools on one schema, as two replicas have: the second hears what
// the first writes.
func TestRevocationWatch(t *testing.T) {
	testDSN(t)
	storetest.TestRevocationWatch(t, func(t *testing.T) (store.RevocationStore, store.RevocationStore) {
		a, schema := openTestDB(t, store.PostgresOptions{})
		b, err := postgres.Open(context.Background(), testDSN(t), store.Options{Postgres: store.PostgresOptions{Schema: schema}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = b.Close() })
		return a.Revocations(), b.Revocations()
	})
}

// Replicas in other schemas of the same database do not hear each other.
func TestRevocationChannelsPerSchema(t *testing.T) {
	a, _ := openTestDB(t, store.PostgresOptions{})
	b, _ := openTestDB(t, store.PostgresOptions{})
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	changes := make(chan store.RevocationChange, 8)
	go func() { _ = b.WatchRevocations(ctx, func(c store.RevocationChange) { changes <- c }) }()
	if c := <-changes; !c.Resync {
		t.Fatalf("first change %+v; want Resync", c)
	}
	if _, err := a.Revoke(ctx, decision.Revocation{Kind: decision.RevokeSubject, Subject: "s", Reason: "r"}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Revoke(ctx, decision.Revocation{ID: "mine", Kind: decision.RevokeSubject, Subject: "s", Reason: "r"}); err != nil {
		t.Fatal(err)
	}
	if c := <-changes; c.ID != "mine" {
		t.Errorf("heard %+v; want only the own schema's revocation", c)
	}
}

// The table has the documented shape operators may query.
func TestRevocationTableShape(t *testing.T) {
	db, schema := openTestDB(t, store.PostgresOptions{})
	r, err := db.Revoke(t.Context(), decision.Revocation{Kind: decision.RevokeToken, Issuer: "https://id.example.com/", JTI: "j1", Reason: "r"})
	if err != nil {
		t.Fatal(err)
	}
	execSQL(t, schema, `SELECT id, kind, iss, jti, sub, client_id, scope, segment, reason, created_at, "until", created_by FROM scopegate_revocations WHERE id = '`+r.ID+`' AND kind = 'token' AND jti = 'j1'`)
	// Migrating again keeps the table and its rows.
	if err := db.Migrate(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, found, err := db.GetRevocation(t.Context(), r.ID); !found || err != nil {
		t.Errorf("after Migrate: found=%v err=%v", found, err)
	}
}
