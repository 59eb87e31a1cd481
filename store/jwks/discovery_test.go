package jwks

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/scopegate/scopegate/decision"
)

// idp is an authorization server publishing discovery documents and key
// sets at paths tests choose.
type idp struct {
	*httptest.Server
	mu       sync.Mutex
	docs     map[string]map[string]any // path → document
	jwks     map[string][]byte         // path → key set
	cc       string
	docHits  atomic.Int64
	lastPath atomic.Value
}

func newIDP(t *testing.T) *idp {
	t.Helper()
	s := &idp{docs: map[string]map[string]any{}, jwks: map[string][]byte{}}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		defer s.mu.Unlock()
		if doc, ok := s.docs[r.URL.Path]; ok {
			s.docHits.Add(1)
			s.lastPath.Store(r.URL.Path)
			if s.cc != "" {
				w.Header().Set("Cache-Control", s.cc)
			}
			_ = json.NewEncoder(w).Encode(doc)
			return
		}
		if body, ok := s.jwks[r.URL.Path]; ok {
			_, _ = w.Write(body)
			return
		}
		http.NotFound(w, r)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *idp) publish(path string, doc map[string]any) {
	s.mu.Lock()
	s.docs[path] = doc
	s.mu.Unlock()
}

func (s *idp) keys(path string, body []byte) {
	s.mu.Lock()
	s.jwks[path] = body
	s.mu.Unlock()
}

// fastRefresh refetches every few tens of milliseconds.
var fastRefresh = URLOptions{MinRefreshInterval: 20 * time.Millisecond, RefreshInterval: 40 * time.Millisecond}

// wantKids fails unless src serves exactly the keys want.
func wantKids(t *testing.T, src decision.KeySource, when string, want ...string) {
	t.Helper()
	if got := kids(src.Keys()); !slices.Equal(got, want) {
		t.Fatalf("keys %v %s, want %v", got, when, want)
	}
}

func startDiscovery(t *testing.T, issuer, configURL string, opts URLOptions) *Discovery {
	t.Helper()
	d, err := StartDiscovery(context.Background(), issuer, configURL, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Close)
	<-d.Ready()
	return d
}

func TestDiscoveryCandidates(t *testing.T) {
	for _, tc := range []struct {
		issuer, config string
		want           []string
	}{
		{"https://as.example", "", []string{"https://as.example/.well-known/openid-configuration", "https://as.example/.well-known/oauth-authorization-server"}},
		{"https://as.example/", "", []string{"https://as.example/.well-known/openid-configuration", "https://as.example/.well-known/oauth-authorization-server"}},
		// RFC 8414 section 3.1: the well-known segment goes between the
		// host and the path.
		{"https://as.example/tenant/one", "", []string{"https://as.example/tenant/one/.well-known/openid-configuration", "https://as.example/.well-known/oauth-authorization-server/tenant/one"}},
		{"https://as.example/t", "https://meta.example/x.json", []string{"https://meta.example/x.json"}},
	} {
		if got := DiscoveryCandidates(tc.issuer, tc.config); !slices.Equal(got, tc.want) {
			t.Errorf("DiscoveryCandidates(%q, %q) = %q, want %q", tc.issuer, tc.config, got, tc.want)
		}
	}
}

func TestDiscoveryLoadsKeysAndEndpoints(t *testing.T) {
	s := newIDP(t)
	iss := s.URL
	s.publish("/.well-known/openid-configuration", map[string]any{
		"issuer": iss, "jwks_uri": s.URL + "/keys", "introspection_endpoint": s.URL + "/introspect",
	})
	s.keys("/keys", jwksOf(t, key(t, "d1")))
	d := startDiscovery(t, iss, "", URLOptions{})
	if err := d.FirstError(); err != nil {
		t.Fatal(err)
	}
	wantKids(t, d, "from the document", "d1")
	doc, ok := d.Document()
	if !ok || doc.IntrospectionEndpoint != s.URL+"/introspect" || doc.JWKSURI != s.URL+"/keys" {
		t.Fatalf("document %+v, %v", doc, ok)
	}
	if st := d.Status(); st.Kind != "discovery" || st.Keys != 1 || st.LastError != nil {
		t.Fatalf("status %+v", st)
	}
}

func TestDiscoveryRFC8414Fallback(t *testing.T) {
	s := newIDP(t)
	iss := s.URL + "/tenant"
	// No OpenID configuration: the RFC 8414 document, under its own path.
	s.publish("/.well-known/oauth-authorization-server/tenant", map[string]any{"issuer": iss, "jwks_uri": s.URL + "/tenant/keys"})
	s.keys("/tenant/keys", jwksOf(t, key(t, "d2")))
	d := startDiscovery(t, iss, "", URLOptions{})
	if err := d.FirstError(); err != nil {
		t.Fatal(err)
	}
	wantKids(t, d, "from the RFC 8414 document", "d2")
}

