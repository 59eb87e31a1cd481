package server

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/scopegate/scopegate/decision"
	"github.com/scopegate/scopegate/decision/decisiontest"
)

// TestSoak drives a real server over loopback gRPC at half the rate it was
// measured to sustain, for SCOPEGATE_SOAK_DURATION (default 10m), with a
// new token every second, a policy reload every 10 s and a revocation
// every second. Every 30 s (SCOPEGATE_SOAK_SAMPLE) it samples the RSS,
// heap, goroutines, open file descriptors and the window's latency, prints
// a table, and at the end fails if any of them grew beyond a tolerance or
// a single decision was wrong. It only runs with SCOPEGATE_SOAK=1
// (`make soak`); it is not part of CI.
func TestSoak(t *testing.T) {
	if os.Getenv("SCOPEGATE_SOAK") != "1" {
		t.Skip("SCOPEGATE_SOAK not set to 1: the soak runs only on request (make soak)")
	}
	duration := envDuration(t, "SCOPEGATE_SOAK_DURATION", 10*time.Minute)
	sample := envDuration(t, "SCOPEGATE_SOAK_SAMPLE", 30*time.Second)

	sk := newSoak(t)
	maxRate := sk.measureMax(t, 5*time.Second)
	rate := maxRate / 2
	t.Logf("measured maximum %.0f checks/s over loopback gRPC; soaking at %.0f/s for %v (load average: %s)", maxRate, rate, duration, loadAvg())

	samples := sk.run(t, rate, duration, sample)
	t.Log("\n" + formatSamples(samples))
	sk.verdict(t, samples)
}

// soakSample is one row of the soak table.
type soakSample struct {
	at         time.Duration
	rssKiB     int64
	heapKiB    uint64
	goroutines int
	fds        int
	checks     int64
	rate       float64
	p50, p99   time.Duration
	max        time.Duration
	wrong      int64
	behind     int64
	reloads    int64
	revoked    int
}

type soakEnv struct {
	srv      *Server
	client   authv3.AuthorizationClient
	dir      string
	signer   *decisiontest.Signer
	attacker string // forged token

	mu       sync.RWMutex
	current  soakTok  // the token of this second
	noScope  string   // a token without the route's scope
	revoked  []string // tokens whose revocation is in force
	retiring []soakTok
	revs     *decision.RevocationSet
	nextID   int

	reloads atomic.Int64
}

type soakTok struct {
	raw, jti string
}

const soakPolicyFmt = `version: soak-%d
issuers:
  - issuer: https://issuer.test/
    audiences: [orders-api]
    jwks_file: jwks.json
    algorithms: [ES256]
routes:
  - name: orders-read
    match: {methods: [GET], path: "/orders/{id}"}
    require: {all_of: [orders:read]}
  - name: health
    match: {methods: [GET], path: /healthz}
    public: true
default: deny
`

