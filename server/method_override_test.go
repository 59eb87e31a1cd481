package server

import (
	"net/http"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"

	scopegatev1 "github.com/scopegate/scopegate/proto/scopegate/v1"
)

// A method-override header naming another method than the request's is
// refused request_invalid by every protocol, whatever its spelling, so an
// upstream framework that honours it never runs a method that was not
// authorized. One that names the request's own method changes nothing.
func TestMethodOverrideRefusedEverywhere(t *testing.T) {
	e := startHTTPE2E(t, func(c *Config) { c.HTTPPathPrefix = envoyPrefix })
	read := mint(t, e.signer, "alice", "app", "items:read", time.Now(), time.Hour)
	type hdr struct{ name, value string }
	cases := []struct {
		name         string
		method, path string
		headers      []hdr
		wantOK       bool
	}{
		{"override to DELETE", "GET", "/api/items/1", []hdr{{"X-HTTP-Method-Override", "DELETE"}}, false},
		{"X-HTTP-Method", "GET", "/api/items/1", []hdr{{"X-HTTP-Method", "PUT"}}, false},
		{"X-Method-Override", "GET", "/api/items/1", []hdr{{"X-Method-Override", "POST"}}, false},
		{"upper-case name", "GET", "/api/items/1", []hdr{{"X-HTTP-METHOD-OVERRIDE", "DELETE"}}, false},
		{"lower-case name", "GET", "/api/items/1", []hdr{{"x-method-override", "DELETE"}}, false},
		{"comma list", "GET", "/api/items/1", []hdr{{"X-HTTP-Method-Override", "GET, DELETE"}}, false},
		{"two families disagree", "GET", "/api/items/1", []hdr{{"X-HTTP-Method", "GET"}, {"X-Method-Override", "DELETE"}}, false},
		{"public route", "GET", "/healthz", []hdr{{"X-HTTP-Method-Override", "DELETE"}}, false},
		{"spaces around another", "GET", "/api/items/1", []hdr{{"X-HTTP-Method-Override", "  PATCH "}}, false},

		{"same method", "GET", "/api/items/1", []hdr{{"X-HTTP-Method-Override", "GET"}}, true},
		{"same method lower-case", "GET", "/api/items/1", []hdr{{"X-HTTP-Method-Override", "get"}}, true},
		{"all three agree", "GET", "/api/items/1", []hdr{{"X-HTTP-Method-Override", "GET"}, {"X-HTTP-Method", "GET"}, {"X-Method-Override", "GET"}}, true},
		{"empty value", "GET", "/api/items/1", []hdr{{"X-HTTP-Method-Override", ""}}, true},
		{"look-alike name is another header", "GET", "/api/items/1", []hdr{{"X-HTTP-Method-Overrides", "DELETE"}}, true},
		{"none", "GET", "/api/items/1", nil, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			want := "request_invalid"
			if tc.wantOK {
				want = "ok"
			}
			results := map[string]string{}

			// ext_authz, merged headers (Envoy lower-cases the names and
			// joins repeated headers with a comma).
			merged := map[string]string{":method": tc.method, ":path": tc.path, "authorization": "Bearer " + read}
			for _, h := range tc.headers {
				k := strings.ToLower(h.name)
				if prev, ok := merged[k]; ok {
					merged[k] = prev + "," + h.value
				} else {
					merged[k] = h.value
				}
			}
			results["ext_authz merged"] = extAuthzCode(t, e, &authv3.AttributeContext_HttpRequest{Method: tc.method, Path: tc.path, Headers: merged})

			// ext_authz, raw header_map (encode_raw_headers), names as sent.
			raw := []*corev3.HeaderValue{{Key: ":method", RawValue: []byte(tc.method)}, {Key: ":path", RawValue: []byte(tc.path)},
				{Key: "authorization", RawValue: []byte("Bearer " + read)}}
			for _, h := range tc.headers {
				raw = append(raw, &corev3.HeaderValue{Key: h.name, RawValue: []byte(h.value)})
			}
			results["ext_authz raw"] = extAuthzCode(t, e, &authv3.AttributeContext_HttpRequest{Method: tc.method, Path: tc.path, HeaderMap: &corev3.HeaderMap{Headers: raw}})

			// Check RPC: a map, so one value per spelling.
			rpcHeaders := map[string]string{"Authorization": "Bearer " + read}
			for _, h := range tc.headers {
				rpcHeaders[h.name] = h.value
			}
			resp, err := e.authorizer.Check(ctxT(t), &scopegatev1.CheckRequest{Method: tc.method, Path: tc.path, Headers: rpcHeaders})
			if err != nil {
				t.Fatal(err)
			}
			results["check rpc"] = resp.GetReasons()[0].GetCode()

			// Forward-auth in each proxy's style.
			for _, style := range []string{styleNginx, styleCaddy, styleTraefik, styleEnvoy} {
				h := []string{"Authorization", "Bearer " + read}
				for _, x := range tc.headers {
					h = append(h, x.name, x.value)
				}
				var resp *http.Response
				switch style {
				case styleNginx:
					resp = e.do(t, "GET", "/check", nil, append(h, "X-Original-Method", tc.method, "X-Original-URI", tc.path)...)
				case styleCaddy, styleTraefik:
					resp = e.do(t, "GET", "/", nil, append(h, "X-Forwarded-Method", tc.method, "X-Forwarded-Uri", tc.path)...)
				case styleEnvoy:
					resp = e.do(t, tc.method, envoyPrefix+tc.path, nil, h...)
				}
				readBody(t, resp)
				code := resp.Header.Get("X-Scopegate-Reason")
				if resp.StatusCode == 200 {
					code = "ok"
				} else if code == "request_invalid" && resp.StatusCode != 400 {
					t.Errorf("forward-auth %s: request_invalid with status %d, want 400", style, resp.StatusCode)
				}
				results["forward-auth "+style] = code
			}
			for api, got := range results {
				if got != want {
					t.Errorf("%s: %s, want %s", api, got, want)
				}
			}
		})
	}
}

func extAuthzCode(t *testing.T, e *httpE2E, h *authv3.AttributeContext_HttpRequest) string {
	t.Helper()
	resp, err := e.extauthz.Check(ctxT(t), &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{Http: h}}})
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetStatus().GetCode() == int32(codes.OK) {
		return "ok"
	}
	if d := resp.GetDeniedResponse(); resp.GetStatus().GetMessage() == "request_invalid" && d.GetStatus().GetCode() != 400 {
		t.Errorf("ext_authz: request_invalid with HTTP status %d, want 400", d.GetStatus().GetCode())
	}
	return resp.GetStatus().GetMessage()
}