func TestDiscoveryRefusesAnotherIssuer(t *testing.T) {
	s := newIDP(t)
	iss := s.URL
	s.keys("/keys", jwksOf(t, key(t, "d1")))
	s.publish("/.well-known/openid-configuration", map[string]any{"issuer": "https://evil.example", "jwks_uri": s.URL + "/keys"})
	d := startDiscovery(t, iss, "", fastRefresh)
	if err := d.FirstError(); err == nil || !strings.Contains(err.Error(), "mix-up") {
		t.Fatalf("first error %v, want a mix-up refusal", err)
	}
	if len(d.Keys()) != 0 {
		t.Fatal("keys from a document naming another issuer")
	}
	// A good document loads; a later one naming another issuer (with
	// other keys) is refused and the good one keeps serving.
	s.publish("/.well-known/openid-configuration", map[string]any{"issuer": iss, "jwks_uri": s.URL + "/keys"})
	eventually(t, "the good document", func() bool { return len(d.Keys()) == 1 })
	s.keys("/evil", jwksOf(t, key(t, "evil")))
	s.publish("/.well-known/openid-configuration", map[string]any{"issuer": iss + "/", "jwks_uri": s.URL + "/evil"})
	eventually(t, "the refusal", func() bool { return d.Status().LastError != nil })
	time.Sleep(100 * time.Millisecond)
	wantKids(t, d, "after a mix-up document", "d1")
	if doc, _ := d.Document(); doc.JWKSURI != s.URL+"/keys" {
		t.Fatalf("document %+v, want the last good one", doc)
	}
}

func TestDiscoveryKeepsLastGoodWhenDown(t *testing.T) {
	s := newIDP(t)
	iss := s.URL
	s.publish("/.well-known/openid-configuration", map[string]any{"issuer": iss, "jwks_uri": s.URL + "/keys"})
	s.keys("/keys", jwksOf(t, key(t, "d1")))
	d := startDiscovery(t, iss, "", fastRefresh)
	s.Close()
	eventually(t, "a failed refresh", func() bool { return d.Status().LastError != nil })
	wantKids(t, d, "with the server down", "d1")
}

func TestDiscoveryFollowsNewJWKSURI(t *testing.T) {
	s := newIDP(t)
	iss := s.URL
	s.publish("/.well-known/openid-configuration", map[string]any{"issuer": iss, "jwks_uri": s.URL + "/keys1"})
	s.keys("/keys1", jwksOf(t, key(t, "d1")))
	s.keys("/keys2", jwksOf(t, key(t, "d2")))
	d := startDiscovery(t, iss, "", fastRefresh)
	e1 := d.Epoch()
	s.publish("/.well-known/openid-configuration", map[string]any{"issuer": iss, "jwks_uri": s.URL + "/keys2"})
	eventually(t, "the new jwks_uri", func() bool { return slices.Equal(kids(d.Keys()), []string{"d2"}) })
	if d.Epoch() == e1 {
		t.Fatal("the epoch did not move with the key set")
	}
}

func TestDiscoveryHonoursCacheControl(t *testing.T) {
	s := newIDP(t)
	iss := s.URL
	s.cc = "public, max-age=1"
	s.publish("/.well-known/openid-configuration", map[string]any{"issuer": iss, "jwks_uri": s.URL + "/keys"})
	s.keys("/keys", jwksOf(t, key(t, "d1")))
	// max-age 1s, within [100ms, 1h]: refetched about every second, not
	// every hour.
	startDiscovery(t, iss, "", URLOptions{MinRefreshInterval: 100 * time.Millisecond, RefreshInterval: time.Hour})
	eventually(t, "a refetch after max-age", func() bool { return s.docHits.Load() >= 2 })
}

func TestRegistryDiscoveryIssuer(t *testing.T) {
	s := newIDP(t)
	iss := s.URL + "/realm"
	s.publish("/realm/.well-known/openid-configuration", map[string]any{"issuer": iss, "jwks_uri": s.URL + "/realm/keys", "introspection_endpoint": s.URL + "/realm/introspect"})
	s.keys("/realm/keys", jwksOf(t, key(t, "r1")))
	pol, err := decision.Compile([]byte("issuers:\n  - {issuer: "+iss+", discovery: true, audiences: [api], algorithms: [RS256]}\nroutes: [{name: r, match: {path: /x}, require: {all_of: [a]}}]\n"), "p.yaml", decision.CompileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	reg := NewRegistry(context.Background())
	t.Cleanup(reg.Close)
	if err := reg.Open(pol); err != nil {
		t.Fatal(err)
	}
	ref := &pol.Issuers[iss].KeyRef
	eventually(t, "the discovered keys", func() bool { src := reg.Keys(ref); return src != nil && len(src.Keys()) == 1 })
	doc, ok := reg.Document(ref)
	if !ok || doc.IntrospectionEndpoint != s.URL+"/realm/introspect" {
		t.Fatalf("document %+v, %v", doc, ok)
	}
}
