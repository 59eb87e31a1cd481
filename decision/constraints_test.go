package decision_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"math/big"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/scopegate/scopegate/decision"
	"github.com/scopegate/scopegate/decision/decisiontest"
)

// conNow is a Tuesday, 10:00 in New York (business hours), 16:00 in Berlin
// (outside the weekend maintenance window), outside the December freeze.
var conNow = time.Date(2026, 11, 24, 15, 0, 0, 0, time.UTC)

var corpPeer = netip.MustParseAddr("10.1.2.3")

// conFixture is an engine over testdata/constraints/policy.yaml with an
// adjustable clock and an ownership store.
type conFixture struct {
	engine *decision.Engine
	signer *decisiontest.Signer
	now    time.Time
}

func readConstraintPolicy(t testing.TB) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "constraints", "policy.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// conSigner is shared by every constraint fixture: RSA key generation is
// the slowest part of a test.
var conSigner = sync.OnceValues(func() (*decisiontest.Signer, error) { return decisiontest.NewRSASigner("k1") })

func newConFixture(t testing.TB, policy string, store decision.OwnershipStore) *conFixture {
	t.Helper()
	signer, err := conSigner()
	if err != nil {
		t.Fatal(err)
	}
	keys := staticKeys(t, signer)
	pol, err := decision.Compile([]byte(policy), "policy.yaml", decision.CompileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	f := &conFixture{signer: signer, now: conNow}
	eng, err := decision.NewEngine(pol, decision.Options{Keys: decision.StaticKeyResolver(keys), Clock: func() time.Time { return f.now }, Ownership: store})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(eng.Close)
	f.engine = eng
	return f
}

// mint signs a token for alice, issued at f.now and valid for an hour,
// with the given scope and claim edits.
func (f *conFixture) mint(t testing.TB, scope string, edit func(decisiontest.Claims)) string {
	t.Helper()
	c := decisiontest.StandardClaims(testIssuer, "orders-api", "alice", "web-app", scope, time.Hour, f.now)
	if edit != nil {
		edit(c)
	}
	tok, err := f.signer.Mint(c, nil)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func (f *conFixture) decide(req decision.Request) decision.Decision {
	if req.Authorization != "" && req.AuthorizationCount == 0 {
		req.AuthorizationCount = 1
	}
	return f.engine.Decide(context.Background(), &req)
}

func wantCode(t *testing.T, d decision.Decision, want decision.Code) {
	t.Helper()
	if d.Code != want {
		t.Fatalf("code = %s (%s), want %s", d.Code, d.Message(), want)
	}
	if d.Allow != (want == decision.OK) {
		t.Fatalf("allow = %v with code %s", d.Allow, d.Code)
	}
}

func TestConstraintSourceIP(t *testing.T) {
	f := newConFixture(t, readConstraintPolicy(t), nil)
	tok := "Bearer " + f.mint(t, "net:read", nil)
	proxy := netip.MustParseAddr("192.0.2.10")
	cases := map[string]struct {
		peer string
		xff  string
		want decision.Code
	}{
		"corp IPv4":                           {peer: "10.1.2.3", want: decision.OK},
		"single allowed address":              {peer: "198.51.100.7", want: decision.OK},
		"neighbour of the single address":     {peer: "198.51.100.8", want: decision.SourceIPNotAllowed},
		"denied subnet inside corp":           {peer: "10.66.0.9", want: decision.SourceIPNotAllowed},
		"outside":                             {peer: "203.0.113.9", want: decision.SourceIPNotAllowed},
		"corp IPv6":                           {peer: "2001:db8::1", want: decision.OK},
		"other IPv6":                          {peer: "2001:db9::1", want: decision.SourceIPNotAllowed},
		"IPv4-mapped IPv6 in corp":            {peer: "::ffff:10.0.0.1", want: decision.OK},
		"IPv4-mapped IPv6 outside":            {peer: "::ffff:203.0.113.9", want: decision.SourceIPNotAllowed},
		"IPv4-mapped IPv6 in denied subnet":   {peer: "::ffff:10.66.1.1", want: decision.SourceIPNotAllowed},
		"no peer address":                     {peer: "", want: decision.SourceIPNotAllowed},
		"x-forwarded-for from untrusted peer": {peer: "203.0.113.9", xff: "10.1.2.3", want: decision.SourceIPNotAllowed},
		"through one trusted proxy":           {peer: proxy.String(), xff: "10.1.2.3", want: decision.OK},
		"spoofed left entry is not read":      {peer: proxy.String(), xff: "10.1.2.3, 203.0.113.9", want: decision.SourceIPNotAllowed},
		"spoofed corp entry left of client":   {peer: proxy.String(), xff: "203.0.113.9, 10.1.2.3", want: decision.OK},
		"two trusted proxies":                 {peer: proxy.String(), xff: "203.0.113.9, 10.1.2.3, 192.0.2.11", want: decision.OK},
		"more proxies than trusted hops":      {peer: proxy.String(), xff: "10.1.2.3, 192.0.2.12, 192.0.2.11", want: decision.SourceIPNotAllowed},
		"chain ends at a trusted proxy":       {peer: proxy.String(), want: decision.SourceIPNotAllowed},
		"entry that is not an address":        {peer: proxy.String(), xff: "unknown", want: decision.SourceIPNotAllowed},
		"entry with a port":                   {peer: proxy.String(), xff: "10.1.2.3:5123", want: decision.OK},
		"IPv6 entry with a port":              {peer: proxy.String(), xff: "[2001:db8::5]:443", want: decision.OK},
		"IPv4-mapped entry":                   {peer: proxy.String(), xff: "::ffff:10.9.9.9", want: decision.OK},
		"empty entry":                         {peer: proxy.String(), xff: "10.1.2.3, ", want: decision.SourceIPNotAllowed},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			var peer netip.Addr
			if tc.peer != "" {
				peer = netip.MustParseAddr(tc.peer)
			}
			d := f.decide(decision.Request{Method: "GET", Path: "/ip", Authorization: tok, SourceIP: peer, ForwardedFor: tc.xff})
			wantCode(t, d, tc.want)
			if tc.want != decision.OK && !strings.Contains(d.Message(), "route ip") {
				t.Errorf("message %q does not name the rule", d.Message())
			}
		})
	}
}

