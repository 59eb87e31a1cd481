package replicatest_test

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// metric scrapes one sample (name with its labels, as /metrics prints it).
func (r *replica) metric(sample string) (float64, bool) {
	v, err := r.scrape(sample)
	return v, err == nil
}

// writePollConfig writes a poll-only SSF config whose poll token is token,
// so the transmitter can tell the replicas' polls apart.
func writePollConfig(t *testing.T, dir string, tx *transmitter, token string, ttl time.Duration) string {
	must(t, os.WriteFile(filepath.Join(dir, token+".token"), []byte(token), 0o600))
	cfg := ssfConfigHead(tx) + fmt.Sprintf(`    poll:
      url: %s/poll
      interval: 20ms
      token: {file: %s.token}
      lease_ttl: %s
`, tx.url, token, ttl)
	p := filepath.Join(dir, token+".yaml")
	must(t, os.WriteFile(p, []byte(cfg), 0o600))
	return p
}

// Two replicas poll one transmitter under a lease in PostgreSQL: only the
// holder polls; killed without releasing it, the other takes over within
// the lease's ttl and one renewal interval, and applies what follows.
func TestSSFPollLeaseOneReplicaPolls(t *testing.T) {
	dsn := pgDSN(t)
	c := newCluster(t)
	tx := newTransmitter(t)
	const ttl = 1500 * time.Millisecond
	a := c.replica("replica-a", dsn, "--ssf-config", writePollConfig(t, c.dir, tx, "poller-a", ttl))
	b := c.replica("replica-b", dsn, "--ssf-config", writePollConfig(t, c.dir, tx, "poller-b", ttl))
	polls := func() (int, int) {
		tx.mu.Lock()
		defer tx.mu.Unlock()
		return tx.pollsBy["poller-a"], tx.pollsBy["poller-b"]
	}
	if _, ok := waitFor(5*time.Second, func() bool { pa, pb := polls(); return pa+pb > 0 }); !ok {
		t.Fatal("neither replica polls")
	}
	time.Sleep(ttl) // both have tried the lease by now, several times
	holder, standby, sName := a, b, "poller-b"
	if pa, _ := polls(); pa == 0 {
		holder, standby, sName = b, a, "poller-a"
	}
	pa, pb := polls()
	if pa > 0 && pb > 0 {
		t.Fatalf("both replicas polled: a %d, b %d", pa, pb)
	}
	lease := `scopegate_ssf_poll_lease_held{transmitter="test-idp"}`
	if v, ok := holder.metric(lease); !ok || v != 1 {
		t.Errorf("%s polls but shows %s %v (found %v); want 1", holder.name, lease, v, ok)
	}
	if v, ok := standby.metric(lease); !ok || v != 0 {
		t.Errorf("%s does not poll but shows %s %v (found %v); want 0", standby.name, lease, v, ok)
	}

	// The holder dies without releasing the lease.
	time.Sleep(ttl) // the standby keeps trying, and keeps failing
	if _, n := pollsOf(tx, sName); n != 0 {
		t.Fatalf("%s polled %d times while the other held the lease", standby.name, n)
	}
	must(t, holder.cmd.Process.Kill())
	<-holder.exited
	killed := time.Now()
	if _, ok := waitFor(ttl+ttl/3+time.Second, func() bool { _, n := pollsOf(tx, sName); return n > 0 }); !ok {
		t.Fatalf("%s never took over the lease", standby.name)
	}
	first, _ := pollsOf(tx, sName)
	took := first.Sub(killed)
	t.Logf("poll lease takeover after the holder was killed: %v (ttl %v, renewal every %v); the standby made no poll before", took, ttl, ttl/3)
	if took > ttl+ttl/3+200*time.Millisecond {
		t.Errorf("takeover took %v; want at most ttl + one renewal interval (%v)", took, ttl+ttl/3)
	}
	if v, ok := standby.metric(lease); !ok || v != 1 {
		t.Errorf("%s took over but shows %s %v; want 1", standby.name, lease, v)
	}

	// What the transmitter sends now, the new holder applies.
	tok := c.mintAt("frank", "", time.Now().Add(-time.Minute))
	if allow, code := standby.mustDecide(tok); !allow {
		t.Fatalf("frank denied before any event: %s", code)
	}
	tx.enqueue("ad-after", tx.set(tx.signer, "ad-after", accountDisabled, user("frank"), nil, time.Now()))
	if _, ok := waitFor(propagationBound+time.Second, func() bool { allow, _ := standby.mustDecide(tok); return !allow }); !ok {
		t.Error("the event polled after the takeover is not enforced")
	}
}

// pollsOf returns when token first polled and how many times it has.
func pollsOf(tx *transmitter, token string) (time.Time, int) {
	tx.mu.Lock()
	defer tx.mu.Unlock()
	return tx.firstPoll[token], tx.pollsBy[token]
}

// lagQuantiles reads the replica's enforcement-lag histogram for via: the
// count, and the upper bounds of the buckets holding the median and the
// 99th percentile.
func (r *replica) lagQuantiles(t *testing.T, via string) (count, p50, p99 float64) {
	t.Helper()
	const name = "scopegate_ssf_enforcement_lag_seconds"
	count, err := r.scrape(name + `_count{via="` + via + `"}`)
	if err != nil {
		t.Fatalf("%s: %v", r.name, err)
	}
	p50, p99 = math.Inf(1), math.Inf(1)
	for _, le := range []string{"0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "30", "60", "300"} {
		n, err := r.scrape(name + `_bucket{via="` + via + `",le="` + le + `"}`)
		if err != nil {
			t.Fatalf("%s: %v", r.name, err)
		}
		bound, _ := strconv.ParseFloat(le, 64)
		if n >= count*0.5 && math.IsInf(p50, 1) {
			p50 = bound
		}
		if n >= count*0.99 && math.IsInf(p99, 1) {
			p99 = bound
		}
	}
	return count, p50, p99
}