func newSoak(t *testing.T) *soakEnv {
	t.Helper()
	sk := &soakEnv{dir: t.TempDir(), signer: faultSigner(t, "k1")}
	if err := os.WriteFile(filepath.Join(sk.dir, "jwks.json"), decisiontest.JWKS(sk.signer), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(sk.dir, "policy.yaml"), fmt.Appendf(nil, soakPolicyFmt, 0), 0o600); err != nil {
		t.Fatal(err)
	}
	srv, err := NewServer(Config{PolicyPath: filepath.Join(sk.dir, "policy.yaml"), Logger: atkLogger(), ShutdownTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	sk.srv = srv
	sk.client = authv3.NewAuthorizationClient(serveLoopback(t, srv))
	sk.attacker = faultToken(t, faultSigner(t, "k1"))
	sk.noScope = sk.mint(t, "profile").raw
	sk.current = sk.mint(t, "orders:read")
	sk.revs = decision.NewRevocationSet(nil)
	return sk
}

func (sk *soakEnv) mint(t testing.TB, scope string) soakTok {
	c := decisiontest.StandardClaims(atkIssuer, atkAudience, "alice", "app", scope, time.Hour, time.Now())
	tok, err := sk.signer.Mint(c, nil)
	if err != nil {
		t.Fatal(err)
	}
	return soakTok{raw: tok, jti: c["jti"].(string)}
}

// revokeLag is how long after a token stops being current it is revoked.
// It exceeds a check's 5 s deadline, so no check that picked a token while
// it was current can still be running when its revocation lands.
const revokeLag = 10

// churn runs once a second: a new current token; the token current
// revokeLag seconds ago is revoked (and from then on sent expecting
// revoked); the oldest revocations are dropped so the set stays bounded.
func (sk *soakEnv) churn(t testing.TB) {
	next := sk.mint(t, "orders:read")
	sk.mu.Lock()
	sk.retiring = append(sk.retiring, sk.current)
	sk.current = next
	var put []decision.Revocation
	var del []string
	var nowRevoked []string
	if len(sk.retiring) > revokeLag {
		r := sk.retiring[0]
		sk.retiring = sk.retiring[1:]
		sk.nextID++
		put = append(put, decision.Revocation{ID: "soak-" + strconv.Itoa(sk.nextID), Kind: decision.RevokeToken,
			Issuer: atkIssuer, JTI: r.jti, Reason: "soak", CreatedAt: time.Now()})
		nowRevoked = append(nowRevoked, r.raw)
	}
	if sk.nextID > 60 {
		del = append(del, "soak-"+strconv.Itoa(sk.nextID-60))
	}
	sk.revs = sk.revs.Apply(put, del)
	sk.mu.Unlock()
	// In force first, expected second: no request expects revoked before
	// the engine has the revocation.
	sk.srv.Engine().SetRevocations(sk.revs)
	sk.mu.Lock()
	sk.revoked = append(sk.revoked, nowRevoked...)
	if len(sk.revoked) > 50 {
		sk.revoked = sk.revoked[len(sk.revoked)-50:]
	}
	sk.mu.Unlock()
}

// pick chooses the next request: mostly allows, some of each deny.
func (sk *soakEnv) pick(i uint64) (tok string, want decision.Code) {
	sk.mu.RLock()
	defer sk.mu.RUnlock()
	switch i % 10 {
	case 7:
		return sk.noScope, decision.InsufficientScope
	case 8:
		return sk.attacker, decision.TokenInvalid
	case 9:
		if len(sk.revoked) > 0 {
			return sk.revoked[int(i/10)%len(sk.revoked)], decision.Revoked
		}
	}
	return sk.current.raw, decision.OK
}

func (sk *soakEnv) check(ctx context.Context, tok string) (string, error) {
	req := checkWithHeaders(map[string]string{"authorization": "Bearer " + tok})
	resp, err := sk.client.Check(ctx, req)
	if err != nil {
		return "", err
	}
	if resp.GetStatus().GetCode() == 0 {
		return "ok", nil
	}
	return resp.GetStatus().GetMessage(), nil
}

// measureMax runs a closed loop with enough clients to saturate the
// server and returns the checks per second it sustained.
func (sk *soakEnv) measureMax(t *testing.T, d time.Duration) float64 {
	var n atomic.Int64
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var wg sync.WaitGroup
	start := time.Now()
	for range 4 * runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			for ctx.Err() == nil {
				if _, err := sk.check(context.Background(), sk.current.raw); err == nil {
					n.Add(1)
				}
			}
		})
	}
	wg.Wait()
	return float64(n.Load()) / time.Since(start).Seconds()
}