func TestConstraintEnvironment(t *testing.T) {
	policy := readConstraintPolicy(t)
	cases := map[string]struct {
		policyEnv bool // keep the policy's environment: prod
		reqEnv    string
		path      string
		want      decision.Code
	}{
		"staging route in the policy's prod":  {policyEnv: true, path: "/staging", want: decision.EnvironmentNotAllowed},
		"staging route in staging":            {policyEnv: true, reqEnv: "staging", path: "/staging", want: decision.OK},
		"staging route in dev":                {policyEnv: true, reqEnv: "dev", path: "/staging", want: decision.EnvironmentNotAllowed},
		"not-prod route in prod":              {policyEnv: true, path: "/nonprod", want: decision.EnvironmentNotAllowed},
		"not-prod route, prod from the proxy": {policyEnv: true, reqEnv: "prod", path: "/nonprod", want: decision.EnvironmentNotAllowed},
		"not-prod route in dev":               {policyEnv: true, reqEnv: "dev", path: "/nonprod", want: decision.OK},
		"unknown environment fails not-prod":  {path: "/nonprod", want: decision.EnvironmentNotAllowed},
		"unknown environment fails staging":   {path: "/staging", want: decision.EnvironmentNotAllowed},
		"request environment without default": {reqEnv: "staging", path: "/staging", want: decision.OK},
	}
	withEnv := newConFixture(t, policy, nil)
	withoutEnv := newConFixture(t, strings.Replace(policy, "environment: prod\n", "", 1), nil)
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			f := withoutEnv
			if tc.policyEnv {
				f = withEnv
			}
			tok := "Bearer " + f.mint(t, "env:read", nil)
			d := f.decide(decision.Request{Method: "GET", Path: tc.path, Authorization: tok, Environment: tc.reqEnv, SourceIP: corpPeer})
			wantCode(t, d, tc.want)
		})
	}
}

func TestConstraintTimeWindows(t *testing.T) {
	f := newConFixture(t, readConstraintPolicy(t), nil)
	at := func(s string) time.Time {
		v, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	cases := map[string]struct {
		now    string
		path   string
		method string
		env    string
		groups []string
		want   decision.Code
		detail string
	}{
		"business hours, winter":             {now: "2026-11-24T15:00:00Z", path: "/hours", want: decision.OK},
		"one minute before opening":          {now: "2026-11-24T13:59:00Z", path: "/hours", want: decision.OutsideTimeWindow},
		"last minute":                        {now: "2026-11-24T21:59:59Z", path: "/hours", want: decision.OK},
		"closing time is exclusive":          {now: "2026-11-24T22:00:00Z", path: "/hours", want: decision.OutsideTimeWindow},
		"saturday":                           {now: "2026-11-28T15:00:00Z", path: "/hours", want: decision.OutsideTimeWindow},
		"friday before spring forward (EST)": {now: "2026-03-06T13:30:00Z", path: "/hours", want: decision.OutsideTimeWindow},
		"friday 09:30 EST":                   {now: "2026-03-06T14:30:00Z", path: "/hours", want: decision.OK},
		"monday after spring forward (EDT)":  {now: "2026-03-09T13:30:00Z", path: "/hours", want: decision.OK},
		"monday 17:30 EDT":                   {now: "2026-03-09T21:30:00Z", path: "/hours", want: decision.OutsideTimeWindow},
		"friday before fall back (EDT)":      {now: "2026-10-30T13:30:00Z", path: "/hours", want: decision.OK},
		"monday after fall back, 08:30 EST":  {now: "2026-11-02T13:30:00Z", path: "/hours", want: decision.OutsideTimeWindow},
		"monday after fall back, 09:30 EST":  {now: "2026-11-02T14:30:00Z", path: "/hours", want: decision.OK},
		"freeze":                             {now: "2026-12-21T15:00:00Z", path: "/hours", want: decision.OutsideTimeWindow, detail: "within freeze"},
		"last day of the freeze":             {now: "2027-01-05T20:00:00Z", path: "/hours", want: decision.OutsideTimeWindow, detail: "within freeze"},
		"day after the freeze":               {now: "2027-01-06T15:00:00Z", path: "/hours", want: decision.OK},
		"maintenance and on-call":            {now: "2026-11-28T02:30:00Z", path: "/deploy", method: "POST", groups: []string{"dev", "on-call"}, want: decision.OK},
		"maintenance, not on-call":           {now: "2026-11-28T02:30:00Z", path: "/deploy", method: "POST", groups: []string{"dev"}, want: decision.ClaimConditionFailed},
		"on-call outside maintenance":        {now: "2026-11-28T05:30:00Z", path: "/deploy", method: "POST", groups: []string{"on-call"}, want: decision.OutsideTimeWindow},
		"maintenance in summer time":         {now: "2026-06-06T00:30:00Z", path: "/deploy", method: "POST", groups: []string{"on-call"}, want: decision.OK},
		"deploy rule applies in prod only":   {now: "2026-11-24T15:00:00Z", path: "/deploy", method: "POST", env: "staging", want: decision.OK},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			f.now = at(tc.now)
			method := tc.method
			if method == "" {
				method = "GET"
			}
			tok := "Bearer " + f.mint(t, "time:read deploy:write", func(c decisiontest.Claims) {
				if tc.groups != nil {
					c["groups"] = tc.groups
				}
			})
			d := f.decide(decision.Request{Method: method, Path: tc.path, Authorization: tok, Environment: tc.env, SourceIP: corpPeer})
			wantCode(t, d, tc.want)
			if tc.detail != "" && !strings.Contains(d.Message(), tc.detail) {
				t.Errorf("message %q does not mention %q", d.Message(), tc.detail)
			}
		})
	}
}

