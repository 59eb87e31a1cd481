package server

import (
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	scopegatev1 "github.com/scopegate/scopegate/proto/scopegate/v1"
	"github.com/scopegate/scopegate/store/audit"
)

// missingAnswer is what a caller of one protocol learns from an
// insufficient_scope deny.
type missingAnswer struct {
	reason, message, challenge string
}

// TestInsufficientScopeNamesMissingEveryProtocol: every protocol's deny,
// and its audit record, names the scopes the token lacks (or the
// alternatives of which it carries none), never the scopes it carries.
func TestInsufficientScopeNamesMissingEveryProtocol(t *testing.T) {
	sink := &captureSink{}
	e := startHTTPE2E(t, func(c *Config) {
		copyFile(t, "testdata/policy-missing.yaml", c.PolicyPath)
		c.Audit.Sinks = []audit.Sink{sink}
	})
	send := map[string]func(t *testing.T, authz, id string) missingAnswer{
		"ext_authz": func(t *testing.T, authz, id string) missingAnswer {
			resp, err := e.extauthz.Check(ctxT(t), &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
				Http: &authv3.AttributeContext_HttpRequest{Method: "GET", Path: "/api/export/1", Headers: map[string]string{"authorization": authz, "x-request-id": id}}}}})
			if err != nil {
				t.Fatal(err)
			}
			a := missingAnswer{reason: resp.GetStatus().GetMessage()}
			for _, h := range resp.GetDeniedResponse().GetHeaders() {
				if h.GetHeader().GetKey() == "www-authenticate" {
					a.challenge = h.GetHeader().GetValue()
				}
			}
			var body struct{ Message string }
			if err := json.Unmarshal([]byte(resp.GetDeniedResponse().GetBody()), &body); err != nil {
				t.Fatalf("deny body: %v", err)
			}
			a.message = body.Message
			var md []string
			for _, v := range resp.GetDynamicMetadata().GetFields()["scopes_missing"].GetListValue().GetValues() {
				md = append(md, v.GetStringValue())
			}
			if got := strings.Join(md, " "); !strings.Contains(a.challenge, `scope="`+got+`"`) || got == "" {
				t.Errorf("dynamic metadata scopes_missing %q disagrees with the challenge %q", md, a.challenge)
			}
			return a
		},
		"authorizer": func(t *testing.T, authz, id string) missingAnswer {
			resp, err := e.authorizer.Check(ctxT(t), &scopegatev1.CheckRequest{Method: "GET", Path: "/api/export/1", RequestId: id,
				Headers: map[string]string{"authorization": authz}})
			if err != nil {
				t.Fatal(err)
			}
			r := resp.GetReasons()[0]
			return missingAnswer{reason: r.GetCode(), message: r.GetMessage(), challenge: resp.GetWwwAuthenticate()}
		},
		"http": func(t *testing.T, authz, id string) missingAnswer {
			resp := e.do(t, "GET", "/check", nil, "X-Forwarded-Method", "GET", "X-Forwarded-Uri", "/api/export/1", "X-Request-Id", id, "Authorization", authz)
			var body struct{ Message string }
			if err := json.Unmarshal(readBody(t, resp), &body); err != nil {
				t.Fatalf("deny body: %v", err)
			}
			return missingAnswer{reason: resp.Header.Get("X-Scopegate-Reason"), message: body.Message, challenge: resp.Header.Get("WWW-Authenticate")}
		},
		"authzen": func(t *testing.T, authz, id string) missingAnswer {
			body := `{"subject":{"type":"user","id":"alice"},"action":{"name":"GET"},"resource":{"type":"http_path","id":"/api/export/1"}}`
			resp := e.do(t, "POST", "/access/v1/evaluation", []byte(body), "Content-Type", "application/json", "X-Request-Id", id, "Authorization", authz)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("AuthZEN status %d", resp.StatusCode)
			}
			var v struct {
				Context struct {
					Reason          string
					ReasonAdmin     map[string]string `json:"reason_admin"`
					WWWAuthenticate string            `json:"www_authenticate"`
					ScopesMissing   []string          `json:"scopes_missing"`
				}
			}
			if err := json.Unmarshal(readBody(t, resp), &v); err != nil {
				t.Fatal(err)
			}
			if got := strings.Join(v.Context.ScopesMissing, " "); !strings.Contains(v.Context.WWWAuthenticate, `scope="`+got+`"`) {
				t.Errorf("AuthZEN scopes_missing %q disagrees with its challenge %q", v.Context.ScopesMissing, v.Context.WWWAuthenticate)
			}
			return missingAnswer{reason: v.Context.Reason, message: v.Context.ReasonAdmin["en"], challenge: v.Context.WWWAuthenticate}
		},
	}
	cases := map[string]struct {
		scope   string
		missing []string
		message string
	}{
		"an all_of scope": {scope: "items:read region:eu", missing: []string{"items:export"},
			message: "the token lacks scope items:export, which route items-export requires"},
		"the any_of alternatives": {scope: "items:read items:export", missing: []string{"region:eu", "region:us"},
			message: "the token lacks one of the scopes region:eu or region:us, which route items-export requires"},
		"both": {scope: "items:export", missing: []string{"items:read", "region:eu", "region:us"},
			message: "the token lacks scope items:read and one of region:eu or region:us, which route items-export requires"},
	}
	n := 0
	for name, tc := range cases {
		tok := mint(t, e.signer, "alice", "app", tc.scope, time.Now(), time.Hour)
		for api, f := range send {
			t.Run(name+"/"+api, func(t *testing.T) {
				n++
				id := "missing-" + strconv.Itoa(n)
				a := f(t, "Bearer "+tok, id)
				if a.reason != "insufficient_scope" {
					t.Fatalf("reason %q, want insufficient_scope", a.reason)
				}
				if a.message != tc.message {
					t.Errorf("message %q\nwant    %q", a.message, tc.message)
				}
				wantScope := `error="insufficient_scope", scope="` + strings.Join(tc.missing, " ") + `"`
				if !strings.Contains(a.challenge, wantScope) {
					t.Errorf("challenge %q, want it to carry %s", a.challenge, wantScope)
				}
				recs := sink.byRequestID(t, id)
				if len(recs) != 1 {
					t.Fatalf("%d audit records, want 1", len(recs))
				}
				var got []string
				for _, s := range recs[0]["scopes_missing"].([]any) {
					got = append(got, s.(string))
				}
				if !slices.Equal(got, tc.missing) || recs[0]["message"] != tc.message {
					t.Errorf("audit scopes_missing %q message %q; want %q %q", got, recs[0]["message"], tc.missing, tc.message)
				}
			})
		}
	}
}
