package decision_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/scopegate/scopegate/decision"
	"github.com/scopegate/scopegate/decision/decisiontest"
)

const otherIssuer = "https://other.example.com/"

var revNow = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

// revFixture is an engine over testdata/revocation/policy.yaml with a
// clock the test moves.
type revFixture struct {
	engine *decision.Engine
	signer *decisiontest.Signer
	clock  atomic.Pointer[time.Time]
}

func newRevFixture(t testing.TB, opts decision.Options) *revFixture {
	t.Helper()
	s, err := decisiontest.NewECSigner("k1")
	if err != nil {
		t.Fatal(err)
	}
	text, err := os.ReadFile(filepath.Join("testdata", "revocation", "policy.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	keys := decision.StaticKeys{{Kid: s.Kid, Alg: s.Alg, Public: s.Key.Public()}}
	pol, err := decision.Compile(text, "policy.yaml", decision.CompileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	f := &revFixture{signer: s}
	now := revNow
	f.clock.Store(&now)
	opts.Clock = func() time.Time { return *f.clock.Load() }
	opts.Keys = decision.StaticKeyResolver(keys)
	if f.engine, err = decision.NewEngine(pol, opts); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.engine.Close)
	return f
}

// tok describes a token to mint; zero fields take the defaults.
type tok struct {
	iss, jti, sub, client, scope string
}

func (f *revFixture) mint(t testing.TB, k tok) string {
	t.Helper()
	if k.iss == "" {
		k.iss = testIssuer
	}
	if k.sub == "" {
		k.sub = "alice"
	}
	if k.client == "" {
		k.client = "web-app"
	}
	c := decisiontest.StandardClaims(k.iss, "orders-api", k.sub, k.client, k.scope, 24*time.Hour, revNow)
	if k.jti != "" {
		c["jti"] = k.jti
	}
	raw, err := f.signer.Mint(c, nil)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func (f *revFixture) decide(method, path, raw string) decision.Decision {
	return f.engine.Decide(context.Background(), &decision.Request{Method: method, Path: path, Authorization: "Bearer " + raw, AuthorizationCount: 1})
}

// Shorthands for revocations in the tables.
func revToken(iss, jti string) decision.Revocation {
	return decision.Revocation{ID: "t-" + jti, Kind: decision.RevokeToken, Issuer: iss, JTI: jti, Reason: "test"}
}

func revSubject(iss, sub string) decision.Revocation {
	return decision.Revocation{ID: "s-" + iss + sub, Kind: decision.RevokeSubject, Issuer: iss, Subject: sub, Reason: "test"}
}

func revClient(iss, client string) decision.Revocation {
	return decision.Revocation{ID: "c-" + iss + client, Kind: decision.RevokeClient, Issuer: iss, ClientID: client, Reason: "test"}
}

func scoped(r decision.Revocation, scope string) decision.Revocation {
	r.ID += "/scope=" + scope
	r.Scope = scope
	return r
}

func segmented(r decision.Revocation, seg string) decision.Revocation {
	r.ID += "/segment=" + seg
	r.Segment = seg
	return r
}

func until(r decision.Revocation, t time.Time) decision.Revocation {
	r.Until = t
	return r
}

func TestDecideRevocations(t *testing.T) {
	cases := map[string]struct {
		revs         []decision.Revocation
		tok          tok
		method, path string
		want         decision.Code
		detail       string // substring of the deny's message
	}{
		"no revocations": {
			tok: tok{scope: "orders:read"}, path: "/orders/1", want: decision.OK,
		},
		"token revoked by issuer and jti": {
			revs: []decision.Revocation{revToken(testIssuer, "j1")},
			tok:  tok{jti: "j1", scope: "orders:read"}, path: "/orders/1", want: decision.Revoked, detail: "the token has been revoked",
		},
		"another jti of the same issuer": {
			revs: []decision.Revocation{revToken(testIssuer, "j1")},
			tok:  tok{jti: "j2", scope: "orders:read"}, path: "/orders/1", want: decision.OK,
		},
		"the same jti from another issuer": {
			revs: []decision.Revocation{revToken(testIssuer, "j1")},
			tok:  tok{iss: otherIssuer, jti: "j1", scope: "orders:read"}, path: "/orders/1", want: decision.OK,
		},
		"subject revoked for every issuer": {
			revs: []decision.Revocation{revSubject("", "alice")},
			tok:  tok{iss: otherIssuer, scope: "orders:read"}, path: "/orders/1", want: decision.Revoked, detail: "subject has been revoked",
		},
		"subject revoked for its issuer": {
			revs: []decision.Revocation{revSubject(testIssuer, "alice")},
			tok:  tok{scope: "orders:read"}, path: "/orders/1", want: decision.Revoked,
		},
		"subject revoked for another issuer": {
			revs: []decision.Revocation{revSubject(otherIssuer, "alice")},
			tok:  tok{scope: "orders:read"}, path: "/orders/1", want: decision.OK,
		},
		"another subject": {
			revs: []decision.Revocation{revSubject("", "bob")},
			tok:  tok{scope: "orders:read"}, path: "/orders/1", want: decision.OK,
		},
		"client revoked": {
			revs: []decision.Revocation{revClient("", "web-app")},
			tok:  tok{scope: "orders:read"}, path: "/orders/1", want: decision.Revoked, detail: "client has been revoked",
		},
		"lapsed revocation": {
			revs: []decision.Revocation{until(revClient("", "web-app"), revNow.Add(-time.Second))},
			tok:  tok{scope: "orders:read"}, path: "/orders/1", want: decision.OK,
		},
		"revocation until a future time": {
			revs: []decision.Revocation{until(revClient("", "web-app"), revNow.Add(time.Hour))},
			tok:  tok{scope: "orders:read"}, path: "/orders/1", want: decision.Revoked,
		},
		"revocation lapsing exactly now": {
			revs: []decision.Revocation{until(revClient("", "web-app"), revNow)},
			tok:  tok{scope: "orders:read"}, path: "/orders/1", want: decision.OK,
		},
		"scope revoked for the client, route needs it": {
			revs: []decision.Revocation{scoped(revClient("", "web-app"), "billing:read")},
			tok:  tok{scope: "orders:read billing:read"}, path: "/invoices/1", want: decision.Revoked, detail: "revoked for the token's client",
		},
		"scope revoked for the client, other grants kept": {
			revs: []decision.Revocation{scoped(revClient("", "web-app"), "billing:read")},
			tok:  tok{scope: "orders:read billing:read"}, path: "/orders/1", want: decision.OK,
		},
		"scope revoked for another client": {
			revs: []decision.Revocation{scoped(revClient("", "batch"), "billing:read")},
			tok:  tok{scope: "billing:read"}, path: "/invoices/1", want: decision.OK,
		},
		"scope revoked for the subject": {
			revs: []decision.Revocation{scoped(revSubject(testIssuer, "alice"), "orders:read")},
			tok:  tok{scope: "orders:read"}, path: "/orders/1", want: decision.Revoked, detail: "revoked for the token's subject",
		},
		"scope revoked for one token": {
			revs: []decision.Revocation{scoped(revToken(testIssuer, "j1"), "orders:read")},
			tok:  tok{jti: "j1", scope: "orders:read"}, path: "/orders/1", want: decision.Revoked, detail: "revoked for this token",
		},
		"scope revoked, the token never had it": {
			revs: []decision.Revocation{scoped(revClient("", "web-app"), "orders:read")},
			tok:  tok{scope: "reports:read"}, path: "/orders/1", want: decision.InsufficientScope,
		},
		"revoked scope takes what it implies": {
			revs: []decision.Revocation{scoped(revClient("", "web-app"), "orders:write")},
			tok:  tok{scope: "orders:write"}, path: "/orders/1", want: decision.Revoked,
		},
		"implied scope held in its own right stays": {
			revs: []decision.Revocation{scoped(revClient("", "web-app"), "orders:write")},
			tok:  tok{scope: "orders:write orders:read"}, path: "/orders/1", want: decision.OK,
		},
		"implying scope revoked, its own route denied": {
			revs: []decision.Revocation{scoped(revClient("", "web-app"), "orders:write")},
			tok:  tok{scope: "orders:write orders:read"}, method: "POST", path: "/orders", want: decision.Revoked,
		},
		"implied scope revoked, the implying scope still grants itself": {
			revs: []decision.Revocation{scoped(revClient("", "web-app"), "orders:read")},
			tok:  tok{scope: "orders:write"}, method: "POST", path: "/orders", want: decision.OK,
		},
		"implied scope revoked even through the implying scope": {
			revs: []decision.Revocation{scoped(revClient("", "web-app"), "orders:read")},
			tok:  tok{scope: "orders:write"}, path: "/orders/1", want: decision.Revoked,
		},
		"any_of still met by another scope": {
			revs: []decision.Revocation{scoped(revClient("", "web-app"), "orders:read")},
			tok:  tok{scope: "orders:read reports:read"}, path: "/reports", want: decision.OK,
		},
		"catalog segment revoked": {
			revs: []decision.Revocation{segmented(revClient("", "web-app"), "billing")},
			tok:  tok{scope: "billing:write orders:read"}, path: "/invoices/1", want: decision.Revoked,
		},
		"catalog segment revoked, other segments kept": {
			revs: []decision.Revocation{segmented(revClient("", "web-app"), "billing")},
			tok:  tok{scope: "billing:write orders:read"}, path: "/orders/1", want: decision.OK,
		},
		"unknown segment name revokes nothing": {
			revs: []decision.Revocation{segmented(revClient("", "web-app"), "nothing")},
			tok:  tok{scope: "billing:read"}, path: "/invoices/1", want: decision.OK,
		},
		"path prefix revoked": {
			revs: []decision.Revocation{segmented(revSubject("", "alice"), "/v1/payments")},
			tok:  tok{scope: "orders:read"}, path: "/v1/payments/42/refund", want: decision.Revoked, detail: "subject has been revoked for this path",
		},
		"path prefix revoked, other paths allowed": {
			revs: []decision.Revocation{segmented(revSubject("", "alice"), "/v1/payments")},
			tok:  tok{scope: "orders:read"}, path: "/orders/1", want: decision.OK,
		},
		"path prefix stops at a segment boundary": {
			revs: []decision.Revocation{segmented(revSubject("", "alice"), "/v1/payments")},
			tok:  tok{scope: "orders:read"}, path: "/v1/paymentsx", want: decision.OK,
		},
		"path prefix matches the normalized path": {
			revs: []decision.Revocation{segmented(revClient("", "web-app"), "/v1/payments")},
			tok:  tok{scope: "orders:read"}, path: "/v1/./x/../payments/1", want: decision.Revoked,
		},
		"narrowed revocation lapsed": {
			revs: []decision.Revocation{until(scoped(revClient("", "web-app"), "orders:read"), revNow.Add(-time.Minute))},
			tok:  tok{scope: "orders:read"}, path: "/orders/1", want: decision.OK,
		},
		"outright revocation wins over a narrowed one": {
			revs: []decision.Revocation{scoped(revClient("", "web-app"), "orders:read"), revToken(testIssuer, "j1")},
			tok:  tok{jti: "j1", scope: "orders:read"}, path: "/orders/1", want: decision.Revoked, detail: "the token has been revoked",
		},
	}
	f := newRevFixture(t, decision.Options{})
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			f.engine.SetRevocations(decision.NewRevocationSet(tc.revs))
			method := tc.method
			if method == "" {
				method = "GET"
			}
			d := f.decide(method, tc.path, f.mint(t, tc.tok))
			if d.Code != tc.want {
				t.Fatalf("code = %s (%s); want %s", d.Code, d.Message(), tc.want)
			}
			if d.Allow != (tc.want == decision.OK) {
				t.Fatalf("allow = %v with code %s", d.Allow, d.Code)
			}
			if !strings.Contains(d.Message(), tc.detail) {
				t.Errorf("message %q does not contain %q", d.Message(), tc.detail)
			}
			if tc.want == decision.Revoked && strings.Contains(d.Message(), "test") {
				t.Errorf("message %q leaks the revocation's reason", d.Message())
			}
		})
	}
}

