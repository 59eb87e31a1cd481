package postgres_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/scopegate/scopegate/store"
	"github.com/scopegate/scopegate/store/postgres"
	"github.com/scopegate/scopegate/store/storetest"
)

const envDSN = "SCOPEGATE_TEST_POSTGRES"

func testDSN(t testing.TB) string {
	t.Helper()
	dsn := os.Getenv(envDSN)
	if dsn == "" {
		t.Skip("SCOPEGATE_TEST_POSTGRES not set: skipping PostgreSQL integration test")
	}
	return dsn
}

// newSchema creates a schema no other test run uses and drops it at cleanup,
// so parallel runs against one database do not collide.
func newSchema(t testing.TB) string {
	t.Helper()
	dsn := testDSN(t)
	var b [6]byte
	_, _ = rand.Read(b[:])
	schema := "scopegate_test_" + hex.EncodeToString(b[:])
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			t.Errorf("cleanup: connect to drop schema %s: %v", schema, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{schema}.Sanitize()+" CASCADE"); err != nil {
			t.Errorf("cleanup: drop schema %s: %v", schema, err)
		}
	})
	return schema
}

// openTestDB opens a migrated store in a fresh schema.
func openTestDB(t testing.TB, po store.PostgresOptions) (*postgres.DB, string) {
	t.Helper()
	schema := newSchema(t)
	po.Schema = schema
	po.Migrate = true
	db, err := postgres.Open(context.Background(), testDSN(t), store.Options{Postgres: po})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db, schema
}

// testConn opens a separate connection, closed when t ends.
func testConn(t testing.TB) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), testDSN(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn
}

// execSQL runs setup statements in schema through a separate connection.
func execSQL(t testing.TB, schema string, stmts ...string) {
	t.Helper()
	ctx := context.Background()
	conn := testConn(t)
	if _, err := conn.Exec(ctx, "SET search_path TO "+pgx.Identifier{schema}.Sanitize()); err != nil {
		t.Fatal(err)
	}
	for _, s := range stmts {
		if _, err := conn.Exec(ctx, s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
}

func TestConformance(t *testing.T) {
	testDSN(t)
	storetest.TestOwnership(t, func(t *testing.T) store.Store {
		db, _ := openTestDB(t, store.PostgresOptions{})
		return db
	})
}

func TestMigrateIsIdempotentAndCreatesTheTable(t *testing.T) {
	db, schema := openTestDB(t, store.PostgresOptions{})
	ctx := t.Context()
	if err := db.PutOwners(ctx, "orders", "1", []string{"alice", "bob"}); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := db.Migrate(ctx); err != nil {
			t.Fatalf("Migrate again: %v", err)
		}
	}
	// The documented table shape, which operators may write to directly.
	execSQL(t, schema, `INSERT INTO scopegate_ownership (lookup, key, owner) VALUES ('orders', '2', 'carol')`)
	for key, want := range map[string][]string{"1": {"alice", "bob"}, "2": {"carol"}} {
		owners, found, err := db.Owners(ctx, "orders", key)
		if err != nil || !found || !slices.Equal(owners, want) {
			t.Errorf("Owners(orders, %s) = %q %v %v; want %q", key, owners, found, err, want)
		}
	}
}

func TestConfiguredQueries(t *testing.T) {
	schema := newSchema(t)
	ctx := t.Context()
	q := func(s string) string { return strings.ReplaceAll(s, "S.", pgx.Identifier{schema}.Sanitize()+".") }
	po := store.PostgresOptions{
		Schema:  schema,
		Migrate: true,
		OwnershipQueries: map[string]string{
			"orders":   q("SELECT owner_id FROM S.orders WHERE id = $1;"),
			"docs":     q("SELECT editor FROM S.doc_editors WHERE doc = $1"),
			"invoices": q("SELECT o.owner FROM S.invoices o WHERE o.num = $1 AND o.owner IS NOT NULL"),
		},
	}
	db, err := postgres.Open(ctx, testDSN(t), store.Options{Postgres: po})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	execSQL(t, schema,
		`CREATE TABLE orders (id bigint PRIMARY KEY, owner_id uuid)`,
		`INSERT INTO orders VALUES (1, '6f1c0c8e-27b5-4a4b-9d0e-6a4f3f5a0c11'), (2, NULL)`,
		`CREATE TABLE doc_editors (doc text, editor text)`,
		`INSERT INTO doc_editors VALUES ('d1', 'bob'), ('d1', 'alice'), ('d1', 'bob'), ('d1', ''), ('d2', NULL)`,
		`CREATE TABLE invoices (num int, owner text)`,
		`INSERT INTO invoices VALUES (7, 'erin')`,
	)

	cases := map[string]struct {
		lookup, key string
		owners      []string
		found       bool
	}{
		"uuid owner compared as text":             {"orders", "1", []string{"6f1c0c8e-27b5-4a4b-9d0e-6a4f3f5a0c11"}, true},
		"missing row":                             {"orders", "3", nil, false},
		"NULL owner: exists, owned by no one":     {"orders", "2", nil, true},
		"key not a number is not found":           {"orders", "abc", nil, false},
		"key out of range is not found":           {"orders", "99999999999999999999", nil, false},
		"several rows, sorted, deduped, no empty": {"docs", "d1", []string{"alice", "bob"}, true},
		"only a NULL editor":                      {"docs", "d2", nil, true},
		"int4 key":                                {"invoices", "7", []string{"erin"}, true},
		"int4 key out of range":                   {"invoices", "3000000000", nil, false},
		"unconfigured lookup uses own table":      {"tickets", "1", nil, false},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			owners, found, err := db.Owners(ctx, tc.lookup, tc.key)
			if err != nil || found != tc.found || !slices.Equal(owners, tc.owners) {
				t.Errorf("Owners(%s, %s) = %q, %v, %v; want %q, %v", tc.lookup, tc.key, owners, found, err, tc.owners, tc.found)
			}
		})
	}

	t.Run("writes to a configured lookup are refused", func(t *testing.T) {
		if err := db.PutOwners(ctx, "orders", "1", []string{"mallory"}); !errors.Is(err, store.ErrReadOnlyLookup) {
			t.Errorf("PutOwners err = %v; want ErrReadOnlyLookup", err)
		}
		if err := db.DeleteOwners(ctx, "orders", "1"); !errors.Is(err, store.ErrReadOnlyLookup) {
			t.Errorf("DeleteOwners err = %v; want ErrReadOnlyLookup", err)
		}
		if err := db.PutOwners(ctx, "tickets", "1", []string{"alice"}); err != nil {
			t.Errorf("PutOwners on an own-table lookup: %v", err)
		}
	})

	t.Run("CheckQueries accepts good queries", func(t *testing.T) {
		if err := db.CheckQueries(ctx); err != nil {
			t.Error(err)
		}
	})

	t.Run("a failing query is an error, not not-found", func(t *testing.T) {
		bad, err := postgres.Open(ctx, testDSN(t), store.Options{Postgres: store.PostgresOptions{
			OwnershipQueries: map[string]string{"orders": q("SELECT owner_id FROM S.no_such_table WHERE id = $1")},
		}})
		if err != nil {
			t.Fatal(err)
		}
		defer bad.Close()
		if _, found, err := bad.Owners(ctx, "orders", "1"); err == nil || found {
			t.Errorf("Owners = found %v, err %v; want an error", found, err)
		}
	})
}

