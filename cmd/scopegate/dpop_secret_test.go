package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestReadDPoPNonceSecret: the secret file must hold at least 32 bytes
// (a trailing newline does not count), and no error shows its bytes.
func TestReadDPoPNonceSecret(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	long := strings.Repeat("k", 32)
	if b, err := readDPoPNonceSecret(write("ok", long+"\n")); err != nil || string(b) != long {
		t.Fatalf("32 bytes and a newline: %q, %v", b, err)
	}
	short := "short-secret-bytes-x\n"
	_, err := readDPoPNonceSecret(write("short", short))
	if err == nil || !strings.Contains(err.Error(), "at least 32") || strings.Contains(err.Error(), "short-secret") {
		t.Fatalf("a short secret: %v", err)
	}
	if _, err := readDPoPNonceSecret(filepath.Join(dir, "missing")); err == nil || !strings.Contains(err.Error(), "--dpop-nonce-secret-file") {
		t.Fatalf("a missing file: %v", err)
	}
}
