package envoy_test

import (
	"context"
	"testing"
	"time"

	"github.com/scopegate/scopegate/decision"
	"github.com/scopegate/scopegate/decision/decisiontest"
	"github.com/scopegate/scopegate/envoy"
)

const stepUpPolicy = `
issuers:
  - issuer: https://issuer.test
    audiences: [api]
    jwks_file: jwks.json
    algorithms: [RS256]
routes:
  - name: refund
    match: {methods: [POST], path: "/orders/{id}/refund"}
    require: {all_of: [orders:refund]}
    when:
      step_up: {acr: [urn:mfa], max_auth_age: 15m}
`

// TestStepUpChallenge decides a real step-up deny and checks the RFC 9470
// challenge built from it, through both the shared builder and the ext_authz
// response.
func TestStepUpChallenge(t *testing.T) {
	now := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	eng, signer := decisiontest.SignedEngine(t, stepUpPolicy, now)

	cases := map[string]struct {
		claims decisiontest.Claims
		want   string
	}{
		"no acr": {
			claims: decisiontest.Claims{"auth_time": now.Add(-time.Minute).Unix()},
			want:   `acr_values="urn:mfa", max_age=900`,
		},
		"authentication too old": {
			claims: decisiontest.Claims{"acr": "urn:mfa", "auth_time": now.Add(-time.Hour).Unix()},
			want:   `acr_values="urn:mfa", max_age=900`,
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			c := decisiontest.StandardClaims("https://issuer.test", "api", "alice", "web", "orders:refund", time.Hour, now)
			for k, v := range tc.claims {
				c[k] = v
			}
			tok, err := signer.Mint(c, nil)
			if err != nil {
				t.Fatal(err)
			}
			d := eng.Decide(context.Background(), &decision.Request{Method: "POST", Path: "/orders/1/refund", Authorization: "Bearer " + tok, AuthorizationCount: 1})
			if d.Code != decision.InsufficientUserAuthentication {
				t.Fatalf("code = %s (%s), want insufficient_user_authentication", d.Code, d.Message())
			}
			got := envoy.WWWAuthenticate(&d)
			prefix := `Bearer realm="scopegate", error="insufficient_user_authentication", error_description="`
			if len(got) < len(prefix) || got[:len(prefix)] != prefix {
				t.Fatalf("challenge = %q, want prefix %q", got, prefix)
			}
			if tail := got[len(got)-len(tc.want):]; tail != tc.want {
				t.Fatalf("challenge = %q, want it to end with %q", got, tc.want)
			}
			resp := envoy.NewResponder(envoy.ResponderOptions{}).Response(&d)
			hr := resp.GetDeniedResponse()
			if hr == nil || hr.GetStatus().GetCode() != 401 {
				t.Fatalf("denied response = %v, want HTTP 401", hr)
			}
			if h := headerMap(t, hr.GetHeaders()); h[envoy.HeaderWWWAuthenticate] != got {
				t.Fatalf("ext_authz www-authenticate = %q, want %q", h[envoy.HeaderWWWAuthenticate], got)
			}
		})
	}
}