func TestCheckQueriesNamesTheBadLookup(t *testing.T) {
	schema := newSchema(t)
	cases := map[string]struct {
		query, want string
	}{
		"syntax error":   {"SELEC owner FROM t WHERE id = $1", `OwnershipQueries["orders"]`},
		"missing table":  {"SELECT owner FROM " + pgx.Identifier{schema, "nope"}.Sanitize() + " WHERE id = $1", "nope"},
		"two parameters": {"SELECT $2::text WHERE $1::text IS NOT NULL", "exactly one"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			db, err := postgres.Open(t.Context(), testDSN(t), store.Options{Postgres: store.PostgresOptions{
				OwnershipQueries: map[string]string{"orders": tc.query},
			}})
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			err = db.CheckQueries(t.Context())
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("CheckQueries = %v; want an error mentioning %q", err, tc.want)
			}
		})
	}
}

func TestDeadlineIsHonouredAndThePoolRecovers(t *testing.T) {
	schema := newSchema(t)
	db, err := postgres.Open(t.Context(), testDSN(t), store.Options{Postgres: store.PostgresOptions{
		Schema:  schema,
		Migrate: true,
		OwnershipQueries: map[string]string{
			"slow": "SELECT 'alice' FROM pg_sleep(5) WHERE $1::text IS NOT NULL",
		},
		MaxConns: 2,
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.PutOwners(t.Context(), "orders", "1", []string{"alice"}); err != nil {
		t.Fatal(err)
	}
	for i := range 3 { // more timeouts than connections: none may stay stuck
		ctx, cancel := context.WithTimeout(t.Context(), 150*time.Millisecond)
		start := time.Now()
		_, found, err := db.Owners(ctx, "slow", "x")
		cancel()
		if err == nil || found {
			t.Fatalf("slow lookup %d: found %v, err %v; want an error", i, found, err)
		}
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("slow lookup %d: err = %v; want it to wrap context.DeadlineExceeded", i, err)
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("slow lookup %d took %s; want about the 150ms deadline", i, d)
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	owners, found, err := db.Owners(ctx, "orders", "1")
	if err != nil || !found || !slices.Equal(owners, []string{"alice"}) {
		t.Errorf("lookup after timeouts = %q %v %v", owners, found, err)
	}
}

func TestOpenWithoutServer(t *testing.T) {
	// Nothing listens on port 1: Open must not need the server unless it
	// migrates, and lookups must fail fast and closed.
	const dsn = "postgres://scopegate:s3cret-pw@127.0.0.1:1/db?sslmode=disable&connect_timeout=2"
	db, err := postgres.Open(t.Context(), dsn, store.Options{})
	if err != nil {
		t.Fatalf("Open without a server: %v", err)
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	if _, found, err := db.Owners(ctx, "orders", "1"); err == nil || found {
		t.Errorf("Owners = found %v, err %v; want an error", found, err)
	} else if strings.Contains(err.Error(), "s3cret-pw") {
		t.Errorf("error reveals the password: %v", err)
	}
	if err := db.Ping(ctx); err == nil {
		t.Error("Ping succeeded without a server")
	}
	if _, err := postgres.Open(ctx, dsn, store.Options{Postgres: store.PostgresOptions{Migrate: true}}); err == nil {
		t.Error("Open with Migrate succeeded without a server")
	} else if strings.Contains(err.Error(), "s3cret-pw") {
		t.Errorf("error reveals the password: %v", err)
	}
}

func TestOpenRejectsBadConfiguration(t *testing.T) {
	const dsn = "postgres://u@127.0.0.1:1/db"
	cases := map[string]struct {
		dsn  string
		opts store.Options
		want string
	}{
		"bad DSN hides password":   {"postgres://u:hunter2@127.0.0.1:notaport/db", store.Options{}, "DSN"},
		"file options":             {dsn, store.Options{File: store.FileOptions{LockTimeout: time.Second}}, "file options"},
		"query without $1":         {dsn, store.Options{Postgres: store.PostgresOptions{OwnershipQueries: map[string]string{"orders": "SELECT 1"}}}, "$1"},
		"empty query":              {dsn, store.Options{Postgres: store.PostgresOptions{OwnershipQueries: map[string]string{"orders": " "}}}, "is empty"},
		"empty lookup":             {dsn, store.Options{Postgres: store.PostgresOptions{OwnershipQueries: map[string]string{"": "SELECT $1"}}}, "lookup name is empty"},
		"negative pool":            {dsn, store.Options{Postgres: store.PostgresOptions{MaxConns: -1}}, "MaxConns"},
		"min above max":            {dsn, store.Options{Postgres: store.PostgresOptions{MaxConns: 2, MinConns: 3}}, "MinConns"},
		"min above DSN max":        {dsn + "?pool_max_conns=2", store.Options{Postgres: store.PostgresOptions{MinConns: 3}}, "pool minimum"},
		"negative connect timeout": {dsn, store.Options{Postgres: store.PostgresOptions{ConnectTimeout: -time.Second}}, "ConnectTimeout"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			db, err := postgres.Open(t.Context(), tc.dsn, tc.opts)
			if err == nil {
				db.Close()
				t.Fatal("Open succeeded")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %q; want it to mention %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("err reveals the password: %q", err)
			}
		})
	}
}

func TestCSVImport(t *testing.T) {
	db, _ := openTestDB(t, store.PostgresOptions{})
	in := "key,owner\no-1,alice\no-2,bob\no-2,carol\n"
	n, err := store.ImportOwnershipCSV(t.Context(), db, "orders", strings.NewReader(in))
	if err != nil || n != 2 {
		t.Fatalf("import = %d, %v; want 2 keys", n, err)
	}
	owners, found, err := db.Owners(t.Context(), "orders", "o-2")
	if err != nil || !found || !slices.Equal(owners, []string{"bob", "carol"}) {
		t.Errorf("o-2 = %q %v %v", owners, found, err)
	}
}

func BenchmarkOwnersCold(b *testing.B) {
	db, _ := openTestDB(b, store.PostgresOptions{})
	ctx := context.Background()
	for i := range 1000 {
		if err := db.PutOwners(ctx, "orders", fmt.Sprintf("order-%d", i), []string{"alice", fmt.Sprintf("user-%d", i)}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		_, found, err := db.Owners(ctx, "orders", fmt.Sprintf("order-%d", i%1000))
		if err != nil || !found {
			b.Fatal(found, err)
		}
		i++
	}
}
