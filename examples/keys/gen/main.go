// Command gen rewrites the development keys in examples/keys: one RSA 2048,
// one P-256 and one Ed25519 private key (PKCS#8 PEM) and jwks.json with
// their public halves. Run it from anywhere in the repository:
//
//	go run ./examples/keys/gen
//
// The keys it writes are published with the source code. They exist so that
// examples, tests and demos work out of the box, and must never protect
// anything real.
package main

import (
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/scopegate/scopegate/decision/tokenmint"
)

func main() {
	dir := flag.String("dir", "", "directory to write the keys to (default: examples/keys of the module root)")
	flag.Parse()
	if err := run(*dir); err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
}

func run(dir string) error {
	if dir == "" {
		p, err := tokenmint.ExamplePath(tokenmint.ExampleKeysDir)
		if err != nil {
			return err
		}
		dir = p
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	var signers []*tokenmint.Signer
	for _, ek := range tokenmint.ExampleKeys() {
		s, err := tokenmint.NewSignerOfKind(ek.Kind, ek.Kid)
		if err != nil {
			return err
		}
		s.Alg = ek.Alg
		if err := writeKey(filepath.Join(dir, ek.File), s.Key); err != nil {
			return err
		}
		signers = append(signers, s)
	}
	path := filepath.Join(dir, "jwks.json")
	if err := os.WriteFile(path, tokenmint.JWKS(signers...), 0o644); err != nil {
		return err
	}
	fmt.Println("wrote", len(signers), "key pairs and", path)
	return nil
}

func writeKey(path string, key crypto.Signer) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	// 0644 on purpose: these keys are public by design.
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o644)
}
