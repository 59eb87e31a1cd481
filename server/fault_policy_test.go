package server

import (
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/scopegate/scopegate/decision/decisiontest"
)

// TestFaultPolicyFileUnderLoad breaks the policy file in every way while
// clients send checks through the watched server: every reload fails, the
// policy in force stays, and not one decision changes, not even for the
// moment between a file's removal and its replacement.
func TestFaultPolicyFileUnderLoad(t *testing.T) {
	s := faultSigner(t, "k1")
	j := newJWKSEndpoint(t, decisiontest.JWKS(s))
	f, err := startFaultServer(t, faultPolicyYAML(j.url()), func(c *Config) { c.WatchPolicy = true })
	if err != nil {
		t.Fatal(err)
	}
	f.srv.ops.debounce = 5 * time.Millisecond
	if err := f.srv.startOps(); err != nil {
		t.Fatal(err)
	}
	path := f.srv.cfg.PolicyPath
	original, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	version := f.srv.Engine().Policy().Version
	tok := faultToken(t, s)

	var wrong, checks atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				checks.Add(1)
				if c := f.decide(t, "/orders/1", tok); c != "ok" {
					if wrong.Add(1) <= 5 {
						t.Errorf("valid token during a policy fault: %s", c)
					}
				}
				if c := f.decide(t, "/admin", tok); c != "no_route" {
					if wrong.Add(1) <= 5 {
						t.Errorf("unknown path during a policy fault: %s", c)
					}
				}
			}
		})
	}

	reloadFailures := func() float64 {
		mfs, err := f.srv.Metrics().Registry().Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() != "scopegate_policy_reloads_total" {
				continue
			}
			for _, m := range mf.GetMetric() {
				for _, l := range m.GetLabel() {
					if l.GetName() == "result" && l.GetValue() == "failure" {
						return m.GetCounter().GetValue()
					}
				}
			}
		}
		return 0
	}
	write := func(b []byte) {
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, fault := range []struct {
		name  string
		apply func()
	}{
		{"truncated to zero", func() { write(nil) }},
		{"truncated mid-file", func() { write(original[:len(original)/2]) }},
		{"deleted", func() {
			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
		}},
		{"binary garbage", func() { write([]byte{0, 1, 2, 0xff, 0xfe, '\n', ':', '['}) }},
		{"valid YAML, invalid policy", func() { write([]byte("routes: []\n")) }},
	} {
		before := reloadFailures()
		fault.apply()
		deadline := time.Now().Add(10 * time.Second)
		for reloadFailures() <= before && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		if reloadFailures() <= before {
			t.Errorf("%s: no failed reload recorded", fault.name)
		}
		if v := f.srv.Engine().Policy().Version; v != version {
			t.Errorf("%s: policy %s in force, want %s kept", fault.name, v, version)
		}
		time.Sleep(50 * time.Millisecond) // decisions run against the broken file
	}
	write(original)
	close(stop)
	wg.Wait()
	if n := wrong.Load(); n > 0 || checks.Load() == 0 {
		t.Fatalf("%d wrong decisions in %d rounds", n, checks.Load())
	}
	if v := f.srv.Engine().Policy().Version; v != version {
		t.Errorf("policy %s after restoring the file, want %s", v, version)
	}
	t.Logf("%d rounds during 5 policy faults, no wrong decision", checks.Load())
}