// run sends checks at rate for duration, churning tokens, reloading and
// revoking, and samples every interval.
func (sk *soakEnv) run(t *testing.T, rate float64, duration, interval time.Duration) []soakSample {
	const workers = 64
	jobs := make(chan uint64, 4096)
	var (
		mu        sync.Mutex
		latencies []time.Duration
		checks    atomic.Int64
		wrong     atomic.Int64
		behind    atomic.Int64
	)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for i := range jobs {
				tok, want := sk.pick(i)
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				start := time.Now()
				got, err := sk.check(ctx, tok)
				took := time.Since(start)
				cancel()
				checks.Add(1)
				if err != nil || got != want.String() {
					if wrong.Add(1) <= 5 {
						t.Errorf("wrong decision: got %q (%v), want %s", got, err, want)
					}
				}
				mu.Lock()
				latencies = append(latencies, took)
				mu.Unlock()
			}
		})
	}

	start := time.Now()
	end := start.Add(duration)
	stopBg := make(chan struct{})
	var bg sync.WaitGroup
	bg.Go(func() { // token churn and revocations, every second
		tk := time.NewTicker(time.Second)
		defer tk.Stop()
		for {
			select {
			case <-stopBg:
				return
			case <-tk.C:
				sk.churn(t)
			}
		}
	})
	bg.Go(func() { // a policy reload every 10 s
		tk := time.NewTicker(10 * time.Second)
		defer tk.Stop()
		for n := 1; ; n++ {
			select {
			case <-stopBg:
				return
			case <-tk.C:
				if err := os.WriteFile(filepath.Join(sk.dir, "policy.yaml"), fmt.Appendf(nil, soakPolicyFmt, n), 0o600); err != nil {
					t.Error(err)
					return
				}
				if err := sk.srv.Reload(); err != nil {
					t.Errorf("reload: %v", err)
				}
				sk.reloads.Add(1)
			}
		}
	})

	// The pacer: each millisecond tick releases the checks due by then.
	var samples []soakSample
	var sent uint64
	var lastChecks int64
	lastSample := start
	tick := time.NewTicker(time.Millisecond)
	for now := range tick.C {
		if now.After(end) {
			break
		}
		due := uint64(rate * now.Sub(start).Seconds())
		for ; sent < due; sent++ {
			select {
			case jobs <- sent:
			default:
				behind.Add(1) // the workers fell behind; the check is skipped
			}
		}
		if now.Sub(lastSample) >= interval {
			mu.Lock()
			window := latencies
			latencies = nil
			mu.Unlock()
			c := checks.Load()
			s := takeSample(now.Sub(start), window)
			s.checks = c
			s.rate = float64(c-lastChecks) / now.Sub(lastSample).Seconds()
			s.wrong, s.behind, s.reloads = wrong.Load(), behind.Load(), sk.reloads.Load()
			s.revoked = sk.srv.Engine().Revocations().Len()
			samples = append(samples, s)
			t.Logf("t=%-6v rss=%dKiB heap=%dKiB goroutines=%d fds=%d rate=%.0f/s p50=%v p99=%v max=%v wrong=%d behind=%d",
				s.at.Round(time.Second), s.rssKiB, s.heapKiB, s.goroutines, s.fds, s.rate, s.p50, s.p99, s.max, s.wrong, s.behind)
			lastChecks, lastSample = c, now
		}
	}
	tick.Stop()
	close(stopBg)
	bg.Wait()
	close(jobs)
	wg.Wait()
	return samples
}

func takeSample(at time.Duration, lat []time.Duration) soakSample {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	s := soakSample{at: at, rssKiB: rssKiB(), heapKiB: ms.HeapInuse >> 10, goroutines: runtime.NumGoroutine(), fds: openFDs()}
	if len(lat) > 0 {
		slices.Sort(lat)
		s.p50 = lat[len(lat)/2]
		s.p99 = lat[len(lat)*99/100]
		s.max = lat[len(lat)-1]
	}
	return s
}

