package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/scopegate/scopegate/store"
	"github.com/scopegate/scopegate/store/cache"
)

const envControl = "SCOPEGATE_TEST_PG_CONTROL"

// clusterDir is where Debian's postgresql-common keeps one directory per
// installed major version; pg_ctlcluster takes that version.
const clusterDir = "/etc/postgresql"

func clusterVersion(t *testing.T) string {
	t.Helper()
	entries, err := os.ReadDir(clusterDir)
	if err != nil {
		t.Fatalf("find the PostgreSQL cluster to stop: %v", err)
	}
	var versions []string
	for _, e := range entries {
		if e.IsDir() {
			versions = append(versions, e.Name())
		}
	}
	if len(versions) != 1 {
		t.Fatalf("want exactly one PostgreSQL version under %s to control; found %q", clusterDir, versions)
	}
	return versions[0]
}

// pgCtl runs pg_ctlcluster; start on a running cluster (exit 2) is success.
func pgCtl(version, action string) error {
	out, err := exec.Command("pg_ctlcluster", "--skip-systemctl-redirect", version, "main", action).CombinedOutput()
	var ee *exec.ExitError
	if action == "start" && errors.As(err, &ee) && ee.ExitCode() == 2 {
		return nil
	}
	if err != nil {
		return errors.New(action + " PostgreSQL: " + err.Error() + ": " + string(out))
	}
	return nil
}

// pingerFor pings the server with a fresh connection each time, for use
// when the store under test may already be closed.
type pingerFor string

func (p pingerFor) Ping(ctx context.Context) error {
	conn, err := pgx.Connect(ctx, string(p))
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	return conn.Ping(ctx)
}

