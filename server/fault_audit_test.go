package server

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/scopegate/scopegate/decision/decisiontest"
	"github.com/scopegate/scopegate/store/audit"
)

// blockedSink is an audit sink that hangs, as a full disk, a stalled pipe
// or an unreachable log database does.
type blockedSink struct {
	release chan struct{}
	writes  atomic.Int64
}

func (b *blockedSink) Name() string { return "blocked" }
func (b *blockedSink) Write(ctx context.Context, _ []audit.Entry) error {
	b.writes.Add(1)
	select {
	case <-b.release:
	case <-ctx.Done():
	}
	return nil
}
func (b *blockedSink) Flush(context.Context) error { return nil }
func (b *blockedSink) Close(context.Context) error { return nil }

// TestFaultAuditSinkBlocked hangs the audit sink: decisions must not slow
// down (the audit path drops instead of waiting) and every drop must be
// counted.
func TestFaultAuditSinkBlocked(t *testing.T) {
	s := faultSigner(t, "k1")
	j := newJWKSEndpoint(t, decisiontest.JWKS(s))
	tok := faultToken(t, s)
	const n = 3000

	// run sends n checks from 8 clients and returns the slowest and the
	// total time; every one must be allowed.
	run := func(t *testing.T, f *faultServer) (slowest, total time.Duration) {
		var mu sync.Mutex
		var next atomic.Int64
		var wg sync.WaitGroup
		start := time.Now()
		for range 8 {
			wg.Go(func() {
				for next.Add(1) <= n {
					t0 := time.Now()
					if c := f.decide(t, "/orders/1", tok); c != "ok" {
						t.Errorf("decision %s, want ok", c)
						return
					}
					d := time.Since(t0)
					mu.Lock()
					slowest = max(slowest, d)
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		return slowest, time.Since(start)
	}

	plain, err := startFaultServer(t, faultPolicyYAML(j.url()), nil)
	if err != nil {
		t.Fatal(err)
	}
	_, baseline := run(t, plain)

	sink := &blockedSink{release: make(chan struct{})}
	f, err := startFaultServer(t, faultPolicyYAML(j.url()), func(c *Config) {
		c.Audit = AuditConfig{Sinks: []audit.Sink{sink}, BufferSize: 64}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { close(sink.release) }) // before the server stops
	slowest, blocked := run(t, f)
	t.Logf("%d checks: %v without audit, %v with the sink blocked (slowest %v)", n, baseline, blocked, slowest)
	if sink.writes.Load() == 0 {
		t.Fatal("the sink was never written to: the test did not block the audit path")
	}
	if blocked > 3*baseline+2*time.Second {
		t.Errorf("decisions slowed down with the audit sink blocked: %v for %d checks, %v without audit", blocked, n, baseline)
	}
	if slowest > time.Second {
		t.Errorf("a decision took %v with the audit sink blocked", slowest)
	}
	dropped, ok := auditDrops(t, f.srv, "allow")
	if !ok || dropped < n-64-1024 {
		t.Errorf("scopegate_audit_dropped_total{kind=allow} = %v (present %v), want about %d drops counted", dropped, ok, n-64)
	}
	if denies, _ := auditDrops(t, f.srv, "deny"); denies != 0 {
		t.Errorf("scopegate_audit_dropped_total{kind=deny} = %v, want 0: only allows were sent", denies)
	}
}

// auditDrops sums scopegate_audit_dropped_total over the reasons of kind.
func auditDrops(t testing.TB, s *Server, kind string) (float64, bool) {
	t.Helper()
	fam := gather(t, s.Metrics().Registry())["scopegate_audit_dropped_total"]
	if fam == nil {
		return 0, false
	}
	total := 0.0
	for _, m := range fam.GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == "kind" && l.GetValue() == kind {
				total += m.GetCounter().GetValue()
			}
		}
	}
	return total, true
}
