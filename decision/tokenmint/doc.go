// Package tokenmint mints signed access tokens and JWK sets: for the
// `scopegate token` command, the `scopegate client` request ids, the
// policy test runner, the benchmark harness and the generator of the
// bundled development keys, and through decisiontest for every test.
//
// It exists so that every caller building tokens builds them the same way,
// with the same well-formed JOSE headers and standard claims, instead of
// each hand-rolling JSON and signatures. Signing goes through jwx v3, the
// library the verifier uses, so a token this package mints is exactly what
// a conforming issuer would send.
//
// The bundled development keys under examples/keys are reachable through
// ExampleSigner. They are published on purpose and must never protect
// anything real.
package tokenmint
