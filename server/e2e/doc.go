// Package e2e holds end-to-end tests that put real third-party proxies
// (nginx auth_request, Caddy forward_auth) in front of a small upstream,
// with scopegate's HTTP listener as their auth service. The proxies run
// with the very configs under examples/, rendered with free loopback
// ports, so the examples cannot drift from what is tested.
//
// The tests need the nginx and caddy binaries and are skipped unless
// SCOPEGATE_E2E_PROXIES=1; with it set, a missing binary is a failure.
package e2e
