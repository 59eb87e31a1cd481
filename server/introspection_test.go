package server

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/scopegate/scopegate/decision/decisiontest"
	"github.com/scopegate/scopegate/store/introspect/introspecttest"
)

// Opaque tokens through the server: an issuer configured by discovery
// alone, whose opaque tokens are introspected at the endpoint its
// document names, answered through ext_authz and forward-auth alike.

const introspectSecretEnv = "SCOPEGATE_TEST_INTROSPECT_SECRET"

func introspectionPolicy(issuer string) string {
	return fmt.Sprintf(`version: opaque
issuers:
  - issuer: %s
    discovery: true
    audiences: [%s]
    algorithms: [ES256]
    introspection:
      client_id: %s
      client_secret_env: %s
      cache_ttl: 1m
      negative_cache_ttl: 100ms
      timeout: 500ms
routes:
  - name: orders-read
    match: {methods: [GET], path: "/orders/{id}"}
    require: {all_of: [orders:read]}
default: deny
`, issuer, atkAudience, introspecttest.ClientID, introspectSecretEnv)
}

type opaqueFixture struct {
	as     *introspecttest.AS
	f      *faultServer
	signer *decisiontest.Signer
}

func startOpaque(t *testing.T) *opaqueFixture {
	t.Setenv(introspectSecretEnv, introspecttest.ClientSecret)
	signer := faultSigner(t, "k1")
	as := introspecttest.New(decisiontest.JWKS(signer))
	t.Cleanup(as.Close)
	f, err := startFaultServer(t, introspectionPolicy(as.Issuer()), nil)
	if err != nil {
		t.Fatal(err)
	}
	return &opaqueFixture{as: as, f: f, signer: signer}
}

func (o *opaqueFixture) opaque(scope string) string {
	now := time.Now()
	return o.as.Mint(map[string]any{"scope": scope, "client_id": "app", "sub": "alice", "aud": atkAudience,
		"exp": now.Add(time.Hour).Unix(), "iat": now.Unix(), "jti": decisiontest.RandomID()})
}

// forwardAuth decides GET path with tok through the forward-auth handler
// and returns the status and reason.
func (o *opaqueFixture) forwardAuth(t *testing.T, path, tok string) (int, string) {
	t.Helper()
	w := httptest.NewRecorder()
	r := httptest.NewRequest("GET", "/check", nil)
	r.Header.Set("X-Original-Method", "GET")
	r.Header.Set("X-Original-URI", path)
	r.Header.Set("Authorization", "Bearer "+tok)
	o.f.srv.HTTPHandler().ServeHTTP(w, r)
	return w.Code, w.Header().Get("X-Scopegate-Reason")
}

func TestIntrospectionThroughEveryProtocol(t *testing.T) {
	o := startOpaque(t)
	read, write := o.opaque("orders:read"), o.opaque("orders:write")
	jwt, err := o.signer.Mint(decisiontest.StandardClaims(o.as.Issuer(), atkAudience, "alice", "app", "orders:read", time.Hour, time.Now()), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, tok, code string
		status          int
	}{
		{"opaque allowed", read, "ok", 200},
		{"opaque without the scope", write, "insufficient_scope", 403},
		{"unknown opaque", "not-a-token-the-as-issued", "token_invalid", 401},
		{"JWT of the same issuer", jwt, "ok", 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := o.f.decide(t, "/orders/1", tc.tok); got != tc.code {
				t.Errorf("ext_authz: %s, want %s", got, tc.code)
			}
			if status, reason := o.forwardAuth(t, "/orders/1", tc.tok); status != tc.status || reason != tc.code && tc.code != "ok" {
				t.Errorf("forward-auth: %d %s, want %d %s", status, reason, tc.status, tc.code)
			}
		})
	}
	if v, ok := metric(t, o.f.srv, metricIntrospectionRequests); !ok || v < 1 {
		t.Errorf("%s = %v, %v", metricIntrospectionRequests, v, ok)
	}
}

func TestIntrospectionRevokedAtTheAS(t *testing.T) {
	o := startOpaque(t)
	tok := o.opaque("orders:read")
	if got := o.f.decide(t, "/orders/1", tok); got != "ok" {
		t.Fatalf("before revocation: %s", got)
	}
	o.as.Revoke(tok)
	// Cached as active for cache_ttl: scopegate's own revocation is the
	// immediate one; the AS's takes effect when the answer expires. A
	// purge stands for the TTL passing.
	o.f.srv.engine.PurgeTokenCache()
	if got := o.f.decide(t, "/orders/1", tok); got != "token_invalid" {
		t.Fatalf("after revocation at the AS: %s", got)
	}
}

