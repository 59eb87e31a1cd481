// Package forwardauth translates HTTP forward-auth checks, the subrequest
// nginx auth_request, Caddy forward_auth, Traefik forwardAuth and Envoy's
// HTTP ext_authz service send, to and from scopegate's decision model:
//
//   - request.go: an *http.Request's method, URI and headers (the
//     X-Forwarded-* and X-Original-* families, X-Forwarded-Client-Cert,
//     Client-Cert) → decision.Request (RequestFromHTTP);
//   - response.go: decision.Decision → the answer's status, headers and
//     body (Responder). A deny is the ext_authz deny of package envoy, so
//     the two protocols deny with the same status, challenge and body.
//
// It is a pure translator: it reads the request's headers, never its body,
// and writes to the http.ResponseWriter it is given; it opens no listener
// and makes no call. The listener lives in package server (http.go).
package forwardauth
