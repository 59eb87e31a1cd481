package server

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/scopegate/scopegate/decision"
	"github.com/scopegate/scopegate/decision/decisiontest"
)

// The attack corpus: every request an attacker controls (the token bytes,
// every header, the path) is sent through the real ext_authz gRPC server on
// loopback, and each must be denied with one precise reason, in-band (never
// a gRPC error), with the right HTTP status. The few allowed cases are the
// ones the standards say must be allowed (aud arrays, a lower-case scheme).

const (
	atkIssuer   = "https://issuer.test/"
	atkAudience = "orders-api"
)

// atkEnv is a server serving testdata/attack-policy.yaml with a JWKS of
// two EC keys and one RSA key.
type atkEnv struct {
	client   authv3.AuthorizationClient
	conn     *grpc.ClientConn
	srv      *Server
	ec1, ec2 *decisiontest.Signer // published: k1, k2
	rsa      *decisiontest.Signer // published: r1
	attacker *decisiontest.Signer // unpublished, claims kid k1
	jwks     []byte
}

func atkLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func atkCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// startAttackServer serves policy (a file under testdata) on 127.0.0.1:0.
func startAttackServer(t testing.TB, policy string, edit func(*Config)) *atkEnv {
	t.Helper()
	e := &atkEnv{}
	var err error
	for _, s := range []struct {
		dst  **decisiontest.Signer
		kind string
		kid  string
	}{{&e.ec1, "ec", "k1"}, {&e.ec2, "ec", "k2"}, {&e.rsa, "rsa", "r1"}, {&e.attacker, "ec", "k1"}} {
		if *s.dst, err = decisiontest.NewSignerOfKind(s.kind, s.kid); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	pol, err := os.ReadFile(filepath.Join("testdata", policy))
	if err != nil {
		t.Fatal(err)
	}
	e.jwks = decisiontest.JWKS(e.ec1, e.ec2, e.rsa)
	for name, data := range map[string][]byte{"policy.yaml": pol, "jwks.json": e.jwks} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cfg := Config{PolicyPath: filepath.Join(dir, "policy.yaml"), Logger: atkLogger(), ShutdownTimeout: time.Second}
	if edit != nil {
		edit(&cfg)
	}
	srv, err := NewServer(cfg)
	if err != nil {
		t.Fatalf("NewServer: %v", err)
	}
	e.srv = srv
	e.conn = serveLoopback(t, srv)
	e.client = authv3.NewAuthorizationClient(e.conn)
	return e
}

// serveLoopback serves srv on 127.0.0.1:0 until the test ends and returns
// a client connection to it.
func serveLoopback(t testing.TB, srv *Server) *grpc.ClientConn {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20), grpc.MaxCallSendMsgSize(64<<20)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn.Close()
		srv.Stop()
		if err := <-served; err != nil {
			t.Errorf("Serve returned %v", err)
		}
	})
	return conn
}

// claims returns standard claims for the attack issuer and audience.
func (e *atkEnv) claims(scope string) decisiontest.Claims {
	return decisiontest.StandardClaims(atkIssuer, atkAudience, "alice", "app", scope, time.Hour, time.Now())
}

func (e *atkEnv) mint(t testing.TB, s *decisiontest.Signer, c decisiontest.Claims, header map[string]any) string {
	t.Helper()
	tok, err := s.Mint(c, header)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// hs256 forges an HMAC token keyed with key (the issuer's public key, as
// the classic algorithm-confusion attack does).
func hs256(t testing.TB, header map[string]any, c decisiontest.Claims, key []byte) string {
	t.Helper()
	hb, err := json.Marshal(header)
	if err != nil {
		t.Fatal(err)
	}
	pb, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	input := base64.RawURLEncoding.EncodeToString(hb) + "." + base64.RawURLEncoding.EncodeToString(pb)
	m := hmac.New(sha256.New, key)
	m.Write([]byte(input))
	return input + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// atkRequest describes one ext_authz request.
type atkRequest struct {
	method, path string
	headers      map[string]string // merged form (Envoy's default)
	raw          [][2]string       // header_map form, when set
	peer         string            // source.address; "" sends none
}

func (r atkRequest) check() *authv3.CheckRequest {
	httpReq := &authv3.AttributeContext_HttpRequest{Id: "rid", Method: r.method, Path: r.path, Host: "api.test", Scheme: "https"}
	if r.raw != nil {
		hm := &corev3.HeaderMap{}
		for _, kv := range r.raw {
			hm.Headers = append(hm.Headers, &corev3.HeaderValue{Key: kv[0], RawValue: []byte(kv[1])})
		}
		httpReq.HeaderMap = hm
	} else {
		h := map[string]string{":method": r.method, ":path": r.path, ":authority": "api.test"}
		for k, v := range r.headers {
			h[k] = v
		}
		httpReq.Headers = h
	}
	attrs := &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{Http: httpReq}}
	if r.peer != "" {
		attrs.Source = &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
			SocketAddress: &corev3.SocketAddress{Address: r.peer, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 40000}},
		}}}
	}
	return &authv3.CheckRequest{Attributes: attrs}
}

