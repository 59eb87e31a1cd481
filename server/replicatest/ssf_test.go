package replicatest_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/scopegate/scopegate/decision/decisiontest"
	"github.com/scopegate/scopegate/server/servertest/freeport"
)

const (
	txIssuer   = "https://transmitter.test/"
	rxAudience = "https://scopegate.test/"
	pushToken  = "push-secret-for-tests"
)

// transmitter is an SSF transmitter on loopback: it signs SETs with its own
// key and serves its configuration document, JWKS and a poll endpoint.
type transmitter struct {
	t      *testing.T
	signer *decisiontest.Signer
	srv    *http.Server
	lis    net.Listener
	url    string
	mu     sync.Mutex
	queue  map[string]string // jti -> SET, until acknowledged
	acked  []string
	polls  int
	// pollsBy counts polls by bearer token, and firstPoll is when each
	// token first polled: who polled, and when it took over.
	pollsBy   map[string]int
	firstPoll map[string]time.Time
	mgmt      streamMgmt // ssf_stream_test.go
}

func newTransmitter(t *testing.T) *transmitter {
	s, err := decisiontest.NewECSigner("tx-1")
	must(t, err)
	tx := &transmitter{t: t, signer: s, queue: map[string]string{}, pollsBy: map[string]int{}, firstPoll: map[string]time.Time{}}
	tx.lis, err = net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	tx.url = "http://" + tx.lis.Addr().String()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/ssf-configuration", func(w http.ResponseWriter, _ *http.Request) {
		tx.mu.Lock()
		tx.mgmt.configReads++
		tx.mu.Unlock()
		_ = json.NewEncoder(w).Encode(map[string]any{"issuer": txIssuer, "jwks_uri": tx.url + "/jwks",
			"delivery_methods_supported": []string{"urn:ietf:rfc:8935", "urn:ietf:rfc:8936"},
			"configuration_endpoint":     tx.url + "/ssf/stream", "status_endpoint": tx.url + "/ssf/status",
			"add_subject_endpoint": tx.url + "/ssf/subjects:add", "remove_subject_endpoint": tx.url + "/ssf/subjects:remove",
			"verification_endpoint": tx.url + "/ssf/verify"})
	})
	mux.HandleFunc("GET /jwks", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(decisiontest.JWKS(s)) })
	mux.HandleFunc("POST /poll", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Ack []string `json:"ack"`
		}
		_ = json.NewDecoder(r.Body).Decode(&req)
		tx.mu.Lock()
		defer tx.mu.Unlock()
		tx.polls++
		who := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
		if tx.pollsBy[who]++; tx.pollsBy[who] == 1 {
			tx.firstPoll[who] = time.Now()
		}
		for _, j := range req.Ack {
			delete(tx.queue, j)
			tx.acked = append(tx.acked, j)
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"sets": tx.queue, "moreAvailable": false})
	})
	tx.serveStreams(mux)
	tx.srv = &http.Server{Handler: mux}
	go func() { _ = tx.srv.Serve(tx.lis) }()
	t.Cleanup(func() { _ = tx.srv.Close() })
	return tx
}

// set signs a SET with one event about subject sub.
func (tx *transmitter) set(signer *decisiontest.Signer, jti, typ string, sub map[string]any, extra map[string]any, iat time.Time) string {
	// event_timestamp to the microsecond (NumericDate may be fractional),
	// so that the replicas' enforcement lag is measured from it exactly.
	ev := map[string]any{"event_timestamp": float64(iat.UnixMicro()) / 1e6}
	for k, v := range extra {
		ev[k] = v
	}
	raw, err := signer.Mint(decisiontest.Claims{"iss": txIssuer, "aud": rxAudience, "iat": iat.Unix(), "jti": jti,
		"sub_id": sub, "events": map[string]any{typ: ev}}, map[string]any{"typ": "secevent+jwt"})
	must(tx.t, err)
	return raw
}

func (tx *transmitter) enqueue(jti, set string) {
	tx.mu.Lock()
	tx.queue[jti] = set
	tx.mu.Unlock()
}

