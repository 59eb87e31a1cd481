// Package e2e holds end-to-end tests that put real third-party proxies
// (nginx auth_request, Caddy forward_auth) in front of a small upstream,
// with scopegate's HTTP listener as their auth service. The proxies run
// with the very configs under examples/, rendered with free loopback
// ports, so the examples cannot drift from what is tested.
//
// The tests need the nginx and caddy binaries and are skipped unless
// SCOPEGATE_E2E_PROXIES=1; with it set, a missing binary is a failure.
//
// oidc_test.go runs a real authorization server, oidc-provider (the
// OpenID-certified Node.js implementation, configured by oidc/server.mjs
// and pinned by oidc/package-lock.json), and sends the JWT and opaque
// tokens it issues through ext_authz and forward-auth of a scopegate that
// knows the issuer by discovery alone. It is skipped unless
// SCOPEGATE_E2E_OIDC=1 and node is on PATH; install the server with
// npm ci --prefix server/e2e/oidc.
//
// otelcol_test.go runs a real OpenTelemetry Collector, built from
// .ci/otelcol/manifest.yaml with the collector's builder, and the
// scopegate binary exporting its spans to it; it reads the spans from the
// collector's file exporter. It is skipped unless SCOPEGATE_TEST_OTELCOL
// names the collector binary (.ci/otelcol/build prints its path).
package e2e
