package envoy_test

import (
	"encoding/json"
	"fmt"
	"sync"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	"github.com/scopegate/scopegate/decision"
	"github.com/scopegate/scopegate/decision/decisiontest"
	"github.com/scopegate/scopegate/envoy"
)

// headerMap flattens header options, failing on duplicates or on an append
// action other than overwrite.
func headerMap(t *testing.T, opts []*corev3.HeaderValueOption) map[string]string {
	t.Helper()
	m := map[string]string{}
	for _, o := range opts {
		k := o.GetHeader().GetKey()
		if _, dup := m[k]; dup {
			t.Errorf("header %q sent twice", k)
		}
		//lint:ignore SA1019 the deprecated append field must stay unset: it would override append_action
		if o.GetAppendAction() != corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD || o.GetAppend() != nil {
			t.Errorf("header %q: append action %v, want OVERWRITE_IF_EXISTS_OR_ADD", k, o.GetAppendAction())
		}
		m[k] = o.GetHeader().GetValue()
	}
	return m
}

func TestResponseDeny(t *testing.T) {
	pol := decisiontest.TranslatorPolicy(t)
	read, write := decisiontest.Route(t, pol, "items-read"), decisiontest.Route(t, pol, "items-write")

	tests := map[string]struct {
		realm      string
		d          decision.Decision
		grpc       codes.Code
		http       int
		reason     string
		challenge  string // "" = no WWW-Authenticate header
		message    string
		route      string
		errorReply bool // error_response instead of denied_response
	}{
		"token missing: bare challenge": {
			d:    decision.Decision{Code: decision.TokenMissing, Route: read, Policy: pol},
			grpc: codes.Unauthenticated, http: 401, reason: "token_missing",
			challenge: `Bearer realm="scopegate"`,
			message:   decision.TokenMissing.Message(), route: "items-read",
		},
		"token invalid: detail is quote-escaped": {
			d:    decision.Decision{Code: decision.TokenInvalid, Detail: "the \"sig\" does not\\verify\n\u00e9", Route: read, Policy: pol},
			grpc: codes.Unauthenticated, http: 401, reason: "token_invalid",
			challenge: `Bearer realm="scopegate", error="invalid_token", error_description="the 'sig' does not/verify??"`,
			message:   "the \"sig\" does not\\verify\n\u00e9", route: "items-read",
		},
		"token expired: default message": {
			d:    decision.Decision{Code: decision.TokenExpired, Route: read, Policy: pol},
			grpc: codes.Unauthenticated, http: 401, reason: "token_expired",
			challenge: `Bearer realm="scopegate", error="invalid_token", error_description="the bearer token has expired"`,
			message:   "the bearer token has expired", route: "items-read",
		},
		"request invalid: invalid_request": {
			d:    decision.Decision{Code: decision.RequestInvalid, Detail: "the request carries more than one Authorization header", Route: read, Policy: pol},
			grpc: codes.InvalidArgument, http: 400, reason: "request_invalid",
			challenge: `Bearer realm="scopegate", error="invalid_request", error_description="the request carries more than one Authorization header"`,
			message:   "the request carries more than one Authorization header", route: "items-read",
		},
		"insufficient scope: scope attribute": {
			d:    decision.Decision{Code: decision.InsufficientScope, Detail: "the token lacks the scopes route items-write requires", Route: write, Policy: pol},
			grpc: codes.PermissionDenied, http: 403, reason: "insufficient_scope",
			challenge: `Bearer realm="scopegate", error="insufficient_scope", scope="items.write admin editor", error_description="the token lacks the scopes route items-write requires"`,
			message:   "the token lacks the scopes route items-write requires", route: "items-write",
		},
		"custom realm is made safe": {
			realm: `api "v1"`,
			d:     decision.Decision{Code: decision.TokenMissing, Route: read, Policy: pol},
			grpc:  codes.Unauthenticated, http: 401, reason: "token_missing",
			challenge: `Bearer realm="api 'v1'"`,
			message:   decision.TokenMissing.Message(), route: "items-read",
		},
		"no route: no challenge": {
			d:    decision.Decision{Code: decision.NoRoute, Policy: pol},
			grpc: codes.PermissionDenied, http: 403, reason: "no_route",
			message: decision.NoRoute.Message(),
		},
		"method not allowed": {
			d:    decision.Decision{Code: decision.MethodNotAllowed, Policy: pol},
			grpc: codes.PermissionDenied, http: 403, reason: "method_not_allowed",
			message: decision.MethodNotAllowed.Message(),
		},
		"path invalid": {
			d:    decision.Decision{Code: decision.PathInvalid, Detail: "the path contains a space; percent-encode it as %20", Policy: pol},
			grpc: codes.InvalidArgument, http: 400, reason: "path_invalid",
			message: "the path contains a space; percent-encode it as %20",
		},
		"internal: error_response": {
			d: decision.Decision{Code: decision.Internal, Detail: "no policy is loaded"},
			// http 0: error_response carries no status, so Envoy's
			// status_on_error applies.
			grpc: codes.Internal, http: 0, reason: "internal",
			message: "no policy is loaded", errorReply: true,
		},
		"deny claiming ok fails closed": {
			d:    decision.Decision{Code: decision.OK, Route: read, Policy: pol},
			grpc: codes.Internal, http: 0, reason: "internal",
			message: decision.Internal.Message(), route: "items-read", errorReply: true,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			r := envoy.NewResponder(envoy.ResponderOptions{Realm: tc.realm})
			resp := r.Response(&tc.d)
			if got := codes.Code(resp.GetStatus().GetCode()); got != tc.grpc {
				t.Errorf("grpc code = %v, want %v", got, tc.grpc)
			}
			if got := resp.GetStatus().GetMessage(); got != tc.reason {
				t.Errorf("grpc message = %q, want %q", got, tc.reason)
			}
			if resp.GetOkResponse() != nil {
				t.Fatal("deny carries an ok_response")
			}
			hr := resp.GetDeniedResponse()
			if tc.errorReply {
				if hr != nil {
					t.Fatal("internal error answered with denied_response, want error_response")
				}
				hr = resp.GetErrorResponse()
			} else if resp.GetErrorResponse() != nil {
				t.Fatal("deny answered with error_response")
			}
			if hr == nil {
				t.Fatal("no http response")
			}
			if got := int(hr.GetStatus().GetCode()); got != tc.http {
				t.Errorf("http status = %d, want %d", got, tc.http)
			}
			h := headerMap(t, hr.GetHeaders())
			if h[envoy.HeaderReason] != tc.reason {
				t.Errorf("%s = %q, want %q", envoy.HeaderReason, h[envoy.HeaderReason], tc.reason)
			}
			if h["content-type"] != "application/json" {
				t.Errorf("content-type = %q", h["content-type"])
			}
			got, ok := h[envoy.HeaderWWWAuthenticate]
			if tc.challenge == "" && ok {
				t.Errorf("unexpected WWW-Authenticate %q", got)
			}
			if tc.challenge != "" && got != tc.challenge {
				t.Errorf("WWW-Authenticate\n got %s\nwant %s", got, tc.challenge)
			}
			if c := r.WWWAuthenticate(&tc.d); c != tc.challenge {
				t.Errorf("Responder.WWWAuthenticate = %q, want %q", c, tc.challenge)
			}
			if tc.realm == "" {
				if c := envoy.WWWAuthenticate(&tc.d); c != tc.challenge {
					t.Errorf("WWWAuthenticate = %q, want %q", c, tc.challenge)
				}
			}
			var body map[string]any
			if err := json.Unmarshal([]byte(hr.GetBody()), &body); err != nil {
				t.Fatalf("body %q is not JSON: %v", hr.GetBody(), err)
			}
			want := map[string]any{"allow": false, "reason": tc.reason, "message": tc.message, "route": tc.route}
			if fmt.Sprint(body) != fmt.Sprint(want) {
				t.Errorf("body = %v, want %v", body, want)
			}
			md := resp.GetDynamicMetadata().GetFields()
			if md[envoy.MetaReason].GetStringValue() != tc.reason || md[envoy.MetaRoute].GetStringValue() != tc.route ||
				md[envoy.MetaMessage].GetStringValue() != tc.message || md[envoy.MetaPolicyVersion].GetStringValue() != tc.d.PolicyVersion() {
				t.Errorf("dynamic metadata = %v", resp.GetDynamicMetadata())
			}
			if _, err := proto.Marshal(resp); err != nil {
				t.Errorf("marshal: %v", err)
			}
		})
	}
}

