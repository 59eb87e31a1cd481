package decision_test

import (
	"strings"
	"testing"
	"time"

	"github.com/scopegate/scopegate/decision"
)

func TestDecideDeviceRevocation(t *testing.T) {
	cut := revNow.Add(-time.Hour)
	device := decision.Revocation{ID: "dev", Kind: decision.RevokeDevice, Issuer: testIssuer, DeviceID: "d-1", Reason: "test"}
	anyIssuer := device
	anyIssuer.Issuer = ""
	otherIss := device
	otherIss.Issuer = otherIssuer
	before := device
	before.IssuedBefore = cut
	scopedDev := device
	scopedDev.Scope = "orders:read"
	pathDev := device
	pathDev.Segment = "/v1/payments"
	cases := map[string]struct {
		revs   []decision.Revocation
		claims map[string]any
		path   string
		want   decision.Code
		detail string
	}{
		"the device":                   {revs: []decision.Revocation{device}, claims: map[string]any{"did": "d-1"}, want: decision.Revoked, detail: "device have been revoked"},
		"the device, any issuer":       {revs: []decision.Revocation{anyIssuer}, claims: map[string]any{"did": "d-1"}, want: decision.Revoked},
		"another device":               {revs: []decision.Revocation{device}, claims: map[string]any{"did": "d-2"}, want: decision.OK},
		"no device claim":              {revs: []decision.Revocation{device}, want: decision.OK},
		"a claim of another name":      {revs: []decision.Revocation{device}, claims: map[string]any{"device_id": "d-1"}, want: decision.OK},
		"the device of another issuer": {revs: []decision.Revocation{otherIss}, claims: map[string]any{"did": "d-1"}, want: decision.OK},
		"issued before the cut":        {revs: []decision.Revocation{before}, claims: map[string]any{"did": "d-1", "iat": cut.Add(-time.Second).Unix()}, want: decision.Revoked},
		"issued after the cut":         {revs: []decision.Revocation{before}, claims: map[string]any{"did": "d-1", "iat": cut.Unix()}, want: decision.OK},
		"narrowed to the scope":        {revs: []decision.Revocation{scopedDev}, claims: map[string]any{"did": "d-1"}, want: decision.Revoked, detail: "revoked for the token's device"},
		"narrowed to a path, on it":    {revs: []decision.Revocation{pathDev}, claims: map[string]any{"did": "d-1"}, path: "/v1/payments/x", want: decision.Revoked, detail: "device has been revoked for this path"},
		"narrowed to a path, off it":   {revs: []decision.Revocation{pathDev}, claims: map[string]any{"did": "d-1"}, want: decision.OK},
		"a device claim not a string":  {claims: map[string]any{"did": 7}, want: decision.TokenInvalid, detail: "did must be a string"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			f := newRevFixture(t, decision.Options{})
			f.engine.SetRevocations(decision.NewRevocationSet(tc.revs))
			path := tc.path
			if path == "" {
				path = "/orders/1"
			}
			d := f.decide("GET", path, f.mintWith(t, tc.claims))
			if d.Code != tc.want {
				t.Fatalf("code %v (%s), want %v", d.Code, d.Message(), tc.want)
			}
			if tc.detail != "" && !strings.Contains(d.Message(), tc.detail) {
				t.Errorf("message %q, want it to contain %q", d.Message(), tc.detail)
			}
		})
	}
}

// An issuer without device_claim never fills Token.DeviceID, so a device
// revocation cannot reach its tokens even when they carry the claim.
func TestDeviceClaimOnlyWhereNamed(t *testing.T) {
	f := newRevFixture(t, decision.Options{})
	f.engine.SetRevocations(decision.NewRevocationSet([]decision.Revocation{{ID: "dev", Kind: decision.RevokeDevice, DeviceID: "d-1", Reason: "test"}}))
	c := map[string]any{"did": "d-1", "iss": otherIssuer}
	if d := f.decide("GET", "/orders/1", f.mintWith(t, c)); d.Code != decision.OK {
		t.Fatalf("a token of an issuer without device_claim: %v (%s)", d.Code, d.Message())
	}
	if d := f.decide("GET", "/orders/1", f.mintWith(t, map[string]any{"did": "d-1"})); d.Code != decision.Revoked {
		t.Fatalf("a token of the issuer with device_claim: %v", d.Code)
	}
}