func TestConstraintClaims(t *testing.T) {
	f := newConFixture(t, readConstraintPolicy(t), nil)
	good := func(c decisiontest.Claims) {
		c["tenant"] = "acme"
		c["roles"] = []string{"viewer", "support"}
		c["level"] = 3
		c["realm_access"] = map[string]any{"roles": []string{"auditor"}}
	}
	cases := map[string]struct {
		edit   func(decisiontest.Claims)
		want   decision.Code
		detail string
	}{
		"every condition holds":           {want: decision.OK},
		"other tenant":                    {edit: func(c decisiontest.Claims) { c["tenant"] = "globex" }, want: decision.ClaimConditionFailed, detail: "tenant"},
		"tenant missing":                  {edit: func(c decisiontest.Claims) { delete(c, "tenant") }, want: decision.ClaimConditionFailed, detail: "tenant"},
		"tenant as a list is not equal":   {edit: func(c decisiontest.Claims) { c["tenant"] = []string{"acme"} }, want: decision.ClaimConditionFailed, detail: "tenant"},
		"role as a single string":         {edit: func(c decisiontest.Claims) { c["roles"] = "admin" }, want: decision.OK},
		"no matching role":                {edit: func(c decisiontest.Claims) { c["roles"] = []string{"viewer"} }, want: decision.ClaimConditionFailed, detail: "roles"},
		"number compared as number":       {edit: func(c decisiontest.Claims) { c["level"] = 3.0 }, want: decision.OK},
		"number as string does not match": {edit: func(c decisiontest.Claims) { c["level"] = "3" }, want: decision.ClaimConditionFailed, detail: "level"},
		"other number":                    {edit: func(c decisiontest.Claims) { c["level"] = 4 }, want: decision.ClaimConditionFailed, detail: "level"},
		"nested claim missing":            {edit: func(c decisiontest.Claims) { c["realm_access"] = map[string]any{"roles": []string{"user"}} }, want: decision.ClaimConditionFailed, detail: "realm_access.roles"},
		"suspended present":               {edit: func(c decisiontest.Claims) { c["suspended"] = true }, want: decision.ClaimConditionFailed, detail: "suspended"},
		"suspended null counts as absent": {edit: func(c decisiontest.Claims) { c["suspended"] = nil }, want: decision.OK},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			tok := "Bearer " + f.mint(t, "claims:read", func(c decisiontest.Claims) {
				good(c)
				if tc.edit != nil {
					tc.edit(c)
				}
			})
			d := f.decide(decision.Request{Method: "GET", Path: "/tenant", Authorization: tok, SourceIP: corpPeer})
			wantCode(t, d, tc.want)
			if tc.detail != "" && !strings.Contains(d.Message(), "claim "+tc.detail+" ") {
				t.Errorf("message %q does not name claim %s", d.Message(), tc.detail)
			}
		})
	}
}

