package server

import (
	"math"
	"net/http"
	"sort"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/scopegate/scopegate/decision"
	"github.com/scopegate/scopegate/store/jwks"
)

// DefaultMetricsAddr is the operator listener scopegate serve binds unless
// told otherwise: loopback only, because it also serves pprof. Exposing it
// (to a Prometheus in the cluster) is a deliberate --metrics-addr choice.
const DefaultMetricsAddr = "127.0.0.1:9194"

// apiKind names the API a decision came through, for the metrics' api
// label and the audit record.
type apiKind uint8

// The decision APIs.
const (
	apiEnvoy     apiKind = iota // Envoy ext_authz v3 gRPC
	apiScopegate                // the scopegate.v1.Authorizer Check RPC
	apiHTTP                     // HTTP forward-auth (nginx, Caddy, Traefik, Envoy's HTTP service)
	apiAuthZEN                  // AuthZEN evaluation(s), each item one decision
	numAPIs
)

var apiNames = [numAPIs]string{apiEnvoy: "envoy", apiScopegate: "scopegate", apiHTTP: "http", apiAuthZEN: "authzen"}

// decisionBuckets span a cached decision (a few µs) to a cold token
// verification or an ownership lookup (ms), up to the point where a proxy
// would be timing out.
var decisionBuckets = []float64{
	1e-6, 2.5e-6, 5e-6, 10e-6, 25e-6, 50e-6, 100e-6, 250e-6, 500e-6,
	1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3,
}

// Metric names scopegate exports. They are a contract with dashboards and
// the alert rules in examples/prometheus: never rename one.
const (
	metricDecisions         = "scopegate_decisions_total"
	metricDecisionDuration  = "scopegate_decision_duration_seconds"
	metricTokenCacheHits    = "scopegate_token_cache_hits_total"
	metricTokenCacheMisses  = "scopegate_token_cache_misses_total"
	metricOwnershipHits     = "scopegate_ownership_cache_hits_total"
	metricOwnershipMisses   = "scopegate_ownership_cache_misses_total"
	metricJWKSAge           = "scopegate_jwks_age_seconds"
	metricJWKSFailures      = "scopegate_jwks_refresh_failures_total"
	metricJWKSKeys          = "scopegate_jwks_keys"
	metricPolicyInfo        = "scopegate_policy_info"
	metricPolicyReloads     = "scopegate_policy_reloads_total"
	metricPolicyLastReload  = "scopegate_policy_last_reload_timestamp_seconds"
	metricDrift             = "scopegate_drift_total"
	metricDeprecatedUsed    = "scopegate_deprecated_scope_used_total"
	metricShadow            = "scopegate_shadow_decisions_total"
	metricScopeSunset       = "scopegate_scope_sunset_timestamp_seconds"
	metricRevocationSyncAge = "scopegate_revocation_sync_age_seconds"
	metricAuditDropped      = "scopegate_audit_dropped_total"
	metricServing           = "scopegate_serving"
	metricGRPCInflight      = "scopegate_grpc_inflight_calls"
	metricGRPCRefused       = "scopegate_grpc_refused_calls_total"
	metricShadowSkipped     = "scopegate_shadow_skipped_total"
)

// Indexes of Metrics.reloads.
const (
	reloadSuccess = iota
	reloadErr
)

// Metrics is scopegate's Prometheus instrumentation, on a registry of its
// own (never the global one, so an embedding program's metrics and ours do
// not collide). The decision path touches only pre-resolved counters and
// histograms: recording a decision is a few atomic adds.
//
// Other parts of the server feed it through its methods (drift,
// deprecated scopes, revocation sync age, audit drops); those that are
// never fed export no series rather than a misleading zero.
type Metrics struct {
	reg *prometheus.Registry

	// allow[api] counts allows; deny[api][c] counts denies with code c.
	// Every one of the 256 entries is set, so indexing by a Code needs no
	// check.
	allow   [numAPIs]prometheus.Counter
	deny    [numAPIs][256]prometheus.Counter
	latency [numAPIs]prometheus.Observer

	reloads    [2]prometheus.Counter
	lastReload prometheus.Gauge

	drift      *prometheus.CounterVec
	shadow     *prometheus.CounterVec
	deprecated *prometheus.CounterVec

	revocationAge atomic.Pointer[func() float64]
	auditDropped  atomic.Pointer[AuditDropSource]
	ownership     atomic.Pointer[func() (hits, misses uint64)]
}

