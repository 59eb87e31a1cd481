package probe

import (
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/scopegate/scopegate/decision/policytest"
)

// MaxFailedSeries bounds the scopegate_synthetic_case_failed series: past
// it, further failing cases are counted under test="(other)", so a policy
// whose every case fails cannot grow Prometheus without bound.
const MaxFailedSeries = 50

// otherCases labels the failing cases beyond MaxFailedSeries.
const otherCases = "(other)"

// Metrics export the outcome of the last round of synthetic checks. It is
// safe for concurrent use: a scrape may come while a round is recorded.
type Metrics struct {
	reg      *prometheus.Registry
	cases    *prometheus.GaugeVec
	failed   *prometheus.GaugeVec
	lastRun  prometheus.Gauge
	lastPass prometheus.Gauge
	duration prometheus.Gauge
	interval prometheus.Gauge
	rounds   *prometheus.CounterVec

	mu sync.Mutex
}

// NewMetrics returns the metrics of synthetic checks of target (its
// address, as the target label) sent over api every interval.
func NewMetrics(target, api string, interval time.Duration) *Metrics {
	labels := prometheus.Labels{"target": target, "api": api}
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		cases: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "scopegate_synthetic_cases", ConstLabels: labels,
			Help: "Cases of the last synthetic round by result: passed, failed (the deployment's answer differs from the policy's test file, or no answer) or skipped (the wire cannot carry the case).",
		}, []string{"result"}),
		failed: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "scopegate_synthetic_case_failed", ConstLabels: labels,
			Help: "1 for each case that failed in the last synthetic round, by test name (at most 50 names; the rest under test=\"(other)\", counted).",
		}, []string{"test"}),
		lastRun: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "scopegate_synthetic_last_run_timestamp_seconds", ConstLabels: labels,
			Help: "Unix time the last synthetic round ended.",
		}),
		lastPass: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "scopegate_synthetic_last_success_timestamp_seconds", ConstLabels: labels,
			Help: "Unix time the last synthetic round in which no case failed ended; 0 before the first.",
		}),
		duration: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "scopegate_synthetic_duration_seconds", ConstLabels: labels,
			Help: "How long the last synthetic round took.",
		}),
		interval: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "scopegate_synthetic_interval_seconds", ConstLabels: labels,
			Help: "The configured time between synthetic rounds (--every), for staleness alerts.",
		}),
		rounds: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "scopegate_synthetic_rounds_total", ConstLabels: labels,
			Help: "Synthetic rounds run, by result: passed (no case failed), failed, or error (the policy or a test file did not load).",
		}, []string{"result"}),
	}
	m.interval.Set(interval.Seconds())
	for _, r := range []string{"passed", "failed", "skipped"} {
		m.cases.WithLabelValues(r)
	}
	for _, r := range []string{"passed", "failed", "error"} {
		m.rounds.WithLabelValues(r)
	}
	m.reg.MustRegister(m.cases, m.failed, m.lastRun, m.lastPass, m.duration, m.interval, m.rounds)
	return m
}

// Registry is where the metrics are registered, for a scrape handler or a
// test's Gather.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the metrics in the Prometheus exposition format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// Record sets the metrics from a round's report, which took took and
// ended at end.
func (m *Metrics) Record(rep *policytest.Report, took time.Duration, end time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.cases.WithLabelValues("passed").Set(float64(rep.Passed))
	m.cases.WithLabelValues("failed").Set(float64(rep.Failed))
	m.cases.WithLabelValues("skipped").Set(float64(rep.Skipped))
	m.failed.Reset()
	named := 0
	for _, res := range rep.Results {
		if res.Pass || res.Skip != "" {
			continue
		}
		if named < MaxFailedSeries {
			m.failed.WithLabelValues(res.Name).Set(1)
			named++
			continue
		}
		m.failed.WithLabelValues(otherCases).Inc()
	}
	m.lastRun.Set(float64(end.Unix()))
	m.duration.Set(took.Seconds())
	if rep.Failed == 0 {
		m.lastPass.Set(float64(end.Unix()))
		m.rounds.WithLabelValues("passed").Inc()
	} else {
		m.rounds.WithLabelValues("failed").Inc()
	}
}

// RecordError counts a round that could not run (the policy or a test
// file did not load): its cases keep their last values, and the failure
// shows in scopegate_synthetic_rounds_total{result="error"} and a stale
// last-success time.
func (m *Metrics) RecordError(end time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.rounds.WithLabelValues("error").Inc()
	m.lastRun.Set(float64(end.Unix()))
}