func (tx *transmitter) ackedAll(jti string) bool {
	tx.mu.Lock()
	defer tx.mu.Unlock()
	return slices.Contains(tx.acked, jti)
}

func user(sub string) map[string]any {
	return map[string]any{"format": "iss_sub", "iss": issuer, "sub": sub}
}

const (
	credentialChange = "https://schemas.openid.net/secevent/caep/event-type/credential-change"
	sessionRevoked   = "https://schemas.openid.net/secevent/caep/event-type/session-revoked"
	accountDisabled  = "https://schemas.openid.net/secevent/risc/event-type/account-disabled"
)

// ssfConfigHead is the start of a transmitter's entry in --ssf-config.
func ssfConfigHead(tx *transmitter) string {
	return fmt.Sprintf(`transmitters:
  - name: test-idp
    issuer: %s
    configuration_url: %s/.well-known/ssf-configuration
    audience: [%s]
    token_issuer: %s
    revocation_ttl: 24h
`, txIssuer, tx.url, rxAudience, issuer)
}

func writeSSFConfig(t *testing.T, dir string, tx *transmitter, poll bool) string {
	cfg := ssfConfigHead(tx) + "    push:\n      token: {file: push.token}\n"
	if poll {
		cfg += fmt.Sprintf("    poll:\n      url: %s/poll\n      interval: 20ms\n", tx.url)
	}
	must(t, os.WriteFile(filepath.Join(dir, "push.token"), []byte(pushToken+"\n"), 0o600))
	name := "ssf.yaml"
	if poll {
		name = "ssf-poll.yaml"
	}
	p := filepath.Join(dir, name)
	must(t, os.WriteFile(p, []byte(cfg), 0o600))
	return p
}

func push(t *testing.T, addr, token, set string) (int, string) {
	req, err := http.NewRequest(http.MethodPost, "http://"+addr+"/ssf/events", strings.NewReader(set))
	must(t, err)
	req.Header.Set("Content-Type", "application/secevent+jwt")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	must(t, err)
	defer resp.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	return resp.StatusCode, b.String()
}

func (c *cluster) mintAt(sub, sid string, iat time.Time) string {
	c.t.Helper()
	cl := decisiontest.StandardClaims(issuer, audience, sub, "web-app", "items:read", time.Hour, time.Now())
	cl["iat"] = iat.Unix()
	if sid != "" {
		cl["sid"] = sid
	}
	tok, err := c.signer.Mint(cl, nil)
	must(c.t, err)
	return tok
}

func ssfHealth(t *testing.T, addr string) healthpb.HealthCheckResponse_ServingStatus {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	must(t, err)
	defer conn.Close()
	resp, err := healthpb.NewHealthClient(conn).Check(t.Context(), &healthpb.HealthCheckRequest{Service: "scopegate.ssf"})
	if err != nil {
		return healthpb.HealthCheckResponse_UNKNOWN
	}
	return resp.GetStatus()
}