// verdict fails the soak when a resource or the latency grew. The first
// sample is the warm-up; the rest are split into an early and a late half
// and compared by robust statistics, since a single sample catches whatever
// was in flight at that instant (goroutines of requests being served, a
// heap between two collections): a leak raises even the late minimum.
func (sk *soakEnv) verdict(t *testing.T, s []soakSample) {
	if len(s) < 5 {
		t.Fatalf("only %d samples: run longer than five sample intervals", len(s))
	}
	last := s[len(s)-1]
	half := len(s[1:]) / 2
	early, late := s[1:1+half], s[1+half:]
	stat := func(ss []soakSample, f func(soakSample) int64, pick func([]int64) int64) int64 {
		v := make([]int64, len(ss))
		for i := range ss {
			v[i] = f(ss[i])
		}
		slices.Sort(v)
		return pick(v)
	}
	minOf := func(v []int64) int64 { return v[0] }
	maxOf := func(v []int64) int64 { return v[len(v)-1] }
	median := func(v []int64) int64 { return v[len(v)/2] }
	goroutines := func(x soakSample) int64 { return int64(x.goroutines) }
	fds := func(x soakSample) int64 { return int64(x.fds) }
	rss := func(x soakSample) int64 { return x.rssKiB }
	heap := func(x soakSample) int64 { return int64(x.heapKiB) }

	if last.wrong > 0 {
		t.Errorf("%d wrong decisions", last.wrong)
	}
	if e, l := stat(early, goroutines, minOf), stat(late, goroutines, minOf); l > e+16 {
		t.Errorf("goroutines grew: at least %d early, at least %d late", e, l)
	}
	if e, l := stat(early, fds, maxOf), stat(late, fds, maxOf); l > e+8 {
		t.Errorf("open file descriptors grew from %d to %d", e, l)
	}
	if e, l := stat(early, rss, median), stat(late, rss, median); l > e*3/2+32<<10 {
		t.Errorf("RSS grew: median %d KiB early, %d KiB late", e, l)
	}
	if e, l := stat(early, heap, median), stat(late, heap, median); l > 2*e+32<<10 {
		t.Errorf("heap in use grew: median %d KiB early, %d KiB late", e, l)
	}
	// Latency creep: the median p99 of the late half against the early.
	if e, l := medianP99(early), medianP99(late); l > 2*e+2*time.Millisecond {
		t.Errorf("p99 crept from %v to %v", e, l)
	}
	if last.behind > last.checks/100 {
		t.Errorf("the server fell behind the paced rate for %d of %d checks", last.behind, last.checks)
	}
}

func medianP99(s []soakSample) time.Duration {
	v := make([]time.Duration, len(s))
	for i := range s {
		v[i] = s[i].p99
	}
	slices.Sort(v)
	return v[len(v)/2]
}

func formatSamples(s []soakSample) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%8s %10s %10s %10s %5s %10s %9s %9s %9s %9s %6s %7s %7s %7s\n",
		"t", "rss KiB", "heap KiB", "goroutines", "fds", "checks", "rate/s", "p50", "p99", "max", "wrong", "behind", "reloads", "revoked")
	for _, x := range s {
		fmt.Fprintf(&b, "%8v %10d %10d %10d %5d %10d %9.0f %9v %9v %9v %6d %7d %7d %7d\n",
			x.at.Round(time.Second), x.rssKiB, x.heapKiB, x.goroutines, x.fds, x.checks, x.rate,
			x.p50.Round(time.Microsecond), x.p99.Round(time.Microsecond), x.max.Round(time.Microsecond), x.wrong, x.behind, x.reloads, x.revoked)
	}
	return b.String()
}

func envDuration(t *testing.T, name string, def time.Duration) time.Duration {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		t.Fatalf("%s=%q: give a positive duration such as 2m", name, v)
	}
	return d
}

// rssKiB reads this process's resident set size from /proc (0 elsewhere).
func rssKiB() int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return n
		}
	}
	return 0
}

// openFDs counts this process's open file descriptors (0 elsewhere).
func openFDs() int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return 0
	}
	return len(ents)
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	return strings.Join(strings.Fields(string(b))[:3], " ")
}