func TestConstraintStepUp(t *testing.T) {
	f := newConFixture(t, readConstraintPolicy(t), nil)
	fresh := f.now.Add(-5 * time.Minute).Unix()
	cases := map[string]struct {
		claims decisiontest.Claims
		want   decision.Code
	}{
		"mfa, recent":                {claims: decisiontest.Claims{"acr": "urn:mfa", "amr": []string{"pwd", "mfa"}, "auth_time": fresh}, want: decision.OK},
		"hardware key acr":           {claims: decisiontest.Claims{"acr": "urn:hwk", "amr": []string{"hwk"}, "auth_time": fresh}, want: decision.OK},
		"password only":              {claims: decisiontest.Claims{"acr": "urn:pwd", "amr": []string{"pwd"}, "auth_time": fresh}, want: decision.InsufficientUserAuthentication},
		"acr without mfa amr":        {claims: decisiontest.Claims{"acr": "urn:mfa", "amr": []string{"pwd"}, "auth_time": fresh}, want: decision.InsufficientUserAuthentication},
		"no acr":                     {claims: decisiontest.Claims{"amr": []string{"mfa"}, "auth_time": fresh}, want: decision.InsufficientUserAuthentication},
		"authenticated too long ago": {claims: decisiontest.Claims{"acr": "urn:mfa", "amr": []string{"mfa"}, "auth_time": f.now.Add(-16 * time.Minute).Unix()}, want: decision.InsufficientUserAuthentication},
		"no auth_time":               {claims: decisiontest.Claims{"acr": "urn:mfa", "amr": []string{"mfa"}}, want: decision.InsufficientUserAuthentication},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			tok := "Bearer " + f.mint(t, "secrets:read", func(c decisiontest.Claims) {
				for k, v := range tc.claims {
					c[k] = v
				}
			})
			d := f.decide(decision.Request{Method: "GET", Path: "/secrets", Authorization: tok})
			wantCode(t, d, tc.want)
			acr, maxAge, ok := d.StepUp()
			if tc.want == decision.OK {
				if ok {
					t.Fatal("StepUp() is ok for an allow")
				}
				return
			}
			if !ok || acr != "urn:mfa urn:hwk" || maxAge != 900 {
				t.Fatalf("StepUp() = %q, %d, %v; want \"urn:mfa urn:hwk\", 900, true", acr, maxAge, ok)
			}
			if d.Code.HTTPStatus() != 401 || d.Code.Challenge() != decision.ChallengeStepUp {
				t.Fatalf("status %d challenge %v", d.Code.HTTPStatus(), d.Code.Challenge())
			}
		})
	}
}

func TestConstraintTokenLifetime(t *testing.T) {
	f := newConFixture(t, readConstraintPolicy(t), nil)
	now := f.now
	cases := map[string]struct {
		path  string
		scope string
		iat   time.Time // zero: no iat claim
		ttl   time.Duration
		want  decision.Code
	}{
		"within both bounds":                {path: "/short", scope: "life:read", iat: now.Add(-10 * time.Minute), ttl: time.Hour, want: decision.OK},
		"minted for two hours":              {path: "/short", scope: "life:read", iat: now, ttl: 2 * time.Hour, want: decision.TokenLifetimeExceedsScope},
		"older than max_token_age":          {path: "/short", scope: "life:read", iat: now.Add(-40 * time.Minute), ttl: time.Hour, want: decision.TokenLifetimeExceedsScope},
		"no iat":                            {path: "/short", scope: "life:read", ttl: time.Hour, want: decision.TokenLifetimeExceedsScope},
		"admin scope, short token":          {path: "/admin", scope: "admin:all", iat: now, ttl: 15 * time.Minute, want: decision.OK},
		"admin scope, hour-long token":      {path: "/admin", scope: "admin:all", iat: now, ttl: time.Hour, want: decision.TokenLifetimeExceedsScope},
		"admin scope, token too old":        {path: "/admin", scope: "admin:all", iat: now.Add(-12 * time.Minute), ttl: 14 * time.Minute, want: decision.TokenLifetimeExceedsScope},
		"admin scope bounds any route":      {path: "/open", scope: "orders:read admin:all", iat: now, ttl: time.Hour, want: decision.TokenLifetimeExceedsScope},
		"without the admin scope, no bound": {path: "/open", scope: "orders:read", iat: now, ttl: 8 * time.Hour, want: decision.OK},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			tok := "Bearer " + f.mint(t, tc.scope, func(c decisiontest.Claims) {
				if tc.iat.IsZero() {
					delete(c, "iat")
					c["exp"] = now.Add(tc.ttl).Unix()
					return
				}
				c["iat"], c["nbf"] = tc.iat.Unix(), tc.iat.Unix()
				c["exp"] = tc.iat.Add(tc.ttl).Unix()
			})
			d := f.decide(decision.Request{Method: "GET", Path: tc.path, Authorization: tok})
			wantCode(t, d, tc.want)
		})
	}
}

// testCert is a self-signed client certificate in the forms proxies
// forward it in, and its RFC 8705 thumbprint.
type testCert struct {
	der                       []byte
	pem, urlPEM, rfc9440, hex string
	x5t                       string
}