func TestSSFEventsRevokeOnBothReplicas(t *testing.T) {
	dsn := pgDSN(t)
	c := newCluster(t)
	tx := newTransmitter(t)
	pushCfg := writeSSFConfig(t, c.dir, tx, false)
	pollCfg := writeSSFConfig(t, c.dir, tx, true)
	pushA := freeport.Addr(t)
	a := c.replica("replica-a", dsn, "--ssf-config", pushCfg, "--ssf-addr", pushA)
	b := c.replica("replica-b", dsn, "--ssf-config", pollCfg, "--ssf-addr", freeport.Addr(t)) // B polls
	both := []*replica{a, b}
	waitDenied := func(tok string, within time.Duration) (time.Duration, bool) {
		return waitFor(within, func() bool {
			for _, r := range both {
				if allow, _ := r.mustDecide(tok); allow {
					return false
				}
			}
			return true
		})
	}
	allowedOnBoth := func(what, tok string) {
		t.Helper()
		for _, r := range both {
			if allow, code := r.mustDecide(tok); !allow {
				t.Errorf("%s: %s denies: %s", what, r.name, code)
			}
		}
	}
	now := time.Now()

	// Credential change: tokens issued before it die on both, later ones live.
	before := c.mintAt("carol", "", now.Add(-time.Minute))
	after := c.mintAt("carol", "", now.Add(time.Second))
	bystander := c.mintAt("bob", "", now.Add(-time.Minute))
	cc := tx.set(tx.signer, "cc-1", credentialChange, user("carol"), map[string]any{"credential_type": "password", "change_type": "update"}, now)
	if code, body := push(t, pushA, pushToken, cc); code != http.StatusAccepted {
		t.Fatalf("push: %d %s", code, body)
	}
	if d, ok := waitDenied(before, propagationBound); !ok {
		t.Fatalf("credential change not enforced on both within %v", d)
	}
	allowedOnBoth("token issued after the credential change", after)
	allowedOnBoth("another subject", bystander)

	// Replays, forged and mis-addressed SETs change nothing.
	victim := c.mintAt("dave", "", now.Add(-time.Minute))
	forger, err := decisiontest.NewECSigner("tx-1")
	must(t, err)
	refusals := map[string]struct {
		token, set, wantErr string
		wantCode            int
	}{
		"replay":         {token: pushToken, set: cc, wantCode: http.StatusAccepted},
		"forged":         {token: pushToken, set: tx.set(forger, "f-1", accountDisabled, user("dave"), nil, now), wantCode: 400, wantErr: "invalid_key"},
		"wrong audience": {token: pushToken, set: mustSET(t, tx.signer, "aud-1", "https://elsewhere.test/", txIssuer), wantCode: 400, wantErr: "invalid_audience"},
		"wrong issuer":   {token: pushToken, set: mustSET(t, tx.signer, "iss-1", rxAudience, "https://evil.test/"), wantCode: 400, wantErr: "invalid_issuer"},
		"no bearer":      {set: tx.set(tx.signer, "nb-1", accountDisabled, user("dave"), nil, now), wantCode: 401, wantErr: "authentication_failed"},
		"wrong bearer":   {token: "guess", set: tx.set(tx.signer, "wb-1", accountDisabled, user("dave"), nil, now), wantCode: 401, wantErr: "authentication_failed"},
		"stale":          {token: pushToken, set: tx.set(tx.signer, "old-1", accountDisabled, user("dave"), nil, now.Add(-2*time.Hour)), wantCode: 400, wantErr: "invalid_request"},
		"unknown event":  {token: pushToken, set: tx.set(tx.signer, "u-1", "https://example.test/event-type/odd", user("dave"), nil, now), wantCode: http.StatusAccepted},
	}
	for name, rc := range refusals {
		code, body := push(t, pushA, rc.token, rc.set)
		if code != rc.wantCode || !strings.Contains(body, rc.wantErr) {
			t.Errorf("%s: %d %s; want %d %s", name, code, body, rc.wantCode, rc.wantErr)
		}
	}
	time.Sleep(200 * time.Millisecond)
	allowedOnBoth("after refused SETs", victim)
	allowedOnBoth("after a replayed credential change", after)

	// Poll delivery: B polls the transmitter; the session's tokens die on
	// both, another session of the same user lives; the SET is acknowledged.
	inSession := c.mintAt("erin", "s-1", now.Add(-time.Minute))
	otherSession := c.mintAt("erin", "s-2", now.Add(-time.Minute))
	sr := tx.set(tx.signer, "sr-1", sessionRevoked, map[string]any{"format": "complex", "user": user("erin"), "session": map[string]any{"format": "opaque", "id": "s-1"}}, nil, now)
	tx.enqueue("sr-1", sr)
	if d, ok := waitDenied(inSession, propagationBound+time.Second); !ok {
		t.Fatalf("polled session-revoked not enforced on both within %v", d)
	}
	allowedOnBoth("another session", otherSession)
	if _, ok := waitFor(2*time.Second, func() bool { return tx.ackedAll("sr-1") }); !ok {
		t.Error("the polled SET was never acknowledged")
	}

	// Lag, event received to denied on every replica, over many events.
	const n = 200
	lags := make([]time.Duration, 0, n)
	for i := range n {
		sub := fmt.Sprintf("lag-%d", i)
		tok := c.mintAt(sub, "", now.Add(-time.Minute))
		set := tx.set(tx.signer, "lag-"+sub, accountDisabled, user(sub), nil, time.Now())
		start := time.Now()
		if code, body := push(t, pushA, pushToken, set); code != http.StatusAccepted {
			t.Fatalf("push %d: %d %s", i, code, body)
		}
		if _, ok := waitDenied(tok, propagationBound); !ok {
			t.Fatalf("event %d not enforced on both within %v", i, propagationBound)
		}
		lags = append(lags, time.Since(start))
	}
	slices.Sort(lags)
	p50, p99 := lags[n/2], lags[n*99/100-1]
	t.Logf("SSF push lag, event received to denied on both replicas, %d events: p50 %v, p99 %v, max %v", n, p50, p99, lags[n-1])
	// The 100 ms goal is held only when the test runs alone (.ci/run's
	// measured step sets SCOPEGATE_TEST_LAG_BOUND): beside other packages'
	// tests on two cores the lag measures the machine, not scopegate.
	bound := os.Getenv("SCOPEGATE_TEST_LAG_BOUND") != ""
	if p99 > 100*time.Millisecond {
		if bound {
			t.Errorf("p99 lag %v exceeds 100ms", p99)
		} else {
			t.Logf("p99 lag %v exceeds 100ms (not held: SCOPEGATE_TEST_LAG_BOUND is unset)", p99)
		}
	}
	// Each replica measured it too: A, which received the pushes, and B,
	// which learned them from the store.
	for _, m := range []struct {
		r   *replica
		via string
	}{{a, "push"}, {b, "sync"}} {
		count, p50, p99 := m.r.lagQuantiles(t, m.via)
		t.Logf("%s: scopegate_ssf_enforcement_lag_seconds{via=%q}: %v events, p50 <= %gs, p99 <= %gs (bucket bounds)", m.r.name, m.via, count, p50, p99)
		if count < n {
			t.Errorf("%s recorded %v enforcements via %s; want at least %d", m.r.name, count, m.via, n)
		}
		if p99 > 0.1 && bound {
			t.Errorf("%s: p99 enforcement lag via %s above 100ms (bucket %gs)", m.r.name, m.via, p99)
		}
	}
	if polled, _, _ := b.lagQuantiles(t, "poll"); polled < 1 {
		t.Errorf("replica-b polled the session-revoked event but recorded no enforcement via poll")
	}

	// A transmitter outage shows in health and changes no decision.
	if st := ssfHealth(t, b.grpcAddr); st != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("B's SSF health before the outage: %v", st)
	}
	_ = tx.srv.Close()
	if _, ok := waitFor(10*time.Second, func() bool { return ssfHealth(t, b.grpcAddr) == healthpb.HealthCheckResponse_NOT_SERVING }); !ok {
		t.Error("B's SSF health does not show the transmitter outage")
	}
	conn, err := grpc.NewClient(b.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	must(t, err)
	defer conn.Close()
	if resp, err := healthpb.NewHealthClient(conn).Check(t.Context(), &healthpb.HealthCheckRequest{}); err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("the decision service's health during the outage: %v %v", resp.GetStatus(), err)
	}
	allowedOnBoth("during the outage", after)
	for _, r := range both {
		if allow, _ := r.mustDecide(before); allow {
			t.Errorf("%s: a revoked token is allowed during the outage", r.name)
		}
	}
}

// mustSET signs a SET with the given aud and iss.
func mustSET(t *testing.T, s *decisiontest.Signer, jti, aud, iss string) string {
	raw, err := s.Mint(decisiontest.Claims{"iss": iss, "aud": aud, "iat": time.Now().Unix(), "jti": jti,
		"sub_id": user("dave"), "events": map[string]any{accountDisabled: map[string]any{}}}, map[string]any{"typ": "secevent+jwt"})
	must(t, err)
	return raw
}
