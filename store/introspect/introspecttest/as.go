// Package introspecttest is a stub authorization server for tests and
// benchmarks of opaque tokens: an httptest server publishing a discovery
// document, a JWKS and an RFC 7662 introspection endpoint that
// authenticates its client with client_secret_basic. Tokens are minted
// with the claims the test chooses, and revoked or the whole server taken
// down at will.
package introspecttest

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"time"
)

// The stub's client credentials.
const (
	ClientID     = "scopegate"
	ClientSecret = "introspecttest-secret"
)

// AS is the stub authorization server.
type AS struct {
	srv  *httptest.Server
	jwks []byte

	mu     sync.Mutex
	tokens map[string]map[string]any
	down   bool
	delay  time.Duration

	// Calls counts introspection calls.
	Calls atomic.Int64
}

// New starts a stub whose key set is jwks (decisiontest.JWKS). Close it
// when done.
func New(jwks []byte) *AS {
	a := &AS{jwks: jwks, tokens: map[string]map[string]any{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", a.discovery)
	mux.HandleFunc("GET /jwks", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/jwk-set+json")
		_, _ = w.Write(a.jwks)
	})
	mux.HandleFunc("POST /introspect", a.introspect)
	a.srv = httptest.NewServer(mux)
	return a
}

// Issuer is the stub's issuer identifier (its base URL).
func (a *AS) Issuer() string { return a.srv.URL }

// IntrospectionEndpoint is the endpoint's URL.
func (a *AS) IntrospectionEndpoint() string { return a.srv.URL + "/introspect" }

// Close stops the server.
func (a *AS) Close() { a.srv.Close() }

// Mint registers a new opaque token with claims (active and iss are
// added) and returns it.
func (a *AS) Mint(claims map[string]any) string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	tok := base64.RawURLEncoding.EncodeToString(b)
	c := map[string]any{"active": true, "iss": a.Issuer(), "token_type": "Bearer"}
	for k, v := range claims {
		c[k] = v
	}
	a.mu.Lock()
	a.tokens[tok] = c
	a.mu.Unlock()
	return tok
}

// Revoke makes tok inactive (RFC 7009).
func (a *AS) Revoke(tok string) {
	a.mu.Lock()
	delete(a.tokens, tok)
	a.mu.Unlock()
}

// SetDown makes the introspection endpoint answer 503 (down) or serve
// again.
func (a *AS) SetDown(down bool) {
	a.mu.Lock()
	a.down = down
	a.mu.Unlock()
}

// SetDelay delays every introspection answer by d.
func (a *AS) SetDelay(d time.Duration) {
	a.mu.Lock()
	a.delay = d
	a.mu.Unlock()
}

func (a *AS) discovery(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{
		"issuer": a.Issuer(), "jwks_uri": a.srv.URL + "/jwks", "introspection_endpoint": a.IntrospectionEndpoint(),
		"token_endpoint": a.srv.URL + "/token",
	})
}

func (a *AS) introspect(w http.ResponseWriter, r *http.Request) {
	a.Calls.Add(1)
	a.mu.Lock()
	down, delay := a.down, a.delay
	a.mu.Unlock()
	time.Sleep(delay)
	if down {
		http.Error(w, "down", http.StatusServiceUnavailable)
		return
	}
	if id, secret, ok := r.BasicAuth(); !ok || id != ClientID || secret != ClientSecret {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = w.Write([]byte(`{"error":"invalid_client"}`))
		return
	}
	if err := r.ParseForm(); err != nil {
		http.Error(w, "bad form", http.StatusBadRequest)
		return
	}
	a.mu.Lock()
	c, ok := a.tokens[r.PostForm.Get("token")]
	a.mu.Unlock()
	if !ok {
		c = map[string]any{"active": false}
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(c)
}