func newTestCert(t testing.TB, cn string) testCert {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tpl := &x509.Certificate{
		SerialNumber: big.NewInt(7),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    conNow.Add(-time.Hour),
		NotAfter:     conNow.Add(24 * time.Hour),
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tpl, tpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	p := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	sum := sha256.Sum256(der)
	return testCert{
		der:     der,
		pem:     p,
		urlPEM:  url.QueryEscape(p), // as Envoy forwards it: spaces, '+', '/', '=' and newlines escaped
		rfc9440: ":" + base64.StdEncoding.EncodeToString(der) + ":",
		hex:     hex.EncodeToString(sum[:]),
		x5t:     base64.RawURLEncoding.EncodeToString(sum[:]),
	}
}

func TestConstraintCertificateBinding(t *testing.T) {
	f := newConFixture(t, readConstraintPolicy(t), nil)
	cert := newTestCert(t, "client-a")
	other := newTestCert(t, "client-b")
	bound := func(x5t string) func(decisiontest.Claims) {
		return func(c decisiontest.Claims) { c["cnf"] = map[string]any{"x5t#S256": x5t} }
	}
	cases := map[string]struct {
		path   string
		scope  string
		edit   func(decisiontest.Claims)
		cert   string
		want   decision.Code
		detail string
	}{
		"url-encoded PEM":                         {path: "/bound", scope: "bound:read", edit: bound(cert.x5t), cert: cert.urlPEM, want: decision.OK},
		"path-escaped PEM":                        {path: "/bound", scope: "bound:read", edit: bound(cert.x5t), cert: strings.ReplaceAll(url.PathEscape(cert.pem), "+", "%2B"), want: decision.OK},
		"PEM":                                     {path: "/bound", scope: "bound:read", edit: bound(cert.x5t), cert: cert.pem, want: decision.OK},
		"RFC 9440 byte sequence":                  {path: "/bound", scope: "bound:read", edit: bound(cert.x5t), cert: cert.rfc9440, want: decision.OK},
		"XFCC hash":                               {path: "/bound", scope: "bound:read", edit: bound(cert.x5t), cert: cert.hex, want: decision.OK},
		"PEM chain: the first certificate":        {path: "/bound", scope: "bound:read", edit: bound(cert.x5t), cert: cert.pem + other.pem, want: decision.OK},
		"another certificate":                     {path: "/bound", scope: "bound:read", edit: bound(cert.x5t), cert: other.urlPEM, want: decision.CertificateBindingMismatch, detail: "another client certificate"},
		"no certificate":                          {path: "/bound", scope: "bound:read", edit: bound(cert.x5t), want: decision.CertificateBindingMismatch, detail: "presents none"},
		"garbage certificate":                     {path: "/bound", scope: "bound:read", edit: bound(cert.x5t), cert: "-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----", want: decision.CertificateBindingMismatch, detail: "cannot be read"},
		"unbound token where binding is required": {path: "/bound", scope: "bound:read", cert: cert.urlPEM, want: decision.CertificateBindingMismatch, detail: "requires a certificate-bound token"},
		"bound token checked without a rule":      {path: "/open", scope: "orders:read", edit: bound(cert.x5t), cert: other.pem, want: decision.CertificateBindingMismatch},
		"bound token, no rule, no certificate":    {path: "/open", scope: "orders:read", edit: bound(cert.x5t), want: decision.CertificateBindingMismatch},
		"bound token, no rule, right certificate": {path: "/open", scope: "orders:read", edit: bound(cert.x5t), cert: cert.pem, want: decision.OK},
		"unbound token, no rule":                  {path: "/open", scope: "orders:read", want: decision.OK},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			tok := "Bearer " + f.mint(t, tc.scope, tc.edit)
			// Twice: the second decision is served by the thumbprint cache.
			for range 2 {
				d := f.decide(decision.Request{Method: "GET", Path: tc.path, Authorization: tok, ClientCertificate: tc.cert})
				wantCode(t, d, tc.want)
				if tc.detail != "" && !strings.Contains(d.Message(), tc.detail) {
					t.Errorf("message %q does not mention %q", d.Message(), tc.detail)
				}
				if tc.want != decision.OK && (d.Code.HTTPStatus() != 401 || d.Code.Challenge() != decision.ChallengeInvalidToken) {
					t.Errorf("status %d challenge %v, want 401 invalid_token", d.Code.HTTPStatus(), d.Code.Challenge())
				}
			}
		})
	}
}

// fakeStore is an OwnershipStore over a map, with injectable failures.
type fakeStore struct {
	owners map[string][]string // key -> owners; a missing key is not found
	err    error
	// hang blocks every lookup until release is closed, ignoring ctx.
	hang    bool
	release chan struct{}
	calls   atomic.Int64
	lastKey atomic.Pointer[string]
}

func (s *fakeStore) Owners(ctx context.Context, lookup, key string) ([]string, bool, error) {
	s.calls.Add(1)
	s.lastKey.Store(&key)
	if lookup != "orders" {
		return nil, false, errors.New("unknown lookup " + lookup)
	}
	if s.hang {
		<-s.release
		return []string{"alice"}, true, nil
	}
	if s.err != nil {
		return nil, false, s.err
	}
	o, ok := s.owners[key]
	return o, ok, nil
}

// cachedStore answers from memory and never reaches its backend.
type cachedStore struct {
	fakeStore
}

