package jwks

import (
	"context"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// jwksServer is an https JWKS endpoint whose answer tests change.
type jwksServer struct {
	*httptest.Server
	mu           sync.Mutex
	body         []byte
	status       int
	cacheControl string
	delay        time.Duration
	hits         atomic.Int64
	caFile       string
}

func newJWKSServer(t *testing.T, body []byte) *jwksServer {
	t.Helper()
	s := &jwksServer{body: body, status: http.StatusOK}
	s.Server = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.hits.Add(1)
		s.mu.Lock()
		body, status, cc, delay := s.body, s.status, s.cacheControl, s.delay
		s.mu.Unlock()
		time.Sleep(delay)
		if cc != "" {
			w.Header().Set("Cache-Control", cc)
		}
		w.Header().Set("Content-Type", "application/jwk-set+json")
		w.WriteHeader(status)
		_, _ = w.Write(body)
	}))
	t.Cleanup(s.Close)
	s.caFile = filepath.Join(t.TempDir(), "ca.pem")
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.Certificate().Raw})
	if err := os.WriteFile(s.caFile, ca, 0o644); err != nil {
		t.Fatal(err)
	}
	return s
}

func (s *jwksServer) serve(status int, body []byte) {
	s.mu.Lock()
	s.status, s.body = status, body
	s.mu.Unlock()
}

func (s *jwksServer) url() string { return s.URL + "/.well-known/jwks.json" }

