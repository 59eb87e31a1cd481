// Package introspect is the client of issuers' token introspection
// endpoints (RFC 7662, with the JWT-secured answers of RFC 9701): the I/O
// behind decision.Introspector. It authenticates as the configured client
// (client_secret_basic, client_secret_post or private_key_jwt), coalesces
// concurrent calls for one token, bounds each call by the issuer's timeout
// and stops calling an issuer whose endpoint keeps failing (a circuit
// breaker), so an outage costs one fast deny per request rather than a
// pile of waiting ones. Reading and caching the answers is the engine's
// part.
package introspect