func (s *cachedStore) CachedOwners(lookup, key string) ([]string, bool, bool) {
	o, ok := s.owners[key]
	return o, ok, true
}

func TestConstraintOwnership(t *testing.T) {
	owners := map[string][]string{"42": {"alice"}, "43": {"bob"}, "44": {"bob", "alice"}, "acme/7": {"acme"}}
	cases := map[string]struct {
		store   decision.OwnershipStore
		path    string
		method  string
		edit    func(decisiontest.Claims)
		want    decision.Code
		wantKey string
		detail  string
	}{
		"owner":                               {store: &fakeStore{owners: owners}, path: "/orders/42/refund", want: decision.OK, wantKey: "42"},
		"not the owner":                       {store: &fakeStore{owners: owners}, path: "/orders/43/refund", want: decision.NotOwner},
		"one of several owners":               {store: &fakeStore{owners: owners}, path: "/orders/44/refund", want: decision.OK},
		"no such order":                       {store: &fakeStore{owners: owners}, path: "/orders/99/refund", want: decision.ResourceNotFound},
		"token without sub":                   {store: &fakeStore{owners: owners}, path: "/orders/42/refund", edit: func(c decisiontest.Claims) { delete(c, "sub") }, want: decision.NotOwner, detail: "no sub claim"},
		"store error":                         {store: &fakeStore{err: errors.New("connection refused")}, path: "/orders/42/refund", want: decision.OwnershipUnavailable, detail: "failed"},
		"no store configured":                 {path: "/orders/42/refund", want: decision.OwnershipUnavailable, detail: "no ownership store"},
		"key of two parameters, tenant claim": {store: &fakeStore{owners: owners}, method: "GET", path: "/tenants/acme/orders/7", edit: func(c decisiontest.Claims) { c["tenant"] = "acme" }, want: decision.OK, wantKey: "acme/7"},
		"other tenant":                        {store: &fakeStore{owners: owners}, method: "GET", path: "/tenants/acme/orders/7", edit: func(c decisiontest.Claims) { c["tenant"] = "globex" }, want: decision.NotOwner},
		"cached answer":                       {store: &cachedStore{fakeStore{owners: owners}}, path: "/orders/42/refund", want: decision.OK},
		"cached not found":                    {store: &cachedStore{fakeStore{owners: owners}}, path: "/orders/99/refund", want: decision.ResourceNotFound},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			f := newConFixture(t, readConstraintPolicy(t), tc.store)
			method := tc.method
			if method == "" {
				method = "POST"
			}
			tok := "Bearer " + f.mint(t, "orders:refund orders:read", tc.edit)
			d := f.decide(decision.Request{Method: method, Path: tc.path, Authorization: tok})
			wantCode(t, d, tc.want)
			if tc.detail != "" && !strings.Contains(d.Message(), tc.detail) {
				t.Errorf("message %q does not mention %q", d.Message(), tc.detail)
			}
			switch s := tc.store.(type) {
			case *fakeStore:
				if k := s.lastKey.Load(); tc.wantKey != "" && (k == nil || *k != tc.wantKey) {
					t.Errorf("looked up key %v, want %q", k, tc.wantKey)
				}
			case *cachedStore:
				if n := s.calls.Load(); n != 0 {
					t.Errorf("a cached answer reached the backend %d times", n)
				}
			}
		})
	}
}

func TestConstraintOwnershipTimeout(t *testing.T) {
	store := &fakeStore{hang: true, release: make(chan struct{})}
	var once sync.Once
	t.Cleanup(func() { once.Do(func() { close(store.release) }) })
	f := newConFixture(t, readConstraintPolicy(t), store)
	tok := "Bearer " + f.mint(t, "orders:refund", nil)
	start := time.Now()
	d := f.decide(decision.Request{Method: "POST", Path: "/orders/42/refund", Authorization: tok})
	elapsed := time.Since(start)
	wantCode(t, d, decision.OwnershipUnavailable)
	if !strings.Contains(d.Message(), "timed out after 50ms") {
		t.Errorf("message %q does not say the lookup timed out", d.Message())
	}
	if elapsed < 40*time.Millisecond || elapsed > 2*time.Second {
		t.Errorf("the decision took %s; want it cut off at the 50ms lookup timeout", elapsed)
	}
	// A request whose own context ends first is also denied, not hung.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Millisecond)
	defer cancel()
	d = f.engine.Decide(ctx, &decision.Request{Method: "POST", Path: "/orders/42/refund", Authorization: tok, AuthorizationCount: 1})
	wantCode(t, d, decision.OwnershipUnavailable)
}

