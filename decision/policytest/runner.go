package policytest

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/scopegate/scopegate/decision"
	"github.com/scopegate/scopegate/decision/tokenmint"
)

// Options configure a Runner.
type Options struct {
	// Now is the clock of cases whose file and case set no now; default
	// time.Now.
	Now func() time.Time
	// Match, when set, selects the cases to run by name (scopegate test
	// --run); the others, matrix cases included, are neither run nor
	// counted, and coverage is that of the cases run.
	Match func(name string) bool
}

// Runner decides test cases against one compiled policy.
type Runner struct {
	pol  *decision.Policy
	eng  *decision.Engine
	path string

	// signers sign the tokens of each issuer; every issuer's key set is
	// replaced by its signer's public key.
	signers map[string]*tokenmint.Signer
	byAlg   map[string]*tokenmint.Signer
	first   *tokenmint.Signer

	defaultNow func() time.Time
	match      func(string) bool
	now        time.Time
	owners     *memOwners
}

// Load compiles the policy file at path for testing.
func Load(path string, opts Options) (*Runner, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, &decision.LoadError{Problems: []decision.Problem{decision.ReadProblem(path, err)}}
	}
	return New(data, path, opts)
}

// New loads a policy from its text for testing (decision.Load, as every
// command does: a jwks_file is read and must be a valid key set). Every
// issuer then verifies with a throwaway key the runner signs test tokens
// with, so a jwks_url need not be reachable. A policy that does not load
// returns its *decision.LoadError.
func New(data []byte, filename string, opts Options) (*Runner, error) {
	r := &Runner{
		path:       filename,
		signers:    map[string]*tokenmint.Signer{},
		byAlg:      map[string]*tokenmint.Signer{},
		defaultNow: opts.Now,
		match:      opts.Match,
		owners:     &memOwners{},
	}
	if r.defaultNow == nil {
		r.defaultNow = time.Now
	}
	// The policy loads as it does everywhere (a broken jwks_file fails
	// here as in serve); then every issuer verifies with a throwaway key.
	pol, err := decision.Load(data, filename, decision.CompileOptions{})
	if err != nil {
		return nil, err
	}
	keys := map[string]decision.KeySource{}
	for _, spec := range pol.File.Issuers {
		if _, done := keys[spec.Issuer]; done || pol.Issuers[spec.Issuer] == nil {
			continue
		}
		s, err := r.signerFor(spec.Algorithms)
		if err != nil {
			return nil, err
		}
		r.signers[spec.Issuer] = s
		if r.first == nil {
			r.first = s
		}
		keys[spec.Issuer] = decision.StaticKeys{{Kid: s.Kid, Alg: s.Alg, Public: s.Public()}}
	}
	r.pol = pol
	eng, err := decision.NewEngine(pol, decision.Options{
		Clock:     func() time.Time { return r.now },
		Ownership: r.owners,
		Keys:      decision.KeyResolverFunc(func(ref *decision.KeyRef) decision.KeySource { return keys[ref.Issuer] }),
	})
	if err != nil {
		return nil, err
	}
	r.eng = eng
	return r, nil
}

// Close releases the runner's engine.
func (r *Runner) Close() {
	if r.eng != nil {
		r.eng.Close()
	}
}

// Policy returns the compiled policy under test.
func (r *Runner) Policy() *decision.Policy { return r.pol }

// signPreference is the order in which the runner picks, among an issuer's
// algorithms, the one it signs test tokens with: fast key generation first.
var signPreference = []string{"ES256", "EdDSA", "ES384", "ES512", "RS256", "PS256", "RS384", "PS384", "RS512", "PS512"}

func (r *Runner) signerFor(algs []string) (*tokenmint.Signer, error) {
	for _, alg := range signPreference {
		if !slices.Contains(algs, alg) {
			continue
		}
		if s := r.byAlg[alg]; s != nil {
			return s, nil
		}
		s, err := newSigner(alg)
		if err != nil {
			return nil, err
		}
		r.byAlg[alg] = s
		return s, nil
	}
	return nil, fmt.Errorf("the issuer lists no algorithm the test runner can sign with (%s)", strings.Join(signPreference, ", "))
}