// atkWant is the expected outcome.
type atkWant struct {
	allow bool
	code  decision.Code
	// message, when set, must appear in the deny body's message.
	message string
}

// atkVerdict is what came back.
type atkVerdict struct {
	allow   bool
	code    string
	http    int
	message string
	body    string
}

// send runs one Check and checks the envelope every answer must have: no
// RPC error, a reason header equal to the status message, an HTTP status
// that matches the code, and never the token in the answer.
func send(t *testing.T, c authv3.AuthorizationClient, req *authv3.CheckRequest, secrets ...string) atkVerdict {
	t.Helper()
	resp, err := c.Check(atkCtx(t), req)
	if err != nil {
		t.Fatalf("Check returned an RPC error (Envoy would treat it as a transport failure): %v", err)
	}
	for _, s := range secrets {
		if len(s) > 16 && strings.Contains(resp.String(), s) {
			t.Fatal("the response echoes the token")
		}
	}
	if resp.GetStatus().GetCode() == int32(codes.OK) {
		if resp.GetOkResponse() == nil {
			t.Fatalf("allow without ok_response: %v", resp)
		}
		return atkVerdict{allow: true, code: "ok", http: 200}
	}
	v := atkVerdict{code: resp.GetStatus().GetMessage()}
	hr := resp.GetDeniedResponse()
	if hr == nil {
		hr = resp.GetErrorResponse()
	}
	if hr == nil {
		t.Fatalf("deny without denied_response or error_response: %v", resp)
	}
	v.http = int(hr.GetStatus().GetCode())
	if resp.GetErrorResponse() != nil {
		v.http = 500 // Envoy applies status_on_error
	}
	reason := ""
	for _, h := range hr.GetHeaders() {
		if h.GetHeader().GetKey() == "x-scopegate-reason" {
			reason = h.GetHeader().GetValue()
		}
	}
	if reason != v.code {
		t.Errorf("x-scopegate-reason %q, status.message %q: they must agree", reason, v.code)
	}
	v.body = hr.GetBody()
	var body struct {
		Reason  string `json:"reason"`
		Message string `json:"message"`
	}
	if err := json.Unmarshal([]byte(v.body), &body); err != nil {
		t.Errorf("deny body is not JSON: %q", v.body)
	}
	if body.Reason != v.code {
		t.Errorf("body reason %q, status.message %q", body.Reason, v.code)
	}
	v.message = body.Message
	return v
}

func (w atkWant) assert(t *testing.T, v atkVerdict) {
	t.Helper()
	if v.allow != w.allow || v.code != w.code.String() {
		t.Fatalf("allow=%v code=%s (%q), want allow=%v code=%s", v.allow, v.code, v.message, w.allow, w.code)
	}
	if want := w.code.HTTPStatus(); v.http != want {
		t.Errorf("HTTP status %d, want %d", v.http, want)
	}
	if w.message != "" && !strings.Contains(v.message, w.message) {
		t.Errorf("message %q does not contain %q", v.message, w.message)
	}
}

