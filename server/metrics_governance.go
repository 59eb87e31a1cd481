package server

import (
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/scopegate/scopegate/decision"
)

// Governance metrics: drift, deprecated scopes in use, and the sunset of
// the policy's scopes. Label values come from the policy (clients, catalog
// scopes, segments), never unchecked from a token, so an identity provider
// cannot grow the number of series.

// The kinds of drift of metricDrift's kind label. They have different
// remedies: an extra scope needs a grant (or the authorization server to
// stop issuing it); a straddle needs the combination approved in the
// client's segments_together (or the client split in two).
const (
	driftKindExtra    = "extra_scope"
	driftKindStraddle = "segment_straddle"
)

// UnknownScopeLabel is the scope label value of every scope the policy in
// force does not declare (its catalog, when it has one).
const UnknownScopeLabel = "_unknown"

// UnknownClientLabel is the client label value of drift from clients that
// are not registered in the policy.
const UnknownClientLabel = "_unregistered"

// newDriftCounter returns metricDrift. For kind extra_scope, scope is the
// extra scope and segments is empty; for kind segment_straddle, scope is
// empty and segments names the straddled segments, joined by "+" in
// declaration order.
func newDriftCounter() *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: metricDrift,
		Help: "Tokens seen drifting from their client's grants, by client, kind (extra_scope: a scope beyond the grants; segment_straddle: scopes of segments the client is not approved to hold together), scope (extra_scope; _unknown for a scope the policy does not declare), segments (segment_straddle) and mode (monitor or enforce).",
	}, []string{"client", "scope", "mode", "kind", "segments"})
}

// observeGovernance records the governance signals of one decision: drift
// and deprecated scopes. They are rare, so their label lookups stay off
// the common path.
func (m *Metrics) observeGovernance(d *decision.Decision) {
	if rep, ok := d.DriftReport(); ok {
		mode := "monitor"
		if rep.Enforced {
			mode = "enforce"
		}
		client := rep.Client
		if rep.Unregistered {
			// An unregistered client id comes from the token alone.
			client = UnknownClientLabel
		}
		for _, scope := range rep.Extra {
			m.drift.WithLabelValues(client, scopeLabel(d.Policy, scope), mode, driftKindExtra, "").Inc()
		}
		if len(rep.Segments) > 0 {
			m.drift.WithLabelValues(client, "", mode, driftKindStraddle, strings.Join(rep.Segments, "+")).Inc()
		}
	}
	if d.Allow {
		for _, scope := range d.DeprecatedScopesUsed() {
			m.deprecated.WithLabelValues(scope).Inc()
		}
	}
}

// scopeLabel is the scope label of scope: itself when the policy declares
// it, else UnknownScopeLabel.
func scopeLabel(pol *decision.Policy, scope string) string {
	if pol.KnowsScope(scope) {
		return scope
	}
	return UnknownScopeLabel
}

// ObserveDrift counts one token of client carrying scope beyond the
// client's grants; mode is how the policy treats drift ("monitor" or
// "enforce"). The caller bounds the label values (scopeLabel).
func (m *Metrics) ObserveDrift(client, scope, mode string) {
	if m == nil {
		return
	}
	m.drift.WithLabelValues(client, scope, mode, driftKindExtra, "").Inc()
}

// ObserveDeprecated counts one allowed request that relied on the
// deprecated scope. Its sunset is exported from the policy in force
// (metricScopeSunset) whether or not it is observed.
func (m *Metrics) ObserveDeprecated(scope string) {
	if m == nil {
		return
	}
	m.deprecated.WithLabelValues(scope).Inc()
}

var descScopeSunset = prometheus.NewDesc(metricScopeSunset,
	"Unix time of the sunset of a deprecated or retired catalog scope, from the policy in force (updated on reload).", []string{"scope", "status"}, nil)

// governanceCollector exports, at scrape time, the sunset of every catalog
// scope of the policy in force that has one, so an alert can join it with
// scopegate_deprecated_scope_used_total.
type governanceCollector struct {
	engine *decision.Engine
}

// Describe implements prometheus.Collector.
func (c *governanceCollector) Describe(ch chan<- *prometheus.Desc) { ch <- descScopeSunset }

// Collect implements prometheus.Collector.
func (c *governanceCollector) Collect(ch chan<- prometheus.Metric) {
	pol := c.engine.Policy()
	if pol == nil {
		return
	}
	for _, info := range pol.CatalogScopes() {
		if !info.Sunset.IsZero() {
			ch <- prometheus.MustNewConstMetric(descScopeSunset, prometheus.GaugeValue, float64(info.Sunset.Unix()), info.Name, info.Status)
		}
	}
}