// A token already in the verified-token cache is denied on its next use
// once revoked, and allowed again once unrevoked.
func TestRevocationOfACachedToken(t *testing.T) {
	f := newRevFixture(t, decision.Options{})
	raw := f.mint(t, tok{jti: "cached", scope: "orders:read"})
	if d := f.decide("GET", "/orders/1", raw); !d.Allow {
		t.Fatalf("before revoke: %s", d.Code)
	}
	f.engine.WaitTokenCache()
	_, before := f.engine.TokenCacheStats()
	set := decision.NewRevocationSet(nil).Apply([]decision.Revocation{revToken(testIssuer, "cached")}, nil)
	f.engine.SetRevocations(set)
	if d := f.decide("GET", "/orders/1", raw); d.Code != decision.Revoked {
		t.Fatalf("after revoke: %s", d.Code)
	}
	if _, after := f.engine.TokenCacheStats(); after != before {
		t.Errorf("the revoked token was verified again (%d cold verifications, want %d): it should be denied from the cache", after, before)
	}
	f.engine.SetRevocations(set.Apply(nil, []string{"t-cached"}))
	if d := f.decide("GET", "/orders/1", raw); !d.Allow {
		t.Fatalf("after unrevoke: %s", d.Code)
	}
}

func TestRevocationStaleness(t *testing.T) {
	cases := map[string]struct {
		staleAfter time.Duration
		set        bool
		syncedAgo  time.Duration // <0: never marked
		revs       []decision.Revocation
		path       string
		scope      string
		want       decision.Code
	}{
		"fresh list, high-risk segment": {
			staleAfter: time.Minute, set: true, syncedAgo: 10 * time.Second, path: "/invoices/1", scope: "billing:read", want: decision.OK,
		},
		"stale list, high-risk segment": {
			staleAfter: time.Minute, set: true, syncedAgo: 2 * time.Minute, path: "/invoices/1", scope: "billing:read", want: decision.RevocationStale,
		},
		"stale list, low-risk route keeps deciding": {
			staleAfter: time.Minute, set: true, syncedAgo: 2 * time.Minute, path: "/orders/1", scope: "orders:read", want: decision.OK,
		},
		"never synced": {
			staleAfter: time.Minute, set: true, syncedAgo: -1, path: "/invoices/1", scope: "billing:read", want: decision.RevocationStale,
		},
		"no bound": {
			staleAfter: 0, set: true, syncedAgo: -1, path: "/invoices/1", scope: "billing:read", want: decision.OK,
		},
		"no revocations configured": {
			staleAfter: time.Minute, set: false, path: "/invoices/1", scope: "billing:read", want: decision.OK,
		},
		"revoked on the stale list stays revoked": {
			staleAfter: time.Minute, set: true, syncedAgo: 2 * time.Minute, revs: []decision.Revocation{revSubject("", "alice")},
			path: "/orders/1", scope: "orders:read", want: decision.Revoked,
		},
		"stale list is checked before the scopes": {
			staleAfter: time.Minute, set: true, syncedAgo: 2 * time.Minute, path: "/invoices/1", scope: "orders:read", want: decision.RevocationStale,
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			f := newRevFixture(t, decision.Options{RevocationStaleAfter: tc.staleAfter})
			if tc.set {
				f.engine.SetRevocations(decision.NewRevocationSet(tc.revs))
				if tc.syncedAgo >= 0 {
					f.engine.MarkRevocationsSynced(revNow.Add(-tc.syncedAgo))
				}
			}
			d := f.decide("GET", tc.path, f.mint(t, tok{scope: tc.scope}))
			if d.Code != tc.want {
				t.Fatalf("code = %s (%s); want %s", d.Code, d.Message(), tc.want)
			}
		})
	}
}

