package examples_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/scopegate/scopegate/decision/decisiontest"
	"github.com/scopegate/scopegate/decision/policytest"
	"github.com/scopegate/scopegate/server/probe"
	"github.com/scopegate/scopegate/server/servertest"
)

const syntheticPolicy = `issuers:
  - issuer: https://synthetic.example.com/
    audiences: [orders-api-synthetic]
    jwks_file: jwks.json
    algorithms: [ES256]
routes:
  - name: write-order
    match: {methods: [POST], path: "/orders/{id}"}
    require: {all_of: [WRITE]}
default: deny
`

const syntheticCases = `tests:
  - name: writes with orders:write
    request: {method: POST, path: /orders/1}
    token: {scope: orders:write}
    expect: {allow: WRITE_ALLOWED}
  - name: no token
    request: {method: POST, path: /orders/1}
    token: none
    expect: {reason: token_missing}
`

// TestSyntheticAlertsAgainstARealScrape: the prober of `scopegate test
// --target --every` checks a deployment whose policy differs from the
// file; every metric and label the synthetic alerts name is in a real
// scrape of its metrics, ScopegateSyntheticCheckFailing's condition holds
// and the staleness alert's does not.
func TestSyntheticAlertsAgainstARealScrape(t *testing.T) {
	signer, err := decisiontest.NewECSigner("synthetic-1")
	if err != nil {
		t.Fatal(err)
	}
	write := func(dir, scope string) string {
		files := map[string]string{
			"policy.yaml":      strings.ReplaceAll(syntheticPolicy, "WRITE", scope),
			"policy_test.yaml": strings.ReplaceAll(syntheticCases, "WRITE_ALLOWED", strconv.FormatBool(scope == "orders:write")),
			"jwks.json":        string(decisiontest.JWKS(signer)),
		}
		for name, body := range files {
			if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		return filepath.Join(dir, "policy.yaml")
	}
	// The deployment requires orders:admin; the file says orders:write.
	addrs := servertest.Serve(t, write(t.TempDir(), "orders:admin"), nil)
	local := write(t.TempDir(), "orders:write")

	r, err := policytest.Load(local, policytest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	tests, err := policytest.ReadFile(filepath.Join(filepath.Dir(local), "policy_test.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	target, err := probe.Dial(probe.Options{Address: "grpc://" + addrs.GRPC})
	if err != nil {
		t.Fatal(err)
	}
	defer target.Close()
	start := time.Now()
	rep := r.RunTarget(context.Background(), []*policytest.File{tests}, target, policytest.TargetOptions{Signer: signer})
	if rep.Failed != 1 || rep.Passed != 1 {
		t.Fatalf("round: %d passed, %d failed, want 1 and 1: %+v", rep.Passed, rep.Failed, rep.Results)
	}
	m := probe.NewMetrics("grpc://"+addrs.GRPC, target.API(), 5*time.Minute)
	m.Record(rep, time.Since(start), time.Now())
	mux := http.NewServeMux()
	mux.Handle("/metrics", m.Handler())
	srv := httptest.NewServer(mux)
	defer srv.Close()
	fams := scrape(t, srv.URL)

	rules := alertRulesIn(t, "prometheus/synthetic-alerts.yaml")
	if len(rules) == 0 {
		t.Fatal("no synthetic alert rules")
	}
	for _, rule := range rules {
		t.Run(rule.Alert, func(t *testing.T) {
			if rule.Labels["severity"] == "" || rule.Annotations["summary"] == "" {
				t.Error("a rule needs labels.severity and annotations.summary")
			}
			if !strings.Contains(rule.Annotations["summary"], "$labels.target") {
				t.Error("the summary should name the deployment ({{ $labels.target }})")
			}
			checkRuleScraped(t, rule, fams)
		})
	}

	failed := series(fams, "scopegate_synthetic_cases", "result", "failed")
	if len(failed) != 1 || failed[0]["__value__"] != "1" {
		t.Errorf("ScopegateSyntheticCheckFailing would not fire: %v", failed)
	}
	if named := series(fams, "scopegate_synthetic_case_failed", "test", "writes with orders:write"); len(named) != 1 {
		t.Errorf("the failing case is not named: %v", series(fams, "scopegate_synthetic_case_failed"))
	}
	last := series(fams, "scopegate_synthetic_last_run_timestamp_seconds")
	interval := series(fams, "scopegate_synthetic_interval_seconds")
	if len(last) != 1 || len(interval) != 1 {
		t.Fatalf("last run %v, interval %v", last, interval)
	}
	lastRun, _ := strconv.ParseFloat(last[0]["__value__"], 64)
	every, _ := strconv.ParseFloat(interval[0]["__value__"], 64)
	if age := float64(time.Now().Unix()) - lastRun; age > 3*every || every != 300 {
		t.Errorf("ScopegateSyntheticCheckStale would fire right after a round: age %vs, interval %vs", age, every)
	}
}
