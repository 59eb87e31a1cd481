// Package decisiontest is a test helper: what tests of any package need to
// exercise the decision engine. It is imported by _test files and by other
// test helper packages only (the package graph test enforces it); code
// that ships mints tokens with decision/tokenmint.
//
//   - tokens.go: the token minting of decision/tokenmint, under the names
//     tests use (Signer, Claims, StandardClaims, JWKS, New*Signer, ...);
//   - translator.go: fixtures the protocol translators' tests share (envoy,
//     server/forwardauth, server/authzen): a policy and its routes, the
//     fuzz targets' engine and tokens, a SMART on FHIR engine, and an
//     engine with a signer for any policy.
package decisiontest