func TestRevocationValidate(t *testing.T) {
	ok := decision.Revocation{Kind: decision.RevokeClient, ClientID: "web-app", Reason: "INC-1"}
	edit := func(f func(*decision.Revocation)) decision.Revocation {
		r := ok
		f(&r)
		return r
	}
	cases := map[string]struct {
		r    decision.Revocation
		want string // "" means valid
	}{
		"client":               {r: ok},
		"token":                {r: decision.Revocation{Kind: decision.RevokeToken, Issuer: testIssuer, JTI: "j", Reason: "r"}},
		"token without issuer": {r: decision.Revocation{Kind: decision.RevokeToken, JTI: "j", Reason: "r"}, want: "issuer"},
		"token without jti":    {r: decision.Revocation{Kind: decision.RevokeToken, Issuer: testIssuer, Reason: "r"}, want: "needs jti"},
		"subject":              {r: decision.Revocation{Kind: decision.RevokeSubject, Subject: "alice", Reason: "r"}},
		"subject and client":   {r: edit(func(r *decision.Revocation) { r.Subject = "alice" }), want: "leave"},
		"no kind":              {r: edit(func(r *decision.Revocation) { r.Kind = 0 }), want: "not one of token, subject, client"},
		"no reason":            {r: edit(func(r *decision.Revocation) { r.Reason = "  " }), want: "reason is required"},
		"long reason":          {r: edit(func(r *decision.Revocation) { r.Reason = strings.Repeat("r", decision.MaxRevocationReasonBytes+1) }), want: "reason is"},
		"NUL in client":        {r: edit(func(r *decision.Revocation) { r.ClientID = "a\x00b" }), want: "NUL"},
		"scope and segment":    {r: edit(func(r *decision.Revocation) { r.Scope, r.Segment = "a", "b" }), want: "not both"},
		"scope with a space":   {r: edit(func(r *decision.Revocation) { r.Scope = "a b" }), want: "one token"},
		"segment name":         {r: edit(func(r *decision.Revocation) { r.Segment = "billing" })},
		"path prefix":          {r: edit(func(r *decision.Revocation) { r.Segment = "/v1/payments" })},
		"root path":            {r: edit(func(r *decision.Revocation) { r.Segment = "/" }), want: "every path"},
		"trailing slash":       {r: edit(func(r *decision.Revocation) { r.Segment = "/v1/" }), want: "trailing slash"},
		"dot-dot":              {r: edit(func(r *decision.Revocation) { r.Segment = "/v1/../x" }), want: "normalized"},
		"query":                {r: edit(func(r *decision.Revocation) { r.Segment = "/v1?x" }), want: "query"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			err := tc.r.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("Validate: %v", err)
			case tc.want != "" && err == nil:
				t.Fatalf("Validate accepted %+v", tc.r)
			case tc.want != "" && !strings.Contains(err.Error(), tc.want):
				t.Fatalf("error %q does not mention %q", err, tc.want)
			}
		})
	}
}

