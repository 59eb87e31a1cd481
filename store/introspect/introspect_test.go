package introspect

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jws"

	"github.com/scopegate/scopegate/decision"
)

const (
	testClient = "scopegate"
	testSecret = "s3cr3t:with/odd chars"
	testToken  = "opaque-token-value-0123456789"
)

// as is an introspection endpoint that checks the client's credentials.
type as struct {
	*httptest.Server
	hits    atomic.Int64
	status  atomic.Int64
	delay   atomic.Int64 // nanoseconds
	ecKey   *ecdsa.PublicKey
	mu      sync.Mutex
	lastReq *http.Request
	form    url.Values
}

func newAS(t *testing.T) *as {
	t.Helper()
	a := &as{}
	a.status.Store(http.StatusOK)
	a.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.hits.Add(1)
		time.Sleep(time.Duration(a.delay.Load()))
		if err := r.ParseForm(); err != nil {
			http.Error(w, "bad form", http.StatusBadRequest)
			return
		}
		a.mu.Lock()
		a.lastReq, a.form = r, r.PostForm
		a.mu.Unlock()
		if st := int(a.status.Load()); st != http.StatusOK {
			w.WriteHeader(st)
			return
		}
		if !a.authenticated(r) {
			http.Error(w, `{"error":"invalid_client"}`, http.StatusUnauthorized)
			return
		}
		ans := map[string]any{"active": r.PostForm.Get("token") == testToken, "scope": "orders:read"}
		if r.Header.Get("Accept") == jwtContentType {
			w.Header().Set("Content-Type", jwtContentType+"; charset=utf-8")
			_, _ = w.Write([]byte("header.payload.signature"))
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(ans)
	}))
	t.Cleanup(a.Close)
	return a
}

func (a *as) authenticated(r *http.Request) bool {
	if id, secret, ok := r.BasicAuth(); ok {
		return id == testClient && secret == strings.ReplaceAll(strings.ReplaceAll(strings.ReplaceAll(testSecret, ":", "%3A"), "/", "%2F"), " ", "+")
	}
	if r.PostForm.Get("client_secret") != "" {
		return r.PostForm.Get("client_id") == testClient && r.PostForm.Get("client_secret") == testSecret
	}
	if r.PostForm.Get("client_assertion_type") == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer" && a.ecKey != nil {
		payload, err := jws.Verify([]byte(r.PostForm.Get("client_assertion")), jws.WithKey(jwa.ES256(), a.ecKey))
		if err != nil {
			return false
		}
		var c map[string]any
		if json.Unmarshal(payload, &c) != nil {
			return false
		}
		return c["iss"] == testClient && c["sub"] == testClient && c["aud"] == a.URL+"/introspect" && c["jti"] != ""
	}
	return false
}

func intro(a *as, edit func(*decision.Introspection)) *decision.Introspection {
	in := &decision.Introspection{Issuer: "https://as.example", KeyRef: &decision.KeyRef{Issuer: "https://as.example"},
		Endpoint: a.URL + "/introspect", ClientID: testClient, ClientAuth: decision.ClientSecretBasic, SecretEnv: "SECRET",
		Timeout: time.Second}
	if edit != nil {
		edit(in)
	}
	return in
}

func openClient(t *testing.T, in *decision.Introspection, opts Options) *Client {
	t.Helper()
	if opts.Getenv == nil {
		opts.Getenv = func(k string) string {
			if k == "SECRET" {
				return testSecret
			}
			return ""
		}
	}
	c := New(opts)
	pol := &decision.Policy{Issuers: map[string]*decision.Issuer{in.Issuer: {Name: in.Issuer, Introspection: in}}}
	if err := c.Open(pol); err != nil {
		t.Fatal(err)
	}
	return c
}

func wantActive(t *testing.T, c *Client, in *decision.Introspection, token string, want bool) {
	t.Helper()
	resp, err := c.Introspect(context.Background(), in, token)
	if err != nil {
		t.Fatal(err)
	}
	var ans struct{ Active bool }
	if err := json.Unmarshal(resp.Body, &ans); err != nil || ans.Active != want {
		t.Fatalf("answer %s (%v), want active %v", resp.Body, err, want)
	}
}

