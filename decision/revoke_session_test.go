package decision_test

import (
	"strings"
	"testing"
	"time"

	"github.com/scopegate/scopegate/decision"
	"github.com/scopegate/scopegate/decision/decisiontest"
)

// mintWith mints a token of alice/web-app with orders:read, then sets or
// (nil) deletes the extra claims.
func (f *revFixture) mintWith(t testing.TB, extra map[string]any) string {
	t.Helper()
	c := decisiontest.StandardClaims(testIssuer, "orders-api", "alice", "web-app", "orders:read", 24*time.Hour, revNow)
	for k, v := range extra {
		if v == nil {
			delete(c, k)
			continue
		}
		c[k] = v
	}
	raw, err := f.signer.Mint(c, nil)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func TestDecideIssuedBeforeAndSession(t *testing.T) {
	cut := revNow.Add(-time.Hour)
	before, after := cut.Add(-time.Second).Unix(), cut.Unix() // iat == cut is not "before"
	subjectBefore := func(iss string) decision.Revocation {
		r := revSubject(iss, "alice")
		r.IssuedBefore = cut
		return r
	}
	clientBefore := revClient("", "web-app")
	clientBefore.IssuedBefore = cut
	session := decision.Revocation{ID: "ses", Kind: decision.RevokeSession, Issuer: testIssuer, SessionID: "s-1", Reason: "test"}
	sessionOther := session
	sessionOther.Issuer = otherIssuer
	sessionless := decision.Revocation{ID: "ses-sub", Kind: decision.RevokeSession, Issuer: testIssuer, Subject: "alice", Reason: "test"}
	sessionScoped := session
	sessionScoped.Scope = "orders:read"
	subjectBeforeScoped := scoped(subjectBefore(testIssuer), "orders:read")
	cases := map[string]struct {
		revs   []decision.Revocation
		claims map[string]any
		want   decision.Code
		detail string
	}{
		"subject, issued before":             {revs: []decision.Revocation{subjectBefore("")}, claims: map[string]any{"iat": before}, want: decision.Revoked, detail: "subject has been revoked"},
		"subject, issued at the instant":     {revs: []decision.Revocation{subjectBefore("")}, claims: map[string]any{"iat": after}, want: decision.OK},
		"subject, issued after":              {revs: []decision.Revocation{subjectBefore(testIssuer)}, claims: map[string]any{"iat": revNow.Unix()}, want: decision.OK},
		"subject, no iat: fail closed":       {revs: []decision.Revocation{subjectBefore(testIssuer)}, claims: map[string]any{"iat": nil}, want: decision.Revoked},
		"subject of another issuer":          {revs: []decision.Revocation{subjectBefore(otherIssuer)}, claims: map[string]any{"iat": before}, want: decision.OK},
		"client, issued before":              {revs: []decision.Revocation{clientBefore}, claims: map[string]any{"iat": before}, want: decision.Revoked, detail: "client has been revoked"},
		"client, issued after":               {revs: []decision.Revocation{clientBefore}, claims: map[string]any{"iat": after}, want: decision.OK},
		"scoped issued before, before":       {revs: []decision.Revocation{subjectBeforeScoped}, claims: map[string]any{"iat": before}, want: decision.Revoked, detail: "revoked for the token's subject"},
		"scoped issued before, after":        {revs: []decision.Revocation{subjectBeforeScoped}, claims: map[string]any{"iat": after}, want: decision.OK},
		"session by sid":                     {revs: []decision.Revocation{session}, claims: map[string]any{"sid": "s-1"}, want: decision.Revoked, detail: "session has been revoked"},
		"another session":                    {revs: []decision.Revocation{session}, claims: map[string]any{"sid": "s-2"}, want: decision.OK},
		"session of another issuer":          {revs: []decision.Revocation{sessionOther}, claims: map[string]any{"sid": "s-1"}, want: decision.OK},
		"session, token without sid":         {revs: []decision.Revocation{session}, want: decision.OK},
		"sessionless subject, no sid":        {revs: []decision.Revocation{sessionless}, want: decision.Revoked, detail: "session has been revoked"},
		"sessionless subject, token has sid": {revs: []decision.Revocation{sessionless}, claims: map[string]any{"sid": "s-9"}, want: decision.OK},
		"session narrowed to a scope":        {revs: []decision.Revocation{sessionScoped}, claims: map[string]any{"sid": "s-1"}, want: decision.Revoked, detail: "revoked for the token's session"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			f := newRevFixture(t, decision.Options{})
			f.engine.SetRevocations(decision.NewRevocationSet(tc.revs))
			d := f.decide("GET", "/orders/1", f.mintWith(t, tc.claims))
			if d.Code != tc.want {
				t.Fatalf("code %v (%s), want %v", d.Code, d.Message(), tc.want)
			}
			if tc.detail != "" && !strings.Contains(d.Message(), tc.detail) {
				t.Errorf("message %q, want it to contain %q", d.Message(), tc.detail)
			}
		})
	}
}

