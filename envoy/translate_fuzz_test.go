package envoy_test

import (
	"context"
	mrand "math/rand/v2"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/scopegate/scopegate/decision"
	"github.com/scopegate/scopegate/decision/decisiontest"
	"github.com/scopegate/scopegate/envoy"
)

// Fuzz target for the ext_authz CheckRequest translation. Properties: no
// input panics; permuting headers with distinct names changes nothing; the
// merged and raw header forms Envoy may send decide alike; and duplicating
// any header never turns a deny into an allow.

type header struct{ name, value string }

func lowerASCII(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

func decideCheck(tf *decisiontest.TranslatorFuzz, req *authv3.CheckRequest) (decision.Request, decision.Decision) {
	var r decision.Request
	if invalid := envoy.RequestFromCheck(req, &r); invalid != "" {
		return r, decision.Reject(tf.Engine.Policy(), decision.RequestInvalid, invalid)
	}
	return r, tf.Engine.Decide(context.Background(), &r)
}

func checkRaw(method, path, peer string, hs []header) *authv3.CheckRequest {
	hm := &corev3.HeaderMap{}
	for _, h := range hs {
		hm.Headers = append(hm.Headers, &corev3.HeaderValue{Key: h.name, RawValue: []byte(h.value)})
	}
	return checkOf(method, path, peer, &authv3.AttributeContext_HttpRequest{HeaderMap: hm})
}

// checkMerged builds the merged form: Envoy joins repeated headers with
// commas.
func checkMerged(method, path, peer string, hs []header) *authv3.CheckRequest {
	m := map[string]string{}
	for _, h := range hs {
		if v, ok := m[h.name]; ok {
			m[h.name] = v + "," + h.value
		} else {
			m[h.name] = h.value
		}
	}
	return checkOf(method, path, peer, &authv3.AttributeContext_HttpRequest{Headers: m})
}

func checkOf(method, path, peer string, h *authv3.AttributeContext_HttpRequest) *authv3.CheckRequest {
	h.Method, h.Path = method, path
	attrs := &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{Http: h}}
	if peer != "" {
		attrs.Source = &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
			SocketAddress: &corev3.SocketAddress{Address: peer}}}}
	}
	return &authv3.CheckRequest{Attributes: attrs}
}

func distinctNames(hs []header) bool {
	seen := map[string]bool{}
	for _, h := range hs {
		if seen[h.name] {
			return false
		}
		seen[h.name] = true
	}
	return true
}

func FuzzCheckRequestTranslation(f *testing.F) {
	tf := decisiontest.GetTranslatorFuzz(f)
	for _, s := range []struct {
		method, path string
		sel          uint8
		free         string
		xff, peer    string
		extraName    string
		extraValue   string
	}{
		{"GET", "/r/1", 0, "", "", "10.0.0.1", "x-a", "b"},
		{"POST", "/r/1", 0, "", "", "10.0.0.1", "x-http-method-override", "GET"},
		{"DELETE", "/r/1", 1, "", "", "10.0.0.1", "authorization", "Bearer x"},
		{"GET", "/internal/1", 0, "", "10.0.0.7", "192.0.2.1", "x-forwarded-for", "10.0.0.8"},
		{"GET", "/internal/1", 0, "", "10.0.0.7", "203.0.113.1", "", ""},
		{"GET", "/internal/1", 0, "", "10.0.0.7, 203.0.113.5", "192.0.2.1", "x-forwarded-for", "192.0.2.9"},
		{"GET", "/internal/1", 0, "", "", "::ffff:10.0.0.7", "", ""},
		{"GET", "/healthz", 3, "", "", "", ":path", "/r/1"},
		{"GET", "/r/1", 5, "Basic x", "", "", "AUTHORIZATION", "Bearer y"},
		{"GET", "/r/../r/1", 4, ",Bearer z", "", "", "", ""},
		{"", "", 0, "", "", "", ":method", "GET"},
	} {
		f.Add(s.method, s.path, s.sel, s.free, s.xff, s.peer, s.extraName, s.extraValue, uint64(7), uint8(1))
	}
	f.Fuzz(func(t *testing.T, method, path string, sel uint8, free, xff, peer, extraName, extraValue string, perm uint64, dup uint8) {
		hs := []header{{":method", method}, {":path", path}, {":authority", "api.test"}}
		if a := tf.AuthzFor(sel, free); a != "" || sel%6 == 5 {
			hs = append(hs, header{"authorization", a})
		}
		if xff != "" {
			hs = append(hs, header{"x-forwarded-for", xff})
		}
		if extraName != "" {
			hs = append(hs, header{lowerASCII(extraName), extraValue})
		}

		base := checkRaw(method, path, peer, hs)
		r0, d0 := decideCheck(tf, base)
		if d0.Allow != (d0.Code == decision.OK) {
			t.Fatalf("inconsistent decision %+v", d0)
		}

		// 1. Permutations of distinct names change nothing, in either form.
		if distinctNames(hs) {
			shuffled := append([]header(nil), hs...)
			rng := mrand.New(mrand.NewPCG(perm, perm>>7))
			rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
			r1, d1 := decideCheck(tf, checkRaw(method, path, peer, shuffled))
			if r1.Authorization != r0.Authorization || r1.AuthorizationCount != r0.AuthorizationCount || r1.ForwardedFor != r0.ForwardedFor ||
				r1.Method != r0.Method || r1.Path != r0.Path || d1.Code != d0.Code {
				t.Fatalf("reordering headers changed the decision: %s → %s", d0.Code, d1.Code)
			}
			_, d2 := decideCheck(tf, checkMerged(method, path, peer, shuffled))
			if d2.Code != d0.Code {
				t.Fatalf("merged form decided %s, raw form %s", d2.Code, d0.Code)
			}
		}

		// 2. Duplicating any header never turns a deny into an allow, in
		// the raw form (a second entry) or the merged form (comma-joined).
		if !d0.Allow && len(hs) > 0 {
			i := int(dup) % len(hs)
			dupd := append(append([]header(nil), hs[:i+1]...), hs[i:]...)
			if _, d := decideCheck(tf, checkRaw(method, path, peer, dupd)); d.Allow {
				t.Fatalf("duplicating %q turned %s into an allow (raw form)", hs[i].name, d0.Code)
			}
			if _, d := decideCheck(tf, checkMerged(method, path, peer, dupd)); d.Allow {
				t.Fatalf("duplicating %q turned %s into an allow (merged form)", hs[i].name, d0.Code)
			}
			// Moving the duplicate to the front instead.
			front := append([]header{hs[i]}, hs...)
			if _, d := decideCheck(tf, checkRaw(method, path, peer, front)); d.Allow && hs[i].name != ":method" && hs[i].name != ":path" {
				t.Fatalf("a leading duplicate of %q turned %s into an allow", hs[i].name, d0.Code)
			}
		}
	})
}