// newMetrics builds the registry for a server deciding with engine;
// serving reports whether the server is SERVING.
func newMetrics(engine *decision.Engine, serving func() bool) *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry()}
	decisions := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: metricDecisions,
		Help: "Decisions answered, by API (envoy, scopegate, http, authzen), result (allow or deny) and reason code (ok for an allow). Requests refused for a limit or a timeout count as the deny they were answered with.",
	}, []string{"api", "result", "reason"})
	for api, name := range apiNames {
		m.allow[api] = decisions.WithLabelValues(name, "allow", decision.OK.String())
		internal := decisions.WithLabelValues(name, "deny", decision.Internal.String())
		for i := range m.deny[api] {
			m.deny[api][i] = internal
		}
		for _, c := range decision.Codes() {
			if c != decision.OK {
				m.deny[api][c] = decisions.WithLabelValues(name, "deny", c.String())
			}
		}
		// A deny that claims OK is answered as internal (fail closed);
		// count it the same way.
		m.deny[api][decision.OK] = internal
	}

	latency := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    metricDecisionDuration,
		Help:    "Time to answer one decision request in the server (translate, decide, build the reply), by API.",
		Buckets: decisionBuckets,
	}, []string{"api"})
	for i, name := range apiNames {
		m.latency[i] = latency.WithLabelValues(name)
	}

	reloads := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: metricPolicyReloads,
		Help: "Policy reloads, by result: success, or failure (the policy in force was kept).",
	}, []string{"result"})
	m.reloads[reloadSuccess] = reloads.WithLabelValues("success")
	m.reloads[reloadErr] = reloads.WithLabelValues("failure")
	m.lastReload = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: metricPolicyLastReload,
		Help: "Unix time at which the policy in force was loaded.",
	})
	m.drift = newDriftCounter() // metrics_governance.go
	m.shadow = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: metricShadow,
		Help: "Would-be decisions of routes in shadow mode, by route, result (allow or deny) and reason; they never answer a request.",
	}, []string{"route", "result", "reason"})
	m.deprecated = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: metricDeprecatedUsed,
		Help: "Allowed requests that relied on a deprecated scope, by scope.",
	}, []string{"scope"})

	m.reg.MustRegister(
		decisions, latency, reloads, m.lastReload, m.drift, m.deprecated, m.shadow,
		&stateCollector{m: m, engine: engine, serving: serving},
		&governanceCollector{engine: engine},
		tokenCacheCollector{engine: engine},
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return m
}

// observe records one decision answered through api, which took took. It
// is on the decision path: a nil receiver (handlers built without metrics,
// in benchmarks) records nothing.
func (m *Metrics) observe(api apiKind, d *decision.Decision, took time.Duration) {
	if m == nil {
		return
	}
	if d.Allow {
		m.allow[api].Inc()
	} else {
		m.deny[api][d.Code].Inc()
	}
	m.latency[api].Observe(took.Seconds())
	// Governance signals: rare, so their label lookups stay off the
	// common path.
	m.observeGovernance(d) // metrics_governance.go
	m.observeShadow(d)
}

// observeShadow counts the would-be outcome of a shadow rule, if d has
// one. Shadow routes are evaluated after the answer (funnel.go), so their
// outcome is counted apart from the decision.
func (m *Metrics) observeShadow(d *decision.Decision) {
	if m == nil {
		return
	}
	if sh := d.Shadow; sh.Route != nil {
		result := "allow"
		if !sh.Allow {
			result = "deny"
		}
		m.shadow.WithLabelValues(sh.Route.Name, result, sh.Code.String()).Inc()
	}
}

// policyReloaded counts a reload; on success it records when the policy in
// force was loaded.
func (m *Metrics) policyReloaded(ok bool) {
	if m == nil {
		return
	}
	if ok {
		m.reloads[reloadSuccess].Inc()
		m.policyLoaded()
		return
	}
	m.reloads[reloadErr].Inc()
}

