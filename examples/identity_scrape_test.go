package examples_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	dto "github.com/prometheus/client_model/go"

	"github.com/scopegate/scopegate/decision"
	"github.com/scopegate/scopegate/decision/decisiontest"
	"github.com/scopegate/scopegate/decision/ssf"
	"github.com/scopegate/scopegate/server"
	"github.com/scopegate/scopegate/server/servertest/freeport"
	"github.com/scopegate/scopegate/store"
	"github.com/scopegate/scopegate/store/audit"
	"github.com/scopegate/scopegate/store/introspect/introspecttest"
)

// The identity side of a deployment, for the dashboard's "Tokens and
// identity events" row: an issuer of opaque tokens introspected at an
// RFC 7662 authorization server, and a Shared Signals transmitter whose
// stream scopegate manages and which pushes it security events.

const (
	identitySecretEnv = "SCOPEGATE_TEST_DASHBOARD_INTROSPECT_SECRET"
	ssfIssuer         = "https://idp-events.test/"
	ssfAudience       = "https://scopegate.test/"
	ssfPushToken      = "push-token-for-the-dashboard-test"
)

func identityPolicy(issuer string) string {
	return fmt.Sprintf(`version: identity
issuers:
  - issuer: %s
    discovery: true
    audiences: [orders-api]
    algorithms: [ES256]
    introspection:
      client_id: %s
      client_secret_env: %s
      cache_ttl: 1m
      timeout: 500ms
routes:
  - name: orders-read
    match: {methods: [GET], path: "/orders/{id}"}
    require: {all_of: [orders:read]}
default: deny
`, issuer, introspecttest.ClientID, identitySecretEnv)
}

// streamTransmitter serves an SSF configuration document and a Stream
// Management API holding one push stream, always enabled.
func streamTransmitter(t *testing.T) *httptest.Server {
	var srv *httptest.Server
	conf := func() map[string]any {
		return map[string]any{"stream_id": "st-1", "iss": ssfIssuer, "aud": ssfAudience,
			"delivery":         map[string]any{"method": "urn:ietf:rfc:8935", "endpoint_url": "http://scopegate.test/ssf/events"},
			"events_requested": []string{ssf.SessionRevoked}, "events_delivered": []string{ssf.SessionRevoked}}
	}
	write := func(w http.ResponseWriter, v any) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(v)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/ssf-configuration", func(w http.ResponseWriter, _ *http.Request) {
		write(w, map[string]any{"issuer": ssfIssuer, "configuration_endpoint": srv.URL + "/stream", "status_endpoint": srv.URL + "/status"})
	})
	mux.HandleFunc("POST /stream", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusCreated); write(w, conf()) })
	mux.HandleFunc("GET /stream", func(w http.ResponseWriter, _ *http.Request) { write(w, conf()) })
	mux.HandleFunc("PATCH /stream", func(w http.ResponseWriter, _ *http.Request) { write(w, conf()) })
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, _ *http.Request) {
		write(w, map[string]string{"stream_id": "st-1", "status": "enabled"})
	})
	srv = httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