// TestAttackCorpus sends every attack of the corpus through ext_authz.
func TestAttackCorpus(t *testing.T) {
	jkuHits := atomic.Int64{}
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		jkuHits.Add(1)
		w.WriteHeader(http.StatusOK)
	}))
	defer evil.Close()

	e := startAttackServer(t, "attack-policy.yaml", nil)
	now := time.Now()
	good := e.mint(t, e.ec1, e.claims("orders:read"), nil)
	bearer := func(tok string) map[string]string { return map[string]string{"authorization": "Bearer " + tok} }
	get := func(path, tok string) atkRequest {
		return atkRequest{method: "GET", path: path, headers: bearer(tok), peer: "10.0.0.7"}
	}
	withClaims := func(edit func(decisiontest.Claims)) string {
		c := e.claims("orders:read")
		edit(c)
		return e.mint(t, e.ec1, c, nil)
	}

	// Algorithm attacks.
	unsigned, err := decisiontest.MintUnsigned(e.claims("orders:read admin:all"), map[string]any{"kid": "k1"})
	if err != nil {
		t.Fatal(err)
	}
	noneWithSig := e.mint(t, e.ec1, e.claims("orders:read"), map[string]any{"alg": "none"})
	noneUpper := e.mint(t, e.ec1, e.claims("orders:read"), map[string]any{"alg": "NONE"})
	rsaDER, err := x509.MarshalPKIXPublicKey(e.rsa.Public())
	if err != nil {
		t.Fatal(err)
	}
	rsaPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: rsaDER})
	hsWithPEM := hs256(t, map[string]any{"alg": "HS256", "kid": "r1", "typ": "JWT"}, e.claims("orders:read admin:all"), rsaPEM)
	hsWithJWK := hs256(t, map[string]any{"alg": "HS256", "kid": "r1"}, e.claims("orders:read"), e.rsa.JWK())
	hsNoKid := hs256(t, map[string]any{"alg": "HS256"}, e.claims("orders:read"), rsaPEM)
	// ES256 header on an RSA key's kid: the key cannot verify that alg.
	crossAlg := e.mint(t, e.ec1, e.claims("orders:read"), map[string]any{"kid": "r1"})

	// kid attacks.
	unknownKid := e.mint(t, e.attacker, e.claims("orders:read"), map[string]any{"kid": "nope"})
	pathKid := e.mint(t, e.attacker, e.claims("orders:read"), map[string]any{"kid": "../../dev/null"})
	emptyKidRaw, err := e.attacker.MintRaw(map[string]any{"alg": "ES256", "kid": ""}, mustJSON(t, e.claims("orders:read")))
	if err != nil {
		t.Fatal(err)
	}
	noKid := e.mint(t, e.attacker, e.claims("orders:read"), map[string]any{"kid": ""})
	sameKidOtherKey := e.mint(t, e.attacker, e.claims("orders:read admin:all"), nil)

	// Embedded-key headers: the attacker's own key, named every way JOSE
	// allows; none may be fetched or used.
	var attackerJWK map[string]any
	if err := json.Unmarshal(e.attacker.JWK(), &attackerJWK); err != nil {
		t.Fatal(err)
	}
	jku := e.mint(t, e.attacker, e.claims("admin:all"), map[string]any{"kid": "evil", "jku": evil.URL + "/jwks.json"})
	jkuKnownKid := e.mint(t, e.attacker, e.claims("admin:all"), map[string]any{"jku": evil.URL + "/jwks.json"})
	x5u := e.mint(t, e.attacker, e.claims("admin:all"), map[string]any{"kid": "evil", "x5u": evil.URL + "/cert.pem"})
	jwkHdr, err := e.attacker.MintRaw(map[string]any{"alg": "ES256", "kid": "k1", "jwk": attackerJWK}, mustJSON(t, e.claims("admin:all")))
	if err != nil {
		t.Fatal(err)
	}
	jwkNoKid, err := e.attacker.MintRaw(map[string]any{"alg": "ES256", "jwk": attackerJWK}, mustJSON(t, e.claims("admin:all")))
	if err != nil {
		t.Fatal(err)
	}

	// Time attacks.
	expired := e.mint(t, e.ec1, decisiontest.StandardClaims(atkIssuer, atkAudience, "alice", "app", "orders:read", time.Hour, now.Add(-3*time.Hour)), nil)
	notYet := withClaims(func(c decisiontest.Claims) {
		c["nbf"] = now.Add(time.Hour).Unix()
		c["exp"] = now.Add(2 * time.Hour).Unix()
	})
	farIat := withClaims(func(c decisiontest.Claims) {
		delete(c, "nbf")
		c["iat"] = now.AddDate(50, 0, 0).Unix()
		c["exp"] = now.AddDate(50, 0, 0).Add(time.Hour).Unix()
	})
	noExp := withClaims(func(c decisiontest.Claims) { delete(c, "exp") })
	hugeExp := withClaims(func(c decisiontest.Claims) { c["exp"] = json.Number("1e400") })

	// Issuer and audience.
	wrongIss := withClaims(func(c decisiontest.Claims) { c["iss"] = "https://evil.test/" })
	issTrailing := withClaims(func(c decisiontest.Claims) { c["iss"] = "https://issuer.test" })
	noIss := withClaims(func(c decisiontest.Claims) { delete(c, "iss") })
	wrongAud := withClaims(func(c decisiontest.Claims) { c["aud"] = "billing-api" })
	audArrayOK := withClaims(func(c decisiontest.Claims) { c["aud"] = []string{"billing-api", atkAudience, "x"} })
	audArrayBad := withClaims(func(c decisiontest.Claims) { c["aud"] = []string{"billing-api", "orders-api-v2", "ORDERS-API"} })
	audEmptyArray := withClaims(func(c decisiontest.Claims) { c["aud"] = []string{} })

	// Scopes.
	scope := func(s any) string { return withClaims(func(c decisiontest.Claims) { c["scope"] = s }) }
	emptyScope := scope("")
	blankScope := scope("   \t ")
	cyrillic := scope("orders:re\u0430d")           // Cyrillic a
	fullwidthColon := scope("orders\uff1aread")     // fullwidth colon
	zeroWidth := scope("orders:read\u200b")         // zero-width space
	caseFold := scope("ORDERS:READ")                // scopes are case-sensitive
	superString := scope("orders:read:all")         // a longer scope is not the scope
	adminLookalike := scope("admin:all\u00a0x")     // NBSP joins two scopes into one
	commaJoined := scope("orders:read,admin:all")   // comma is not a separator
	scopeNotString := scope(map[string]any{"a": 1}) // wrong type

	oversized := e.mint(t, e.ec1, withPadding(e.claims("orders:read"), 17<<10), nil)

	tests := map[string]struct {
		req     atkRequest
		want    atkWant
		secrets []string
	}{
		// --- the baseline the attacks are measured against
		"baseline allow": {req: get("/orders/1", good), want: atkWant{allow: true, code: decision.OK}},

		// --- alg: none and algorithm confusion
		"alg none unsigned":                                {req: get("/orders/1", unsigned), want: atkWant{code: decision.TokenInvalid, message: "unsecured JWTs are never accepted"}},
		"alg none with a signature":                        {req: get("/orders/1", noneWithSig), want: atkWant{code: decision.AlgorithmNotAllowed, message: "alg none"}},
		"alg NONE upper case":                              {req: get("/orders/1", noneUpper), want: atkWant{code: decision.AlgorithmNotAllowed}},
		"HS256 keyed with the issuer's RSA public key PEM": {req: get("/admin/x", hsWithPEM), want: atkWant{code: decision.AlgorithmNotAllowed, message: "HMAC"}},
		"HS256 keyed with the issuer's JWK":                {req: get("/orders/1", hsWithJWK), want: atkWant{code: decision.AlgorithmNotAllowed, message: "HMAC"}},
		"HS256 without kid":                                {req: get("/orders/1", hsNoKid), want: atkWant{code: decision.AlgorithmNotAllowed}},
		"ES256 header naming the RSA key":                  {req: get("/orders/1", crossAlg), want: atkWant{code: decision.KeyNotFound}},

		// --- kid
		"kid unknown":                      {req: get("/orders/1", unknownKid), want: atkWant{code: decision.KeyNotFound, message: `no key with kid "nope"`}},
		"kid a path":                       {req: get("/orders/1", pathKid), want: atkWant{code: decision.KeyNotFound, message: "no key with kid"}},
		"kid empty string, keys ambiguous": {req: get("/orders/1", emptyKidRaw), want: atkWant{code: decision.KeyNotFound, message: "2 keys fit"}},
		"kid absent, keys ambiguous":       {req: get("/orders/1", noKid), want: atkWant{code: decision.KeyNotFound, message: "2 keys fit"}},
		"kid of the issuer, attacker key":  {req: get("/admin/x", sameKidOtherKey), want: atkWant{code: decision.TokenInvalid, message: "signature does not verify"}},

		// --- jku / x5u / jwk never followed
		"jku header, unknown kid":  {req: get("/admin/x", jku), want: atkWant{code: decision.KeyNotFound}},
		"jku header, issuer kid":   {req: get("/admin/x", jkuKnownKid), want: atkWant{code: decision.TokenInvalid}},
		"x5u header":               {req: get("/admin/x", x5u), want: atkWant{code: decision.KeyNotFound}},
		"embedded jwk, issuer kid": {req: get("/admin/x", jwkHdr), want: atkWant{code: decision.TokenInvalid, message: "signature does not verify"}},
		"embedded jwk, no kid":     {req: get("/admin/x", jwkNoKid), want: atkWant{code: decision.KeyNotFound}},

		// --- time
		"expired":        {req: get("/orders/1", expired), want: atkWant{code: decision.TokenExpired}},
		"not yet valid":  {req: get("/orders/1", notYet), want: atkWant{code: decision.TokenNotYetValid, message: "nbf"}},
		"far-future iat": {req: get("/orders/1", farIat), want: atkWant{code: decision.TokenNotYetValid, message: "iat"}},
		"no exp":         {req: get("/orders/1", noExp), want: atkWant{code: decision.TokenInvalid, message: "no exp"}},
		"exp overflows":  {req: get("/orders/1", hugeExp), want: atkWant{code: decision.TokenInvalid}},

		// --- issuer and audience
		"wrong iss":                      {req: get("/orders/1", wrongIss), want: atkWant{code: decision.IssuerUnknown}},
		"iss without trailing slash":     {req: get("/orders/1", issTrailing), want: atkWant{code: decision.IssuerUnknown}},
		"no iss":                         {req: get("/orders/1", noIss), want: atkWant{code: decision.IssuerUnknown}},
		"wrong aud":                      {req: get("/orders/1", wrongAud), want: atkWant{code: decision.AudienceMismatch}},
		"aud array with the right value": {req: get("/orders/1", audArrayOK), want: atkWant{allow: true, code: decision.OK}},
		"aud array without it":           {req: get("/orders/1", audArrayBad), want: atkWant{code: decision.AudienceMismatch}},
		"aud empty array":                {req: get("/orders/1", audEmptyArray), want: atkWant{code: decision.AudienceMismatch, message: "no aud"}},

		// --- scopes
		"empty scope":               {req: get("/orders/1", emptyScope), want: atkWant{code: decision.InsufficientScope}},
		"whitespace-only scope":     {req: get("/orders/1", blankScope), want: atkWant{code: decision.InsufficientScope}},
		"Cyrillic look-alike scope": {req: get("/orders/1", cyrillic), want: atkWant{code: decision.InsufficientScope}},
		"fullwidth colon scope":     {req: get("/orders/1", fullwidthColon), want: atkWant{code: decision.InsufficientScope}},
		"zero-width space in scope": {req: get("/orders/1", zeroWidth), want: atkWant{code: decision.InsufficientScope}},
		"upper-case scope":          {req: get("/orders/1", caseFold), want: atkWant{code: decision.InsufficientScope}},
		"longer scope":              {req: get("/orders/1", superString), want: atkWant{code: decision.InsufficientScope}},
		"NBSP-joined scopes":        {req: get("/admin/x", adminLookalike), want: atkWant{code: decision.InsufficientScope}},
		"comma-joined scopes":       {req: get("/admin/x", commaJoined), want: atkWant{code: decision.InsufficientScope}},
		"scope claim of wrong type": {req: get("/orders/1", scopeNotString), want: atkWant{code: decision.TokenInvalid, message: "claim scope"}},

		// --- where the token travels
		"token in the query string": {req: atkRequest{method: "GET", path: "/orders/1?access_token=" + good, peer: "10.0.0.7"},
			want: atkWant{code: decision.TokenMissing, message: "query string"}},
		"token in a cookie": {req: atkRequest{method: "GET", path: "/orders/1", headers: map[string]string{"cookie": "access_token=" + good}, peer: "10.0.0.7"},
			want: atkWant{code: decision.TokenMissing}},
		"two Authorization headers (raw)": {req: atkRequest{method: "GET", path: "/orders/1", peer: "10.0.0.7",
			raw: [][2]string{{":method", "GET"}, {":path", "/orders/1"}, {"authorization", "Bearer " + good}, {"Authorization", "Bearer " + unknownKid}}},
			want: atkWant{code: decision.RequestInvalid, message: "more than one Authorization"}},
		"two Authorization headers (merged)": {req: atkRequest{method: "GET", path: "/orders/1", peer: "10.0.0.7",
			headers: map[string]string{"authorization": "Bearer " + good + ",Bearer " + unknownKid}},
			want: atkWant{code: decision.RequestInvalid, message: "more than one Authorization"}},
		"lowercase bearer scheme": {req: atkRequest{method: "GET", path: "/orders/1", headers: map[string]string{"authorization": "bearer " + good}, peer: "10.0.0.7"},
			want: atkWant{allow: true, code: decision.OK}},
		"mixed-case bearer scheme": {req: atkRequest{method: "GET", path: "/orders/1", headers: map[string]string{"authorization": "BeArEr " + good}, peer: "10.0.0.7"},
			want: atkWant{allow: true, code: decision.OK}},
		"Basic scheme": {req: atkRequest{method: "GET", path: "/orders/1", headers: map[string]string{"authorization": "Basic YWxpY2U6cHc="}, peer: "10.0.0.7"},
			want: atkWant{code: decision.TokenMissing}},
		"Bearer with no token": {req: atkRequest{method: "GET", path: "/orders/1", headers: map[string]string{"authorization": "Bearer "}, peer: "10.0.0.7"},
			want: atkWant{code: decision.TokenInvalid}},
		"oversized token": {req: get("/orders/1", oversized), want: atkWant{code: decision.TokenInvalid, message: "longer than 16384 bytes"}},
		"token with a NUL": {req: atkRequest{method: "GET", path: "/orders/1", headers: map[string]string{"authorization": "Bearer " + good[:20] + "\x00" + good[20:]}, peer: "10.0.0.7"},
			want: atkWant{code: decision.TokenInvalid}},

		// --- path tricks (the token may read orders, never admin)
		"dot-dot to admin":            {req: get("/orders/../admin", good), want: atkWant{code: decision.InsufficientScope}},
		"encoded dot-dot to admin":    {req: get("/orders/%2e%2e/admin", good), want: atkWant{code: decision.PathInvalid, message: "%2E"}},
		"half-encoded dot-dot":        {req: get("/orders/.%2E/admin/users", good), want: atkWant{code: decision.PathInvalid, message: "%2E"}},
		"encoded dot-dot to public":   {req: get("/admin/%2e%2e/healthz", ""), want: atkWant{code: decision.PathInvalid, message: "%2E"}},
		"escaped reserved in a param": {req: get("/orders/%40me", good), want: atkWant{allow: true, code: decision.OK}},
		"escaped admin letters":       {req: get("/%61dmin", good), want: atkWant{code: decision.InsufficientScope}},
		"dot-dot above the root":      {req: get("/orders/../../admin", good), want: atkWant{code: decision.PathInvalid, message: "above the root"}},
		"encoded slash":               {req: get("/orders/1%2F..%2F..%2Fadmin", good), want: atkWant{code: decision.PathInvalid, message: "%2F"}},
		"encoded slash lower case":    {req: get("/orders/1%2fadmin", good), want: atkWant{code: decision.PathInvalid}},
		"encoded backslash":           {req: get("/orders/1%5C..%5Cadmin", good), want: atkWant{code: decision.PathInvalid, message: "%5C"}},
		"raw backslash":               {req: get("/orders/1\\..\\admin", good), want: atkWant{code: decision.PathInvalid}},
		"double slash admin":          {req: get("//admin", good), want: atkWant{code: decision.InsufficientScope}},
		"double slash inside":         {req: get("/orders//1", good), want: atkWant{allow: true, code: decision.OK}},
		"trailing slash same route":   {req: get("/orders/1/", good), want: atkWant{allow: true, code: decision.OK}},
		"trailing slash on admin":     {req: get("/admin/", good), want: atkWant{code: decision.InsufficientScope}},
		"semicolon parameter":         {req: get("/orders/1;/../../admin", good), want: atkWant{code: decision.PathInvalid, message: "';'"}},
		"semicolon on admin":          {req: get("/admin;jsessionid=1", good), want: atkWant{code: decision.PathInvalid}},
		"mixed case admin":            {req: get("/ADMIN/users", good), want: atkWant{code: decision.NoRoute}},
		"mixed case orders":           {req: get("/Orders/1", good), want: atkWant{code: decision.NoRoute}},
		"raw NUL":                     {req: get("/orders/1\x00/admin", good), want: atkWant{code: decision.PathInvalid, message: "NUL"}},
		"encoded NUL":                 {req: get("/orders/1%00", good), want: atkWant{code: decision.PathInvalid, message: "NUL"}},
		"double-encoded dot-dot":      {req: get("/orders/%252e%252e", good), want: atkWant{code: decision.PathInvalid, message: "decodes twice"}},
		"overlong UTF-8 dot":          {req: get("/orders/%C0%AE%C0%AE/admin", good), want: atkWant{code: decision.PathInvalid, message: "UTF-8"}},
		"raw hash before dot-dot":     {req: get("/healthz#/../admin/x", ""), want: atkWant{code: decision.PathInvalid, message: "'#'"}},
		"raw hash with a token":       {req: get("/orders/1#/../../admin/x", good), want: atkWant{code: decision.PathInvalid, message: "'#'"}},
		"raw hash at the end":         {req: get("/orders/1#", good), want: atkWant{code: decision.PathInvalid, message: "'#'"}},
		"encoded hash is one segment": {req: get("/orders/1%23/../../admin", good), want: atkWant{code: decision.InsufficientScope}},
		"hash inside the query":       {req: get("/orders/1?x=#/../admin", good), want: atkWant{allow: true, code: decision.OK}},
		"invalid UTF-8 escaped":       {req: get("/orders/%FF", good), want: atkWant{code: decision.PathInvalid, message: "UTF-8"}},
		"path longer than the limit":  {req: get("/orders/"+strings.Repeat("a", 8192), good), want: atkWant{code: decision.PathInvalid, message: "8192"}},
		"absolute-form target":        {req: get("http://api.test/admin", good), want: atkWant{code: decision.PathInvalid}},
		"query carries the traversal": {req: get("/orders/1?x=/../../admin", good), want: atkWant{allow: true, code: decision.OK}},

		// --- method override headers naming another method are refused
		// (an upstream framework would run the method they name)
		"POST with X-HTTP-Method-Override GET": {req: atkRequest{method: "POST", path: "/orders/1", peer: "10.0.0.7",
			headers: map[string]string{"authorization": "Bearer " + good, "x-http-method-override": "GET", "x-method-override": "GET", "x-http-method": "GET"}},
			want: atkWant{code: decision.RequestInvalid}},
		"DELETE with X-HTTP-Method-Override GET": {req: atkRequest{method: "DELETE", path: "/orders/1", peer: "10.0.0.7",
			headers: map[string]string{"authorization": "Bearer " + good, "x-http-method-override": "GET"}},
			want: atkWant{code: decision.RequestInvalid}},
		"GET with X-HTTP-Method-Override DELETE": {req: atkRequest{method: "GET", path: "/orders/1", peer: "10.0.0.7",
			headers: map[string]string{"authorization": "Bearer " + good, "x-http-method-override": "DELETE"}},
			want: atkWant{code: decision.RequestInvalid}},
		"GET with X-HTTP-Method-Override GET": {req: atkRequest{method: "GET", path: "/orders/1", peer: "10.0.0.7",
			headers: map[string]string{"authorization": "Bearer " + good, "x-http-method-override": "GET"}},
			want: atkWant{allow: true, code: decision.OK}},
		"lower-case method": {req: atkRequest{method: "get", path: "/orders/1", headers: bearer(good), peer: "10.0.0.7"},
			want: atkWant{code: decision.MethodNotAllowed}},

		// --- client address
		"internal route from corp": {req: get("/internal/1", good), want: atkWant{allow: true, code: decision.OK}},
		"xff spoofed from an untrusted peer": {req: atkRequest{method: "GET", path: "/internal/1", peer: "203.0.113.9",
			headers: map[string]string{"authorization": "Bearer " + good, "x-forwarded-for": "10.0.0.7"}},
			want: atkWant{code: decision.SourceIPNotAllowed}},
		"xff from the trusted proxy": {req: atkRequest{method: "GET", path: "/internal/1", peer: "192.0.2.10",
			headers: map[string]string{"authorization": "Bearer " + good, "x-forwarded-for": "10.0.0.7"}},
			want: atkWant{allow: true, code: decision.OK}},
		"xff left entry spoofed behind the trusted proxy": {req: atkRequest{method: "GET", path: "/internal/1", peer: "192.0.2.10",
			headers: map[string]string{"authorization": "Bearer " + good, "x-forwarded-for": "10.0.0.7, 203.0.113.9"}},
			want: atkWant{code: decision.SourceIPNotAllowed}},
		"xff garbage behind the trusted proxy": {req: atkRequest{method: "GET", path: "/internal/1", peer: "192.0.2.10",
			headers: map[string]string{"authorization": "Bearer " + good, "x-forwarded-for": "not-an-ip"}},
			want: atkWant{code: decision.SourceIPNotAllowed}},
		"xff empty from the trusted proxy": {req: atkRequest{method: "GET", path: "/internal/1", peer: "192.0.2.10",
			headers: map[string]string{"authorization": "Bearer " + good}},
			want: atkWant{code: decision.SourceIPNotAllowed}},
		"no peer address": {req: atkRequest{method: "GET", path: "/internal/1", headers: bearer(good)},
			want: atkWant{code: decision.SourceIPNotAllowed}},
		"IPv4-mapped IPv6 peer inside corp": {req: atkRequest{method: "GET", path: "/internal/1", headers: bearer(good), peer: "::ffff:10.0.0.7"},
			want: atkWant{allow: true, code: decision.OK}},
		"IPv4-mapped IPv6 peer outside corp": {req: atkRequest{method: "GET", path: "/internal/1", headers: bearer(good), peer: "::ffff:203.0.113.9"},
			want: atkWant{code: decision.SourceIPNotAllowed}},
		"IPv4-mapped trusted proxy": {req: atkRequest{method: "GET", path: "/internal/1", peer: "::ffff:192.0.2.10",
			headers: map[string]string{"authorization": "Bearer " + good, "x-forwarded-for": "::ffff:10.0.0.7"}},
			want: atkWant{allow: true, code: decision.OK}},
		"IPv6 peer not mapped": {req: atkRequest{method: "GET", path: "/internal/1", headers: bearer(good), peer: "2001:db8::7"},
			want: atkWant{code: decision.SourceIPNotAllowed}},
		// A source address that is not an IP is refused by the
		// translation, as the Check RPC refuses it: never decided as if
		// the request had no address.
		"peer is a hostname": {req: atkRequest{method: "GET", path: "/internal/1", headers: bearer(good), peer: "corp.example"},
			want: atkWant{code: decision.RequestInvalid}},
		"peer with a port": {req: atkRequest{method: "GET", path: "/internal/1", headers: bearer(good), peer: "10.1.2.3:443"},
			want: atkWant{code: decision.RequestInvalid}},
		"peer on a public route": {req: atkRequest{method: "GET", path: "/healthz", peer: "not-an-ip"},
			want: atkWant{code: decision.RequestInvalid}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			secrets := []string{good}
			if a := tc.req.headers["authorization"]; a != "" {
				secrets = append(secrets, strings.TrimPrefix(a, "Bearer "))
			}
			tc.want.assert(t, send(t, e.client, tc.req.check(), secrets...))
		})
	}
	if n := jkuHits.Load(); n != 0 {
		t.Errorf("the server fetched a URL named in a token header %d time(s)", n)
	}
}

