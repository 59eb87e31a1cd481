package server

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/scopegate/scopegate/decision"
	"github.com/scopegate/scopegate/store/introspect"
)

// Introspection of opaque tokens: the server's store/introspect client
// (its credentials are read when a policy loads) and its metrics.
const (
	metricIntrospectionRequests = "scopegate_introspection_requests_total"
	metricIntrospectionDuration = "scopegate_introspection_duration_seconds"
	metricIntrospectionFailures = "scopegate_introspection_failures_total"
	metricIntrospectionCache    = "scopegate_introspection_cache_lookups_total"
)

// introspectionMetrics count the calls to introspection endpoints. They
// exist before the server's registry does (the client is built before the
// first policy load) and are registered on it with the other metrics.
type introspectionMetrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	failures *prometheus.CounterVec
}

func newIntrospectionMetrics() *introspectionMetrics {
	return &introspectionMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: metricIntrospectionRequests,
			Help: "Calls to issuers' introspection endpoints (RFC 7662), by issuer and result: ok (an answer, active or not) or error (no answer; the token was denied introspection_unavailable).",
		}, []string{"issuer", "result"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    metricIntrospectionDuration,
			Help:    "Time of the calls to issuers' introspection endpoints, by issuer (calls refused by the circuit breaker included, at about zero).",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"issuer"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: metricIntrospectionFailures,
			Help: "Introspection calls that got no answer, by issuer and kind: timeout, unreachable, status (an error status), circuit_open, bad_response, no_endpoint (discovery has not named one yet).",
		}, []string{"issuer", "kind"}),
	}
}

// observe is the client's Observe hook.
func (m *introspectionMetrics) observe(issuer, kind string, d time.Duration) {
	m.duration.WithLabelValues(issuer).Observe(d.Seconds())
	if kind == "" {
		m.requests.WithLabelValues(issuer, "ok").Inc()
		return
	}
	m.requests.WithLabelValues(issuer, "error").Inc()
	m.failures.WithLabelValues(issuer, kind).Inc()
}

var descIntrospectionCache = prometheus.NewDesc(metricIntrospectionCache,
	"Opaque-token lookups, by result: hit (answered from the token cache) or miss (the issuer was asked).", []string{"result"}, nil)

// introspectionCacheCollector exports decision.Engine.IntrospectionStats.
type introspectionCacheCollector struct{ engine *decision.Engine }

// Describe implements prometheus.Collector.
func (c introspectionCacheCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descIntrospectionCache
}

// Collect implements prometheus.Collector.
func (c introspectionCacheCollector) Collect(ch chan<- prometheus.Metric) {
	hits, misses := c.engine.IntrospectionStats()
	ch <- prometheus.MustNewConstMetric(descIntrospectionCache, prometheus.CounterValue, float64(hits), "hit")
	ch <- prometheus.MustNewConstMetric(descIntrospectionCache, prometheus.CounterValue, float64(misses), "miss")
}

// exportIntrospection registers the introspection metrics; im is nil when
// the embedder brought its own Introspector.
func (m *Metrics) exportIntrospection(engine *decision.Engine, im *introspectionMetrics) {
	m.reg.MustRegister(introspectionCacheCollector{engine: engine})
	if im != nil {
		m.reg.MustRegister(im.requests, im.duration, im.failures)
	}
}

// startIntrospection builds the introspection client, unless the embedder
// gave one (Config.Introspector). A discovery issuer's endpoint comes from
// the key registry's last good document.
func (s *Server) startIntrospection() {
	s.introspector = s.cfg.Introspector
	if s.introspector != nil {
		return
	}
	s.introMetrics = newIntrospectionMetrics()
	opts := introspect.Options{Logger: s.cfg.Logger, Observe: s.introMetrics.observe}
	if reg := s.registry; reg != nil {
		opts.Endpoint = func(ref *decision.KeyRef) (string, bool) {
			doc, ok := reg.Document(ref)
			return doc.IntrospectionEndpoint, ok
		}
	}
	s.introClient = introspect.New(opts)
	s.introspector = s.introClient
}