func TestIntrospectionASDown(t *testing.T) {
	o := startOpaque(t)
	cached := o.opaque("orders:read")
	if got := o.f.decide(t, "/orders/1", cached); got != "ok" {
		t.Fatalf("before the outage: %s", got)
	}
	o.as.SetDown(true)
	fresh := o.opaque("orders:read")
	if got := o.f.decide(t, "/orders/1", fresh); got != "introspection_unavailable" {
		t.Fatalf("ext_authz with the AS down: %s", got)
	}
	// ext_authz answers an error_response (no HTTP status): Envoy applies
	// its status_on_error, as for key_set_unavailable.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req := checkWithHeaders(map[string]string{"authorization": "Bearer " + fresh})
	resp, err := o.f.client.Check(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetErrorResponse() == nil || resp.GetDeniedResponse() != nil {
		t.Fatalf("ext_authz response %v, want an error_response", resp)
	}
	if status, reason := o.forwardAuth(t, "/orders/1", fresh); status != http.StatusServiceUnavailable || reason != "introspection_unavailable" {
		t.Fatalf("forward-auth with the AS down: %d %s", status, reason)
	}
	// A token answered before the outage stays allowed within its TTL.
	if got := o.f.decide(t, "/orders/1", cached); got != "ok" {
		t.Fatalf("cached token during the outage: %s", got)
	}
	o.as.SetDown(false)
	time.Sleep(1100 * time.Millisecond) // the breaker's shortest open time
	if got := o.f.decide(t, "/orders/1", fresh); got != "ok" {
		t.Fatalf("after the outage: %s", got)
	}
	if v, ok := metric(t, o.f.srv, metricIntrospectionFailures); !ok || v < 1 {
		t.Errorf("%s = %v, %v", metricIntrospectionFailures, v, ok)
	}
}

func TestIntrospectionSecretNeverInPolicy(t *testing.T) {
	signer := faultSigner(t, "k1")
	as := introspecttest.New(decisiontest.JWKS(signer))
	defer as.Close()
	pol := strings.Replace(introspectionPolicy(as.Issuer()), "client_secret_env: "+introspectSecretEnv, "client_secret: "+introspecttest.ClientSecret, 1)
	_, err := startFaultServer(t, pol, nil)
	if err == nil || !strings.Contains(err.Error(), "client_secret_file") || strings.Contains(err.Error(), introspecttest.ClientSecret) {
		t.Fatalf("NewServer: %v", err)
	}
	// An unset variable fails the load, naming it.
	t.Setenv(introspectSecretEnv, "")
	_, err = startFaultServer(t, introspectionPolicy(as.Issuer()), nil)
	if err == nil || !strings.Contains(err.Error(), introspectSecretEnv) {
		t.Fatalf("NewServer without the secret: %v", err)
	}
}

// TestDiscoveryMixUpNotServing: a discovery document naming another issuer
// than the policy's is refused: the server stays NOT_SERVING and the
// issuer's tokens are denied key_set_unavailable, as for a JWKS that never
// loaded.
func TestDiscoveryMixUpNotServing(t *testing.T) {
	signer := faultSigner(t, "k1")
	as := introspecttest.New(decisiontest.JWKS(signer))
	defer as.Close()
	const claimed = "https://login.example.com"
	pol := fmt.Sprintf(`issuers:
  - issuer: %s
    openid_configuration_url: %s/.well-known/openid-configuration
    audiences: [%s]
    algorithms: [ES256]
routes:
  - name: orders-read
    match: {methods: [GET], path: "/orders/{id}"}
    require: {all_of: [orders:read]}
`, claimed, as.Issuer(), atkAudience)
	f, err := startFaultServer(t, pol, func(c *Config) { c.KeyStartupTimeout = 0 })
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // the document has been fetched and refused
	if st := f.health(t); st.String() != "NOT_SERVING" {
		t.Fatalf("health %s with a mix-up document, want NOT_SERVING", st)
	}
	tok, err := signer.Mint(decisiontest.StandardClaims(claimed, atkAudience, "alice", "app", "orders:read", time.Hour, time.Now()), nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := f.decide(t, "/orders/1", tok); got != "key_set_unavailable" {
		t.Fatalf("a token of the issuer: %s, want key_set_unavailable", got)
	}
	// With the real issuer's name the same document loads.
	pol = strings.Replace(pol, "issuer: "+claimed, "issuer: "+as.Issuer(), 1)
	f2, err := startFaultServer(t, pol, nil)
	if err != nil {
		t.Fatal(err)
	}
	if st := f2.health(t); st.String() != "SERVING" {
		t.Fatalf("health %s with the issuer's own document, want SERVING", st)
	}
}