func TestDecideAssuranceRevocation(t *testing.T) {
	cut := revNow.Add(-time.Hour)
	early, late := cut.Add(-time.Second).Unix(), cut.Unix()
	lowered := func(level string) decision.Revocation {
		return decision.Revocation{ID: "asr-" + level, Kind: decision.RevokeAssurance, Subject: "alice", ACRLevel: level, IssuedBefore: cut, Reason: "test"}
	}
	ofIssuer := lowered("aal1")
	ofIssuer.Issuer = otherIssuer
	cases := map[string]struct {
		revs   []decision.Revocation
		claims map[string]any
		path   string
		want   decision.Code
	}{
		"above the new level, step-up route":     {revs: []decision.Revocation{lowered("aal1")}, claims: map[string]any{"acr": "aal2", "iat": early}, path: "/secure/1", want: decision.Revoked},
		"above, to no level at all":              {revs: []decision.Revocation{lowered("")}, claims: map[string]any{"acr": "aal3", "iat": early}, path: "/secure/1", want: decision.Revoked},
		"above, no iat: fail closed":             {revs: []decision.Revocation{lowered("aal1")}, claims: map[string]any{"acr": "aal2", "iat": nil}, path: "/secure/1", want: decision.Revoked},
		"the new level is still enough":          {revs: []decision.Revocation{lowered("aal2")}, claims: map[string]any{"acr": "aal3", "iat": early}, path: "/secure/1", want: decision.OK},
		"issued after the change":                {revs: []decision.Revocation{lowered("aal1")}, claims: map[string]any{"acr": "aal2", "iat": late}, path: "/secure/1", want: decision.OK},
		"a route without step-up":                {revs: []decision.Revocation{lowered("aal1")}, claims: map[string]any{"acr": "aal2", "iat": early}, path: "/orders/1", want: decision.OK},
		"a step-up on amr only":                  {revs: []decision.Revocation{lowered("aal1")}, claims: map[string]any{"acr": "aal2", "amr": []string{"otp"}, "iat": early}, path: "/mfa/1", want: decision.OK},
		"another subject":                        {revs: []decision.Revocation{lowered("aal1")}, claims: map[string]any{"acr": "aal2", "iat": early, "sub": "bob"}, path: "/secure/1", want: decision.OK},
		"another issuer's subject":               {revs: []decision.Revocation{ofIssuer}, claims: map[string]any{"acr": "aal2", "iat": early}, path: "/secure/1", want: decision.OK},
		"below the route already: step-up first": {revs: []decision.Revocation{lowered("aal1")}, claims: map[string]any{"acr": "aal1", "iat": early}, path: "/secure/1", want: decision.InsufficientUserAuthentication},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			f := newRevFixture(t, decision.Options{})
			f.engine.SetRevocations(decision.NewRevocationSet(tc.revs))
			d := f.decide("GET", tc.path, f.mintWith(t, tc.claims))
			if d.Code != tc.want {
				t.Fatalf("code %v (%s), want %v", d.Code, d.Message(), tc.want)
			}
			if tc.want == decision.Revoked && !strings.Contains(d.Message(), "assurance level was lowered") {
				t.Errorf("message %q", d.Message())
			}
		})
	}
	// Alone in a set, an assurance revocation is not a whole one.
	set := decision.NewRevocationSet([]decision.Revocation{lowered("aal1")})
	f := newRevFixture(t, decision.Options{})
	f.engine.SetRevocations(set)
	if _, ok := set.Revoked(&decision.Token{Issuer: testIssuer, Subject: "alice"}, revNow); ok {
		t.Error("Revoked reports an assurance revocation as whole")
	}
	// Added and removed through Apply.
	raw := f.mintWith(t, map[string]any{"acr": "aal2", "iat": early})
	f.engine.SetRevocations(decision.NewRevocationSet(nil).Apply([]decision.Revocation{lowered("aal1")}, nil))
	if d := f.decide("GET", "/secure/1", raw); d.Code != decision.Revoked {
		t.Fatalf("after Apply: %v", d.Code)
	}
	f.engine.SetRevocations(decision.NewRevocationSet(nil).Apply([]decision.Revocation{lowered("aal1")}, nil).Apply(nil, []string{"asr-aal1"}))
	if d := f.decide("GET", "/secure/1", raw); d.Code != decision.OK {
		t.Fatalf("after removal: %v", d.Code)
	}
}

func TestDeviceAndAssuranceValidate(t *testing.T) {
	cases := map[string]struct {
		r    decision.Revocation
		want string
	}{
		"device":                     {r: decision.Revocation{Kind: decision.RevokeDevice, DeviceID: "d", Reason: "r"}},
		"device narrowed":            {r: decision.Revocation{Kind: decision.RevokeDevice, DeviceID: "d", Scope: "orders:read", Reason: "r"}},
		"device without id":          {r: decision.Revocation{Kind: decision.RevokeDevice, Reason: "r"}, want: "device_id"},
		"device with a subject":      {r: decision.Revocation{Kind: decision.RevokeDevice, DeviceID: "d", Subject: "a", Reason: "r"}, want: "leave subject empty"},
		"device_id on a subject":     {r: decision.Revocation{Kind: decision.RevokeSubject, Subject: "a", DeviceID: "d", Reason: "r"}, want: "device_id"},
		"assurance":                  {r: decision.Revocation{Kind: decision.RevokeAssurance, Subject: "a", ACRLevel: "aal1", IssuedBefore: revNow, Reason: "r"}},
		"assurance to no level":      {r: decision.Revocation{Kind: decision.RevokeAssurance, Subject: "a", Reason: "r"}},
		"assurance without subject":  {r: decision.Revocation{Kind: decision.RevokeAssurance, ACRLevel: "aal1", Reason: "r"}, want: "subject"},
		"assurance narrowed":         {r: decision.Revocation{Kind: decision.RevokeAssurance, Subject: "a", Scope: "orders:read", Reason: "r"}, want: "step-up routes only"},
		"assurance level with space": {r: decision.Revocation{Kind: decision.RevokeAssurance, Subject: "a", ACRLevel: "a b", Reason: "r"}, want: "acr_level"},
		"acr_level on a subject":     {r: decision.Revocation{Kind: decision.RevokeSubject, Subject: "a", ACRLevel: "aal1", Reason: "r"}, want: "acr_level"},
		"device id too long":         {r: decision.Revocation{Kind: decision.RevokeDevice, DeviceID: strings.Repeat("d", decision.MaxRevocationValueBytes+1), Reason: "r"}, want: "at most"},
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
	for _, k := range []decision.RevocationKind{decision.RevokeDevice, decision.RevokeAssurance} {
		if got, ok := decision.ParseRevocationKind(k.String()); !ok || got != k {
			t.Errorf("ParseRevocationKind(%q) = %v, %v", k.String(), got, ok)
		}
	}
}
