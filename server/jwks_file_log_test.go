package server

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/scopegate/scopegate/decision/decisiontest"
)

// lockedBuffer is a log destination written by server goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// A JWKS file that is emptied, garbled or deleted under a running server
// is logged on the server's logger (as docs/security.md promises), and the
// last good key set keeps verifying.
func TestServerLogsJWKSFileFailures(t *testing.T) {
	dir := t.TempDir()
	s := faultSigner(t, "k1")
	jwksPath := filepath.Join(dir, "jwks.json")
	good := decisiontest.JWKS(s)
	if err := os.WriteFile(jwksPath, good, 0o600); err != nil {
		t.Fatal(err)
	}
	policy := fmt.Sprintf(`version: file-keys
issuers:
  - issuer: %s
    audiences: [%s]
    jwks_file: %s
    algorithms: [ES256]
routes:
  - name: orders-read
    match: {methods: [GET], path: "/orders/{id}"}
    require: {all_of: [orders:read]}
default: deny
`, atkIssuer, atkAudience, jwksPath)
	var logs lockedBuffer
	f, err := startFaultServer(t, policy, func(c *Config) { c.Logger = slog.New(slog.NewTextHandler(&logs, nil)) })
	if err != nil {
		t.Fatal(err)
	}
	tok := faultToken(t, s)
	for i, body := range [][]byte{[]byte(`{"keys":[]}`), []byte("not json"), nil} {
		if body == nil {
			if err := os.Remove(jwksPath); err != nil {
				t.Fatal(err)
			}
		} else if err := os.WriteFile(jwksPath, body, 0o600); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the failure to be logged", func() bool { return strings.Count(logs.String(), "JWKS reload failed") == i+1 })
		f.srv.Engine().PurgeTokenCache()
		if code := f.decide(t, "/orders/1", tok); code != "ok" {
			t.Fatalf("failure %d: a token of the last good key set = %s, want ok", i, code)
		}
	}
	if !strings.Contains(logs.String(), jwksPath) {
		t.Fatalf("the log lines do not name the file: %s", logs.String())
	}
}
