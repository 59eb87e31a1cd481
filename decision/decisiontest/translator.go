package decisiontest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	_ "embed"
	"encoding/base64"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jws/jwsbb"

	"github.com/scopegate/scopegate/decision"
)

// Fixtures shared by the translator packages' tests (envoy,
// server/forwardauth, server/authzen), so that each package tests its own
// translation against the same policy and the same engine.

//go:embed testdata/translator_policy.yaml
var translatorPolicy []byte

// TranslatorPolicy compiles the translator tests' policy (routes
// items-read, items-write and the public health; strip_authorization on).
// Its jwks_file is not read: the tests here build decisions by hand or
// verify no signature.
func TranslatorPolicy(tb testing.TB) *decision.Policy {
	tb.Helper()
	pol, err := decision.Compile(translatorPolicy, "translator_policy.yaml", decision.CompileOptions{})
	if err != nil {
		tb.Fatalf("compile the translator test policy: %v", err)
	}
	return pol
}

// Route returns pol's route named name, failing the test when there is
// none.
func Route(tb testing.TB, pol *decision.Policy, name string) *decision.Route {
	tb.Helper()
	for _, r := range pol.Routes {
		if r.Name == name {
			return r
		}
	}
	tb.Fatalf("test policy has no route %q", name)
	return nil
}

// FuzzNow is the fixed clock of TranslatorFuzz's engine.
var FuzzNow = time.Unix(1_900_000_000, 0)

const translatorFuzzPolicy = `
version: fuzz
issuers:
  - issuer: https://issuer.fuzz/
    audiences: [api]
    jwks_file: jwks.json
    algorithms: [ES256]
networks: {corp: [10.0.0.0/8]}
trusted_proxies: {hops: 1, cidrs: [192.0.2.0/24]}
routes:
  - name: read
    match: {methods: [GET], path: "/r/{id}"}
    require: {all_of: [r]}
  - name: write
    match: {methods: [POST, DELETE], path: "/r/{id}"}
    require: {all_of: [w]}
  - name: internal
    match: {methods: [GET], path: "/internal/{id}"}
    require: {all_of: [r]}
    when: {source_ip: {allow: [corp]}}
  - name: health
    match: {path: /healthz}
    public: true
default: deny
`

// TranslatorFuzz is the engine the translators' fuzz targets decide with:
// a fixed clock, one ES256 key and two valid tokens.
type TranslatorFuzz struct {
	Engine *decision.Engine
	Tokens []string // [0] grants r, [1] grants r w
}

var (
	translatorOnce sync.Once
	translatorEnv  *TranslatorFuzz
	translatorErr  error
)

// GetTranslatorFuzz returns the fuzz engine, built once per test binary.
func GetTranslatorFuzz(tb testing.TB) *TranslatorFuzz {
	tb.Helper()
	translatorOnce.Do(func() { translatorEnv, translatorErr = newTranslatorFuzz() })
	if translatorErr != nil {
		tb.Fatal(translatorErr)
	}
	return translatorEnv
}

func newTranslatorFuzz() (*TranslatorFuzz, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	keys := decision.StaticKeys{{Kid: "k1", Alg: "ES256", Public: &k.PublicKey}}
	pol, err := decision.Compile([]byte(translatorFuzzPolicy), "fuzz.yaml", decision.CompileOptions{})
	if err != nil {
		return nil, err
	}
	eng, err := decision.NewEngine(pol, decision.Options{Keys: decision.StaticKeyResolver(keys), Clock: func() time.Time { return FuzzNow }, TokenCacheSize: 1 << 10})
	if err != nil {
		return nil, err
	}
	tf := &TranslatorFuzz{Engine: eng}
	for _, scope := range []string{"r", "r w"} {
		hb, _ := json.Marshal(map[string]any{"alg": "ES256", "kid": "k1"})
		pb, _ := json.Marshal(map[string]any{"iss": "https://issuer.fuzz/", "aud": "api", "sub": "s", "scope": scope,
			"iat": FuzzNow.Unix(), "exp": FuzzNow.Add(time.Hour).Unix()})
		input := base64.RawURLEncoding.EncodeToString(hb) + "." + base64.RawURLEncoding.EncodeToString(pb)
		sig, err := jwsbb.Sign(k, "ES256", []byte(input), nil)
		if err != nil {
			return nil, err
		}
		tf.Tokens = append(tf.Tokens, input+"."+base64.RawURLEncoding.EncodeToString(sig))
	}
	return tf, nil
}

