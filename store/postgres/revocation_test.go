package postgres_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

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
	execSQL(t, schema, `SELECT id, kind, iss, jti, sub, client_id, scope, segment, reason, created_at, "until", created_by, sid, issued_before FROM scopegate_revocations WHERE id = '`+r.ID+`' AND kind = 'token' AND jti = 'j1'`)
	// Migrating again keeps the table and its rows.
	if err := db.Migrate(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, found, err := db.GetRevocation(t.Context(), r.ID); !found || err != nil {
		t.Errorf("after Migrate: found=%v err=%v", found, err)
	}
}

// A table made by a release without session revocations and issued_before
// is upgraded in place by Migrate: its rows kept, the new kind and columns
// usable.
func TestRevocationMigrationUpgradesAnOldTable(t *testing.T) {
	schema := newSchema(t)
	conn, err := pgx.Connect(t.Context(), testDSN(t))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(t.Context())
	if _, err := conn.Exec(t.Context(), "CREATE SCHEMA "+pgx.Identifier{schema}.Sanitize()); err != nil {
		t.Fatal(err)
	}
	execSQL(t, schema, `CREATE TABLE scopegate_revocations (
	id         text PRIMARY KEY,
	kind       text NOT NULL CHECK (kind IN ('token', 'subject', 'client')),
	iss        text NOT NULL DEFAULT '',
	jti        text NOT NULL DEFAULT '',
	sub        text NOT NULL DEFAULT '',
	client_id  text NOT NULL DEFAULT '',
	scope      text NOT NULL DEFAULT '',
	segment    text NOT NULL DEFAULT '',
	reason     text NOT NULL,
	created_at timestamptz NOT NULL DEFAULT now(),
	"until"    timestamptz,
	created_by text NOT NULL DEFAULT ''
)`, `INSERT INTO scopegate_revocations (id, kind, sub, reason) VALUES ('old-1', 'subject', 'bob', 'before the upgrade')`)
	for range 2 { // the second Migrate finds the table upgraded
		db, err := postgres.Open(t.Context(), testDSN(t), store.Options{Postgres: store.PostgresOptions{Schema: schema, Migrate: true}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = db.Close() })
		old, found, err := db.GetRevocation(t.Context(), "old-1")
		if err != nil || !found || old.Subject != "bob" || !old.IssuedBefore.IsZero() || old.SessionID != "" {
			t.Fatalf("old row after migrate: %+v found=%v err=%v", old, found, err)
		}
		if _, err := db.Revoke(t.Context(), decision.Revocation{Kind: decision.RevokeSession, Issuer: "https://id.example.com/", SessionID: "s1", Reason: "r"}); err != nil {
			t.Fatalf("session revocation after migrate: %v", err)
		}
		cut := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
		got, err := db.Revoke(t.Context(), decision.Revocation{Kind: decision.RevokeSubject, Subject: "alice", IssuedBefore: cut, Reason: "r"})
		if err != nil || !got.IssuedBefore.Equal(cut) {
			t.Fatalf("issued-before revocation after migrate: %+v %v", got, err)
		}
		back, _, err := db.GetRevocation(t.Context(), got.ID)
		if err != nil || !back.IssuedBefore.Equal(cut) {
			t.Fatalf("read back: %+v %v", back, err)
		}
		dev, err := db.Revoke(t.Context(), decision.Revocation{Kind: decision.RevokeDevice, DeviceID: "d1", IssuedBefore: cut, Reason: "r"})
		if err != nil {
			t.Fatalf("device revocation after migrate: %v", err)
		}
		asr, err := db.Revoke(t.Context(), decision.Revocation{Kind: decision.RevokeAssurance, Subject: "alice", ACRLevel: "aal1", Reason: "r"})
		if err != nil {
			t.Fatalf("assurance revocation after migrate: %v", err)
		}
		if b, _, err := db.GetRevocation(t.Context(), dev.ID); err != nil || b.DeviceID != "d1" {
			t.Fatalf("device read back: %+v %v", b, err)
		}
		if b, _, err := db.GetRevocation(t.Context(), asr.ID); err != nil || b.ACRLevel != "aal1" {
			t.Fatalf("assurance read back: %+v %v", b, err)
		}
	}
	// The kind check still refuses what no release writes.
	if _, err := conn.Exec(t.Context(), `INSERT INTO `+pgx.Identifier{schema, "scopegate_revocations"}.Sanitize()+` (id, kind, reason) VALUES ('bad', 'printer', 'r')`); err == nil {
		t.Error("the kind check accepted kind 'printer'")
	}
}

// A table made by the release with issued_before but before
// source_event_time gains the column, its rows kept.
func TestRevocationMigrationAddsSourceEventTime(t *testing.T) {
	schema := newSchema(t)
	execSQL(t, "public", "CREATE SCHEMA "+pgx.Identifier{schema}.Sanitize())
	execSQL(t, schema, `CREATE TABLE scopegate_revocations (
	id text PRIMARY KEY, kind text NOT NULL, iss text NOT NULL DEFAULT '', jti text NOT NULL DEFAULT '',
	sub text NOT NULL DEFAULT '', client_id text NOT NULL DEFAULT '', scope text NOT NULL DEFAULT '',
	segment text NOT NULL DEFAULT '', reason text NOT NULL, created_at timestamptz NOT NULL DEFAULT now(),
	"until" timestamptz, created_by text NOT NULL DEFAULT '', sid text NOT NULL DEFAULT '', issued_before timestamptz,
	CONSTRAINT scopegate_revocations_kind_check CHECK (kind IN ('token', 'subject', 'client', 'session'))
)`, `INSERT INTO scopegate_revocations (id, kind, sub, reason) VALUES ('old-1', 'subject', 'bob', 'before the upgrade')`)
	db, err := postgres.Open(t.Context(), testDSN(t), store.Options{Postgres: store.PostgresOptions{Schema: schema, Migrate: true}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	if old, found, err := db.GetRevocation(t.Context(), "old-1"); err != nil || !found || !old.SourceEventTime.IsZero() {
		t.Fatalf("old row after migrate: %+v found=%v err=%v", old, found, err)
	}
	at := time.Date(2026, 12, 2, 10, 0, 0, 250000000, time.UTC)
	got, err := db.Revoke(t.Context(), decision.Revocation{Kind: decision.RevokeSubject, Subject: "alice", SourceEventTime: at, Reason: "r"})
	if err != nil {
		t.Fatal(err)
	}
	if back, _, err := db.GetRevocation(t.Context(), got.ID); err != nil || !back.SourceEventTime.Equal(at) {
		t.Fatalf("read back: %+v %v", back, err)
	}
}