// waitReady pings until the server answers or the time is up.
func waitReady(db interface{ Ping(context.Context) error }, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := db.Ping(ctx)
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestOutageWithCache stops PostgreSQL under a cached store and checks that
// the store fails closed and fast, serves cached answers until their TTL,
// and recovers by itself when the server is back.
func TestOutageWithCache(t *testing.T) {
	dsn := testDSN(t)
	if os.Getenv(envControl) != "1" {
		t.Skip("SCOPEGATE_TEST_PG_CONTROL not set to 1: skipping the test that stops and starts PostgreSQL")
	}
	version := clusterVersion(t)
	baseline := runtime.NumGoroutine()

	const (
		ttl           = 4 * time.Second
		lookupTimeout = 300 * time.Millisecond
		// A failed lookup must end by its deadline; this is scheduling slack.
		slack = 300 * time.Millisecond
	)
	db, _ := openTestDB(t, store.PostgresOptions{MaxConns: 4})
	// Registered after the schema's cleanup, so it runs first: the server is
	// back before the schema is dropped, even if the test fails midway.
	startOnCleanup(t, dsn, version)
	ctx := t.Context()
	for key, owner := range map[string]string{"cached": "alice", "uncached": "bob"} {
		if err := db.PutOwners(ctx, "orders", key, []string{owner}); err != nil {
			t.Fatal(err)
		}
	}
	c, err := cache.NewOwnership(db.Ownership(), cache.Config{TTL: ttl, NegativeTTL: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	lookup := func(key string) (took time.Duration, owners []string, found bool, err error) {
		ctx, cancel := context.WithTimeout(ctx, lookupTimeout)
		defer cancel()
		start := time.Now()
		owners, found, err = c.Owners(ctx, "orders", key)
		return time.Since(start), owners, found, err
	}
	if _, owners, _, err := lookup("cached"); err != nil || !slices.Equal(owners, []string{"alice"}) {
		t.Fatalf("warm-up lookup = %q, %v", owners, err)
	}
	c.Wait()
	cachedAt := time.Now()
	running := runtime.NumGoroutine()

	if err := pgCtl(version, "stop"); err != nil {
		t.Fatal(err)
	}
	t.Logf("PostgreSQL stopped %s after caching", time.Since(cachedAt).Round(time.Millisecond))

	t.Run("uncached lookups fail closed within their deadline", func(t *testing.T) {
		for i := range 3 {
			took, owners, found, err := lookup("uncached")
			if err == nil || found || owners != nil {
				t.Errorf("lookup %d during the outage = %q, found %v, err %v; want an error", i, owners, found, err)
			}
			if took > lookupTimeout+slack {
				t.Errorf("lookup %d took %s; want at most the %s deadline", i, took, lookupTimeout)
			}
		}
		// Many keys at once (no coalescing): none hangs.
		var wg sync.WaitGroup
		for i := range 16 {
			wg.Go(func() {
				if took, _, _, err := lookup(fmt.Sprintf("key-%d", i)); err == nil || took > lookupTimeout+slack {
					t.Errorf("concurrent lookup %d: err %v after %s", i, err, took)
				}
			})
		}
		wg.Wait()
		if err := db.Ping(ctx); err == nil {
			t.Error("Ping succeeded while PostgreSQL is stopped")
		}
	})

	t.Run("cached answers keep serving until their TTL", func(t *testing.T) {
		if time.Since(cachedAt) >= ttl-200*time.Millisecond {
			t.Fatalf("stopping PostgreSQL took %s: too close to the %s TTL to test", time.Since(cachedAt), ttl)
		}
		took, owners, found, err := lookup("cached")
		if err != nil || !found || !slices.Equal(owners, []string{"alice"}) {
			t.Errorf("cached lookup during the outage = %q, %v, %v; want [alice]", owners, found, err)
		}
		if took > 10*time.Millisecond {
			t.Errorf("cached lookup took %s; want it answered from memory", took)
		}
		time.Sleep(time.Until(cachedAt.Add(ttl + 100*time.Millisecond)))
		if _, owners, found, err := lookup("cached"); err == nil {
			t.Errorf("lookup after the TTL during the outage = %q, %v; want an error (fail closed)", owners, found)
		}
	})

	startAt := time.Now()
	if err := pgCtl(version, "start"); err != nil {
		t.Fatal(err)
	}
	t.Logf("PostgreSQL started in %s", time.Since(startAt).Round(time.Millisecond))
	t.Run("the same store recovers", func(t *testing.T) {
		if err := waitReady(db, 30*time.Second); err != nil {
			t.Fatalf("store not answering 30s after PostgreSQL started: %v", err)
		}
		for _, tc := range []struct{ key, owner string }{{"uncached", "bob"}, {"cached", "alice"}} {
			_, owners, found, err := lookup(tc.key)
			if err != nil || !found || !slices.Equal(owners, []string{tc.owner}) {
				t.Errorf("lookup %s after recovery = %q, %v, %v; want [%s]", tc.key, owners, found, err, tc.owner)
			}
		}
	})

	t.Logf("recovered %s after the start command", time.Since(startAt).Round(time.Millisecond))
	// While open, the store and cache keep a steady number of goroutines...
	if err := settleGoroutines(running + 2); err != nil {
		t.Errorf("with the store still open: %v (before the outage: %d)", err, running)
	}
	// ...and closing them returns to where the test began.
	c.Close()
	db.Close()
	if err := settleGoroutines(baseline + 2); err != nil {
		t.Errorf("after Close: %v (before the store was opened: %d)", err, baseline)
	}
}

// startOnCleanup starts PostgreSQL again when t ends, and waits for it
// to answer. Registered after the schema's cleanup, it runs first.
func startOnCleanup(t *testing.T, dsn, version string) {
	t.Cleanup(func() {
		if err := pgCtl(version, "start"); err != nil {
			t.Errorf("cleanup: %v", err)
		}
		if err := waitReady(pingerFor(dsn), 30*time.Second); err != nil {
			t.Errorf("cleanup: PostgreSQL not answering after start: %v", err)
		}
	})
}

// settleGoroutines waits up to 5s for the goroutine count to drop to max.
func settleGoroutines(max int) error {
	deadline := time.Now().Add(5 * time.Second)
	for {
		n := runtime.NumGoroutine()
		if n <= max {
			return nil
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			buf = buf[:runtime.Stack(buf, true)]
			return fmt.Errorf("goroutine leak: %d running, want at most %d\n%s", n, max, buf)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
