// Package jwks serves an issuer's verification keys to the decision engine
// (decision.KeySource) from a JWKS file or an https JWKS endpoint.
//
// Keys are read off the request path: the engine calls Keys, which never
// blocks, while a file is polled for changes and a URL is refetched in the
// background. A token naming a kid the set does not hold may trigger one
// synchronous refetch (RefreshUnknownKid), rate-limited and coalesced per
// source, so a flood of bogus kids cannot turn into a flood of fetches.
// Whatever fails (an unreadable file, an endpoint that is down, a response
// that is not a key set), the last good keys keep serving and the error is
// recorded for health checks and metrics.
//
// A Registry is the engine's decision.KeyResolver: it shares one running
// source per file or URL across issuers and policy reloads, so a reload
// does not refetch every key set, and opens new ones without waiting (a
// URL's first fetch runs in the background, retried with a jittered
// backoff, its keys swapped in when they arrive).
package jwks