// AuthzFor picks the Authorization value of a fuzz case: a token granting
// r, one granting r w, a lower-case scheme, none, a token with free
// appended, or free alone.
func (tf *TranslatorFuzz) AuthzFor(sel uint8, free string) string {
	switch sel % 6 {
	case 0:
		return "Bearer " + tf.Tokens[0]
	case 1:
		return "Bearer " + tf.Tokens[1]
	case 2:
		return "bearer " + tf.Tokens[1]
	case 3:
		return ""
	case 4:
		return "Bearer " + tf.Tokens[1] + free
	default:
		return free
	}
}

// SignedEngine compiles policy and returns an engine whose clock stands
// at now and which verifies the tokens of the returned RSA signer (kid
// "k1"), closed when the test ends.
func SignedEngine(tb testing.TB, policy string, now time.Time) (*decision.Engine, *Signer) {
	tb.Helper()
	signer, err := NewRSASigner("k1")
	if err != nil {
		tb.Fatal(err)
	}
	keys := decision.StaticKeys{{Kid: signer.Kid, Alg: signer.Alg, Public: signer.Key.Public()}}
	pol, err := decision.Compile([]byte(policy), "policy.yaml", decision.CompileOptions{})
	if err != nil {
		tb.Fatal(err)
	}
	eng, err := decision.NewEngine(pol, decision.Options{Keys: decision.StaticKeyResolver(keys), Clock: func() time.Time { return now }})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(eng.Close)
	return eng, signer
}

// SMARTPolicy is the translator tests' SMART on FHIR policy: route fhir is
// a SMART route that sends patient hints upstream, route plain an
// ordinary one.
const SMARTPolicy = `
issuers:
  - issuer: https://issuer.test
    audiences: [fhir]
    jwks_file: jwks.json
    algorithms: [RS256]
routes:
  - name: fhir
    match: {methods: [GET], path: "/fhir/{rest...}"}
    smart: {patient_filter_upstream: true}
  - name: plain
    match: {methods: [GET], path: /plain}
    require: {all_of: [plain:read]}
`

// SMART decides requests under SMARTPolicy with tokens it mints.
type SMART struct {
	eng    *decision.Engine
	signer *Signer
	now    time.Time
}

// NewSMART returns a SMART fixture, its engine closed when the test ends.
func NewSMART(tb testing.TB) *SMART {
	now := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	eng, signer := SignedEngine(tb, SMARTPolicy, now)
	return &SMART{eng: eng, signer: signer, now: now}
}

// Allow decides GET path with a token for patient "123" granting scope,
// and fails the test unless it is an allow.
func (s *SMART) Allow(tb testing.TB, path, scope string) decision.Decision {
	tb.Helper()
	c := StandardClaims("https://issuer.test", "fhir", "alice", "app", scope, time.Hour, s.now)
	c["patient"] = "123"
	tok, err := s.signer.Mint(c, nil)
	if err != nil {
		tb.Fatal(err)
	}
	d := s.eng.Decide(context.Background(), &decision.Request{Method: "GET", Path: path, Authorization: "Bearer " + tok, AuthorizationCount: 1})
	if !d.Allow {
		tb.Fatalf("GET %s with scope %q: deny %s: %s", path, scope, d.Code, d.Message())
	}
	return d
}