func TestRevocationKindStrings(t *testing.T) {
	for _, k := range []decision.RevocationKind{decision.RevokeToken, decision.RevokeSubject, decision.RevokeClient} {
		got, ok := decision.ParseRevocationKind(k.String())
		if !ok || got != k {
			t.Errorf("ParseRevocationKind(%q) = %v, %v", k.String(), got, ok)
		}
	}
	if _, ok := decision.ParseRevocationKind("jti"); ok {
		t.Error(`ParseRevocationKind("jti") succeeded`)
	}
}

func TestRevocationSetApply(t *testing.T) {
	a, b, c := revToken(testIssuer, "a"), revSubject("", "alice"), scoped(revClient("", "web-app"), "orders:read")
	base := decision.NewRevocationSet([]decision.Revocation{a, b})
	next := base.Apply([]decision.Revocation{c}, []string{a.ID, "no-such-id"})
	tokA := &decision.Token{Issuer: testIssuer, JTI: "a", Subject: "bob", ClientID: "x"}
	tokB := &decision.Token{Issuer: testIssuer, JTI: "z", Subject: "alice", ClientID: "x"}

	if _, ok := base.Revoked(tokA, revNow); !ok {
		t.Error("the old set lost a revocation Apply removed from the new one")
	}
	if _, ok := next.Revoked(tokA, revNow); ok {
		t.Error("the new set still revokes a removed revocation")
	}
	if r, ok := next.Revoked(tokB, revNow); !ok || r.ID != b.ID {
		t.Errorf("the new set lost an untouched revocation: %v %v", r, ok)
	}
	if base.Len() != 2 || next.Len() != 2 {
		t.Errorf("Len = %d, %d; want 2, 2", base.Len(), next.Len())
	}
	if _, ok := next.Get(c.ID); !ok {
		t.Error("Get does not find the added revocation")
	}
	if _, ok := next.Get(a.ID); ok {
		t.Error("Get finds the removed revocation")
	}
	// Replacing by ID moves the revocation to its new target.
	moved := b
	moved.Subject = "carol"
	third := next.Apply([]decision.Revocation{moved}, nil)
	if _, ok := third.Revoked(tokB, revNow); ok {
		t.Error("a replaced revocation still revokes its old target")
	}
	if _, ok := third.Revoked(&decision.Token{Issuer: testIssuer, Subject: "carol"}, revNow); !ok {
		t.Error("a replaced revocation does not revoke its new target")
	}
	if third.Len() != 2 {
		t.Errorf("Len after a replace = %d; want 2", third.Len())
	}
	all := third.All(revNow)
	if len(all) != 2 || !third.Equal(all) || base.Equal(all) {
		t.Errorf("All/Equal disagree: %v", all)
	}
}

