package forwardauth

import (
	"net/http"
	"strings"

	"github.com/scopegate/scopegate/decision"
)

// Headers a forward-auth check request carries for DPoP (RFC 9449).
const (
	// HeaderDPoP is the client's DPoP proof, passed through by the proxy.
	HeaderDPoP = "Dpop"
	// HeaderForwardedProto is the scheme the client used; a proof's htu
	// is checked against it, X-Forwarded-Host and X-Forwarded-Uri.
	HeaderForwardedProto = "X-Forwarded-Proto"
)

// dpopFromHTTP fills the DPoP fields of out from a forward-auth check
// request: every DPoP header is counted (two are refused in Decide), and
// the scheme comes from X-Forwarded-Proto only (the check request's own
// scheme is the proxy's, not the client's). Several X-Forwarded-Proto
// values, or a comma list, leave the scheme unknown, so a proof's htu
// cannot match (dpop_uri_mismatch): fail closed.
func dpopFromHTTP(h http.Header, out *decision.Request) {
	if v := h[HeaderDPoP]; len(v) > 0 {
		out.DPoP, out.DPoPCount = v[0], len(v)
	}
	if v := h[HeaderForwardedProto]; len(v) == 1 && !strings.Contains(v[0], ",") {
		out.Scheme = strings.TrimSpace(v[0])
	}
}
