package probe

import (
	"fmt"
	"testing"
	"time"

	"github.com/scopegate/scopegate/decision/policytest"
)

// TestMetricsBoundFailedSeries: however many cases fail, the per-case
// series stay at MaxFailedSeries plus one "(other)" counting the rest,
// and a passing round clears them.
func TestMetricsBoundFailedSeries(t *testing.T) {
	m := NewMetrics("grpc://h:1", APIEnvoy, 5*time.Minute)
	rep := &policytest.Report{Target: true, Passed: 1, Skipped: 2}
	rep.Results = append(rep.Results, policytest.Result{Name: "ok", Pass: true}, policytest.Result{Name: "skipped", Skip: "why"})
	for i := range MaxFailedSeries + 10 {
		rep.Results = append(rep.Results, policytest.Result{Name: fmt.Sprintf("case %d", i)})
		rep.Failed++
	}
	m.Record(rep, time.Second, time.Unix(1000, 0))
	if n := seriesCount(t, m, "scopegate_synthetic_case_failed"); n != MaxFailedSeries+1 {
		t.Errorf("%d case_failed series, want %d", n, MaxFailedSeries+1)
	}
	if v := value(t, m, "scopegate_synthetic_case_failed", "test", otherCases); v != 10 {
		t.Errorf("(other) = %v, want 10", v)
	}
	if v := value(t, m, "scopegate_synthetic_cases", "result", "failed"); v != float64(MaxFailedSeries+10) {
		t.Errorf("failed cases = %v", v)
	}
	if v := value(t, m, "scopegate_synthetic_last_success_timestamp_seconds"); v != 0 {
		t.Errorf("last success %v after a failing round", v)
	}

	m.Record(&policytest.Report{Target: true, Passed: 3}, time.Second, time.Unix(2000, 0))
	if n := seriesCount(t, m, "scopegate_synthetic_case_failed"); n != 0 {
		t.Errorf("%d case_failed series after a passing round", n)
	}
	if v := value(t, m, "scopegate_synthetic_last_success_timestamp_seconds"); v != 2000 {
		t.Errorf("last success %v, want 2000", v)
	}
	m.RecordError(time.Unix(3000, 0))
	if v := value(t, m, "scopegate_synthetic_rounds_total", "result", "error"); v != 1 {
		t.Errorf("error rounds %v", v)
	}
	if v := value(t, m, "scopegate_synthetic_last_run_timestamp_seconds"); v != 3000 {
		t.Errorf("last run %v, want 3000", v)
	}
}

// seriesCount is how many series the family name has in a gather.
func seriesCount(t *testing.T, m *Metrics, name string) int {
	t.Helper()
	fams, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() == name {
			return len(f.GetMetric())
		}
	}
	return 0
}

// value is the value of the series of name with the label pair (if
// given) in a gather; it fails the test when there is none.
func value(t *testing.T, m *Metrics, name string, label ...string) float64 {
	t.Helper()
	fams, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
	next:
		for _, s := range f.GetMetric() {
			if len(label) == 2 {
				for _, l := range s.GetLabel() {
					if l.GetName() == label[0] && l.GetValue() != label[1] {
						continue next
					}
				}
			}
			if s.GetCounter() != nil {
				return s.GetCounter().GetValue()
			}
			return s.GetGauge().GetValue()
		}
	}
	t.Fatalf("no series %s %v", name, label)
	return 0
}
