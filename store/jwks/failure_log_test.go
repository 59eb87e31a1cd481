package jwks

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwk"
)

// syncBuffer is a log destination the source's goroutine writes while the
// test reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func (s *syncBuffer) count(sub string) int { return strings.Count(s.String(), sub) }

// privateJWKS is a set publishing k's private key, and the private
// exponent's encoding, which must never reach a log.
func privateJWKS(t *testing.T, k *testKey) ([]byte, string) {
	t.Helper()
	priv, err := jwk.Import(k.priv)
	if err != nil {
		t.Fatal(err)
	}
	_ = priv.Set(jwk.KeyIDKey, k.kid)
	b, err := json.Marshal(map[string]any{"keys": []any{priv}})
	if err != nil {
		t.Fatal(err)
	}
	var m struct{ Keys []map[string]any }
	if err := json.Unmarshal(b, &m); err != nil || len(m.Keys) != 1 {
		t.Fatal(err)
	}
	return b, m.Keys[0]["d"].(string)
}

// Every failed reload of a JWKS file is logged once, naming the file and
// that the last good keys keep serving, and never with key material; the
// last good set keeps serving through each; a good file logs the recovery.
func TestFileFailuresAreLogged(t *testing.T) {
	// In a synctest bubble the polls run on the bubble's clock: the wait
	// for repeated polls of one bad state takes no real time.
	synctest.Test(t, func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "jwks.json")
		good := jwksOf(t, key(t, "k1"))
		writeFile(t, path, good)
		var logs syncBuffer
		f, err := NewFile(context.Background(), path, FileOptions{PollInterval: 10 * time.Millisecond,
			Logger: slog.New(slog.NewTextHandler(&logs, nil))})
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if logs.String() != "" {
			t.Fatalf("a good first load logged: %s", logs.String())
		}
		var n struct{ Keys []map[string]any }
		_ = json.Unmarshal(good, &n)
		modulus := n.Keys[0]["n"].(string)
		privSet, d := privateJWKS(t, key(t, "k9"))
		secretGarbage := "garbage-" + strings.Repeat("Zq9", 20)

		const failed = "JWKS reload failed"
		steps := []struct {
			name   string
			apply  func()
			errHas string
		}{
			{"garbage", func() { writeFile(t, path, []byte(secretGarbage)) }, "not a valid JWKS"},
			{"empty set", func() { writeFile(t, path, []byte(`{"keys":[]}`)) }, "no keys"},
			{"private key", func() { writeFile(t, path, privSet) }, "is a private key"},
			{"truncated", func() { writeFile(t, path, good[:len(good)/2]) }, "not a valid JWKS"},
			{"too large", func() { writeFile(t, path, bytes.Repeat([]byte(" "), maxFileBytes+1)) }, "larger than 1 MiB"},
			{"deleted", func() { _ = os.Remove(path) }, "no such file"},
		}
		for i, st := range steps {
			st.apply()
			eventually(t, st.name+" to be logged", func() bool { return logs.count(failed) == i+1 })
			out := logs.String()
			at := strings.LastIndex(out, failed)
			line := out[strings.LastIndexByte(out[:at], '\n')+1:]
			if !strings.Contains(line, st.errHas) || !strings.Contains(line, path) || !strings.Contains(line, "keys=1") || !strings.Contains(line, "level=WARN") {
				t.Fatalf("%s: the log line %q lacks %q, the path or the serving key count", st.name, line, st.errHas)
			}
			if got := kids(f.Keys()); !slices.Equal(got, []string{"k1"}) {
				t.Fatalf("%s: serving %q, want the last good set [k1]", st.name, got)
			}
		}
		// Polls of the same bad state (the file still deleted) log nothing more.
		time.Sleep(60 * time.Millisecond)
		if c := logs.count(failed); c != len(steps) {
			t.Fatalf("%d failure lines for %d failures", c, len(steps))
		}
		writeFile(t, path, jwksOf(t, key(t, "k2")))
		eventually(t, "the recovery to be logged", func() bool { return strings.Contains(logs.String(), "JWKS loaded again") })
		for what, secret := range map[string]string{"private exponent": d, "public modulus": modulus, "file content": secretGarbage} {
			if strings.Contains(logs.String(), secret) || strings.Contains(logs.String(), secret[:24]) {
				t.Fatalf("the log holds the %s", what)
			}
		}
	})
}

// A URL source logs each failed refetch with the URL's password redacted,
// from the location and from the error text alike.
func TestURLFailuresAreLoggedRedacted(t *testing.T) {
	s := newJWKSServer(t, jwksOf(t, key(t, "k1")))
	const password = "pw-S3cr3t-value"
	raw := strings.Replace(s.url(), "https://", "https://scopegate:"+password+"@", 1)
	var logs syncBuffer
	u, err := NewURL(context.Background(), raw, URLOptions{RefreshInterval: 30 * time.Millisecond, MinRefreshInterval: 10 * time.Millisecond,
		CAFile: s.caFile, Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	s.serve(http.StatusInternalServerError, []byte("down"))
	eventually(t, "the failure to be logged", func() bool { return logs.count("JWKS reload failed") > 0 })
	s.serve(http.StatusOK, []byte(`{"keys":[]}`))
	eventually(t, "the empty set to be logged", func() bool { return logs.count("the key set has no keys") > 0 })
	s.serve(http.StatusOK, jwksOf(t, key(t, "k1")))
	eventually(t, "the recovery to be logged", func() bool { return logs.count("JWKS loaded again") > 0 })
	out := logs.String()
	if strings.Contains(out, password) {
		t.Fatalf("the log holds the URL's password: %s", out)
	}
	if !strings.Contains(out, "scopegate:xxxxx@") || !strings.Contains(out, "500") {
		t.Fatalf("the log does not name the (redacted) URL and the status: %s", out)
	}
	if got := kids(u.Keys()); !slices.Equal(got, []string{"k1"}) {
		t.Fatalf("serving %q", got)
	}
}
