package server

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/scopegate/scopegate/decision/decisiontest"
	"github.com/scopegate/scopegate/server/servertest/freeport"
)

// TestDPoPNonceSecretRequired: a policy with dpop.nonce: required does not
// start without a nonce secret (instead of denying every DPoP request with
// internal), starts with one, and a reload to such a policy on a server
// without a secret is refused and keeps the running policy.
func TestDPoPNonceSecretRequired(t *testing.T) {
	signer, err := decisiontest.NewECSigner("k1")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	plain := readFile(t, "testdata/policy.yaml")
	nonce := bytes.Replace(plain, []byte("version: e2e\n"), []byte("version: e2e-nonce\ndpop:\n  nonce: required\n"), 1)
	if bytes.Equal(nonce, plain) {
		t.Fatal("testdata/policy.yaml has no version line to edit")
	}
	if err := os.WriteFile(filepath.Join(dir, "jwks.json"), decisiontest.JWKS(signer), 0o600); err != nil {
		t.Fatal(err)
	}
	policy := filepath.Join(dir, "policy.yaml")
	write := func(b []byte) {
		if err := os.WriteFile(policy, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	config := func(secret []byte) Config {
		return Config{
			PolicyPath: policy, Logger: quietLogger(), ShutdownTimeout: time.Second,
			GRPCAddr: freeport.Addr(t), HTTPAddr: freeport.Addr(t), MetricsAddr: freeport.Addr(t),
			DPoPNonceSecret: secret,
		}
	}

	write(nonce)
	if b, err := Listen(config(nil)); err == nil {
		b.Stop()
		t.Fatal("a policy requiring DPoP nonces started without a nonce secret")
	} else if !strings.Contains(err.Error(), "--dpop-nonce-secret-file") {
		t.Fatalf("error %q does not name --dpop-nonce-secret-file", err)
	}

	b, err := Listen(config(bytes.Repeat([]byte("s"), 32)))
	if err != nil {
		t.Fatalf("with a secret: %v", err)
	}
	b.Stop()

	write(plain)
	b, err = Listen(config(nil))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Stop()
	running := b.engine.Policy().Version
	write(nonce)
	if err := b.ReloadFrom("test"); err == nil || !strings.Contains(err.Error(), "nonce secret") {
		t.Fatalf("reload to a nonce policy without a secret: %v", err)
	}
	if v := b.engine.Policy().Version; v != running {
		t.Fatalf("the policy in force is %q after the refused reload, want %q", v, running)
	}
}
