// Package probe sends policy test cases to a running scopegate over the
// wire its proxies use, so `scopegate test --target` can check that a
// deployment decides what the policy file says: Envoy ext_authz v3 and
// the scopegate Check RPC over gRPC, and HTTP forward-auth. Each transport
// is a policytest.Target; the runner mints the tokens and compares the
// answers, the transports only carry requests and read answers.
//
// Its Metrics export the result of each round of `scopegate test --target
// --every` for alerting (examples/prometheus/synthetic-alerts.yaml).
package probe