// Beyond the delta limit Apply rebuilds one flat index; the result must be
// the same set.
func TestRevocationSetManyApplies(t *testing.T) {
	set := decision.NewRevocationSet(nil)
	const n = 5000
	for i := range n {
		set = set.Apply([]decision.Revocation{revToken(testIssuer, fmt.Sprint(i))}, nil)
		if i%2 == 1 {
			set = set.Apply(nil, []string{"t-" + fmt.Sprint(i-1)})
		}
	}
	if set.Len() != n/2 {
		t.Fatalf("Len = %d; want %d", set.Len(), n/2)
	}
	for i := range n {
		_, revoked := set.Revoked(&decision.Token{Issuer: testIssuer, JTI: fmt.Sprint(i)}, revNow)
		if revoked != (i%2 == 1) {
			t.Fatalf("jti %d revoked = %v", i, revoked)
		}
	}
}

func TestAuthenticate(t *testing.T) {
	const scope = "scopegate:admin"
	cases := map[string]struct {
		revs   []decision.Revocation
		authz  string // "" with tok zero sends nothing
		tok    tok
		scope  string
		want   decision.Code
		detail string
	}{
		"admin token":            {tok: tok{scope: scope}, want: decision.OK},
		"no header":              {authz: "-", want: decision.TokenMissing},
		"not bearer":             {authz: "Basic YWxpY2U6cHc=", want: decision.TokenMissing},
		"garbage token":          {authz: "Bearer abc", want: decision.TokenInvalid},
		"lacks the admin scope":  {tok: tok{scope: "orders:read"}, want: decision.InsufficientScope, detail: scope},
		"another scope required": {tok: tok{scope: scope}, scope: "ops:admin", want: decision.InsufficientScope},
		"scope outside the catalog": {
			tok: tok{scope: "ops:admin"}, scope: "ops:admin", want: decision.OK,
		},
		"revoked admin token": {
			revs: []decision.Revocation{revToken(testIssuer, "adm")}, tok: tok{jti: "adm", scope: scope}, want: decision.Revoked,
		},
		"admin scope revoked for the client": {
			revs: []decision.Revocation{scoped(revClient("", "web-app"), scope)}, tok: tok{scope: scope}, want: decision.Revoked,
		},
		"another scope revoked for the client": {
			revs: []decision.Revocation{scoped(revClient("", "web-app"), "orders:read")}, tok: tok{scope: scope + " orders:read"}, want: decision.OK,
		},
	}
	f := newRevFixture(t, decision.Options{})
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			f.engine.SetRevocations(decision.NewRevocationSet(tc.revs))
			authz := tc.authz
			switch authz {
			case "":
				authz = "Bearer " + f.mint(t, tc.tok)
			case "-":
				authz = ""
			}
			want := tc.scope
			if want == "" {
				want = scope
			}
			got, code, detail := f.engine.Authenticate(context.Background(), authz, want)
			if code != tc.want {
				t.Fatalf("code = %s (%s); want %s", code, detail, tc.want)
			}
			if (got != nil) != (code == decision.OK) {
				t.Fatalf("token = %v with code %s", got, code)
			}
			if !strings.Contains(detail, tc.detail) {
				t.Errorf("detail %q does not contain %q", detail, tc.detail)
			}
		})
	}
}

