package postgres_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/scopegate/scopegate/store"
	"github.com/scopegate/scopegate/store/audit"
	"github.com/scopegate/scopegate/store/audit/audittest"
	"github.com/scopegate/scopegate/store/postgres"
)

// TestAuditSink writes decisions through an audit Logger into
// scopegate_audit and reads them back.
func TestAuditSink(t *testing.T) {
	db, schema := openTestDB(t, store.PostgresOptions{})
	sink, err := db.AuditSink(postgres.AuditSinkOptions{BatchSize: 7})
	if err != nil {
		t.Fatal(err)
	}
	f := audittest.New(t)
	tok := f.Token(t, "alice", "web-app", "orders:read")
	l, err := audit.New(audit.Options{Sinks: []audit.Sink{sink}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	const n = 25
	for i := range n {
		token := tok
		if i%5 == 0 {
			token = ""
		}
		r, d := f.Decide("GET", "/orders/1", token)
		l.Record(ctx, audit.ExtAuthz, &r, &d, audittest.Now.Add(time.Duration(i)*time.Millisecond), "")
	}
	if !l.RecordAdmin(ctx, audit.AdminEvent{Method: "ReloadPolicy", Principal: "ops"}) {
		t.Fatal("RecordAdmin failed")
	}
	cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := l.Close(cctx); err != nil {
		t.Fatal(err)
	}
	if st := l.Stats(); st.Written != n+1 || st.Failed != 0 {
		t.Errorf("stats %+v", st)
	}

	conn, err := pgx.Connect(ctx, testDSN(t))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	tbl := pgx.Identifier{schema, "scopegate_audit"}.Sanitize()
	var allows, denies, admins int
	rows, err := conn.Query(ctx, `SELECT type, allow, reason, coalesce(client_id, ''), coalesce(route, ''), record, decision_id FROM `+tbl+` ORDER BY time`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var typ, reason, client, route, id string
		var allow bool
		var rec map[string]any
		if err := rows.Scan(&typ, &allow, &reason, &client, &route, &rec, &id); err != nil {
			t.Fatal(err)
		}
		switch {
		case typ == "admin":
			admins++
			if rec["method"] != "ReloadPolicy" || rec["principal"] != "ops" {
				t.Errorf("admin record %v", rec)
			}
		case allow:
			allows++
			if reason != "ok" || client != "web-app" || route != "read-order" || rec["client_id"] != "web-app" || rec["decision_id"] != id {
				t.Errorf("allow row: %s %s %s %v", reason, client, route, rec)
			}
		default:
			denies++
			if reason != "token_missing" || client != "" {
				t.Errorf("deny row: %s %q", reason, client)
			}
		}
		b, _ := json.Marshal(rec)
		if strings.Contains(string(b), tok) {
			t.Error("a stored record holds the raw token")
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if allows != 20 || denies != 5 || admins != 1 {
		t.Errorf("rows: %d allows, %d denies, %d admin; want 20, 5, 1", allows, denies, admins)
	}
}

// TestAuditSinkKeepsRecordsWhileDown: when COPY fails the records stay
// pending, bounded by MaxPending, the overflow counted.
func TestAuditSinkKeepsRecordsWhileDown(t *testing.T) {
	db, _ := openTestDB(t, store.PostgresOptions{})
	sink, err := db.AuditSink(postgres.AuditSinkOptions{BatchSize: 2, MaxPending: 4})
	if err != nil {
		t.Fatal(err)
	}
	_ = db.Close() // every COPY now fails
	ctx := context.Background()
	entries := []audit.Entry{{Time: audittest.Now, Type: "decision", DecisionID: "a", API: "http", Reason: "ok", JSON: []byte(`{}`)}}
	if err := sink.Write(ctx, entries); err != nil {
		t.Fatalf("a write below the batch size failed: %v", err)
	}
	err = sink.Write(ctx, entries)
	var we *audit.WriteError
	if !errors.As(err, &we) || we.Lost != 0 {
		t.Fatalf("a full batch on a closed store: %v, want a WriteError losing nothing (the records stay pending)", err)
	}
	// In backoff: further writes are kept without another attempt; what
	// goes past MaxPending is reported lost.
	lost := 0
	for range 5 {
		if err := sink.Write(ctx, entries); err != nil {
			if !errors.As(err, &we) {
				t.Fatalf("write during backoff: %v", err)
			}
			lost += we.Lost
		}
	}
	if got := sink.Dropped(); got != 3 || lost != 3 {
		t.Errorf("dropped = %d, reported lost %d; want 3 (7 written, 4 kept)", got, lost)
	}
	if err := sink.Close(ctx); err == nil {
		t.Error("Close flushed to a closed store")
	}
}

func TestAuditSinkOptions(t *testing.T) {
	db, _ := openTestDB(t, store.PostgresOptions{})
	if _, err := db.AuditSink(postgres.AuditSinkOptions{BatchSize: -1}); err == nil {
		t.Error("a negative batch size was accepted")
	}
}
