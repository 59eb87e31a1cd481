package server

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/scopegate/scopegate/decision"
)

// The token cache's memory: what its entries hold against its byte
// budget, and how often it makes room.
const (
	metricTokenCacheBytes     = "scopegate_token_cache_bytes"
	metricTokenCacheMaxBytes  = "scopegate_token_cache_max_bytes"
	metricTokenCacheEvictions = "scopegate_token_cache_evictions_total"
)

var (
	descTokenCacheBytes = prometheus.NewDesc(metricTokenCacheBytes,
		"Heap charged to the entries of the verified-token cache (tokens, their claims, the cache's bookkeeping).", nil, nil)
	descTokenCacheMaxBytes = prometheus.NewDesc(metricTokenCacheMaxBytes,
		"The token cache's byte budget (--token-cache-bytes).", nil, nil)
	descTokenCacheEvictions = prometheus.NewDesc(metricTokenCacheEvictions,
		"Token cache entries dropped, by cause: capacity (evicted to make room), expired (at the token's exp or a failure's 30 s), rejected (a new entry the admission policy kept out).", []string{"cause"}, nil)
)

// tokenCacheCollector exports decision.Engine.TokenCacheUsage.
type tokenCacheCollector struct{ engine *decision.Engine }

// Describe implements prometheus.Collector.
func (c tokenCacheCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descTokenCacheBytes
	ch <- descTokenCacheMaxBytes
	ch <- descTokenCacheEvictions
}

// Collect implements prometheus.Collector.
func (c tokenCacheCollector) Collect(ch chan<- prometheus.Metric) {
	u := c.engine.TokenCacheUsage()
	ch <- prometheus.MustNewConstMetric(descTokenCacheBytes, prometheus.GaugeValue, float64(u.Bytes))
	ch <- prometheus.MustNewConstMetric(descTokenCacheMaxBytes, prometheus.GaugeValue, float64(u.MaxBytes))
	ch <- prometheus.MustNewConstMetric(descTokenCacheEvictions, prometheus.CounterValue, float64(u.Evictions), "capacity")
	ch <- prometheus.MustNewConstMetric(descTokenCacheEvictions, prometheus.CounterValue, float64(u.Expirations), "expired")
	ch <- prometheus.MustNewConstMetric(descTokenCacheEvictions, prometheus.CounterValue, float64(u.Rejections), "rejected")
}
