// Package policytest runs declarative policy tests: YAML files of cases,
// each a request, the token it carries and the decision expected, decided
// by the real engine against a policy file, the way `opa test` runs Rego
// tests. It is what `scopegate test` runs.
//
// Tests prove what a policy does, not what its author meant: every case is
// decided by decision.Engine, with tokens minted and signed on the fly by a
// throwaway key that replaces every issuer's key set, so tests need no real
// keys and no network. A matrix section generates the negative matrix
// (every route tried with every scope), so that "each scope permits only
// what it should" is checked rather than claimed, and a coverage report
// names the routes and scopes no allowed case exercised.
//
// RunTarget sends the same cases to a running deployment through a Target
// (scopegate test --target), minting tokens with a test issuer's key and
// comparing what the wire returns; the transports live in server/probe.
//
// The package is pure: it reads files and decides in-process, nothing else.
// A Runner is not safe for concurrent use (cases share one engine and one
// injected clock).
package policytest
