package envoy

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	mrand "math/rand/v2"
	"net/http"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/lestrrat-go/jwx/v3/jws/jwsbb"

	"github.com/scopegate/scopegate/decision"
)

// Fuzz targets for the request translations (ext_authz CheckRequest and
// HTTP forward-auth). Properties: no input panics; permuting headers with
// distinct names changes nothing; the merged and raw header forms Envoy may
// send decide alike; and duplicating any header never turns a deny into an
// allow.

var fuzzNow = time.Unix(1_900_000_000, 0)

const translateFuzzPolicy = `
version: fuzz
issuers:
  - issuer: https://issuer.fuzz/
    audiences: [api]
    jwks_file: jwks.json
    algorithms: [ES256]
networks: {corp: [10.0.0.0/8]}
trusted_proxies: {hops: 1, cidrs: [192.0.2.0/24]}
routes:
  - name: read
    match: {methods: [GET], path: "/r/{id}"}
    require: {all_of: [r]}
  - name: write
    match: {methods: [POST, DELETE], path: "/r/{id}"}
    require: {all_of: [w]}
  - name: internal
    match: {methods: [GET], path: "/internal/{id}"}
    require: {all_of: [r]}
    when: {source_ip: {allow: [corp]}}
  - name: health
    match: {path: /healthz}
    public: true
default: deny
`

type translateFuzz struct {
	eng    *decision.Engine
	tokens []string // [0] grants r, [1] grants r w
}

var (
	translateOnce sync.Once
	translateEnv  *translateFuzz
	translateErr  error
)

func getTranslateFuzz(tb testing.TB) *translateFuzz {
	tb.Helper()
	translateOnce.Do(func() { translateEnv, translateErr = newTranslateFuzz() })
	if translateErr != nil {
		tb.Fatal(translateErr)
	}
	return translateEnv
}

func newTranslateFuzz() (*translateFuzz, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	keys := decision.StaticKeys{{Kid: "k1", Alg: "ES256", Public: &k.PublicKey}}
	pol, err := decision.Compile([]byte(translateFuzzPolicy), "fuzz.yaml", decision.CompileOptions{})
	if err != nil {
		return nil, err
	}
	eng, err := decision.NewEngine(pol, decision.Options{Keys: decision.StaticKeyResolver(keys), Clock: func() time.Time { return fuzzNow }, TokenCacheSize: 1 << 10})
	if err != nil {
		return nil, err
	}
	tf := &translateFuzz{eng: eng}
	for _, scope := range []string{"r", "r w"} {
		hb, _ := json.Marshal(map[string]any{"alg": "ES256", "kid": "k1"})
		pb, _ := json.Marshal(map[string]any{"iss": "https://issuer.fuzz/", "aud": "api", "sub": "s", "scope": scope,
			"iat": fuzzNow.Unix(), "exp": fuzzNow.Add(time.Hour).Unix()})
		input := base64.RawURLEncoding.EncodeToString(hb) + "." + base64.RawURLEncoding.EncodeToString(pb)
		sig, err := jwsbb.Sign(k, "ES256", []byte(input), nil)
		if err != nil {
			return nil, err
		}
		tf.tokens = append(tf.tokens, input+"."+base64.RawURLEncoding.EncodeToString(sig))
	}
	return tf, nil
}

// authzFor picks the Authorization value of a fuzz case.
func (tf *translateFuzz) authzFor(sel uint8, free string) string {
	switch sel % 6 {
	case 0:
		return "Bearer " + tf.tokens[0]
	case 1:
		return "Bearer " + tf.tokens[1]
	case 2:
		return "bearer " + tf.tokens[1]
	case 3:
		return ""
	case 4:
		return "Bearer " + tf.tokens[1] + free
	default:
		return free
	}
}

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

