package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/scopegate/scopegate/decision/decisiontest"
)

// TestPolicyIsPEM: a policy path that is a PEM file (a private key, a
// certificate) is refused with exit 2 by every command that loads a
// policy, and no part of the key reaches the output.
func TestPolicyIsPEM(t *testing.T) {
	var files []string
	for _, k := range []string{"examples/keys/dev-rsa.key.pem", "examples/keys/dev-ec.key.pem", "examples/keys/dev-ed25519.key.pem"} {
		p, err := decisiontest.ExamplePath(k)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, p)
	}
	// openssl's PKCS#12 export puts attributes before the block.
	rsa, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	bag := filepath.Join(t.TempDir(), "bag.pem")
	if err := os.WriteFile(bag, append([]byte("Bag Attributes\n    localKeyID: 01 02\n"), rsa...), 0o600); err != nil {
		t.Fatal(err)
	}
	files = append(files, bag)

	for _, f := range files {
		key, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var body []string // the base64 lines of the key
		for _, l := range strings.Split(string(key), "\n") {
			if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "-----") && !strings.Contains(l, " ") {
				body = append(body, l)
			}
		}
		for _, args := range [][]string{
			{"check", "--policy", f, "--path", "/"},
			{"lint", f},
			{"catalog", f},
			{"diff", f, f},
			{"test", f, f},
		} {
			t.Run(filepath.Base(f)+"/"+args[0], func(t *testing.T) {
				code, out, errs := runCLI(t, "", args...)
				if code != exitUsage {
					t.Errorf("exit %d, want %d\n%s%s", code, exitUsage, out, errs)
				}
				if !strings.Contains(out+errs, "PEM") {
					t.Errorf("the answer does not say the file is PEM:\n%s%s", out, errs)
				}
				for _, l := range body {
					for i := 0; i+6 <= len(l); i += 3 {
						if strings.Contains(out+errs, l[i:i+6]) {
							t.Fatalf("output echoes key bytes %q:\n%s%s", l[i:i+6], out, errs)
						}
					}
				}
			})
		}
	}
}
