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
//   - challenge.go: the RFC 6750 WWW-Authenticate challenge, shared by every
//     protocol that answers over HTTP semantics (ext_authz, the scopegate
//     Check RPC and, later, HTTP forward-auth).
//
// Subpackage wire holds the hand-written protobuf coders of the ext_authz
// messages and the one table of field numbers that the server's gRPC codec
// and the load generator share.
//
// Keeping the translation here, apart from the engine and the server, means
// one engine answers every protocol the same way, and each protocol's quirks
// (Envoy's merged headers, raw header maps, sparse proxyless requests) are
// handled in one place that tests can drive without a network.
package envoy