// policyLoaded records that a policy came into force now.
func (m *Metrics) policyLoaded() {
	if m != nil {
		m.lastReload.SetToCurrentTime()
	}
}

// Registry is the registry /metrics serves. Components with metrics of
// their own (a store, the audit sink) register them here, so they share
// one scrape and never touch the global registry.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the registry in the Prometheus exposition formats.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg, MaxRequestsInFlight: 4})
}

// SetRevocationSyncAge makes f the source of the revocation sync age, in
// seconds since the revocation list was last brought up to date. Until it
// is called, no revocation metric is exported.
func (m *Metrics) SetRevocationSyncAge(f func() float64) {
	if m != nil {
		m.revocationAge.Store(&f)
	}
}

// AuditDropSource reports the audit records dropped since start, calling
// emit once per kind (allow, deny, admin) and reason (buffer_full,
// caller_share, deadline, closed, failed).
type AuditDropSource func(emit func(kind, reason string, n uint64))

// AuditDropped makes f the source of the audit records dropped since start
// (a full buffer drops rather than slowing decisions).
func (m *Metrics) AuditDropped(f AuditDropSource) {
	if m != nil {
		m.auditDropped.Store(&f)
	}
}

// SetOwnershipStats makes f the source of the ownership cache's cumulative
// hits and misses (store/cache.Ownership.Stats).
func (m *Metrics) SetOwnershipStats(f func() (hits, misses uint64)) {
	if m != nil {
		m.ownership.Store(&f)
	}
}

// stateCollector exports what is read from the server's state at scrape
// time rather than counted as it happens: the policy in force, its
// issuers' key sets, the engine's token cache, and the values other
// components publish through the Metrics setters.
type stateCollector struct {
	m       *Metrics
	engine  *decision.Engine
	serving func() bool
}

var (
	descPolicyInfo = prometheus.NewDesc(metricPolicyInfo,
		"The policy in force; its version is the label, the value is always 1.", []string{"version"}, nil)
	// The jwks metrics carry the kind of key source (url, file, or static
	// for keys given in code): a file's age is the time since it last
	// changed, which may rightly be months, while a URL's age is the time
	// since the last successful fetch, which refreshes keep short.
	descJWKSAge = prometheus.NewDesc(metricJWKSAge,
		"Seconds since the issuer's key set was last loaded successfully: fetched (url) or changed (file). Absent until the first load.", []string{"issuer", "source"}, nil)
	descJWKSFailures = prometheus.NewDesc(metricJWKSFailures,
		"Failed loads of the issuer's key set; the last good keys keep serving.", []string{"issuer", "source"}, nil)
	descJWKSKeys = prometheus.NewDesc(metricJWKSKeys,
		"Keys in the issuer's key set now; 0 means its tokens cannot be verified.", []string{"issuer", "source"}, nil)
	descTokenHits = prometheus.NewDesc(metricTokenCacheHits,
		"Token verifications answered from the token cache (remembered failures included).", nil, nil)
	descTokenMisses = prometheus.NewDesc(metricTokenCacheMisses,
		"Tokens verified from scratch (signature and claims).", nil, nil)
	descOwnershipHits = prometheus.NewDesc(metricOwnershipHits,
		"Ownership lookups answered from the ownership cache.", nil, nil)
	descOwnershipMisses = prometheus.NewDesc(metricOwnershipMisses,
		"Ownership lookups that went to the ownership store.", nil, nil)
	descRevocationAge = prometheus.NewDesc(metricRevocationSyncAge,
		"Seconds since the revocation list was last synchronized.", nil, nil)
	descAuditDropped = prometheus.NewDesc(metricAuditDropped,
		"Audit records lost, by kind (allow, deny, admin) and reason (buffer_full, caller_share, deadline, closed; failed: a sink could not write them).", []string{"kind", "reason"}, nil)
	descServing = prometheus.NewDesc(metricServing,
		"1 when the server is SERVING (policy and keys loaded), else 0.", nil, nil)
)

// Describe implements prometheus.Collector.
func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descPolicyInfo, descJWKSAge, descJWKSFailures, descJWKSKeys,
		descTokenHits, descTokenMisses, descOwnershipHits, descOwnershipMisses,
		descRevocationAge, descAuditDropped, descServing} {
		ch <- d
	}
}