func TestResponseAllow(t *testing.T) {
	pol := decisiontest.TranslatorPolicy(t)
	read, health := decisiontest.Route(t, pol, "items-read"), decisiontest.Route(t, pol, "health")
	keep := *pol
	keep.Upstream.StripAuthorization = false
	keep.Upstream.SubjectHeader = "x-user"
	tok := &decision.Token{Issuer: "https://issuer.test", Subject: "alice", ClientID: "app", Scopes: []string{"items.read", "profile"}}

	tests := map[string]struct {
		d         decision.Decision
		headers   map[string]string
		remove    []string
		routeName string
	}{
		"token": {
			d:         decision.Decision{Allow: true, Route: read, Token: tok, Policy: pol},
			headers:   map[string]string{"x-scopegate-subject": "alice", "x-scopegate-client": "app", "x-scopegate-scopes": "items.read profile"},
			remove:    []string{"authorization"},
			routeName: "items-read",
		},
		"public route: headers sent empty": {
			d:         decision.Decision{Allow: true, Route: health, Policy: pol},
			headers:   map[string]string{"x-scopegate-subject": "", "x-scopegate-client": "", "x-scopegate-scopes": ""},
			remove:    []string{"authorization"},
			routeName: "health",
		},
		"custom names, authorization kept": {
			d:         decision.Decision{Allow: true, Route: read, Token: tok, Policy: &keep},
			headers:   map[string]string{"x-user": "alice", "x-scopegate-client": "app", "x-scopegate-scopes": "items.read profile"},
			routeName: "items-read",
		},
		"no policy: default names": {
			d:       decision.Decision{Allow: true},
			headers: map[string]string{"x-scopegate-subject": "", "x-scopegate-client": "", "x-scopegate-scopes": ""},
		},
	}
	r := envoy.NewResponder(envoy.ResponderOptions{})
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			resp := r.Response(&tc.d)
			if resp.GetStatus().GetCode() != 0 {
				t.Fatalf("status = %v, want OK", resp.GetStatus())
			}
			ok := resp.GetOkResponse()
			if ok == nil {
				t.Fatal("no ok_response")
			}
			if got := headerMap(t, ok.GetHeaders()); fmt.Sprint(got) != fmt.Sprint(tc.headers) {
				t.Errorf("headers = %v, want %v", got, tc.headers)
			}
			if fmt.Sprint(ok.GetHeadersToRemove()) != fmt.Sprint(tc.remove) {
				t.Errorf("headers_to_remove = %v, want %v", ok.GetHeadersToRemove(), tc.remove)
			}
			//lint:ignore SA1019 the deprecated field must stay unset: it would override the top-level metadata
			if ok.GetDynamicMetadata() != nil {
				t.Error("deprecated ok_response.dynamic_metadata is set")
			}
			md := resp.GetDynamicMetadata().GetFields()
			wantSub := ""
			if tc.d.Token != nil {
				wantSub = tc.d.Token.Subject
			}
			if md[envoy.MetaReason].GetStringValue() != "ok" || md[envoy.MetaRoute].GetStringValue() != tc.routeName ||
				md[envoy.MetaSubject].GetStringValue() != wantSub || md[envoy.MetaPolicyVersion].GetStringValue() != tc.d.PolicyVersion() ||
				md[envoy.MetaScopesUsed].GetListValue() == nil {
				t.Errorf("dynamic metadata = %v", resp.GetDynamicMetadata())
			}
			if r.WWWAuthenticate(&tc.d) != "" || envoy.WWWAuthenticate(&tc.d) != "" {
				t.Error("an allow has a challenge")
			}
			if _, err := proto.Marshal(resp); err != nil {
				t.Errorf("marshal: %v", err)
			}
		})
	}
}

