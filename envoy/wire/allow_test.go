package wire_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"

	"github.com/scopegate/scopegate/decision"
	"github.com/scopegate/scopegate/decision/decisiontest"
	"github.com/scopegate/scopegate/envoy"
	"github.com/scopegate/scopegate/envoy/wire"
)

const fastAllowPolicy = `
version: fast-allow
issuers:
  - issuer: https://issuer.test
    audiences: [api]
    jwks_file: jwks.json
    algorithms: [RS256]
routes:
  - name: all-of
    match: {methods: [GET], path: /a}
    require: {all_of: [a:read, b:read]}
  - name: any-of
    match: {methods: [GET], path: /b}
    require: {any_of: [x:read, b:read, a:read]}
  - name: fhir
    match: {methods: [GET], path: "/fhir/{rest...}"}
    smart: {patient_filter_upstream: true}
  - name: public
    match: {methods: [GET], path: /public}
    public: true
default: deny
`

// TestAppendAllowIsTheResponderMessage: the direct encoding of an allow
// decodes to exactly the message the Responder builds, for every
// kind of allow, with and without header renames and authorization
// stripping.
func TestAppendAllowIsTheResponderMessage(t *testing.T) {
	signer, err := decisiontest.NewRSASigner("k1")
	if err != nil {
		t.Fatal(err)
	}
	keys := decision.StaticKeys{{Kid: signer.Kid, Alg: signer.Alg, Public: signer.Key.Public()}}
	now := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	mint := func(scope string, extra map[string]any) string {
		c := decisiontest.StandardClaims("https://issuer.test", "api", "alice", "app-1", scope, time.Hour, now)
		for k, v := range extra {
			c[k] = v
		}
		tok, err := signer.Mint(c, nil)
		if err != nil {
			t.Fatal(err)
		}
		return "Bearer " + tok
	}
	for _, upstream := range []string{"", "upstream: {strip_authorization: true, subject_header: x-user, client_header: x-app, scopes_header: x-scopes}\n"} {
		pol, err := decision.Compile([]byte(fastAllowPolicy+upstream), "policy.yaml", decision.CompileOptions{})
		if err != nil {
			t.Fatal(err)
		}
		eng, err := decision.NewEngine(pol, decision.Options{Keys: decision.StaticKeyResolver(keys), Clock: func() time.Time { return now }})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(eng.Close)
		r := envoy.NewResponder(envoy.ResponderOptions{})
		for name, req := range map[string]decision.Request{
			"all_of":             {Method: "GET", Path: "/a", Authorization: mint("b:read a:read c:write", nil), AuthorizationCount: 1},
			"any_of":             {Method: "GET", Path: "/b", Authorization: mint("a:read b:read", nil), AuthorizationCount: 1},
			"smart with patient": {Method: "GET", Path: "/fhir/Observation", Authorization: mint("patient/Observation.rs", map[string]any{"patient": "123"}), AuthorizationCount: 1},
			"smart system":       {Method: "GET", Path: "/fhir/Observation", Authorization: mint("system/*.rs", nil), AuthorizationCount: 1},
			"public":             {Method: "GET", Path: "/public", AuthorizationCount: 0},
			"unicode subject":    {Method: "GET", Path: "/a", Authorization: mint("a:read b:read", map[string]any{"sub": "zoë ✓"}), AuthorizationCount: 1},
		} {
			t.Run(upstream[:min(len(upstream), 9)]+name, func(t *testing.T) {
				d := eng.Decide(context.Background(), &req)
				if !d.Allow {
					t.Fatalf("setup: %s (%s)", d.Code, d.Detail)
				}
				b, ok := wire.AppendAllow(nil, &d)
				if !ok {
					t.Fatal("AppendAllow left a plain allow to proto.Marshal")
				}
				var got authv3.CheckResponse
				if err := proto.Unmarshal(b, &got); err != nil {
					t.Fatalf("the fast encoding does not decode: %v", err)
				}
				if want := r.Response(&d); !proto.Equal(want, &got) {
					t.Errorf("fast encoding differs from the Responder's message\nwant %s\n got %s", prototext.Format(want), prototext.Format(&got))
				}
				// A SMART allow sets the hints it carries and removes the
				// others (never an empty hint header).
				hdrs, rm := got.GetOkResponse().GetHeaders(), got.GetOkResponse().GetHeadersToRemove()
				hints, wantHints := 0, 0
				if d.Route.IsSMART() {
					wantHints = 2
				}
				for _, h := range hdrs {
					if strings.HasPrefix(h.GetHeader().GetKey(), "x-scopegate-fhir-") {
						hints++
						if h.GetHeader().GetValue() == "" {
							t.Errorf("empty hint header %s", h.GetHeader().GetKey())
						}
					}
				}
				for _, name := range rm {
					if strings.HasPrefix(name, "x-scopegate-fhir-") {
						hints++
					}
				}
				if len(hdrs)-hints+len(rm) < 3 || hints != wantHints {
					t.Errorf("headers %v, headers_to_remove %q: want 3 upstream headers and %d hints set or removed", hdrs, rm, wantHints)
				}
				if strip := slices.Contains(rm, "authorization"); strip != (upstream != "") {
					t.Errorf("headers_to_remove %q with upstream %q", rm, upstream)
				}
			})
		}
	}
}

// TestAppendAllowRefusesInvalidUTF8 leaves a value proto3 cannot carry to
// proto.Marshal, which reports it (the server's codec test checks that it
// does).
func TestAppendAllowRefusesInvalidUTF8(t *testing.T) {
	d := decision.Decision{Allow: true, Token: &decision.Token{Subject: "bad\xff", Scopes: []string{"a"}}}
	if _, ok := wire.AppendAllow(nil, &d); ok {
		t.Fatal("AppendAllow encoded an invalid UTF-8 subject")
	}
}
