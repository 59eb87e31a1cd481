package envoy_test

import (
	"context"
	"net/netip"
	"reflect"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/scopegate/scopegate/decision"
	"github.com/scopegate/scopegate/decision/decisiontest"
	"github.com/scopegate/scopegate/envoy"
)

// checkRequest builds an ext_authz CheckRequest the way Envoy fills one.
func checkRequest(source string, http *authv3.AttributeContext_HttpRequest, ext map[string]string) *authv3.CheckRequest {
	attrs := &authv3.AttributeContext{
		Request:           &authv3.AttributeContext_Request{Http: http},
		ContextExtensions: ext,
	}
	if source != "" {
		attrs.Source = &authv3.AttributeContext_Peer{
			Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
				SocketAddress: &corev3.SocketAddress{Address: source, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 51234}},
			}},
		}
	}
	return &authv3.CheckRequest{Attributes: attrs}
}

func rawHeaders(kv ...string) *corev3.HeaderMap {
	m := &corev3.HeaderMap{}
	for i := 0; i+1 < len(kv); i += 2 {
		m.Headers = append(m.Headers, &corev3.HeaderValue{Key: kv[i], RawValue: []byte(kv[i+1])})
	}
	return m
}

// envoyRequest is a typical request Envoy sends: merged, lower-cased
// headers including pseudo-headers.
func envoyRequest() *authv3.CheckRequest {
	return checkRequest("10.0.0.7", &authv3.AttributeContext_HttpRequest{
		Id:     "req-1",
		Method: "GET",
		Path:   "/api/items/42?x=1",
		Host:   "api.example",
		Headers: map[string]string{
			":authority":      "api.example",
			":method":         "GET",
			":path":           "/api/items/42?x=1",
			"authorization":   "Bearer abc.def.ghi",
			"x-forwarded-for": "203.0.113.9, 10.0.0.1",
			"x-request-id":    "req-1",
			"user-agent":      "curl/8",
		},
	}, map[string]string{"environment": "prod", "team": "a"})
}