// TestResponseConcurrent shares cached responses between goroutines that
// marshal them, as grpc does; run with -race.
func TestResponseConcurrent(t *testing.T) {
	pol := decisiontest.TranslatorPolicy(t)
	read := decisiontest.Route(t, pol, "items-read")
	r := envoy.NewResponder(envoy.ResponderOptions{})
	tok := &decision.Token{Subject: "s", ClientID: "c", Scopes: []string{"items.read"}}
	ds := []decision.Decision{
		{Code: decision.TokenMissing, Route: read, Policy: pol},
		{Code: decision.NoRoute, Policy: pol},
		{Code: decision.InsufficientScope, Detail: "x", Route: read, Policy: pol},
		{Allow: true, Route: read, Token: tok, Policy: pol},
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				d := ds[(g+i)%len(ds)]
				if _, err := proto.Marshal(r.Response(&d)); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
}

func BenchmarkResponseDeny(b *testing.B) {
	pol := decisiontest.TranslatorPolicy(b)
	d := decision.Decision{Code: decision.InsufficientScope, Detail: "lacks", Route: decisiontest.Route(b, pol, "items-write"), Policy: pol}
	r := envoy.NewResponder(envoy.ResponderOptions{})
	r.Response(&d)
	var resp *authv3.CheckResponse
	b.ReportAllocs()
	for b.Loop() {
		resp = r.Response(&d)
	}
	if resp.GetDeniedResponse() == nil {
		b.Fatal("not a deny")
	}
}

func BenchmarkResponseAllow(b *testing.B) {
	pol := decisiontest.TranslatorPolicy(b)
	d := decision.Decision{Allow: true, Route: decisiontest.Route(b, pol, "items-read"), Policy: pol,
		Token: &decision.Token{Subject: "alice", ClientID: "app", Scopes: []string{"items.read", "profile"}}}
	r := envoy.NewResponder(envoy.ResponderOptions{})
	var resp *authv3.CheckResponse
	b.ReportAllocs()
	for b.Loop() {
		resp = r.Response(&d)
	}
	if resp.GetOkResponse() == nil {
		b.Fatal("not an allow")
	}
}