// TestAttackSparseCheckRequest sends CheckRequests with optional fields
// missing, down to none at all: each is denied in-band with a reason.
func TestAttackSparseCheckRequest(t *testing.T) {
	e := startAttackServer(t, "attack-policy.yaml", nil)
	good := e.mint(t, e.ec1, e.claims("orders:read"), nil)
	httpOnly := func(h *authv3.AttributeContext_HttpRequest) *authv3.CheckRequest {
		return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{Http: h}}}
	}
	tests := map[string]struct {
		req  *authv3.CheckRequest
		want atkWant
	}{
		"empty CheckRequest":         {req: &authv3.CheckRequest{}, want: atkWant{code: decision.PathInvalid}},
		"empty attributes":           {req: &authv3.CheckRequest{Attributes: &authv3.AttributeContext{}}, want: atkWant{code: decision.PathInvalid}},
		"empty request":              {req: &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{}}}, want: atkWant{code: decision.PathInvalid}},
		"empty http":                 {req: httpOnly(&authv3.AttributeContext_HttpRequest{}), want: atkWant{code: decision.PathInvalid}},
		"path only":                  {req: httpOnly(&authv3.AttributeContext_HttpRequest{Path: "/orders/1"}), want: atkWant{code: decision.RequestInvalid, message: "no method"}},
		"method and path only":       {req: httpOnly(&authv3.AttributeContext_HttpRequest{Method: "GET", Path: "/orders/1"}), want: atkWant{code: decision.TokenMissing}},
		"public route, nothing else": {req: httpOnly(&authv3.AttributeContext_HttpRequest{Method: "GET", Path: "/healthz"}), want: atkWant{allow: true, code: decision.OK}},
		"pseudo-headers only":        {req: httpOnly(&authv3.AttributeContext_HttpRequest{Headers: map[string]string{":method": "GET", ":path": "/orders/1", "authorization": "Bearer " + good}}), want: atkWant{allow: true, code: decision.OK}},
		"empty header map":           {req: httpOnly(&authv3.AttributeContext_HttpRequest{Method: "GET", Path: "/orders/1", HeaderMap: &corev3.HeaderMap{}}), want: atkWant{code: decision.TokenMissing}},
		"nil entries in header map":  {req: httpOnly(&authv3.AttributeContext_HttpRequest{Method: "GET", Path: "/orders/1", HeaderMap: &corev3.HeaderMap{Headers: []*corev3.HeaderValue{{}, {Key: "authorization"}}}}), want: atkWant{code: decision.TokenMissing}},
		"source without address":     {req: &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Source: &authv3.AttributeContext_Peer{}, Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{Method: "GET", Path: "/internal/1", Headers: map[string]string{"authorization": "Bearer " + good}}}}}, want: atkWant{code: decision.SourceIPNotAllowed}},
		"pipe address as source":     {req: &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Source: &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_Pipe{Pipe: &corev3.Pipe{Path: "/tmp/x"}}}}, Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{Method: "GET", Path: "/internal/1", Headers: map[string]string{"authorization": "Bearer " + good}}}}}, want: atkWant{code: decision.SourceIPNotAllowed}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			tc.want.assert(t, send(t, e.client, tc.req, good))
		})
	}
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// withPadding adds a claim that makes the encoded token about n bytes.
func withPadding(c decisiontest.Claims, n int) decisiontest.Claims {
	c["pad"] = strings.Repeat("x", n*3/4)
	return c
}