func newSigner(alg string) (*tokenmint.Signer, error) {
	kid := "policytest-" + strings.ToLower(alg)
	var key crypto.Signer
	var err error
	switch alg {
	case "ES256":
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "ES384":
		key, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case "ES512":
		key, err = ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	case "EdDSA":
		return tokenmint.NewEd25519Signer(kid)
	default:
		key, err = rsa.GenerateKey(rand.Reader, 2048)
	}
	if err != nil {
		return nil, fmt.Errorf("generate a %s test key: %w", alg, err)
	}
	return tokenmint.NewSigner(kid, alg, key)
}

// memOwners is the ownership store of the cases: in-memory data, or "this
// subject owns everything" for matrix cases.
type memOwners struct {
	data   OwnersSpec
	ownAll string
	// asked records that a decision consulted the store (RunTarget: such
	// a case's ownership data cannot be sent to a deployment).
	asked bool
}

func (m *memOwners) Owners(_ context.Context, lookup, key string) ([]string, bool, error) {
	m.asked = true
	if m.ownAll != "" {
		return []string{m.ownAll}, true, nil
	}
	if m.data == nil {
		return nil, false, errors.New("the test case gives no ownership data: add owners: {lookup: {key: [owner]}}")
	}
	owners, ok := m.data[lookup][key]
	return owners, ok, nil
}

// CachedOwners answers from the case's data without a goroutine or a
// deadline: the data is in memory, so a case's answer must never depend
// on how busy the machine is (the engine bounds store lookups at their
// lookup timeout, 100 ms by default, which a loaded CI machine can miss).
// Without data (and not owning all) it misses, and Owners says why.
func (m *memOwners) CachedOwners(lookup, key string) (owners []string, found, hit bool) {
	m.asked = true
	if m.ownAll != "" {
		return []string{m.ownAll}, true, true
	}
	if m.data == nil {
		return nil, false, false
	}
	owners, found = m.data[lookup][key]
	return owners, found, true
}

var _ decision.CachedOwnershipStore = (*memOwners)(nil)

// clockOf is the clock of case c of file f.
func (r *Runner) clockOf(c *Case, f *File) time.Time {
	switch {
	case !c.now.IsZero():
		return c.now
	case f != nil && !f.now.IsZero():
		return f.now
	}
	return r.defaultNow()
}

// Decide runs case c (of file f, which supplies defaults; may be nil) and
// returns the decision. The error is for a case that cannot be run (an
// invalid source_ip, a token that cannot be signed).
func (r *Runner) Decide(ctx context.Context, c *Case, f *File) (decision.Decision, error) {
	now := r.clockOf(c, f)
	req, err := r.request(c, func(spec *TokenSpec) (string, error) { return r.Mint(spec, now) })
	if err != nil {
		return decision.Decision{}, err
	}
	r.owners.ownAll = c.AllOwnedBy
	r.owners.asked = false
	r.owners.data = c.Owners
	if r.owners.data == nil && f != nil {
		r.owners.data = f.Owners
	}
	r.now = now
	return r.eng.Decide(ctx, &req), nil
}

// request is the request of case c, with the token mint signs when the
// case describes one.
func (r *Runner) request(c *Case, mint func(*TokenSpec) (string, error)) (decision.Request, error) {
	req := decision.Request{
		Method:            c.Request.Method,
		Path:              c.Request.Path,
		Environment:       c.Request.Environment,
		Host:              c.Request.Host,
		ClientCertificate: c.Request.ClientCertificate,
		Attributes:        c.Request.Attributes,
	}
	if req.Method == "" {
		req.Method = "GET"
	}
	if c.Request.SourceIP != "" {
		ip, err := netip.ParseAddr(c.Request.SourceIP)
		if err != nil {
			return decision.Request{}, fmt.Errorf("request.source_ip %q is not an IP address (write it like 10.1.2.3, without a port)", c.Request.SourceIP)
		}
		req.SourceIP = ip
	}
	if c.Token != nil && !c.Token.None && !setsAuthorization(c) {
		tok, err := mint(c.Token)
		if err != nil {
			return decision.Request{}, err
		}
		req.Authorization, req.AuthorizationCount = "Bearer "+tok, 1
	}
	for k, v := range c.Request.Headers {
		switch strings.ToLower(k) {
		case "authorization":
			req.Authorization, req.AuthorizationCount = v, 1
		case "host":
			req.Host = v
		case "x-forwarded-for":
			req.ForwardedFor = v
		case "x-request-id":
			req.RequestID = v
		}
	}
	return req, nil
}