func TestConstraintScopeWhen(t *testing.T) {
	f := newConFixture(t, readConstraintPolicy(t), nil)
	outside := netip.MustParseAddr("203.0.113.9")
	cases := map[string]struct {
		scope string
		peer  netip.Addr
		path  string
		env   string
		want  decision.Code
	}{
		"restricted scope from corp":       {scope: "reports:read", peer: corpPeer, path: "/reports", want: decision.OK},
		"restricted scope from outside":    {scope: "reports:read", peer: outside, path: "/reports", want: decision.SourceIPNotAllowed},
		"unrestricted scope from outside":  {scope: "reports:all", peer: outside, path: "/reports", want: decision.OK},
		"both scopes from outside":         {scope: "reports:all reports:read", peer: outside, path: "/reports", want: decision.SourceIPNotAllowed},
		"restricted scope unused by route": {scope: "reports:read orders:read", peer: outside, path: "/open", want: decision.OK},
		"shadow scope is not enforced":     {scope: "beta:read", peer: outside, path: "/beta", want: decision.OK},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			tok := "Bearer " + f.mint(t, tc.scope, nil)
			tr := &decision.Trace{}
			d := f.decide(decision.Request{Method: "GET", Path: tc.path, Authorization: tok, SourceIP: tc.peer, Environment: tc.env, Trace: tr})
			wantCode(t, d, tc.want)
			if tc.want != decision.OK && !strings.Contains(d.Message(), "scope reports:read") {
				t.Errorf("message %q does not name the scope whose rule failed", d.Message())
			}
			if tc.path == "/beta" {
				found := false
				for _, s := range tr.Steps {
					found = found || (s.Check == "environment" && s.Result == "shadow")
				}
				if !found {
					t.Errorf("the shadow scope's failing rule is not in the trace: %+v", tr.Steps)
				}
				if sh := d.Shadow; !sh.Scopes || sh.Allow || sh.Code != decision.EnvironmentNotAllowed || sh.Route == nil {
					t.Errorf("shadow outcome = %+v, want the scope rule's would-be environment_not_allowed", sh)
				}
			} else if d.Shadow.Route != nil {
				t.Errorf("shadow outcome %+v without a shadow rule", d.Shadow)
			}
		})
	}
}

// fullClaims are claims that pass every constraint of update-order, for a
// token bound to cert.
func (f *conFixture) fullClaims(cert testCert) func(decisiontest.Claims) {
	return func(c decisiontest.Claims) {
		c["iat"], c["nbf"] = f.now.Add(-5*time.Minute).Unix(), f.now.Add(-5*time.Minute).Unix()
		c["exp"] = f.now.Add(55 * time.Minute).Unix()
		c["groups"] = []string{"staff", "on-call"}
		c["tenant"] = "acme"
		c["roles"] = []string{"admin"}
		c["email_verified"] = true
		c["acr"] = "urn:mfa"
		c["amr"] = []string{"pwd", "mfa"}
		c["auth_time"] = f.now.Add(-5 * time.Minute).Unix()
		c["cnf"] = map[string]any{"x5t#S256": cert.x5t}
	}
}

func TestConstraintOrder(t *testing.T) {
	store := &cachedStore{fakeStore{owners: map[string][]string{"42": {"alice"}, "43": {"bob"}}}}
	f := newConFixture(t, readConstraintPolicy(t), store)
	cert := newTestCert(t, "client-a")
	good := f.fullClaims(cert)
	bad := func(c decisiontest.Claims) {
		good(c)
		delete(c, "groups")
		c["exp"] = f.now.Add(2 * time.Hour).Unix()
		c["acr"] = "urn:pwd"
	}
	saturday := time.Date(2026, 11, 28, 15, 0, 0, 0, time.UTC)
	steps := []struct {
		name string
		fix  func(r *decision.Request, claims *func(decisiontest.Claims))
		want decision.Code
	}{
		{"everything fails", nil, decision.SourceIPNotAllowed},
		{"corp network", func(r *decision.Request, _ *func(decisiontest.Claims)) { r.SourceIP = corpPeer }, decision.EnvironmentNotAllowed},
		{"prod", func(r *decision.Request, _ *func(decisiontest.Claims)) { r.Environment = "" }, decision.OutsideTimeWindow},
		{"weekday", func(*decision.Request, *func(decisiontest.Claims)) { f.now = conNow }, decision.ClaimConditionFailed},
		{"on-call", func(_ *decision.Request, c *func(decisiontest.Claims)) {
			*c = func(c decisiontest.Claims) { bad(c); c["groups"] = []string{"on-call"} }
		}, decision.TokenLifetimeExceedsScope},
		{"short token", func(_ *decision.Request, c *func(decisiontest.Claims)) {
			*c = func(c decisiontest.Claims) { good(c); c["acr"] = "urn:pwd" }
		}, decision.CertificateBindingMismatch},
		{"certificate", func(r *decision.Request, _ *func(decisiontest.Claims)) { r.ClientCertificate = cert.urlPEM }, decision.InsufficientUserAuthentication},
		{"mfa", func(_ *decision.Request, c *func(decisiontest.Claims)) { *c = good }, decision.NotOwner},
		{"own order", func(r *decision.Request, _ *func(decisiontest.Claims)) { r.Path = "/orders/42" }, decision.OK},
	}
	f.now = saturday
	req := decision.Request{Method: "PUT", Path: "/orders/43", SourceIP: netip.MustParseAddr("203.0.113.9"), Environment: "dev"}
	claims := bad
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			if st.fix != nil {
				st.fix(&req, &claims)
			}
			r := req
			r.Authorization = "Bearer " + f.mint(t, "orders:write", claims)
			d := f.decide(r)
			wantCode(t, d, st.want)
		})
	}
}