// A session revocation added through Apply (a delta level) and removed
// again is found and then forgotten.
func TestSessionRevocationApply(t *testing.T) {
	f := newRevFixture(t, decision.Options{})
	raw := f.mintWith(t, map[string]any{"sid": "s-1"})
	r := decision.Revocation{ID: "ses", Kind: decision.RevokeSession, Issuer: testIssuer, SessionID: "s-1", Reason: "test"}
	set := decision.NewRevocationSet([]decision.Revocation{revSubject("", "bob")})
	f.engine.SetRevocations(set.Apply([]decision.Revocation{r}, nil))
	if d := f.decide("GET", "/orders/1", raw); d.Code != decision.Revoked {
		t.Fatalf("after Apply: %v", d.Code)
	}
	if !set.Apply([]decision.Revocation{r}, nil).Equal([]decision.Revocation{revSubject("", "bob"), r}) {
		t.Error("Equal does not see the session revocation")
	}
	changed := r
	changed.IssuedBefore = revNow
	if set.Apply([]decision.Revocation{r}, nil).Equal([]decision.Revocation{revSubject("", "bob"), changed}) {
		t.Error("Equal ignores IssuedBefore")
	}
	f.engine.SetRevocations(set.Apply([]decision.Revocation{r}, nil).Apply(nil, []string{"ses"}))
	if d := f.decide("GET", "/orders/1", raw); d.Code != decision.OK {
		t.Fatalf("after removal: %v", d.Code)
	}
}

func TestSessionAndIssuedBeforeValidate(t *testing.T) {
	cases := map[string]struct {
		r    decision.Revocation
		want string // "" for valid
	}{
		"session":                    {r: decision.Revocation{Kind: decision.RevokeSession, Issuer: testIssuer, SessionID: "s", Reason: "r"}},
		"session of a subject":       {r: decision.Revocation{Kind: decision.RevokeSession, Issuer: testIssuer, Subject: "alice", Reason: "r"}},
		"session without issuer":     {r: decision.Revocation{Kind: decision.RevokeSession, SessionID: "s", Reason: "r"}, want: "issuer"},
		"session without target":     {r: decision.Revocation{Kind: decision.RevokeSession, Issuer: testIssuer, Reason: "r"}, want: "session_id"},
		"session with both":          {r: decision.Revocation{Kind: decision.RevokeSession, Issuer: testIssuer, SessionID: "s", Subject: "a", Reason: "r"}, want: "not both"},
		"session with a jti":         {r: decision.Revocation{Kind: decision.RevokeSession, Issuer: testIssuer, SessionID: "s", JTI: "j", Reason: "r"}, want: "leave jti"},
		"session_id on a subject":    {r: decision.Revocation{Kind: decision.RevokeSubject, Subject: "a", SessionID: "s", Reason: "r"}, want: "session_id"},
		"issued before on a subject": {r: decision.Revocation{Kind: decision.RevokeSubject, Subject: "a", IssuedBefore: revNow, Reason: "r"}},
		"issued before on a client":  {r: decision.Revocation{Kind: decision.RevokeClient, ClientID: "c", IssuedBefore: revNow, Reason: "r"}},
		"issued before on a token":   {r: decision.Revocation{Kind: decision.RevokeToken, Issuer: testIssuer, JTI: "j", IssuedBefore: revNow, Reason: "r"}, want: "issued_before"},
		"issued before out of range": {r: decision.Revocation{Kind: decision.RevokeSubject, Subject: "a", IssuedBefore: time.Date(1, 1, 1, 0, 0, 1, 0, time.UTC), Reason: "r"}, want: "out of range"},
		"session id too long":        {r: decision.Revocation{Kind: decision.RevokeSession, Issuer: testIssuer, SessionID: strings.Repeat("s", decision.MaxRevocationValueBytes+1), Reason: "r"}, want: "at most"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			err := tc.r.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("Validate: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("Validate = %v, want an error containing %q", err, tc.want)
			}
		})
	}
	if k, ok := decision.ParseRevocationKind("session"); !ok || k != decision.RevokeSession {
		t.Errorf(`ParseRevocationKind("session") = %v, %v`, k, ok)
	}
}

func TestIssuedBeforeCovers(t *testing.T) {
	cut := revNow
	for _, tc := range []struct {
		t, iat time.Time
		want   bool
	}{
		{time.Time{}, revNow, true},
		{cut, time.Time{}, true},
		{cut, cut.Add(-time.Nanosecond), true},
		{cut, cut, false},
		{cut, cut.Add(time.Second), false},
	} {
		if got := decision.IssuedBeforeCovers(tc.t, tc.iat); got != tc.want {
			t.Errorf("IssuedBeforeCovers(%v, %v) = %v, want %v", tc.t, tc.iat, got, tc.want)
		}
	}
}
