package server

import "github.com/scopegate/scopegate/store/audit"

// testFunnel is a funnel over s's engine and limits, recording into m and
// l (either may be nil); it evaluates no shadow route.
func testFunnel(s *Server, m *Metrics, l *audit.Logger) *funnel {
	return &funnel{engine: s.engine, limits: s.funnel.limits, metrics: m, audit: l}
}
