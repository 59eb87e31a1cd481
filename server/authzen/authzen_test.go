package authzen_test

import (
	"encoding/json"
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"github.com/scopegate/scopegate/decision"
	"github.com/scopegate/scopegate/decision/decisiontest"
	"github.com/scopegate/scopegate/server/authzen"
)

func TestAuthZENRequest(t *testing.T) {
	tests := map[string]struct {
		body   string
		authz  []string
		want   decision.Request
		field  string // field of the expected error; "" for none
		errHas string
	}{
		"token property and path property": {
			body: `{"subject":{"type":"user","id":"alice","properties":{"token":"T","ip_address":"::ffff:203.0.113.7","client_certificate":":AA==:"}},
				"action":{"name":"get"},"resource":{"type":"order","id":"1","properties":{"path":"/orders/1?x=1","host":"api.example"}},"context":{"time":"now"}}`,
			want: decision.Request{Method: "GET", Path: "/orders/1?x=1", Host: "api.example", Authorization: "Bearer T", AuthorizationCount: 1,
				SourceIP: netip.MustParseAddr("203.0.113.7"), ClientCertificate: ":AA==:"},
		},
		"http_path resource id": {
			body: `{"subject":{"type":"user","id":"a"},"action":{"name":"DELETE"},"resource":{"type":"http_path","id":"/orders/1"}}`,
			want: decision.Request{Method: "DELETE", Path: "/orders/1"},
		},
		"path resource id": {
			body: `{"subject":{"type":"user","id":"a"},"action":{"name":"GET"},"resource":{"type":"path","id":"/x"}}`,
			want: decision.Request{Method: "GET", Path: "/x"},
		},
		"action method property wins": {
			body: `{"subject":{"type":"user","id":"a"},"action":{"name":"can_read","properties":{"method":"POST"}},"resource":{"type":"http_path","id":"/x"}}`,
			want: decision.Request{Method: "POST", Path: "/x"},
		},
		"header is the token when the property is absent": {
			body:  `{"subject":{"type":"user","id":"a"},"action":{"name":"GET"},"resource":{"type":"http_path","id":"/x"}}`,
			authz: []string{"Bearer H"},
			want:  decision.Request{Method: "GET", Path: "/x", Authorization: "Bearer H", AuthorizationCount: 1},
		},
		"two header values are counted": {
			body:  `{"subject":{"type":"user","id":"a"},"action":{"name":"GET"},"resource":{"type":"http_path","id":"/x"}}`,
			authz: []string{"Bearer H", "Bearer I"},
			want:  decision.Request{Method: "GET", Path: "/x", Authorization: "Bearer H", AuthorizationCount: 2},
		},
		"the property wins over the header": {
			body:  `{"subject":{"type":"user","id":"a","properties":{"token":"P"}},"action":{"name":"GET"},"resource":{"type":"http_path","id":"/x"}}`,
			authz: []string{"Bearer H"},
			want:  decision.Request{Method: "GET", Path: "/x", Authorization: "Bearer P", AuthorizationCount: 1},
		},
		"an explicit empty token means none, even with a header": {
			body:  `{"subject":{"type":"user","id":"a","properties":{"token":""}},"action":{"name":"GET"},"resource":{"type":"http_path","id":"/x"}}`,
			authz: []string{"Bearer H"},
			want:  decision.Request{Method: "GET", Path: "/x"},
		},
		"unknown properties are ignored": {
			body: `{"subject":{"type":"user","id":"a","properties":{"department":{"x":[1,2]}}},"action":{"name":"GET"},"resource":{"type":"http_path","id":"/x","properties":{"owner":3}}}`,
			want: decision.Request{Method: "GET", Path: "/x"},
		},
		"dpop proof: the token is presented as DPoP, with scheme and host": {
			body: `{"subject":{"type":"user","id":"a","properties":{"token":"T","dpop":"P.P.P"}},"action":{"name":"GET"},
				"resource":{"type":"http_path","id":"/x","properties":{"host":"api.example","scheme":"https"}}}`,
			want: decision.Request{Method: "GET", Path: "/x", Host: "api.example", Scheme: "https", Authorization: "DPoP T", AuthorizationCount: 1, DPoP: "P.P.P", DPoPCount: 1},
		},
		"token_type DPoP without a proof": {
			body: `{"subject":{"type":"user","id":"a","properties":{"token":"T","token_type":"dpop"}},"action":{"name":"GET"},"resource":{"type":"http_path","id":"/x"}}`,
			want: decision.Request{Method: "GET", Path: "/x", Authorization: "DPoP T", AuthorizationCount: 1},
		},
		"token_type Bearer with a proof stays Bearer": {
			body: `{"subject":{"type":"user","id":"a","properties":{"token":"T","token_type":"Bearer","dpop":"P.P.P"}},"action":{"name":"GET"},"resource":{"type":"http_path","id":"/x"}}`,
			want: decision.Request{Method: "GET", Path: "/x", Authorization: "Bearer T", AuthorizationCount: 1, DPoP: "P.P.P", DPoPCount: 1},
		},
		"proof with the token from the header": {
			body:  `{"subject":{"type":"user","id":"a","properties":{"dpop":"P.P.P"}},"action":{"name":"GET"},"resource":{"type":"http_path","id":"/x"}}`,
			authz: []string{"DPoP H"},
			want:  decision.Request{Method: "GET", Path: "/x", Authorization: "DPoP H", AuthorizationCount: 1, DPoP: "P.P.P", DPoPCount: 1},
		},
		"unknown token_type": {body: `{"subject":{"type":"user","id":"a","properties":{"token":"T","token_type":"MAC"}},"action":{"name":"GET"},"resource":{"type":"http_path","id":"/x"}}`,
			field: "subject.properties.token_type", errHas: "Bearer"},
		"no subject":          {body: `{"action":{"name":"GET"},"resource":{"type":"http_path","id":"/x"}}`, field: "subject"},
		"no subject type":     {body: `{"subject":{"id":"a"},"action":{"name":"GET"},"resource":{"type":"http_path","id":"/x"}}`, field: "subject.type"},
		"no action":           {body: `{"subject":{"type":"user","id":"a"},"resource":{"type":"http_path","id":"/x"}}`, field: "action"},
		"no resource":         {body: `{"subject":{"type":"user","id":"a"},"action":{"name":"GET"}}`, field: "resource"},
		"action not a method": {body: `{"subject":{"type":"user","id":"a"},"action":{"name":"can_read"},"resource":{"type":"http_path","id":"/x"}}`, field: "action.name", errHas: "not an HTTP method"},
		"method property not a method": {body: `{"subject":{"type":"user","id":"a"},"action":{"name":"GET","properties":{"method":"G T"}},"resource":{"type":"http_path","id":"/x"}}`,
			field: "action.properties.method"},
		"resource without a path": {body: `{"subject":{"type":"user","id":"a"},"action":{"name":"GET"},"resource":{"type":"order","id":"1"}}`, field: "resource", errHas: "http_path"},
		"bad ip address":          {body: `{"subject":{"type":"user","id":"a","properties":{"ip_address":"1.2.3.4:80"}},"action":{"name":"GET"},"resource":{"type":"http_path","id":"/x"}}`, field: "subject.properties.ip_address"},
		"context not an object":   {body: `{"subject":{"type":"user","id":"a"},"action":{"name":"GET"},"resource":{"type":"http_path","id":"/x"},"context":[1]}`, field: "context"},
		"null context is fine": {body: `{"subject":{"type":"user","id":"a"},"action":{"name":"GET"},"resource":{"type":"http_path","id":"/x"},"context":null}`,
			want: decision.Request{Method: "GET", Path: "/x"}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			ev, perr := authzen.ParseEvaluation([]byte(tc.body))
			if perr != nil {
				t.Fatalf("parse: %v", perr)
			}
			got := decision.Request{Method: "stale"}
			err := ev.Request("", tc.authz, &got)
			if tc.field != "" {
				if err == nil || err.Field != tc.field || !strings.Contains(err.Message, tc.errHas) {
					t.Fatalf("error %v, want one naming %s (%q)", err, tc.field, tc.errHas)
				}
				return
			}
			if err != nil {
				t.Fatalf("error %v", err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Request:\n got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestParseAuthZENErrors(t *testing.T) {
	tests := map[string]struct {
		body   string
		batch  bool
		field  string
		msgHas string
	}{
		"not an object":            {body: `[1]`, msgHas: "JSON object"},
		"empty":                    {body: ``, msgHas: "JSON object"},
		"syntax":                   {body: `{"subject":`, msgHas: "malformed JSON"},
		"bad syntax inside":        {body: `{"subject":{"type":"user",}}`, msgHas: "malformed JSON"},
		"trailing data":            {body: `{} {}`, msgHas: "after its JSON object"},
		"type error":               {body: `{"subject":{"type":1}}`, field: "subject.type", msgHas: "a string"},
		"token not string":         {body: `{"subject":{"type":"u","properties":{"token":7}}}`, field: "subject.properties.token"},
		"action not object":        {body: `{"action":"GET"}`, field: "action", msgHas: "an object"},
		"evaluations not an array": {body: `{"evaluations":{}}`, batch: true, field: "evaluations", msgHas: "an array"},
		"item type error":          {body: `{"evaluations":[{"action":{"name":1}}]}`, batch: true, field: "evaluations.action.name"},
		"unknown semantic":         {body: `{"evaluations":[],"options":{"evaluations_semantic":"first"}}`, batch: true, field: "options.evaluations_semantic"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			var err *authzen.Error
			if tc.batch {
				_, err = authzen.ParseEvaluations([]byte(tc.body))
			} else {
				_, err = authzen.ParseEvaluation([]byte(tc.body))
			}
			if err == nil || err.Field != tc.field || !strings.Contains(err.Message, tc.msgHas) {
				t.Fatalf("error %#v, want field %q and a message with %q", err, tc.field, tc.msgHas)
			}
		})
	}
}

func TestAuthZENBatchDefaults(t *testing.T) {
	evs, err := authzen.ParseEvaluations([]byte(`{
		"subject":{"type":"user","id":"alice"},
		"action":{"name":"GET"},
		"context":{"a":1},
		"options":{"evaluations_semantic":"deny_on_first_deny"},
		"evaluations":[
			{"resource":{"type":"http_path","id":"/a"}},
			{"action":{"name":"POST"},"resource":{"type":"http_path","id":"/b"},"subject":{"type":"client","id":"app"}}
		]}`))
	if err != nil {
		t.Fatal(err)
	}
	if evs.Semantic() != authzen.DenyOnFirstDeny {
		t.Errorf("semantic %q", evs.Semantic())
	}
	first, second := evs.Item(0), evs.Item(1)
	if first.Subject.ID != "alice" || first.Action.Name != "GET" || string(first.Context) != `{"a":1}` || first.Resource.ID != "/a" {
		t.Errorf("item 0 = %+v", first)
	}
	if second.Subject.ID != "app" || second.Action.Name != "POST" || second.Resource.ID != "/b" {
		t.Errorf("item 1 = %+v", second)
	}
	if evs.Evaluations[0].Subject != nil {
		t.Error("Item modified the request")
	}
	none, _ := authzen.ParseEvaluations([]byte(`{"evaluations":[]}`))
	if none.Semantic() != authzen.ExecuteAll {
		t.Errorf("default semantic %q", none.Semantic())
	}
}

func TestAuthZENResult(t *testing.T) {
	pol := decisiontest.TranslatorPolicy(t)
	read := decisiontest.Route(t, pol, "items-read")
	tok := &decision.Token{Subject: "alice", ClientID: "app"}
	tests := map[string]struct {
		d         decision.Decision
		challenge string
		want      string
	}{
		"allow": {
			d:    decision.Decision{Allow: true, Route: read, Policy: pol, Token: tok},
			want: `{"decision":true,"context":{"id":"ok","reason":"ok","http_status":200,"route":"items-read","policy_version":"` + pol.Version + `"}}`,
		},
		"deny with detail": {
			d:         decision.Decision{Code: decision.TokenExpired, Detail: "expired 3s ago", Route: read, Policy: pol},
			challenge: `Bearer realm="scopegate", error="invalid_token"`,
			want: `{"decision":false,"context":{"id":"token_expired","reason":"token_expired","reason_admin":{"en":"expired 3s ago"},"reason_user":{"en":"the bearer token has expired"},` +
				`"http_status":401,"www_authenticate":"Bearer realm=\"scopegate\", error=\"invalid_token\"","route":"items-read","policy_version":"` + pol.Version + `"}}`,
		},
		"dpop nonce deny": {
			d:         decision.Decision{Code: decision.DPoPNonceRequired, Detail: "no nonce", DPoPNonce: "N1"},
			challenge: `DPoP error="use_dpop_nonce"`,
			want: `{"decision":false,"context":{"id":"dpop_nonce_required","reason":"dpop_nonce_required","reason_admin":{"en":"no nonce"},"reason_user":{"en":"` + decision.DPoPNonceRequired.Message() + `"},` +
				`"http_status":401,"www_authenticate":"DPoP error=\"use_dpop_nonce\"","dpop_nonce":"N1"}}`,
		},
		"internal": {
			d: decision.Decision{Code: decision.Internal, Detail: "no policy is loaded"},
			want: `{"decision":false,"context":{"id":"internal","reason":"internal","reason_admin":{"en":"no policy is loaded"},"reason_user":{"en":"an internal error prevented a decision"},` +
				`"error":{"status":500,"message":"no policy is loaded"},"http_status":500}}`,
		},
		"deny claiming ok": {
			d: decision.Decision{Code: decision.OK},
			want: `{"decision":false,"context":{"id":"internal","reason":"internal","reason_admin":{"en":"an internal error prevented a decision"},"reason_user":{"en":"an internal error prevented a decision"},` +
				`"error":{"status":500,"message":"an internal error prevented a decision"},"http_status":500}}`,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			b, err := json.Marshal(authzen.Result(&tc.d, tc.challenge))
			if err != nil {
				t.Fatal(err)
			}
			if string(b) != tc.want {
				t.Errorf("result\n got %s\nwant %s", b, tc.want)
			}
		})
	}
}

func TestAuthZENSubjectMismatch(t *testing.T) {
	tok := &decision.Token{Subject: "alice", ClientID: "app"}
	tests := map[string]struct {
		id       string
		tok      *decision.Token
		mismatch bool
	}{
		"same subject":    {"alice", tok, false},
		"the client":      {"app", tok, false},
		"empty id":        {"", tok, false},
		"no token":        {"mallory", nil, false},
		"another subject": {"mallory", tok, true},
		"case matters":    {"Alice", tok, true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			ev := authzen.Evaluation{Subject: &authzen.Subject{Type: "user", ID: tc.id}}
			got := ev.SubjectMismatch(&decision.Decision{Allow: true, Token: tc.tok}) != ""
			if got != tc.mismatch {
				t.Errorf("mismatch = %v, want %v", got, tc.mismatch)
			}
		})
	}
}

func TestAuthZENMetadata(t *testing.T) {
	m := authzen.NewMetadata("https://pdp.example/")
	want := authzen.Metadata{PolicyDecisionPoint: "https://pdp.example", AccessEvaluationEndpoint: "https://pdp.example/access/v1/evaluation",
		AccessEvaluationsEndpoint: "https://pdp.example/access/v1/evaluations"}
	if m != want {
		t.Errorf("metadata %+v", m)
	}
}
