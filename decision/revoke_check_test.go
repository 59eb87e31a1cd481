package decision_test

import (
	"strings"
	"testing"

	"github.com/scopegate/scopegate/decision"
)

// TestCheckRevocation: what could never match under the policy is refused
// with the close match named; a path prefix is stored in canonical form.
func TestCheckRevocation(t *testing.T) {
	pol, err := compileGov(t, readGovFile(t, "policy.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	client := func(edit func(*decision.Revocation)) decision.Revocation {
		r := decision.Revocation{Kind: decision.RevokeClient, ClientID: "web-app", Reason: "INC-1"}
		edit(&r)
		return r
	}
	tests := map[string]struct {
		r       decision.Revocation
		errHas  string // "" when accepted
		segment string // the segment after the check, when accepted
	}{
		"whole client":         {r: client(func(*decision.Revocation) {})},
		"known issuer":         {r: client(func(r *decision.Revocation) { r.Issuer = "https://id.example.com/" })},
		"issuer without slash": {r: client(func(r *decision.Revocation) { r.Issuer = "https://id.example.com" }), errHas: `did you mean "https://id.example.com/"`},
		"issuer other case":    {r: client(func(r *decision.Revocation) { r.Issuer = "https://ID.example.com/" }), errHas: `did you mean "https://id.example.com/"`},
		"issuer typo":          {r: client(func(r *decision.Revocation) { r.Issuer = "https://id.exampel.com/" }), errHas: `did you mean "https://id.example.com/"`},
		"issuer far away":      {r: client(func(r *decision.Revocation) { r.Issuer = "https://login.other.org/" }), errHas: "issuers: https://id.example.com/"},
		"token of unknown issuer": {r: decision.Revocation{Kind: decision.RevokeToken, Issuer: "https://id.example.com", JTI: "j", Reason: "r"},
			errHas: `did you mean "https://id.example.com/"`},
		"catalog scope":       {r: client(func(r *decision.Revocation) { r.Scope = "orders:write" })},
		"scope typo":          {r: client(func(r *decision.Revocation) { r.Scope = "ordrs:write" }), errHas: `did you mean "orders:write"`},
		"unknown scope":       {r: client(func(r *decision.Revocation) { r.Scope = "zzz:zzz" }), errHas: `scope "zzz:zzz" is not a scope of the policy`},
		"extra known scope":   {r: client(func(r *decision.Revocation) { r.Scope = "scopegate:admin" })},
		"catalog segment":     {r: client(func(r *decision.Revocation) { r.Segment = "billing" }), segment: "billing"},
		"segment typo":        {r: client(func(r *decision.Revocation) { r.Segment = "biling" }), errHas: `did you mean "billing"`},
		"path prefix":         {r: client(func(r *decision.Revocation) { r.Segment = "/orders" }), segment: "/orders"},
		"escaped path prefix": {r: client(func(r *decision.Revocation) { r.Segment = "/%6Frders" }), segment: "/orders"},
		"reserved escape":     {r: client(func(r *decision.Revocation) { r.Segment = "/users/%40me" }), segment: "/users/@me"},
		"messy path prefix":   {r: client(func(r *decision.Revocation) { r.Segment = "/orders//./1/" }), segment: "/orders/1"},
		"dot-dot resolved":    {r: client(func(r *decision.Revocation) { r.Segment = "/x/../orders" }), segment: "/orders"},
		"prefix to the root":  {r: client(func(r *decision.Revocation) { r.Segment = "/x/.." }), errHas: "every path"},
		"encoded slash":       {r: client(func(r *decision.Revocation) { r.Segment = "/orders%2F1" }), errHas: "encoded slash"},
		"raw hash":            {r: client(func(r *decision.Revocation) { r.Segment = "/orders#1" }), errHas: "'#'"},
		"query":               {r: client(func(r *decision.Revocation) { r.Segment = "/orders?x" }), errHas: "query"},
		"encoded dot":         {r: client(func(r *decision.Revocation) { r.Segment = "/orders/%2e%2e/admin" }), errHas: "%2E"},
		"invalid UTF-8":       {r: client(func(r *decision.Revocation) { r.Segment = "/orders/%FF" }), errHas: "UTF-8"},
		"no reason":           {r: client(func(r *decision.Revocation) { r.Reason = "" }), errHas: "reason is required"},
		"device, no device_claim": {r: decision.Revocation{Kind: decision.RevokeDevice, DeviceID: "d", Reason: "r"},
			errHas: "no issuer of the policy names a device_claim"},
		"device of an issuer without device_claim": {r: decision.Revocation{Kind: decision.RevokeDevice, Issuer: "https://id.example.com/", DeviceID: "d", Reason: "r"},
			errHas: `issuer "https://id.example.com/" names no device_claim`},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			r := tc.r
			err := pol.CheckRevocation(&r, "scopegate:admin")
			if tc.errHas != "" {
				if err == nil || !strings.Contains(err.Error(), tc.errHas) {
					t.Fatalf("CheckRevocation = %v, want an error containing %q", err, tc.errHas)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if r.Segment != tc.segment {
				t.Fatalf("segment %q, want %q", r.Segment, tc.segment)
			}
		})
	}
}

// Without a policy only what the revocation is on its own is checked; a
// path prefix is still canonicalized.
func TestCheckRevocationNilPolicy(t *testing.T) {
	var pol *decision.Policy
	r := decision.Revocation{Kind: decision.RevokeClient, ClientID: "c", Reason: "r", Issuer: "https://anything/", Scope: "any"}
	if err := pol.CheckRevocation(&r); err != nil {
		t.Fatal(err)
	}
	r = decision.Revocation{Kind: decision.RevokeClient, ClientID: "c", Reason: "r", Segment: "/%6Frders/"}
	if err := pol.CheckRevocation(&r); err != nil || r.Segment != "/orders" {
		t.Fatalf("segment %q, %v; want /orders", r.Segment, err)
	}
}

// A prefix stored before paths were canonical (or written into a store by
// hand) is held in canonical form by the set, so it still matches.
func TestRevocationSetCanonicalPrefix(t *testing.T) {
	stored := decision.Revocation{ID: "1", Kind: decision.RevokeClient, ClientID: "c", Reason: "r", Segment: "/%6Frders"}
	if err := stored.Validate(); err != nil {
		t.Fatal(err)
	}
	for name, s := range map[string]*decision.RevocationSet{
		"new":   decision.NewRevocationSet([]decision.Revocation{stored}),
		"apply": decision.NewRevocationSet(nil).Apply([]decision.Revocation{stored}, nil),
	} {
		got, ok := s.Get("1")
		if !ok || got.Segment != "/orders" {
			t.Errorf("%s: segment %q, want /orders", name, got.Segment)
		}
		if !s.Equal([]decision.Revocation{stored}) {
			t.Errorf("%s: the set is not Equal to the stored list it was built from", name)
		}
	}
}

// A device revocation is accepted where an issuer names a device_claim.
func TestCheckDeviceRevocation(t *testing.T) {
	f := newRevFixture(t, decision.Options{})
	pol := f.engine.Policy()
	for _, iss := range []string{"", testIssuer} {
		r := decision.Revocation{Kind: decision.RevokeDevice, Issuer: iss, DeviceID: "d", Reason: "r"}
		if err := pol.CheckRevocation(&r); err != nil {
			t.Errorf("issuer %q: %v", iss, err)
		}
	}
	r := decision.Revocation{Kind: decision.RevokeDevice, Issuer: otherIssuer, DeviceID: "d", Reason: "r"}
	if err := pol.CheckRevocation(&r); err == nil || !strings.Contains(err.Error(), "names no device_claim") {
		t.Errorf("issuer without device_claim: %v", err)
	}
}
