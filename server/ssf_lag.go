package server

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/scopegate/scopegate/decision"
)

// How long an identity event takes to be enforced, measured on every
// replica: from the event's time (event_timestamp, else the SET's toe or
// iat) to the moment its revocation is in force here. The replica that
// receives the SET records it with via push or poll; the others, which
// learn the revocation from the store's notification, with via sync, from
// the revocation's SourceEventTime. Revocations without one (an
// operator's) are not recorded. A sync observation is made per revocation:
// an event that made two (a session and its user's unbound tokens) counts
// twice.

// Delivery paths, the via label.
const (
	ssfViaPush = "push"
	ssfViaPoll = "poll"
	ssfViaSync = "sync"
)

// ssfLag is the enforcement-lag histogram, shared by the receiver and the
// revocation syncer.
type ssfLag struct{ h *prometheus.HistogramVec }

func newSSFLag(reg prometheus.Registerer) *ssfLag {
	h := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "scopegate_ssf_enforcement_lag_seconds",
		Help:    "Time from an identity event's event_timestamp (else the SET's iat) to its revocation being in force on this replica, by how the replica learned it (push, poll, or sync from the store).",
		Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300}}, []string{"via"})
	for _, via := range []string{ssfViaPush, ssfViaPoll, ssfViaSync} {
		h.WithLabelValues(via)
	}
	if reg != nil {
		reg.MustRegister(h)
	}
	return &ssfLag{h: h}
}

// observeSSFLag records one enforcement at now of an event of time at.
func (l *ssfLag) observe(via string, at, now time.Time) {
	if l == nil || at.IsZero() {
		return
	}
	l.h.WithLabelValues(via).Observe(max(0, now.Sub(at).Seconds()))
}

// syncedRevocationLag is the syncer's OnPut: a revocation another replica
// stored, now in force here.
func (s *Server) syncedRevocationLag(r decision.Revocation) {
	s.ssfLag.observe(ssfViaSync, r.SourceEventTime, time.Now())
}
