// Package envoy translates between the wire protocols proxies speak and the
// protocol-independent decision package. It does no I/O and holds no server
// code: the server package owns listeners and calls these translators.
//
// One file per protocol:
//
//   - extauthz_request.go: Envoy ext_authz v3 CheckRequest → decision.Request
//     (RequestFromCheck);
//   - extauthz_response.go: decision.Decision → ext_authz v3 CheckResponse
//     (Responder);
//   - forwardauth_request.go, forwardauth_response.go: HTTP forward-auth
//     checks (nginx, Caddy, Traefik, Envoy's HTTP service) → decision.Request,
//     and decisions → their answers (RequestFromHTTP, HTTPResponder);
//   - challenge.go: the RFC 6750 WWW-Authenticate challenge, shared by every
//     protocol that answers over HTTP semantics (ext_authz, the scopegate
//     Check RPC, forward-auth and AuthZEN).
//
// AuthZEN has a translator of its own, server/authzen.
//
// Keeping the translation here, apart from the engine and the server, means
// one engine answers every protocol the same way, and each protocol's quirks
// (Envoy's merged headers, raw header maps, sparse proxyless requests) are
// handled in one place that tests can drive without a network.
package envoy