func TestCompileConstraintProblems(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("testdata", "constraints", "bad.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = decision.Compile(data, "bad.yaml", decision.CompileOptions{})
	var le *decision.LoadError
	if !errors.As(err, &le) {
		t.Fatalf("err = %v, want *LoadError", err)
	}
	want := map[string]struct {
		line int
		msg  string
	}{
		"networks.corp[1]":                  {8, `"10.0.0.300/8" is not a valid CIDR`},
		"networks.corp[2]":                  {8, `"10.1.2.3/8" has bits set past its /8 mask; write 10.0.0.0/8`},
		"trusted_proxies.hops":              {9, "hops must be 0 or more"},
		"windows.weekdays.zone":             {11, `unknown time zone "Mars/Olympus"`},
		"windows.weekdays.days[1]":          {11, `"fun" is not a weekday`},
		"windows.weekdays.to":               {11, `"25:00" is not a time of day`},
		"windows.backwards.dates":           {12, "ends (2026-01-01) before it starts (2026-02-01)"},
		"windows.local.zone":                {13, `"Local" depends on the machine`},
		"lookups.slow.timeout":              {15, "would hold decisions too long"},
		"routes[0].when.source_ip.allow[0]": {30, `no network named "crop"; did you mean "corp"?`},
		"routes[0].when.time.within[0]":     {31, `no window named "bussiness"`},
		"routes[0].when.claims[0]":          {33, "has several operators (equals, contains)"},
		"routes[0].when.claims[1]":          {34, "has no operator"},
		"routes[0].when.step_up.acr[0]":     {35, "must be a single token"},
		"routes[0].when.not_environments":   {37, `"prod" is both allowed and excluded`},
		"routes[1].owner.lookup":            {41, `no lookup named "ordrs"; did you mean "orders"?`},
		"routes[1].owner.key":               {41, "{order}, which is not a parameter of the route's path; the route's parameters are {id}"},
		"routes[2].public":                  {44, "a public route is allowed before any token or constraint is checked"},
		"routes[3].when":                    {49, "the when block sets no constraint"},
		"scopes[1].when.claims[0].in":       {22, "in needs at least one value"},
		"scopes[1].max_lifetime":            {20, "max_lifetime must be more than 0"},
	}
	checkConstraintProblems(t, le, want)
}

func TestParseConstraintProblems(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("testdata", "constraints", "bad_types.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = decision.Compile(data, "bad_types.yaml", decision.CompileOptions{})
	var le *decision.LoadError
	if !errors.As(err, &le) {
		t.Fatalf("err = %v, want *LoadError", err)
	}
	checkConstraintProblems(t, le, map[string]struct {
		line int
		msg  string
	}{
		"routes[0].when.claims[0].equals":   {13, "a claim value must be a single string, number or true/false, not a list"},
		"routes[0].when.claims[1].containz": {14, `unknown field "containz"; did you mean "contains"?`},
		"routes[0].when.source_ip.allow":    {16, "expected a list, e.g. [corp]"},
		"routes[0].when.claims[2].in":       {15, "item 2: a claim value must not be null"},
	})
}

func checkConstraintProblems(t *testing.T, le *decision.LoadError, want map[string]struct {
	line int
	msg  string
}) {
	t.Helper()
	got := map[string]decision.Problem{}
	for _, p := range le.Problems {
		if !p.Warning {
			got[p.Field] = p
		}
	}
	for field, w := range want {
		p, ok := got[field]
		if !ok {
			t.Errorf("no problem for %s (want %q); got:\n%s", field, w.msg, le)
			continue
		}
		if !strings.Contains(p.Message, w.msg) {
			t.Errorf("%s: message %q does not contain %q", field, p.Message, w.msg)
		}
		if p.Line != w.line {
			t.Errorf("%s: line %d, want %d", field, p.Line, w.line)
		}
	}
}

func BenchmarkDecideAllConstraints(b *testing.B) {
	store := &cachedStore{fakeStore{owners: map[string][]string{"42": {"alice"}}}}
	f := newConFixture(b, readConstraintPolicy(b), store)
	cert := newTestCert(b, "client-a")
	req := &decision.Request{
		Method: "PUT", Path: "/orders/42", SourceIP: netip.MustParseAddr("192.0.2.10"), ForwardedFor: "203.0.113.9, 10.1.2.3",
		Authorization: "Bearer " + f.mint(b, "orders:write", f.fullClaims(cert)), AuthorizationCount: 1,
		ClientCertificate: cert.urlPEM,
	}
	ctx := context.Background()
	if d := f.engine.Decide(ctx, req); !d.Allow {
		b.Fatalf("setup: %s (%s)", d.Code, d.Message())
	}
	waitCached(b, f.engine, req)
	b.ReportAllocs()
	for b.Loop() {
		d := f.engine.Decide(ctx, req)
		if !d.Allow {
			b.Fatal(d.Code)
		}
	}
}