func TestClientAuthentication(t *testing.T) {
	a := newAS(t)
	secretFile := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secretFile, []byte(testSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	a.ecKey = &priv.PublicKey
	der, _ := x509.MarshalPKCS8PrivateKey(priv)
	keyFile := filepath.Join(t.TempDir(), "client.pem")
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, edit := range map[string]func(*decision.Introspection){
		"basic from env":  nil,
		"basic from file": func(in *decision.Introspection) { in.SecretEnv, in.SecretFile = "", secretFile },
		"post":            func(in *decision.Introspection) { in.ClientAuth = decision.ClientSecretPost },
		"private_key_jwt": func(in *decision.Introspection) {
			in.ClientAuth, in.SecretEnv, in.KeyFile = decision.PrivateKeyJWT, "", keyFile
		},
	} {
		t.Run(name, func(t *testing.T) {
			in := intro(a, edit)
			c := openClient(t, in, Options{})
			wantActive(t, c, in, testToken, true)
			wantActive(t, c, in, "another", false)
			a.mu.Lock()
			defer a.mu.Unlock()
			if a.form.Get("token_type_hint") != "access_token" || a.lastReq.Header.Get("Accept") != "application/json" {
				t.Fatalf("form %v, accept %q", a.form, a.lastReq.Header.Get("Accept"))
			}
		})
	}
	// Wrong credentials: the endpoint's 401 is a failure, not an answer.
	in := intro(a, nil)
	c := openClient(t, in, Options{Getenv: func(string) string { return "wrong" }})
	_, err = c.Introspect(context.Background(), in, testToken)
	var e *Error
	if !errors.As(err, &e) || e.Kind != KindStatus || strings.Contains(err.Error(), testToken) || strings.Contains(err.Error(), "wrong") {
		t.Fatalf("error %v", err)
	}
}

func TestOpenRefusesMissingCredentials(t *testing.T) {
	a := newAS(t)
	for name, edit := range map[string]func(*decision.Introspection){
		"unset env":    func(in *decision.Introspection) { in.SecretEnv = "UNSET" },
		"missing file": func(in *decision.Introspection) { in.SecretEnv, in.SecretFile = "", "/nonexistent/secret" },
		"missing key": func(in *decision.Introspection) {
			in.ClientAuth, in.KeyFile = decision.PrivateKeyJWT, "/nonexistent/key.pem"
		},
	} {
		t.Run(name, func(t *testing.T) {
			in := intro(a, edit)
			c := New(Options{Getenv: func(string) string { return "" }})
			err := c.Open(&decision.Policy{Issuers: map[string]*decision.Issuer{in.Issuer: {Name: in.Issuer, Introspection: in}}})
			if err == nil || !strings.Contains(err.Error(), "issuer https://as.example: introspection:") {
				t.Fatalf("Open: %v", err)
			}
		})
	}
}

func TestJWTResponseAccepted(t *testing.T) {
	a := newAS(t)
	in := intro(a, func(in *decision.Introspection) { in.JWTResponse = true })
	c := openClient(t, in, Options{})
	resp, err := c.Introspect(context.Background(), in, testToken)
	if err != nil {
		t.Fatal(err)
	}
	if !resp.JWT || string(resp.Body) != "header.payload.signature" {
		t.Fatalf("response %+v", resp)
	}
}

func TestCoalescesConcurrentCalls(t *testing.T) {
	a := newAS(t)
	a.delay.Store(int64(100 * time.Millisecond))
	in := intro(a, nil)
	c := openClient(t, in, Options{})
	var wg sync.WaitGroup
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := c.Introspect(context.Background(), in, testToken); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if n := a.hits.Load(); n != 1 {
		t.Fatalf("%d calls for 20 concurrent lookups of one token, want 1", n)
	}
}

func TestTimeoutAndBreaker(t *testing.T) {
	a := newAS(t)
	var kinds []string
	var mu sync.Mutex
	observe := func(_, kind string, _ time.Duration) { mu.Lock(); kinds = append(kinds, kind); mu.Unlock() }

	slow := intro(a, func(in *decision.Introspection) { in.Timeout = 50 * time.Millisecond })
	a.delay.Store(int64(300 * time.Millisecond))
	c := openClient(t, slow, Options{Observe: observe})
	start := time.Now()
	_, err := c.Introspect(context.Background(), slow, testToken)
	var e *Error
	if !errors.As(err, &e) || e.Kind != KindTimeout || time.Since(start) > 250*time.Millisecond {
		t.Fatalf("error %v after %v, want a timeout within the issuer's 50ms", err, time.Since(start))
	}
	a.delay.Store(0)

	in := intro(a, nil)
	c = openClient(t, in, Options{Observe: observe, BreakerThreshold: 3, BreakerMinOpen: 200 * time.Millisecond, BreakerMaxOpen: 200 * time.Millisecond})
	a.status.Store(http.StatusInternalServerError)
	for range 3 {
		if _, err := c.Introspect(context.Background(), in, testToken); err == nil {
			t.Fatal("a 500 answered")
		}
	}
	hits := a.hits.Load()
	_, err = c.Introspect(context.Background(), in, testToken)
	if !errors.As(err, &e) || e.Kind != KindCircuitOpen || a.hits.Load() != hits || !c.BreakerOpen(in) {
		t.Fatalf("after 3 failures: %v, %d calls more; want circuit_open and no call", err, a.hits.Load()-hits)
	}
	// After the open time one probe goes through; its success closes it.
	a.status.Store(http.StatusOK)
	time.Sleep(250 * time.Millisecond)
	wantActive(t, c, in, testToken, true)
	if c.BreakerOpen(in) {
		t.Fatal("the breaker stayed open after a good probe")
	}
	mu.Lock()
	defer mu.Unlock()
	want := []string{KindTimeout, KindStatus, KindStatus, KindStatus, KindCircuitOpen, ""}
	if strings.Join(kinds, ",") != strings.Join(want, ",") {
		t.Fatalf("observed %q, want %q", kinds, want)
	}
}

func TestEndpointFromDiscovery(t *testing.T) {
	a := newAS(t)
	in := intro(a, func(in *decision.Introspection) { in.Endpoint = "" })
	var endpoint atomic.Value
	endpoint.Store("")
	c := openClient(t, in, Options{Endpoint: func(*decision.KeyRef) (string, bool) {
		e := endpoint.Load().(string)
		return e, e != ""
	}})
	_, err := c.Introspect(context.Background(), in, testToken)
	var e *Error
	if !errors.As(err, &e) || e.Kind != KindNoEndpoint {
		t.Fatalf("before discovery: %v", err)
	}
	endpoint.Store(a.URL + "/introspect")
	wantActive(t, c, in, testToken, true)
}

func TestUnreachable(t *testing.T) {
	a := newAS(t)
	in := intro(a, nil)
	c := openClient(t, in, Options{})
	a.Close()
	_, err := c.Introspect(context.Background(), in, testToken)
	var e *Error
	if !errors.As(err, &e) || e.Kind != KindUnreachable || strings.Contains(err.Error(), testToken) {
		t.Fatalf("error %v", err)
	}
}

// BenchmarkIntrospectLoopback is one introspection call, client and stub
// server both in this process on loopback: the cost an uncached opaque
// token adds to a decision besides the authorization server's own time.
func BenchmarkIntrospectLoopback(b *testing.B) {
	a := &as{}
	a.status.Store(http.StatusOK)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"active":true,"scope":"orders:read","client_id":"app","sub":"alice","aud":"orders-api","exp":4102444800}`))
	}))
	defer srv.Close()
	in := &decision.Introspection{Issuer: "https://as.example", Endpoint: srv.URL + "/introspect", ClientID: testClient,
		ClientAuth: decision.ClientSecretBasic, SecretEnv: "SECRET", Timeout: time.Second}
	c := New(Options{Getenv: func(string) string { return testSecret }})
	if err := c.Open(&decision.Policy{Issuers: map[string]*decision.Issuer{in.Issuer: {Name: in.Issuer, Introspection: in}}}); err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Introspect(ctx, in, testToken); err != nil {
			b.Fatal(err)
		}
	}
}