// scrapeIdentity runs scopegate with that issuer and transmitter on
// loopback, decides opaque tokens (introspected, then from the cache, then
// with the authorization server down), receives one security event and
// refuses another, and returns a scrape of its /metrics once each of
// these is counted.
func scrapeIdentity(t *testing.T) map[string]*dto.MetricFamily {
	t.Helper()
	t.Setenv(identitySecretEnv, introspecttest.ClientSecret)
	tokenSigner, err := decisiontest.NewECSigner("as-1")
	if err != nil {
		t.Fatal(err)
	}
	as := introspecttest.New(decisiontest.JWKS(tokenSigner))
	t.Cleanup(as.Close)
	policy := filepath.Join(t.TempDir(), "identity.yaml")
	if err := os.WriteFile(policy, []byte(identityPolicy(as.Issuer())), 0o600); err != nil {
		t.Fatal(err)
	}

	setSigner, err := decisiontest.NewECSigner("tx-1")
	if err != nil {
		t.Fatal(err)
	}
	tx := streamTransmitter(t)
	pushAddr := freeport.Addr(t)
	base, conn := runServer(t, server.Config{
		PolicyPath: policy,
		Audit:      server.AuditConfig{Sinks: []audit.Sink{audit.NewWriterSink("discard", io.Discard)}},
		Revocation: server.RevocationConfig{Store: store.NewMemoryRevocations(nil)},
		SSF: server.SSFConfig{Addr: pushAddr, Transmitters: []server.SSFTransmitter{{
			Name: "idp", ConfigurationURL: tx.URL + "/.well-known/ssf-configuration", PushToken: ssfPushToken,
			Transmitter: ssf.Transmitter{Issuer: ssfIssuer, Audience: []string{ssfAudience}, TokenIssuer: as.Issuer(), RevocationTTL: 24 * time.Hour,
				Keys: decision.StaticKeys{{Kid: setSigner.Kid, Alg: setSigner.Alg, Public: setSigner.Key.Public()}}},
			Stream: server.SSFStream{Manage: true, EndpointURL: "http://" + pushAddr + "/ssf/events", StatusInterval: time.Hour},
		}}},
	})
	client := authv3.NewAuthorizationClient(conn)

	opaque := func() string {
		now := time.Now()
		return as.Mint(map[string]any{"scope": "orders:read", "client_id": "web-app", "sub": "bob", "aud": "orders-api",
			"exp": now.Add(time.Hour).Unix(), "iat": now.Unix(), "jti": decisiontest.RandomID()})
	}
	tok := opaque()
	for range 2 { // introspected, then answered from the cache
		if allowed, body := extAuthz(t, client, "GET", "/orders/1", tok); !allowed {
			t.Fatalf("an active opaque token was denied: %s", body)
		}
	}
	as.SetDown(true)
	if allowed, _ := extAuthz(t, client, "GET", "/orders/1", opaque()); allowed {
		t.Fatal("an opaque token was allowed with its introspection endpoint down")
	}

	pushSET := func(jti, aud string) int {
		raw, err := setSigner.Mint(decisiontest.Claims{"iss": ssfIssuer, "aud": aud, "iat": time.Now().Unix(), "jti": jti,
			"sub_id": map[string]any{"format": "iss_sub", "iss": as.Issuer(), "sub": "alice"},
			"events": map[string]any{ssf.SessionRevoked: map[string]any{"event_timestamp": time.Now().Unix()}}},
			map[string]any{"typ": "secevent+jwt"})
		if err != nil {
			t.Fatal(err)
		}
		req, err := http.NewRequest(http.MethodPost, "http://"+pushAddr+"/ssf/events", strings.NewReader(raw))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/secevent+jwt")
		req.Header.Set("Authorization", "Bearer "+ssfPushToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := pushSET("set-1", ssfAudience); code != http.StatusAccepted {
		t.Fatalf("push of a valid SET: %d, want 202", code)
	}
	if code := pushSET("set-2", "https://someone-else.test/"); code != http.StatusBadRequest {
		t.Fatalf("push of a SET for another audience: %d, want 400", code)
	}

	// The stream's status is read in the background: scrape until it and
	// the event's enforcement are shown.
	deadline := time.Now().Add(10 * time.Second)
	for {
		fams := scrape(t, base)
		enabled := series(fams, "scopegate_ssf_stream_status", "transmitter", "idp", "status", "enabled")
		if len(enabled) == 1 && enabled[0]["__value__"] == "1" && len(series(fams, "scopegate_ssf_events_applied_total")) > 0 {
			return fams
		}
		if time.Now().After(deadline) {
			t.Fatalf("the stream was not enabled, or the event not applied: %v %v",
				series(fams, "scopegate_ssf_stream_status"), series(fams, "scopegate_ssf_events_refused_total"))
		}
		time.Sleep(20 * time.Millisecond)
	}
}