// statusSource is a key source that reports its load status (store/jwks).
type statusSource interface {
	Status() jwks.Status
}

// Collect implements prometheus.Collector.
func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	serving := 0.0
	if c.serving() {
		serving = 1
	}
	ch <- prometheus.MustNewConstMetric(descServing, prometheus.GaugeValue, serving)

	hits, misses := c.engine.TokenCacheStats()
	ch <- prometheus.MustNewConstMetric(descTokenHits, prometheus.CounterValue, float64(hits))
	ch <- prometheus.MustNewConstMetric(descTokenMisses, prometheus.CounterValue, float64(misses))

	if pol := c.engine.Policy(); pol != nil {
		ch <- prometheus.MustNewConstMetric(descPolicyInfo, prometheus.GaugeValue, 1, pol.Version)
		names := make([]string, 0, len(pol.Issuers))
		for name := range pol.Issuers {
			names = append(names, name)
		}
		sort.Strings(names)
		for _, name := range names {
			iss := pol.Issuers[name]
			if iss == nil {
				continue
			}
			keys := c.engine.IssuerKeys(iss)
			if keys == nil { // no key set yet: 0 keys, ScopegateJWKSEmpty fires
				kind := "url"
				switch {
				case iss.KeyRef.File != "":
					kind = "file"
				case iss.KeyRef.Discovery:
					kind = "discovery"
				}
				ch <- prometheus.MustNewConstMetric(descJWKSKeys, prometheus.GaugeValue, 0, name, kind)
				continue
			}
			src, ok := keys.(statusSource)
			if !ok {
				ch <- prometheus.MustNewConstMetric(descJWKSKeys, prometheus.GaugeValue, float64(len(keys.Keys())), name, "static")
				continue
			}
			st := src.Status()
			ch <- prometheus.MustNewConstMetric(descJWKSKeys, prometheus.GaugeValue, float64(st.Keys), name, st.Kind)
			ch <- prometheus.MustNewConstMetric(descJWKSFailures, prometheus.CounterValue, float64(st.Failures), name, st.Kind)
			if st.Refreshes > 0 {
				ch <- prometheus.MustNewConstMetric(descJWKSAge, prometheus.GaugeValue, st.Age.Seconds(), name, st.Kind)
			}
		}
	}

	if f := c.m.ownership.Load(); f != nil {
		h, m := (*f)()
		ch <- prometheus.MustNewConstMetric(descOwnershipHits, prometheus.CounterValue, float64(h))
		ch <- prometheus.MustNewConstMetric(descOwnershipMisses, prometheus.CounterValue, float64(m))
	}
	if f := c.m.revocationAge.Load(); f != nil {
		if v := (*f)(); !math.IsNaN(v) {
			ch <- prometheus.MustNewConstMetric(descRevocationAge, prometheus.GaugeValue, v)
		}
	}
	if f := c.m.auditDropped.Load(); f != nil {
		(*f)(func(kind, reason string, n uint64) {
			ch <- prometheus.MustNewConstMetric(descAuditDropped, prometheus.CounterValue, float64(n), kind, reason)
		})
	}
}

// exportGate exports the gRPC gate's calls in flight and refusals, and the
// decisions recorded without their shadow outcome.
func (m *Metrics) exportGate(g *gate, sh *shadowRunner) {
	m.reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: metricGRPCInflight,
			Help: "gRPC calls in flight, counted from stream start (before their message is read).",
		}, func() float64 { n, _ := g.stats(); return float64(n) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: metricGRPCRefused,
			Help: "gRPC calls refused with RESOURCE_EXHAUSTED because --max-inflight calls were in flight.",
		}, func() float64 { _, n := g.stats(); return float64(n) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: metricShadowSkipped,
			Help: "Decisions a shadow route matched that were recorded without its would-be outcome, because the shadow queue was full.",
		}, func() float64 { return float64(sh.skipped.Load()) }),
	)
}

// Metrics returns the server's instrumentation, for the components that
// feed it (drift, deprecated scopes, revocation, audit) or register their
// own collectors on its registry.
func (s *Server) Metrics() *Metrics { return s.metrics }
