// Package decisiontest mints signed access tokens and JWK sets for tests,
// for the `scopegate token` command and for the benchmark harness.
//
// It exists so that every package exercising token verification builds its
// tokens the same way, with the same well-formed JOSE headers and standard
// claims, instead of each test hand-rolling JSON and signatures. Signing
// goes through jwx v3, the library the verifier uses, so a token this
// package mints is exactly what a conforming issuer would send.
//
// The bundled development keys under examples/keys are reachable through
// ExampleSigner. They are published on purpose and must never protect
// anything real.
package decisiontest
