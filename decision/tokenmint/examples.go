package tokenmint

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// ModulePath is the import path of the scopegate module; FindModuleRoot
// looks for the go.mod that declares it.
const ModulePath = "github.com/scopegate/scopegate"

// ExampleKey describes one of the bundled development keys.
type ExampleKey struct {
	Kind string // KindRSA, KindEC or KindEd25519
	File string // file name under examples/keys
	Kid  string // kid in examples/keys/jwks.json
	Alg  string
}

// ExampleKeysDir is where the development keys live, relative to the
// module root.
const ExampleKeysDir = "examples/keys"

// ExampleJWKSFile is the JWK set of the development keys' public halves,
// relative to the module root.
const ExampleJWKSFile = ExampleKeysDir + "/jwks.json"

// ExampleKeys lists the bundled development keys, in the order their public
// keys appear in examples/keys/jwks.json.
func ExampleKeys() []ExampleKey {
	return []ExampleKey{
		{Kind: KindRSA, File: "dev-rsa.key.pem", Kid: "dev-rsa-1", Alg: "RS256"},
		{Kind: KindEC, File: "dev-ec.key.pem", Kid: "dev-ec-1", Alg: "ES256"},
		{Kind: KindEd25519, File: "dev-ed25519.key.pem", Kid: "dev-ed-1", Alg: "EdDSA"},
	}
}

// ExampleKeyOf returns the bundled development key of kind (rsa, ec or
// ed25519; "ecdsa" and "eddsa" are accepted too).
func ExampleKeyOf(kind string) (ExampleKey, bool) {
	k := normalizeKind(kind)
	for _, e := range ExampleKeys() {
		if e.Kind == k {
			return e, true
		}
	}
	return ExampleKey{}, false
}

// ExampleSigner loads the bundled development key of kind (rsa, ec or
// ed25519) with its published kid and algorithm, so tests of any package
// mint tokens that examples/keys/jwks.json verifies. It finds the files by
// walking up from the working directory to the module root.
func ExampleSigner(kind string) (*Signer, error) {
	ek, ok := ExampleKeyOf(kind)
	if !ok {
		return nil, fmt.Errorf("tokenmint: unknown example key kind %q: use rsa, ec or ed25519", kind)
	}
	root, err := FindModuleRoot("")
	if err != nil {
		return nil, err
	}
	return LoadSignerPEM(filepath.Join(root, ExampleKeysDir, ek.File), ek.Kid, ek.Alg)
}

// ExamplePath returns the absolute path of rel (slash-separated, relative to
// the module root), found by walking up from the working directory.
func ExamplePath(rel string) (string, error) {
	root, err := FindModuleRoot("")
	if err != nil {
		return "", err
	}
	return filepath.Join(root, filepath.FromSlash(rel)), nil
}

// FindModuleRoot walks up from start (the working directory when "") to the
// directory whose go.mod declares ModulePath. A go.mod of another module is
// passed over, so a nested module does not stop the search.
func FindModuleRoot(start string) (string, error) {
	if start == "" {
		wd, err := os.Getwd()
		if err != nil {
			return "", fmt.Errorf("tokenmint: working directory: %w", err)
		}
		start = wd
	}
	dir, err := filepath.Abs(start)
	if err != nil {
		return "", fmt.Errorf("tokenmint: %w", err)
	}
	for {
		if data, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && modulePathOf(data) == ModulePath {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("tokenmint: not inside the scopegate source tree (no go.mod declaring " + ModulePath + " above " + start + ")")
		}
		dir = parent
	}
}

func modulePathOf(gomod []byte) string {
	sc := bufio.NewScanner(bytes.NewReader(gomod))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if rest, ok := strings.CutPrefix(line, "module"); ok && (rest == "" || rest[0] == ' ' || rest[0] == '\t') {
			return strings.Trim(strings.TrimSpace(rest), `"`)
		}
	}
	return ""
}
