package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/scopegate/scopegate/decision/tokenmint"
	devkeys "github.com/scopegate/scopegate/examples/keys"
)

// defaultKey is the bundled development RSA key; see examples/keys.
const defaultKey = tokenmint.ExampleKeysDir + "/dev-rsa.key.pem"

// tokenCmd mints a signed access token, for trying policies out and for
// scripts. Its defaults match examples/policy.yaml and the bundled
// development keys, so `scopegate token --scope orders:read` is enough.
type tokenCmd struct {
	key, kid, alg  string
	iss, aud, sub  string
	client, scope  string
	typ            string
	ttl            time.Duration
	claims, header kvFlag
	now            func() time.Time
}

func (t *tokenCmd) define(fs *flag.FlagSet) {
	fs.StringVar(&t.key, "key", defaultKey, "PEM private key to sign with (PKCS#8, PKCS#1 or SEC1); the development keys examples/keys/dev-{rsa,ec,ed25519}.key.pem are built in")
	fs.StringVar(&t.kid, "kid", "", "key id header (default: the development kid for the key's kind: dev-rsa-1, dev-ec-1 or dev-ed-1)")
	fs.StringVar(&t.alg, "alg", "", "signing algorithm (default: from the key: RS256, ES256/ES384/ES512 or EdDSA)")
	fs.StringVar(&t.iss, "iss", "https://id.example.com/", "issuer (iss claim)")
	fs.StringVar(&t.aud, "aud", "orders-api", "audience (aud claim); empty leaves it out")
	fs.StringVar(&t.sub, "sub", "alice", "subject (sub claim); empty leaves it out")
	fs.StringVar(&t.client, "client", "web-app", "client id (client_id claim); empty leaves it out")
	fs.StringVar(&t.scope, "scope", "", `granted scopes, space-separated (scope claim), e.g. "orders:read orders:write"; empty leaves it out`)
	fs.DurationVar(&t.ttl, "ttl", time.Hour, "lifetime: exp = now + ttl; a negative ttl mints an expired token")
	fs.StringVar(&t.typ, "typ", "at+jwt", `JOSE "typ" header (RFC 9068 access tokens use at+jwt); empty leaves it out`)
	fs.Var(&t.claims, "claim", "extra claim key=value (repeatable); the value is parsed as JSON when it is valid JSON (numbers, arrays, objects, true), else taken as a string; null removes the claim")
	fs.Var(&t.header, "header", "extra JOSE header key=value (repeatable), value parsed like --claim; kid= with no value leaves the kid out")
}

func (t *tokenCmd) run(_ context.Context, c *cli) int {
	if t.key == "" {
		return c.usageError("token", "--key is required")
	}
	pemBytes, err := readKeyFile(t.key)
	if err != nil {
		return c.usageError("token", "%v", err)
	}
	key, err := tokenmint.ParsePrivateKeyPEM(pemBytes)
	if err != nil {
		return c.usageError("token", "--key %s: %v", t.key, err)
	}
	kind, err := tokenmint.KeyKind(key.Public())
	if err != nil {
		return c.fail("token", fmt.Errorf("%s: %w", t.key, err))
	}
	kid := t.kid
	if kid == "" {
		ek, _ := tokenmint.ExampleKeyOf(kind)
		kid = ek.Kid
	}
	signer, err := tokenmint.NewSigner(kid, t.alg, key)
	if err != nil {
		if t.alg != "" {
			return c.usageError("token", "--alg: %v", err)
		}
		return c.fail("token", fmt.Errorf("%s: %w", t.key, err))
	}

	now := time.Now
	if t.now != nil {
		now = t.now
	}
	claims := tokenmint.StandardClaims(t.iss, t.aud, t.sub, t.client, t.scope, t.ttl, now())
	for _, p := range t.claims {
		if v, isNull := jsonOrString(p.value); isNull {
			delete(claims, p.key)
		} else {
			claims[p.key] = v
		}
	}
	header := map[string]any{}
	if t.typ != "" {
		header["typ"] = t.typ
	}
	for _, p := range t.header {
		if p.key == "kid" && p.value == "" {
			header["kid"] = ""
			continue
		}
		v, isNull := jsonOrString(p.value)
		if isNull {
			delete(header, p.key)
			continue
		}
		header[p.key] = v
	}
	tok, err := signer.Mint(claims, header)
	if err != nil {
		return c.fail("token", err)
	}
	fmt.Fprintln(c.stdout, tok)
	return exitOK
}

// readKeyFile reads the PEM key at path. A path that names one of the
// bundled development keys (examples/keys/dev-*.key.pem) and is not found
// on disk is read from the copy built into the binary, so that
// `scopegate token` works from any directory.
func readKeyFile(path string) ([]byte, error) {
	b, err := os.ReadFile(repoPath(path))
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return b, err
	}
	if filepath.ToSlash(filepath.Dir(filepath.Clean(path))) == tokenmint.ExampleKeysDir {
		if eb, eerr := devkeys.FS.ReadFile(filepath.Base(path)); eerr == nil {
			return eb, nil
		}
	}
	return nil, fmt.Errorf("--key %s: no such file; give the path of a PEM private key, or leave --key out to use the built-in development key", path)
}

// jsonOrString decodes s as JSON (numbers kept exact) when it is one valid
// JSON value, else returns it as a string. isNull reports a JSON null.
func jsonOrString(s string) (v any, isNull bool) {
	if !json.Valid([]byte(s)) {
		return s, false
	}
	dec := json.NewDecoder(bytes.NewReader([]byte(s)))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		return s, false
	}
	return v, v == nil
}