func (tf *translateFuzz) decide(req *authv3.CheckRequest) (decision.Request, decision.Decision) {
	var r decision.Request
	if invalid := RequestFromCheck(req, &r); invalid != "" {
		return r, decision.Reject(tf.eng.Policy(), decision.RequestInvalid, invalid)
	}
	return r, tf.eng.Decide(context.Background(), &r)
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
	tf := getTranslateFuzz(f)
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
		if a := tf.authzFor(sel, free); a != "" || sel%6 == 5 {
			hs = append(hs, header{"authorization", a})
		}
		if xff != "" {
			hs = append(hs, header{"x-forwarded-for", xff})
		}
		if extraName != "" {
			hs = append(hs, header{lowerASCII(extraName), extraValue})
		}

		base := checkRaw(method, path, peer, hs)
		r0, d0 := tf.decide(base)
		if d0.Allow != (d0.Code == decision.OK) {
			t.Fatalf("inconsistent decision %+v", d0)
		}

		// 1. Permutations of distinct names change nothing, in either form.
		if distinctNames(hs) {
			shuffled := append([]header(nil), hs...)
			rng := mrand.New(mrand.NewPCG(perm, perm>>7))
			rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
			r1, d1 := tf.decide(checkRaw(method, path, peer, shuffled))
			if r1.Authorization != r0.Authorization || r1.AuthorizationCount != r0.AuthorizationCount || r1.ForwardedFor != r0.ForwardedFor ||
				r1.Method != r0.Method || r1.Path != r0.Path || d1.Code != d0.Code {
				t.Fatalf("reordering headers changed the decision: %s → %s", d0.Code, d1.Code)
			}
			_, d2 := tf.decide(checkMerged(method, path, peer, shuffled))
			if d2.Code != d0.Code {
				t.Fatalf("merged form decided %s, raw form %s", d2.Code, d0.Code)
			}
		}

		// 2. Duplicating any header never turns a deny into an allow, in
		// the raw form (a second entry) or the merged form (comma-joined).
		if !d0.Allow && len(hs) > 0 {
			i := int(dup) % len(hs)
			dupd := append(append([]header(nil), hs[:i+1]...), hs[i:]...)
			if _, d := tf.decide(checkRaw(method, path, peer, dupd)); d.Allow {
				t.Fatalf("duplicating %q turned %s into an allow (raw form)", hs[i].name, d0.Code)
			}
			if _, d := tf.decide(checkMerged(method, path, peer, dupd)); d.Allow {
				t.Fatalf("duplicating %q turned %s into an allow (merged form)", hs[i].name, d0.Code)
			}
			// Moving the duplicate to the front instead.
			front := append([]header{hs[i]}, hs...)
			if _, d := tf.decide(checkRaw(method, path, peer, front)); d.Allow && hs[i].name != ":method" && hs[i].name != ":path" {
				t.Fatalf("a leading duplicate of %q turned %s into an allow", hs[i].name, d0.Code)
			}
		}
	})
}

func FuzzForwardAuthTranslation(f *testing.F) {
	tf := getTranslateFuzz(f)
	f.Add("GET", "/r/1", uint8(0), "", "", "10.0.0.1:5000", "X-A", "b", uint8(0))
	f.Add("GET", "/auth", uint8(0), "", "", "10.0.0.1:5000", "X-Forwarded-Uri", "/r/1", uint8(1))
	f.Add("GET", "/auth", uint8(1), "", "", "10.0.0.1:5000", "X-Original-Method", "DELETE", uint8(2))
	f.Add("GET", "/internal/1", uint8(0), "", "10.0.0.7", "192.0.2.1:1", "X-Forwarded-For", "10.0.0.9", uint8(3))
	f.Add("POST", "/r/1", uint8(1), "", "", "[::ffff:10.0.0.1]:1", "X-Http-Method-Override", "GET", uint8(4))
	f.Add("GET", "/r/1", uint8(5), "Bearer a", "", "", "Authorization", "Bearer b", uint8(0))
	f.Fuzz(func(t *testing.T, method, uri string, sel uint8, free, xff, remote, extraName, extraValue string, dup uint8) {
		var hs []header
		if a := tf.authzFor(sel, free); a != "" || sel%6 == 5 {
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
			if invalid := RequestFromHTTP(r, nil, &req); invalid != "" {
				return decision.Decision{Code: decision.RequestInvalid, Detail: invalid}
			}
			return tf.eng.Decide(context.Background(), &req)
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