// Revocations cost no allocation on a cached decision: none that match,
// an outright one, and a narrowed one that masks the token's scopes.
func TestRevocationAllocs(t *testing.T) {
	f := newRevFixture(t, decision.Options{RevocationStaleAfter: time.Hour})
	raw := f.mint(t, tok{jti: "j1", scope: "orders:read billing:read"})
	var many []decision.Revocation
	for i := range 1000 {
		many = append(many, revToken(testIssuer, fmt.Sprint(i)))
	}
	cases := map[string]struct {
		revs []decision.Revocation
		path string
		want decision.Code
	}{
		"none":                 {path: "/orders/1", want: decision.OK},
		"many, none matching":  {revs: many, path: "/orders/1", want: decision.OK},
		"token revoked":        {revs: append(many, revToken(testIssuer, "j1")), path: "/orders/1", want: decision.Revoked},
		"scope masked, allow":  {revs: []decision.Revocation{scoped(revClient("", "web-app"), "billing:read")}, path: "/orders/1", want: decision.OK},
		"scope masked, deny":   {revs: []decision.Revocation{scoped(revClient("", "web-app"), "billing:read")}, path: "/invoices/1", want: decision.Revoked},
		"segment masked, deny": {revs: []decision.Revocation{segmented(revClient("", "web-app"), "orders")}, path: "/orders/1", want: decision.Revoked},
	}
	req := func(path string) *decision.Request {
		return &decision.Request{Method: "GET", Path: path, Authorization: "Bearer " + raw, AuthorizationCount: 1}
	}
	// Warm the token cache.
	for range 100 {
		f.engine.WaitTokenCache()
		f.decide("GET", "/orders/1", raw)
	}
	f.engine.MarkRevocationsSynced(revNow)
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			f.engine.SetRevocations(decision.NewRevocationSet(tc.revs))
			r := req(tc.path)
			ctx := context.Background()
			if d := f.engine.Decide(ctx, r); d.Code != tc.want {
				t.Fatalf("code = %s; want %s", d.Code, tc.want)
			}
			if n := testing.AllocsPerRun(200, func() { f.engine.Decide(ctx, r) }); n != 0 {
				t.Errorf("a cached decision allocates %v times", n)
			}
		})
	}
}

