package postgres_test

import (
	"context"
	"crypto/rand"
	"errors"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/scopegate/scopegate/decision"
	"github.com/scopegate/scopegate/decision/decisiontest"
	"github.com/scopegate/scopegate/store"
	"github.com/scopegate/scopegate/store/postgres"
)

func randomKey(t testing.TB) decision.ReplayKey {
	var k decision.ReplayKey
	if _, err := rand.Read(k[:]); err != nil {
		t.Fatal(err)
	}
	return k
}

// openReplica opens a second store on schema, as another replica would,
// and connects it (as serve does at start, migrating), so that the first
// claim's 500 ms bound does not include connecting on a loaded machine.
func openReplica(t testing.TB, schema string) *postgres.DB {
	t.Helper()
	db, err := postgres.Open(context.Background(), testDSN(t), store.Options{Postgres: store.PostgresOptions{Schema: schema}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := db.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	return db
}

func TestReplayCacheClaims(t *testing.T) {
	a, schema := openTestDB(t, store.PostgresOptions{})
	b := openReplica(t, schema)
	ctx := t.Context()
	exp := time.Now().Add(time.Minute)
	claim := func(db *postgres.DB, key decision.ReplayKey, exp time.Time) bool {
		t.Helper()
		replayed, err := db.ReplayCache().Claim(ctx, key, exp)
		if err != nil {
			t.Fatal(err)
		}
		return replayed
	}

	k := randomKey(t)
	if claim(a, k, exp) {
		t.Fatal("a new key was reported replayed")
	}
	if !claim(a, k, exp) {
		t.Fatal("the same replica did not see its own claim")
	}
	if !claim(b, k, exp) {
		t.Fatal("the other replica did not see the claim")
	}
	if claim(b, randomKey(t), exp) {
		t.Fatal("another key was reported replayed")
	}

	// An expired row is claimed afresh, by the claiming replica's clock.
	old := randomKey(t)
	if claim(a, old, time.Now().Add(-time.Second)) {
		t.Fatal("a new (already expired) key was reported replayed")
	}
	if claim(b, old, exp) {
		t.Fatal("a key whose row had expired was reported replayed")
	}
	if !claim(a, old, exp) {
		t.Fatal("the renewed row was not kept")
	}

	// Only hashes are stored: 32-byte keys, nothing else.
	n, width := replayRows(t, schema)
	if n != 3 || width != 32 {
		t.Fatalf("the table holds %d rows of up to %d bytes; want 3 of 32", n, width)
	}

	a.Close()
	if _, err := a.ReplayCache().Claim(ctx, randomKey(t), exp); !errors.Is(err, store.ErrClosed) {
		t.Fatalf("claim on a closed store: %v, want store.ErrClosed", err)
	}
}

// replayRows counts the rows of schema's replay table and their widest key.
func replayRows(t *testing.T, schema string) (n, width int) {
	t.Helper()
	q := `SELECT count(*), coalesce(max(octet_length(key)), 0) FROM ` + pgx.Identifier{schema, "scopegate_dpop_replay"}.Sanitize()
	if err := testConn(t).QueryRow(context.Background(), q).Scan(&n, &width); err != nil {
		t.Fatal(err)
	}
	return n, width
}

func TestReplayCacheSweep(t *testing.T) {
	db, schema := openTestDB(t, store.PostgresOptions{})
	ctx := t.Context()
	rc := db.ReplayCache()
	for _, exp := range []time.Time{time.Now().Add(-2 * time.Hour), time.Now().Add(-time.Hour), time.Now().Add(time.Minute)} {
		if _, err := rc.Claim(ctx, randomKey(t), exp); err != nil {
			t.Fatal(err)
		}
	}
	n, err := db.SweepReplays(ctx)
	if err != nil || n != 2 {
		t.Fatalf("sweep deleted %d rows, %v; want the 2 expired", n, err)
	}
	if left, _ := replayRows(t, schema); left != 1 {
		t.Fatalf("%d rows left; want the unexpired one", left)
	}
}

const replayPolicy = `
issuers:
  - issuer: https://id.example.com/
    audiences: [orders-api]
    jwks_file: unused.json
    algorithms: [ES256]
routes:
  - name: read-order
    match: {methods: [GET], path: "/orders/{id}"}
    require: {all_of: [orders:read]}
dpop:
  max_age: 60s
  clock_skew: 5s
`

// replicaFixture is a DPoP-bound token and engines deciding with the
// replay cache each given replica shares, layered as the server does.
type replicaFixture struct {
	tok    string
	prover *decisiontest.Prover
}

func newReplicaFixture(t *testing.T) (*replicaFixture, func(rc decision.ReplayCache) *decision.Engine) {
	signer, err := decisiontest.NewECSigner("k1")
	if err != nil {
		t.Fatal(err)
	}
	prover, err := decisiontest.NewProver(decisiontest.KindEC)
	if err != nil {
		t.Fatal(err)
	}
	pol, err := decision.Compile([]byte(replayPolicy), "replay.yaml", decision.CompileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c := decisiontest.StandardClaims("https://id.example.com/", "orders-api", "alice", "app", "orders:read", time.Hour, time.Now())
	c["cnf"] = map[string]any{"jkt": prover.JKT}
	tok, err := signer.Mint(c, nil)
	if err != nil {
		t.Fatal(err)
	}
	keys := decision.StaticKeys{{Kid: "k1", Alg: "ES256", Public: signer.Public()}}
	engine := func(shared decision.ReplayCache) *decision.Engine {
		rc := &decision.LayeredReplayCache{Local: decision.NewMemReplayCache(0, nil), Shared: shared}
		e, err := decision.NewEngine(pol, decision.Options{Keys: decision.StaticKeyResolver(keys), Replay: rc})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(e.Close)
		return e
	}
	return &replicaFixture{tok: tok, prover: prover}, engine
}

func (f *replicaFixture) request(t *testing.T) *decision.Request {
	t.Helper()
	p, err := f.prover.Proof("GET", "https://api.example.com/orders/1", f.tok, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return &decision.Request{Method: "GET", Path: "/orders/1", Host: "api.example.com", Scheme: "https",
		Authorization: "DPoP " + f.tok, AuthorizationCount: 1, DPoP: p, DPoPCount: 1}
}

// TestDPoPReplayAcrossReplicas: a proof one replica accepted is refused as
// replayed by another sharing the database, and a replica whose store is
// gone denies with dpop_replay_unavailable.
func TestDPoPReplayAcrossReplicas(t *testing.T) {
	dbA, schema := openTestDB(t, store.PostgresOptions{})
	dbB := openReplica(t, schema)
	f, engine := newReplicaFixture(t)
	a, b := engine(dbA.ReplayCache()), engine(dbB.ReplayCache())
	ctx := context.Background()

	req := f.request(t)
	if d := a.Decide(ctx, req); !d.Allow {
		t.Fatalf("replica A, fresh proof: %s (%s)", d.Code, d.Message())
	}
	if d := b.Decide(ctx, req); d.Code != decision.DPoPProofReplayed {
		t.Fatalf("replica B, the proof A accepted: %s (%s), want dpop_proof_replayed", d.Code, d.Message())
	}
	if d := a.Decide(ctx, req); d.Code != decision.DPoPProofReplayed {
		t.Fatalf("replica A, its own proof again: %s, want dpop_proof_replayed", d.Code)
	}
	if d := b.Decide(ctx, f.request(t)); !d.Allow {
		t.Fatalf("replica B, a fresh proof: %s (%s)", d.Code, d.Message())
	}

	dbB.Close()
	d := b.Decide(ctx, f.request(t))
	if d.Code != decision.DPoPReplayUnavailable || d.Allow {
		t.Fatalf("replica B with its store closed: %s (%s), want dpop_replay_unavailable", d.Code, d.Message())
	}
	if d := a.Decide(ctx, f.request(t)); !d.Allow {
		t.Fatalf("replica A, store still open: %s (%s)", d.Code, d.Message())
	}
}

// TestDPoPReplayOutage stops PostgreSQL: DPoP decisions deny with
// dpop_replay_unavailable within the claim timeout, and allow again once
// it is back.
func TestDPoPReplayOutage(t *testing.T) {
	dsn := testDSN(t)
	if os.Getenv(envControl) != "1" {
		t.Skip("SCOPEGATE_TEST_PG_CONTROL not set to 1: skipping the test that stops and starts PostgreSQL")
	}
	version := clusterVersion(t)
	db, _ := openTestDB(t, store.PostgresOptions{MaxConns: 4})
	startOnCleanup(t, dsn, version)
	f, engine := newReplicaFixture(t)
	e := engine(db.ReplayCache())
	ctx := context.Background()
	if d := e.Decide(ctx, f.request(t)); !d.Allow {
		t.Fatalf("before the outage: %s (%s)", d.Code, d.Message())
	}
	if err := pgCtl(version, "stop"); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		start := time.Now()
		d := e.Decide(ctx, f.request(t))
		took := time.Since(start)
		if d.Code != decision.DPoPReplayUnavailable {
			t.Errorf("decision %d during the outage: %s (%s), want dpop_replay_unavailable", i, d.Code, d.Message())
		}
		if took > postgres.DefaultReplayClaimTimeout+300*time.Millisecond {
			t.Errorf("decision %d during the outage took %s; want at most the %s claim timeout", i, took, postgres.DefaultReplayClaimTimeout)
		}
	}
	if err := pgCtl(version, "start"); err != nil {
		t.Fatal(err)
	}
	if err := waitReady(db, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	if d := e.Decide(ctx, f.request(t)); !d.Allow {
		t.Fatalf("after the outage: %s (%s)", d.Code, d.Message())
	}
}

// BenchmarkReplayClaimShared is one claim of a new key in PostgreSQL: the
// round trip a DPoP request pays on top of the in-process checks.
func BenchmarkReplayClaimShared(b *testing.B) {
	db, _ := openTestDB(b, store.PostgresOptions{})
	rc := db.ReplayCache()
	ctx := context.Background()
	keys := make([]decision.ReplayKey, b.N)
	for i := range keys {
		keys[i] = randomKey(b)
	}
	exp := time.Now().Add(time.Minute)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if replayed, err := rc.Claim(ctx, keys[i], exp); replayed || err != nil {
			b.Fatal(replayed, err)
		}
	}
}

// BenchmarkReplayClaimLocalHit is a replay the in-process layer answers:
// no round trip.
func BenchmarkReplayClaimLocalHit(b *testing.B) {
	db, _ := openTestDB(b, store.PostgresOptions{})
	rc := &decision.LayeredReplayCache{Local: decision.NewMemReplayCache(0, nil), Shared: db.ReplayCache()}
	ctx := context.Background()
	k := randomKey(b)
	exp := time.Now().Add(time.Minute)
	if _, err := rc.Claim(ctx, k, exp); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if replayed, err := rc.Claim(ctx, k, exp); !replayed || err != nil {
			b.Fatal(replayed, err)
		}
	}
}

// TestReplayClaimBoundedWhenTheDatabaseHangs: a server that accepts
// connections and never answers (a hung or overloaded PostgreSQL) makes a
// claim fail within DefaultReplayClaimTimeout, and the DPoP decision is
// dpop_replay_unavailable: never an allow, never a request held.
func TestReplayClaimBoundedWhenTheDatabaseHangs(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var held []net.Conn
	var mu sync.Mutex
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		lis.Close()
		<-done
		mu.Lock()
		for _, c := range held {
			c.Close()
		}
		mu.Unlock()
	})
	db, err := postgres.Open(context.Background(), "postgres://scopegate@"+lis.Addr().String()+"/db?sslmode=disable", store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })

	const slack = 400 * time.Millisecond
	start := time.Now()
	_, err = db.ReplayCache().Claim(context.Background(), randomKey(t), time.Now().Add(time.Minute))
	if took := time.Since(start); err == nil || took > postgres.DefaultReplayClaimTimeout+slack {
		t.Fatalf("claim against a hung server: %v after %s; want an error within %s", err, took, postgres.DefaultReplayClaimTimeout)
	}

	f, engine := newReplicaFixture(t)
	e := engine(db.ReplayCache())
	start = time.Now()
	d := e.Decide(context.Background(), f.request(t))
	if took := time.Since(start); d.Code != decision.DPoPReplayUnavailable || took > postgres.DefaultReplayClaimTimeout+slack {
		t.Fatalf("decision against a hung server: %s after %s; want dpop_replay_unavailable within %s", d.Code, took, postgres.DefaultReplayClaimTimeout)
	}
}
