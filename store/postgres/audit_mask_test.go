package postgres_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/scopegate/scopegate/store"
	"github.com/scopegate/scopegate/store/audit"
	"github.com/scopegate/scopegate/store/audit/audittest"
	"github.com/scopegate/scopegate/store/postgres"
)

// TestAuditSinkMasked: masking applies to the indexed columns as well as
// to the stored record.
func TestAuditSinkMasked(t *testing.T) {
	db, schema := openTestDB(t, store.PostgresOptions{})
	sink, err := db.AuditSink(postgres.AuditSinkOptions{})
	if err != nil {
		t.Fatal(err)
	}
	key := []byte(strings.Repeat("mask-key-", 4))
	rules, err := audit.ParseMask("client_id=hash,claim:sub=drop")
	if err != nil {
		t.Fatal(err)
	}
	l, err := audit.New(audit.Options{Sinks: []audit.Sink{sink}, Mask: rules, MaskKey: key})
	if err != nil {
		t.Fatal(err)
	}
	f := audittest.New(t)
	r, d := f.Decide("GET", "/orders/1", f.Token(t, "alice", "web-app", "orders:read"))
	ctx := context.Background()
	l.Record(ctx, audit.ExtAuthz, &r, &d, audittest.Now, "")
	cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := l.Close(cctx); err != nil {
		t.Fatal(err)
	}
	m := hmac.New(sha256.New, key)
	m.Write([]byte("web-app"))
	want := "hmac:" + hex.EncodeToString(m.Sum(nil)[:16])

	conn, err := pgx.Connect(ctx, testDSN(t))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var client, subject *string
	var rec map[string]any
	err = conn.QueryRow(ctx, `SELECT client_id, subject, record FROM `+pgx.Identifier{schema, "scopegate_audit"}.Sanitize()).Scan(&client, &subject, &rec)
	if err != nil {
		t.Fatal(err)
	}
	if client == nil || *client != want || rec["client_id"] != want {
		t.Errorf("client_id column %v, record %v; want %s in both", client, rec["client_id"], want)
	}
	if subject != nil || rec["subject"] != nil {
		t.Errorf("subject column %v, record %v; want it dropped from both", subject, rec["subject"])
	}
}