func TestRequestFromCheck(t *testing.T) {
	withCert := envoyRequest()
	withCert.Attributes.Source.Certificate = "-----BEGIN%20CERTIFICATE-----%0A"

	tests := map[string]struct {
		req     *authv3.CheckRequest
		want    decision.Request
		invalid bool // envoy.RequestFromCheck reports a request_invalid
	}{
		"nil request": {req: nil, want: decision.Request{}},
		"empty request": {
			req:  &authv3.CheckRequest{},
			want: decision.Request{},
		},
		"empty attributes": {
			req:  &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{}, Source: &authv3.AttributeContext_Peer{}}},
			want: decision.Request{},
		},
		"envoy merged headers": {
			req: envoyRequest(),
			want: decision.Request{
				Method: "GET", Path: "/api/items/42?x=1", Host: "api.example", RequestID: "req-1",
				Authorization: "Bearer abc.def.ghi", AuthorizationCount: 1,
				ForwardedFor: "203.0.113.9, 10.0.0.1",
				SourceIP:     netip.MustParseAddr("10.0.0.7"),
				Environment:  "prod",
				Attributes:   map[string]string{"environment": "prod", "team": "a"},
			},
		},
		"client certificate": {
			req: withCert,
			want: decision.Request{
				Method: "GET", Path: "/api/items/42?x=1", Host: "api.example", RequestID: "req-1",
				Authorization: "Bearer abc.def.ghi", AuthorizationCount: 1,
				ForwardedFor:      "203.0.113.9, 10.0.0.1",
				SourceIP:          netip.MustParseAddr("10.0.0.7"),
				Environment:       "prod",
				ClientCertificate: "-----BEGIN%20CERTIFICATE-----%0A",
				Attributes:        map[string]string{"environment": "prod", "team": "a"},
			},
		},
		"pseudo-headers only": {
			req: checkRequest("", &authv3.AttributeContext_HttpRequest{Headers: map[string]string{
				":method": "DELETE", ":path": "/x", ":authority": "h.example", "x-request-id": "rid",
			}}, nil),
			want: decision.Request{Method: "DELETE", Path: "/x", Host: "h.example", RequestID: "rid"},
		},
		"http fields win over pseudo-headers": {
			req: checkRequest("", &authv3.AttributeContext_HttpRequest{Method: "GET", Path: "/a", Host: "a", Id: "1",
				Headers: map[string]string{":method": "POST", ":path": "/b", ":authority": "b", "x-request-id": "2"}}, nil),
			want: decision.Request{Method: "GET", Path: "/a", Host: "a", RequestID: "1"},
		},
		"empty authorization header counts": {
			req:  checkRequest("", &authv3.AttributeContext_HttpRequest{Method: "GET", Path: "/", Headers: map[string]string{"authorization": ""}}, nil),
			want: decision.Request{Method: "GET", Path: "/", AuthorizationCount: 1},
		},
		"header_map: two authorization headers": {
			req: checkRequest("", &authv3.AttributeContext_HttpRequest{HeaderMap: rawHeaders(
				":method", "GET", ":path", "/api/items/1", ":authority", "raw.example",
				"authorization", "Bearer first", "Authorization", "Bearer second",
				"x-forwarded-for", "198.51.100.1", "x-forwarded-for", "10.0.0.2",
			)}, nil),
			want: decision.Request{
				Method: "GET", Path: "/api/items/1", Host: "raw.example",
				Authorization: "Bearer first", AuthorizationCount: 2,
				ForwardedFor: "198.51.100.1, 10.0.0.2",
			},
		},
		"header_map: string values": {
			req: checkRequest("", &authv3.AttributeContext_HttpRequest{HeaderMap: &corev3.HeaderMap{Headers: []*corev3.HeaderValue{
				{Key: ":method", Value: "PUT"}, {Key: ":path", Value: "/p"}, {Key: "authorization", Value: "Bearer v"},
			}}}, nil),
			want: decision.Request{Method: "PUT", Path: "/p", Authorization: "Bearer v", AuthorizationCount: 1},
		},
		"header_map with an empty headers map": {
			req: checkRequest("", &authv3.AttributeContext_HttpRequest{Headers: map[string]string{}, HeaderMap: rawHeaders(
				":method", "GET", ":path", "/r", "authorization", "Bearer t",
			)}, nil),
			want: decision.Request{Method: "GET", Path: "/r", Authorization: "Bearer t", AuthorizationCount: 1},
		},
		"header_map: no authorization": {
			req:  checkRequest("", &authv3.AttributeContext_HttpRequest{HeaderMap: rawHeaders(":method", "GET", ":path", "/")}, nil),
			want: decision.Request{Method: "GET", Path: "/"},
		},
		"header_map with nil entries": {
			req:  checkRequest("", &authv3.AttributeContext_HttpRequest{HeaderMap: &corev3.HeaderMap{Headers: []*corev3.HeaderValue{nil, {Key: ":method", Value: "GET"}}}}, nil),
			want: decision.Request{Method: "GET"},
		},
		"ipv6 source": {
			req:  checkRequest("2001:db8::1", &authv3.AttributeContext_HttpRequest{Method: "GET", Path: "/"}, nil),
			want: decision.Request{Method: "GET", Path: "/", SourceIP: netip.MustParseAddr("2001:db8::1")},
		},
		"ipv4-mapped ipv6 source is unmapped": {
			req:  checkRequest("::ffff:192.0.2.10", &authv3.AttributeContext_HttpRequest{Method: "GET", Path: "/"}, nil),
			want: decision.Request{Method: "GET", Path: "/", SourceIP: netip.MustParseAddr("192.0.2.10")},
		},
		"unparseable source is refused": {
			req:     checkRequest("not-an-ip", &authv3.AttributeContext_HttpRequest{Method: "GET", Path: "/"}, nil),
			want:    decision.Request{Method: "GET", Path: "/"},
			invalid: true,
		},
		"source with a port is refused": {
			req:     checkRequest("203.0.113.7:8080", &authv3.AttributeContext_HttpRequest{Method: "GET", Path: "/"}, nil),
			want:    decision.Request{Method: "GET", Path: "/"},
			invalid: true,
		},
		"bracketed ipv6 source is refused": {
			req:     checkRequest("[2001:db8::1]", &authv3.AttributeContext_HttpRequest{Method: "GET", Path: "/"}, nil),
			want:    decision.Request{Method: "GET", Path: "/"},
			invalid: true,
		},
		"source with a trailing space is refused": {
			req:     checkRequest("203.0.113.7 ", &authv3.AttributeContext_HttpRequest{Method: "GET", Path: "/"}, nil),
			want:    decision.Request{Method: "GET", Path: "/"},
			invalid: true,
		},
		"pipe source has no ip": {
			req: &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Source: &authv3.AttributeContext_Peer{
				Address: &corev3.Address{Address: &corev3.Address_Pipe{Pipe: &corev3.Pipe{Path: "/run/envoy.sock"}}},
			}}},
			want: decision.Request{},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got := decision.Request{Method: "stale", Trace: &decision.Trace{}}
			invalid := envoy.RequestFromCheck(tc.req, &got)
			if (invalid != "") != tc.invalid {
				t.Errorf("RequestFromCheck reported %q, want invalid=%v", invalid, tc.invalid)
			}
			if tc.invalid && !strings.Contains(invalid, "source.address") {
				t.Errorf("the message %q does not name the field", invalid)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("RequestFromCheck:\n got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

// TestSparseRequestsAreDenied runs sparse and malformed requests through a
// real engine: each must be denied with a reason, never panic.
func TestSparseRequestsAreDenied(t *testing.T) {
	pol := decisiontest.TranslatorPolicy(t)
	eng, err := decision.NewEngine(pol, decision.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	resp := envoy.NewResponder(envoy.ResponderOptions{})

	tests := map[string]struct {
		req  *authv3.CheckRequest
		want decision.Code
	}{
		"nil":             {nil, decision.PathInvalid},
		"empty":           {&authv3.CheckRequest{}, decision.PathInvalid},
		"no method":       {checkRequest("", &authv3.AttributeContext_HttpRequest{Path: "/api/items/1"}, nil), decision.RequestInvalid},
		"no token":        {checkRequest("", &authv3.AttributeContext_HttpRequest{Method: "GET", Path: "/api/items/1"}, nil), decision.TokenMissing},
		"unknown path":    {checkRequest("", &authv3.AttributeContext_HttpRequest{Method: "GET", Path: "/nope"}, nil), decision.NoRoute},
		"garbage token":   {checkRequest("", &authv3.AttributeContext_HttpRequest{Method: "GET", Path: "/api/items/1", Headers: map[string]string{"authorization": "Bearer x"}}, nil), decision.TokenInvalid},
		"two authz (raw)": {checkRequest("", &authv3.AttributeContext_HttpRequest{HeaderMap: rawHeaders(":method", "GET", ":path", "/api/items/1", "authorization", "Bearer a", "authorization", "Bearer b")}, nil), decision.RequestInvalid},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			var r decision.Request
			envoy.RequestFromCheck(tc.req, &r)
			d := eng.Decide(context.Background(), &r)
			if d.Allow || d.Code != tc.want {
				t.Fatalf("Decide = allow %v code %v (%s), want deny %v", d.Allow, d.Code, d.Message(), tc.want)
			}
			cr := resp.Response(&d)
			if cr.GetStatus().GetCode() == 0 || cr.GetDeniedResponse() == nil {
				t.Fatalf("response is not a deny: %v", cr)
			}
		})
	}
}

func BenchmarkRequestFromCheck(b *testing.B) {
	req := envoyRequest()
	var out decision.Request
	b.ReportAllocs()
	for b.Loop() {
		envoy.RequestFromCheck(req, &out)
	}
	if out.AuthorizationCount != 1 {
		b.Fatal("authorization not found")
	}
}
