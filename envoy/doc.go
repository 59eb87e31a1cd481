// Package envoy translates between Envoy's ext_authz v3 protocol and the
// protocol-independent decision package. It does no I/O and holds no server
// code: the server package owns listeners and calls this translator.
//
//   - extauthz_request.go: ext_authz v3 CheckRequest → decision.Request
//     (RequestFromCheck), and from the encoded request, decoding only what
//     the translation reads (RequestFromOffsets, extauthz_offsets.go);
//   - extauthz_response.go: decision.Decision → ext_authz v3 CheckResponse
//     (Responder), and the upstream header names and values of an allow
//     (UpstreamNames, UpstreamHeaders, HintHeaders);
//   - challenge.go: the RFC 6750 WWW-Authenticate challenge, shared by every
//     protocol that answers over HTTP semantics (ext_authz, the scopegate
//     Check RPC, forward-auth and AuthZEN).
//
// The other protocols have translators of their own: server/forwardauth
// (nginx, Caddy, Traefik and Envoy's HTTP service) and server/authzen
// (the AuthZEN Authorization API). Forward-auth answers a deny with this
// package's Responder's deny, so both protocols deny alike.
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
