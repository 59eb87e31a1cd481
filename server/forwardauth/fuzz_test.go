package forwardauth_test

import (
	"context"
	"net/http"
	"testing"

	"github.com/scopegate/scopegate/decision"
	"github.com/scopegate/scopegate/decision/decisiontest"
	"github.com/scopegate/scopegate/server/forwardauth"
)

type header struct{ name, value string }

// FuzzForwardAuthTranslation feeds any check request to the forward-auth
// translation and the engine: no input panics, and duplicating any header
// never turns a deny into an allow.
func FuzzForwardAuthTranslation(f *testing.F) {
	tf := decisiontest.GetTranslatorFuzz(f)
	f.Add("GET", "/r/1", uint8(0), "", "", "10.0.0.1:5000", "X-A", "b", uint8(0))
	f.Add("GET", "/auth", uint8(0), "", "", "10.0.0.1:5000", "X-Forwarded-Uri", "/r/1", uint8(1))
	f.Add("GET", "/auth", uint8(1), "", "", "10.0.0.1:5000", "X-Original-Method", "DELETE", uint8(2))
	f.Add("GET", "/internal/1", uint8(0), "", "10.0.0.7", "192.0.2.1:1", "X-Forwarded-For", "10.0.0.9", uint8(3))
	f.Add("POST", "/r/1", uint8(1), "", "", "[::ffff:10.0.0.1]:1", "X-Http-Method-Override", "GET", uint8(4))
	f.Add("GET", "/r/1", uint8(5), "Bearer a", "", "", "Authorization", "Bearer b", uint8(0))
	f.Fuzz(func(t *testing.T, method, uri string, sel uint8, free, xff, remote, extraName, extraValue string, dup uint8) {
		var hs []header
		if a := tf.AuthzFor(sel, free); a != "" || sel%6 == 5 {
			hs = append(hs, header{"Authorization", a})
		}
		if xff != "" {
			hs = append(hs, header{"X-Forwarded-For", xff})
		}
		if extraName != "" {
			hs = append(hs, header{http.CanonicalHeaderKey(extraName), extraValue})
		}
		build := func(hs []header) *http.Request {
			r := &http.Request{Method: method, RequestURI: uri, RemoteAddr: remote, Host: "api.test", Header: http.Header{}}
			for _, h := range hs {
				r.Header.Add(h.name, h.value)
			}
			return r
		}
		decideHTTP := func(r *http.Request) decision.Decision {
			var req decision.Request
			if invalid := forwardauth.RequestFromHTTP(r, nil, &req); invalid != "" {
				return decision.Decision{Code: decision.RequestInvalid, Detail: invalid}
			}
			return tf.Engine.Decide(context.Background(), &req)
		}
		d0 := decideHTTP(build(hs))
		if d0.Allow != (d0.Code == decision.OK) {
			t.Fatalf("inconsistent decision %+v", d0)
		}
		if !d0.Allow && len(hs) > 0 {
			i := int(dup) % len(hs)
			dupd := append(append([]header(nil), hs[:i+1]...), hs[i:]...)
			if d := decideHTTP(build(dupd)); d.Allow {
				t.Fatalf("duplicating %q turned %s into an allow", hs[i].name, d0.Code)
			}
		}
	})
}