// TestRevocationMemoAndTheClock: a cached token remembers that no whole
// revocation of the set in force applied; the memo holds only while the set
// is the same and the clock has not gone back past the moment it was made
// (a lapsed revocation is active again at an earlier time).
func TestRevocationMemoAndTheClock(t *testing.T) {
	f := newRevFixture(t, decision.Options{})
	raw := f.mint(t, tok{jti: "memo", scope: "orders:read"})
	set := decision.NewRevocationSet(nil).Apply([]decision.Revocation{until(revToken(testIssuer, "memo"), revNow.Add(time.Hour))}, nil)
	f.engine.SetRevocations(set)
	if d := f.decide("GET", "/orders/1", raw); d.Code != decision.Revoked {
		t.Fatalf("while revoked: %s", d.Code)
	}
	f.engine.WaitTokenCache()
	later := revNow.Add(2 * time.Hour)
	f.clock.Store(&later)
	for i := range 2 { // the second use is served from the memo
		if d := f.decide("GET", "/orders/1", raw); !d.Allow {
			t.Fatalf("use %d after the revocation lapsed: %s", i, d.Code)
		}
	}
	back := revNow.Add(30 * time.Minute)
	f.clock.Store(&back)
	if d := f.decide("GET", "/orders/1", raw); d.Code != decision.Revoked {
		t.Fatalf("with the clock back inside the revocation: %s, want revoked", d.Code)
	}
}
