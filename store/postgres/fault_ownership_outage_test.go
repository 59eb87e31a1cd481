package postgres_test

import (
	"context"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/scopegate/scopegate/decision"
	"github.com/scopegate/scopegate/decision/decisiontest"
	"github.com/scopegate/scopegate/store"
	"github.com/scopegate/scopegate/store/cache"
)

const outagePolicy = `
version: outage
issuers:
  - issuer: https://issuer.test/
    audiences: [orders-api]
    jwks_file: unused.json
    algorithms: [ES256]
lookups:
  orders: {timeout: 200ms}
routes:
  - name: order
    match: {methods: [GET], path: "/orders/{id}"}
    require: {all_of: [orders:read]}
    owner: {lookup: orders, key: "{id}", claim: sub}
default: deny
`

// TestOwnershipOutageEngine stops PostgreSQL while decisions that need an
// ownership lookup run against it, through the decision engine and the
// caching store as the server wires them: during the outage every such
// decision is denied ownership_unavailable within the lookup's deadline
// (never allowed, never hung), the same engine recovers by itself once
// PostgreSQL is back, and no goroutine is left behind.
func TestOwnershipOutageEngine(t *testing.T) {
	dsn := testDSN(t)
	if os.Getenv(envControl) != "1" {
		t.Skip("SCOPEGATE_TEST_PG_CONTROL not set to 1: skipping the test that stops and starts PostgreSQL")
	}
	version := clusterVersion(t)
	baseline := runtime.NumGoroutine()

	db, _ := openTestDB(t, store.PostgresOptions{MaxConns: 4})
	startOnCleanup(t, dsn, version)
	ctx := t.Context()
	for key, owner := range map[string]string{"1": "alice", "2": "bob"} {
		if err := db.PutOwners(ctx, "orders", key, []string{owner}); err != nil {
			t.Fatal(err)
		}
	}
	// No caching of answers: every decision asks PostgreSQL, so the outage
	// is seen at once.
	own, err := cache.NewOwnership(db.Ownership(), cache.Config{TTL: -1, NegativeTTL: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer own.Close()

	signer, err := decisiontest.NewECSigner("k1")
	if err != nil {
		t.Fatal(err)
	}
	keys := decision.StaticKeys{{Kid: "k1", Alg: "ES256", Public: signer.Public()}}
	pol, err := decision.Compile([]byte(outagePolicy), "outage.yaml", decision.CompileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	eng, err := decision.NewEngine(pol, decision.Options{Keys: decision.StaticKeyResolver(keys), Ownership: own})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	tok, err := signer.Mint(decisiontest.StandardClaims("https://issuer.test/", "orders-api", "alice", "app", "orders:read", time.Hour, time.Now()), nil)
	if err != nil {
		t.Fatal(err)
	}
	decide := func(id string) (decision.Decision, time.Duration) {
		req := decision.Request{Method: "GET", Path: "/orders/" + id, Authorization: "Bearer " + tok, AuthorizationCount: 1}
		start := time.Now()
		d := eng.Decide(context.Background(), &req)
		return d, time.Since(start)
	}
	expect := map[string]decision.Code{"1": decision.OK, "2": decision.NotOwner, "404": decision.ResourceNotFound}
	for id, want := range expect {
		if d, _ := decide(id); d.Code != want {
			t.Fatalf("before the outage, order %s: %s (%s), want %s", id, d.Code, d.Message(), want)
		}
	}
	running := runtime.NumGoroutine()

	// Load: four clients deciding the three orders until told to stop.
	// During the outage the only acceptable answers are the pre-outage
	// one (a lookup that finished before the stop) or
	// ownership_unavailable; an allow of anything but order 1 is wrong
	// at any time.
	var phase atomic.Int32 // 0 before, 1 during, 2 after
	var wrong, total atomic.Int64
	var slow atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				for id, want := range expect {
					d, took := decide(id)
					total.Add(1)
					ok := d.Code == want || (phase.Load() != 0 && d.Code == decision.OwnershipUnavailable)
					if !ok || (d.Allow && id != "1") {
						if wrong.Add(1) <= 5 {
							t.Errorf("order %s in phase %d: %s (%s)", id, phase.Load(), d.Code, d.Message())
						}
					}
					if took > 200*time.Millisecond+500*time.Millisecond {
						slow.Add(1)
					}
				}
				time.Sleep(5 * time.Millisecond)
			}
		})
	}

	time.Sleep(200 * time.Millisecond)
	phase.Store(1)
	if err := pgCtl(version, "stop"); err != nil {
		t.Fatal(err)
	}
	t.Log("PostgreSQL stopped")
	// Every decision now fails closed, with the lookup named.
	unavailable := 0
	for range 5 {
		d, took := decide("1")
		if d.Allow {
			t.Fatal("an ownership decision was allowed with PostgreSQL stopped")
		}
		if d.Code == decision.OwnershipUnavailable {
			unavailable++
			if !strings.Contains(d.Message(), "orders") {
				t.Errorf("message %q does not name the lookup", d.Message())
			}
		}
		if took > 700*time.Millisecond {
			t.Errorf("a decision took %v during the outage; the lookup timeout is 200ms", took)
		}
	}
	if unavailable == 0 {
		t.Error("no decision was ownership_unavailable during the outage")
	}
	time.Sleep(time.Second)

	if err := pgCtl(version, "start"); err != nil {
		t.Fatal(err)
	}
	phase.Store(2)
	startAt := time.Now()
	deadline := startAt.Add(30 * time.Second)
	for {
		if d, _ := decide("1"); d.Allow {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the engine did not recover within 30s of PostgreSQL starting")
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("recovered %v after the start command, without a restart", time.Since(startAt).Round(time.Millisecond))
	time.Sleep(300 * time.Millisecond)
	close(stop)
	wg.Wait()
	if n := wrong.Load(); n > 0 {
		t.Errorf("%d wrong decisions of %d", n, total.Load())
	}
	if n := slow.Load(); n > 0 {
		t.Errorf("%d decisions took longer than the lookup timeout plus slack", n)
	}
	t.Logf("%d decisions across the outage", total.Load())
	if err := settleGoroutines(running + 2); err != nil {
		t.Errorf("with the store still open: %v (before the outage: %d)", err, running)
	}
	own.Close()
	db.Close()
	eng.Close()
	if err := settleGoroutines(baseline + 2); err != nil {
		t.Errorf("after Close: %v (before: %d)", err, baseline)
	}
}
