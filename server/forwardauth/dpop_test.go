package forwardauth

import (
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/scopegate/scopegate/decision"
	"github.com/scopegate/scopegate/envoy"
)

// TestDPoPChallengeAndNonce: a DPoP deny carries the RFC 9449 §7.1
// challenge through ext_authz and forward-auth, and a nonce deny the
// DPoP-Nonce header, without the nonce leaking into the cached deny.
func TestDPoPChallengeAndNonce(t *testing.T) {
	r := envoy.NewResponder(envoy.ResponderOptions{})
	h := NewResponder(r)
	for _, tc := range []struct {
		d         decision.Decision
		challenge string
	}{
		{decision.Decision{Code: decision.DPoPProofStale}, `DPoP realm="scopegate", error="invalid_dpop_proof", error_description="the DPoP proof's iat is outside the accepted window", algs="ES256 ES384 ES512 RS256 PS256 EdDSA"`},
		{decision.Decision{Code: decision.DPoPDowngrade}, `DPoP realm="scopegate", error="invalid_token", error_description="a DPoP-bound token was presented as a Bearer token", algs="ES256 ES384 ES512 RS256 PS256 EdDSA"`},
		{decision.Decision{Code: decision.DPoPNonceRequired, DPoPNonce: "n1"}, `DPoP realm="scopegate", error="use_dpop_nonce", error_description="the DPoP proof must carry the nonce the server issued in DPoP-Nonce", algs="ES256 ES384 ES512 RS256 PS256 EdDSA"`},
	} {
		t.Run(tc.d.Code.String(), func(t *testing.T) {
			if got := envoy.WWWAuthenticate(&tc.d); got != tc.challenge {
				t.Fatalf("challenge\n got %s\nwant %s", got, tc.challenge)
			}
			w := httptest.NewRecorder()
			h.Write(w, &tc.d)
			if got := w.Header().Get("Www-Authenticate"); got != tc.challenge {
				t.Fatalf("forward-auth challenge %q", got)
			}
			if got := w.Header().Get("DPoP-Nonce"); got != tc.d.DPoPNonce {
				t.Fatalf("forward-auth DPoP-Nonce %q, want %q", got, tc.d.DPoPNonce)
			}
			nonce := func(d *decision.Decision) (string, bool) {
				found := ""
				for _, o := range r.Response(d).GetDeniedResponse().GetHeaders() {
					if strings.EqualFold(o.GetHeader().GetKey(), "dpop-nonce") {
						found = o.GetHeader().GetValue()
					}
				}
				return found, found != ""
			}
			if got, _ := nonce(&tc.d); got != tc.d.DPoPNonce {
				t.Fatalf("ext_authz DPoP-Nonce %q, want %q", got, tc.d.DPoPNonce)
			}
			// The same deny without a nonce must not carry the last one.
			bare := tc.d
			bare.DPoPNonce = ""
			if got, ok := nonce(&bare); ok {
				t.Fatalf("a cached deny kept the nonce %q", got)
			}
		})
	}
}