func newTestURL(t *testing.T, s *jwksServer, opts URLOptions) *URL {
	t.Helper()
	if opts.CAFile == "" && opts.HTTPClient == nil {
		opts.CAFile = s.caFile
	}
	u, err := NewURL(context.Background(), s.url(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(u.Close)
	return u
}

func TestURLSourceRotation(t *testing.T) {
	s := newJWKSServer(t, jwksOf(t, key(t, "k1")))
	u := newTestURL(t, s, URLOptions{RefreshInterval: time.Hour, MinRefreshInterval: 100 * time.Millisecond})
	if got := kids(u.Keys()); !slices.Equal(got, []string{"k1"}) || u.Epoch() != 1 || u.Refreshes() != 1 {
		t.Fatalf("start: kids %q epoch %d refreshes %d", got, u.Epoch(), u.Refreshes())
	}

	// The issuer rotates: k1 gone, k2 in.
	s.serve(http.StatusOK, jwksOf(t, key(t, "k2")))
	time.Sleep(150 * time.Millisecond)
	keys, ok := u.RefreshUnknownKid(context.Background(), "k2")
	if !ok || !slices.Equal(kids(keys), []string{"k2"}) {
		t.Fatalf("refresh: ok %v kids %q", ok, kids(keys))
	}
	if u.Epoch() != 2 || s.hits.Load() != 2 {
		t.Fatalf("epoch %d hits %d, want 2 and 2", u.Epoch(), s.hits.Load())
	}
}

func TestURLSourceRateLimit(t *testing.T) {
	s := newJWKSServer(t, jwksOf(t, key(t, "k1")))
	s.delay = 50 * time.Millisecond
	u := newTestURL(t, s, URLOptions{RefreshInterval: time.Hour, MinRefreshInterval: 400 * time.Millisecond})

	flood := func(n int) int {
		var wg sync.WaitGroup
		var refreshed atomic.Int64
		for i := range n {
			wg.Go(func() {
				if _, ok := u.RefreshUnknownKid(context.Background(), "bogus-"+string(rune('a'+i%26))); ok {
					refreshed.Add(1)
				}
			})
		}
		wg.Wait()
		return int(refreshed.Load())
	}
	// Right after the first fetch: every bogus kid is rate-limited.
	flood(200)
	if h := s.hits.Load(); h != 1 {
		t.Fatalf("hits = %d after a flood within MinRefreshInterval, want 1", h)
	}
	if u.RateLimited() == 0 {
		t.Fatal("no refusal was counted")
	}
	// Past the interval: the flood shares one fetch.
	time.Sleep(450 * time.Millisecond)
	flood(200)
	if h := s.hits.Load(); h != 2 {
		t.Fatalf("hits = %d after a flood past MinRefreshInterval, want 2", h)
	}
}

func TestURLSourceServerDown(t *testing.T) {
	s := newJWKSServer(t, jwksOf(t, key(t, "k1")))
	u := newTestURL(t, s, URLOptions{RefreshInterval: 40 * time.Millisecond, MinRefreshInterval: 10 * time.Millisecond})
	eventually(t, "a background refresh", func() bool { return u.Refreshes() >= 2 })

	s.serve(http.StatusServiceUnavailable, []byte("down"))
	eventually(t, "a failed refresh", func() bool { return u.Failures() >= 1 })
	if err := u.LastError(); err == nil || !strings.Contains(err.Error(), "503") {
		t.Fatalf("LastError = %v", err)
	}
	age := u.Age()
	s.Close() // connection refused from now on
	eventually(t, "failures to keep coming", func() bool { return u.Failures() >= 3 })
	if got := kids(u.Keys()); !slices.Equal(got, []string{"k1"}) {
		t.Fatalf("the last good keys stopped serving: %q", got)
	}
	if u.Age() <= age {
		t.Fatalf("Age did not grow: %v then %v", age, u.Age())
	}
	if _, ok := u.RefreshUnknownKid(context.Background(), "k9"); ok {
		t.Fatal("a failed fetch reported a refresh")
	}
	if st := u.Status(); st.Kind != "url" || st.Keys != 1 || st.LastError == nil || st.Age < age {
		t.Fatalf("status = %+v", st)
	}
	// The error names the URL once: "GET URL: dial tcp ...", not
	// "GET URL: Get \"URL\": dial tcp ...".
	eventually(t, "a connection error", func() bool {
		err := u.LastError()
		return err != nil && !strings.Contains(err.Error(), "503")
	})
	if msg := u.LastError().Error(); strings.Count(msg, s.URL) != 1 || strings.Contains(msg, `Get "`) {
		t.Errorf("LastError = %q: want the URL named once", msg)
	}
}

func TestURLSourceGarbageKeepsLastGood(t *testing.T) {
	s := newJWKSServer(t, jwksOf(t, key(t, "k1")))
	u := newTestURL(t, s, URLOptions{RefreshInterval: 30 * time.Millisecond, MinRefreshInterval: 10 * time.Millisecond})
	for _, body := range [][]byte{[]byte("<html>oops</html>"), []byte(`{"keys":[]}`), []byte(`{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}`)} {
		f := u.Failures()
		s.serve(http.StatusOK, body)
		eventually(t, "the bad body to be noticed", func() bool { return u.Failures() > f })
		if got := kids(u.Keys()); !slices.Equal(got, []string{"k1"}) || u.Epoch() != 1 {
			t.Fatalf("after %q: kids %q epoch %d", body, got, u.Epoch())
		}
	}
	s.serve(http.StatusOK, jwksOf(t, key(t, "k2")))
	eventually(t, "recovery", func() bool { return u.LastError() == nil && u.Epoch() == 2 })
}

func TestURLSourceCacheControl(t *testing.T) {
	s := newJWKSServer(t, jwksOf(t, key(t, "k1")))
	s.cacheControl = "public, max-age=0"
	// max-age=0 is no max-age: the refresh interval applies (1h here), so
	// no background fetch happens during the test.
	u := newTestURL(t, s, URLOptions{RefreshInterval: time.Hour, MinRefreshInterval: 10 * time.Millisecond})
	time.Sleep(100 * time.Millisecond)
	if h := s.hits.Load(); h != 1 {
		t.Fatalf("hits = %d", h)
	}
	lo, hi := u.opts.MinRefreshInterval, u.opts.RefreshInterval
	// want is the delay before jitter: a refresh comes up to a tenth
	// sooner (never below the floor), a retry between half and all of it.
	cases := map[string]struct {
		maxAge   time.Duration
		failures int
		want     time.Duration
	}{
		"no max-age":       {0, 0, hi},
		"within bounds":    {30 * time.Minute, 0, 30 * time.Minute},
		"below the floor":  {time.Millisecond, 0, lo},
		"above the cap":    {48 * time.Hour, 0, hi},
		"first failure":    {0, 1, lo},
		"third failure":    {0, 3, 4 * lo},
		"backoff capped":   {0, 60, hi},
		"failure over age": {30 * time.Minute, 2, 2 * lo},
	}
	for name, tc := range cases {
		for range 50 {
			got := u.nextDelay(fetchResult{maxAge: tc.maxAge}, tc.failures)
			low := max(lo, tc.want-tc.want/10)
			if tc.failures > 0 {
				low = tc.want / 2
			}
			if got < low || got > tc.want {
				t.Fatalf("%s: nextDelay = %v, want in [%v, %v]", name, got, low, tc.want)
			}
		}
	}
	for header, want := range map[string]time.Duration{
		"max-age=60":            time.Minute,
		"public, MAX-AGE=\"5\"": 5 * time.Second,
		"no-cache":              0,
		"max-age=-1":            0,
		"max-age=x":             0,
		"":                      0,
	} {
		if got := maxAge(header); got != want {
			t.Errorf("maxAge(%q) = %v, want %v", header, got, want)
		}
	}
}

func TestNewURLFails(t *testing.T) {
	s := newJWKSServer(t, []byte("not json"))
	big := newJWKSServer(t, append([]byte(`{"keys":[],"pad":"`), make([]byte, MaxBodyBytes)...))
	down := newJWKSServer(t, jwksOf(t, key(t, "k1")))
	down.serve(http.StatusInternalServerError, nil)
	cases := map[string]struct {
		url  string
		opts URLOptions
		want string
	}{
		"invalid body":   {s.url(), URLOptions{CAFile: s.caFile}, "not a valid JWKS"},
		"body too large": {big.url(), URLOptions{CAFile: big.caFile}, "larger than 1 MiB"},
		"status 500":     {down.url(), URLOptions{CAFile: down.caFile}, "500"},
		"untrusted cert": {down.url(), URLOptions{}, "certificate"},
		"plain http":     {"http://id.example.com/jwks", URLOptions{}, "https"},
		"relative":       {"/jwks", URLOptions{}, "absolute"},
		"bad ca file":    {down.url(), URLOptions{CAFile: filepath.Join(t.TempDir(), "none.pem")}, "jwks_ca_file"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			u, err := NewURL(context.Background(), tc.url, tc.opts)
			if err == nil {
				u.Close()
				t.Fatal("NewURL succeeded")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestURLSourceClose(t *testing.T) {
	s := newJWKSServer(t, jwksOf(t, key(t, "k1")))
	u, err := NewURL(context.Background(), s.url(), URLOptions{CAFile: s.caFile, RefreshInterval: 20 * time.Millisecond, MinRefreshInterval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "a background refresh", func() bool { return s.hits.Load() >= 2 })
	u.Close()
	u.Close() // idempotent
	h := s.hits.Load()
	time.Sleep(100 * time.Millisecond)
	if s.hits.Load() != h {
		t.Fatal("the source kept fetching after Close")
	}
	if got := kids(u.Keys()); !slices.Equal(got, []string{"k1"}) {
		t.Fatalf("keys after Close: %q", got)
	}
	if _, ok := u.RefreshUnknownKid(context.Background(), "k2"); ok {
		t.Fatal("a closed source refreshed")
	}
}