// setsAuthorization reports whether case c sends its own Authorization
// header, which replaces any token it describes.
func setsAuthorization(c *Case) bool {
	for k := range c.Request.Headers {
		if strings.EqualFold(k, "authorization") {
			return true
		}
	}
	return false
}

// Mint signs the token spec describes, as issued at now (plus its
// iat_offset), with the runner's throwaway key of its issuer.
func (r *Runner) Mint(spec *TokenSpec, now time.Time) (string, error) {
	iss, claims, header := r.tokenClaims(spec, now, "", "")
	s := r.signers[iss]
	if s == nil {
		s = r.first
	}
	if s == nil {
		return "", errors.New("the policy has no issuer to sign the token for")
	}
	return s.Mint(claims, header)
}

// MintWith signs the token spec describes, as issued at now, with s: the
// key of a test issuer a running deployment trusts (scopegate test
// --target). iss and aud are the issuer and audience of a spec that names
// none; "" takes the policy's first issuer and that issuer's first
// audience, as Mint does.
func (r *Runner) MintWith(s *tokenmint.Signer, spec *TokenSpec, now time.Time, iss, aud string) (string, error) {
	if s == nil {
		return "", errors.New("no signing key to mint the token with")
	}
	_, claims, header := r.tokenClaims(spec, now, iss, aud)
	return s.Mint(claims, header)
}

// tokenClaims are the claims and JOSE header of the token spec describes.
// defIss and defAud, when set, replace the policy's first issuer and its
// first audience as the defaults of a spec that names none.
func (r *Runner) tokenClaims(spec *TokenSpec, now time.Time, defIss, defAud string) (iss string, claims tokenmint.Claims, header map[string]any) {
	pf := r.pol.File
	iss = spec.Iss
	if iss == "" {
		iss = defIss
	}
	var issSpec *decision.IssuerSpec
	for i := range pf.Issuers {
		if iss == "" || pf.Issuers[i].Issuer == iss {
			issSpec = &pf.Issuers[i]
			break
		}
	}
	if iss == "" && issSpec != nil {
		iss = issSpec.Issuer
	}
	aud := []string(spec.Aud)
	if len(aud) == 0 && defAud != "" {
		aud = []string{defAud}
	}
	if len(aud) == 0 && issSpec != nil && len(issSpec.Audiences) > 0 {
		aud = issSpec.Audiences[:1]
	}
	iat := now.Add(spec.IatOffset.Duration)
	ttl := time.Hour
	if spec.TTL != nil {
		ttl = spec.TTL.Duration
	}
	claims = tokenmint.Claims{
		"iat": iat.Unix(),
		"nbf": iat.Unix(),
		"exp": iat.Add(ttl).Unix(),
		"jti": tokenmint.RandomID(),
	}
	if iss != "" {
		claims["iss"] = iss
	}
	switch len(aud) {
	case 0:
	case 1:
		claims["aud"] = aud[0]
	default:
		claims["aud"] = aud
	}
	if spec.Sub != "" {
		claims["sub"] = spec.Sub
	}
	if spec.ClientID != "" {
		claims["client_id"] = spec.ClientID
	}
	if len(spec.Scope) > 0 {
		claims["scope"] = strings.Join(spec.Scope, " ")
	}
	if spec.AuthAge != nil {
		claims["auth_time"] = now.Add(-spec.AuthAge.Duration).Unix()
	}
	for k, v := range spec.Claims {
		if v == nil {
			delete(claims, k)
			continue
		}
		claims[k] = v
	}
	header = map[string]any{"typ": "at+jwt"}
	switch spec.Typ {
	case "":
	case "-":
		delete(header, "typ")
	default:
		header["typ"] = spec.Typ
	}
	return iss, claims, header
}
