package decision

import (
	"slices"
	"strings"
	"testing"
	"time"
)

func validIssuerSpec() IssuerSpec {
	return IssuerSpec{
		Issuer:     "https://id.example.com/",
		Audiences:  []string{"orders-api"},
		JWKSFile:   "keys/jwks.json",
		Algorithms: []string{"RS256", "ES256"},
	}
}

func TestCompileIssuer(t *testing.T) {
	dur := func(d time.Duration) *Duration { return &Duration{d} }
	cases := []struct {
		name     string
		edit     func(*IssuerSpec)
		readKeys bool // read the jwks_file (Load), which does not exist
		// wantField/wantMsg: the first error problem; "" means no error.
		wantField string
		wantMsg   string
		warning   string // a warning whose message contains this
		check     func(t *testing.T, iss *Issuer)
	}{
		{name: "defaults", check: func(t *testing.T, iss *Issuer) {
			if iss.ClockSkew != 30*time.Second || !slices.Equal(iss.ScopeClaims, []string{"scope", "scp", "scopes"}) ||
				!slices.Equal(iss.Algorithms, []string{"RS256", "ES256"}) || !slices.Equal(iss.Audiences, []string{"orders-api"}) ||
				iss.Name != "https://id.example.com/" || iss.KeyRef.File != "/policies/keys/jwks.json" || iss.FileKeys != nil || iss.Fingerprint == 0 || iss.Line != 0 {
				t.Errorf("issuer = %+v", iss)
			}
		}},
		{name: "settings carried", edit: func(s *IssuerSpec) {
			s.ClockSkew, s.RequireATJWT, s.ScopeClaims = dur(5*time.Second), true, []string{"permissions", "scp", "permissions"}
		}, check: func(t *testing.T, iss *Issuer) {
			if iss.ClockSkew != 5*time.Second || !iss.RequireATJWT || !slices.Equal(iss.ScopeClaims, []string{"permissions", "scp"}) {
				t.Errorf("issuer = %+v", iss)
			}
		}},
		{name: "device claim", edit: func(s *IssuerSpec) { s.DeviceClaim = "did" }, check: func(t *testing.T, iss *Issuer) {
			if iss.DeviceClaim != "did" {
				t.Errorf("device claim = %q", iss.DeviceClaim)
			}
		}},
		{name: "device claim reserved", edit: func(s *IssuerSpec) { s.DeviceClaim = "sid" }, wantField: "issuers[0].device_claim", wantMsg: "meaning of its own"},
		{name: "device claim a scope claim", edit: func(s *IssuerSpec) { s.DeviceClaim = "scp" }, wantField: "issuers[0].device_claim", wantMsg: "meaning of its own"},
		{name: "device claim with a space", edit: func(s *IssuerSpec) { s.DeviceClaim = "device id" }, wantField: "issuers[0].device_claim", wantMsg: "whitespace"},
		{name: "zero skew allowed", edit: func(s *IssuerSpec) { s.ClockSkew = dur(0) }, check: func(t *testing.T, iss *Issuer) {
			if iss.ClockSkew != 0 {
				t.Errorf("skew = %v", iss.ClockSkew)
			}
		}},
		{name: "large skew warns", edit: func(s *IssuerSpec) { s.ClockSkew = dur(time.Hour) }, warning: "clock skew"},
		{name: "no issuer", edit: func(s *IssuerSpec) { s.Issuer = "" }, wantField: "issuers[0].issuer", wantMsg: "iss claim"},
		{name: "issuer with spaces", edit: func(s *IssuerSpec) { s.Issuer = " https://id.example.com/" }, wantField: "issuers[0].issuer", wantMsg: "spaces"},
		{name: "no audiences", edit: func(s *IssuerSpec) { s.Audiences = nil }, wantField: "issuers[0].audiences", wantMsg: "at least one audience"},
		{name: "empty audience", edit: func(s *IssuerSpec) { s.Audiences = []string{"a", ""} }, wantField: "issuers[0].audiences[1]", wantMsg: "empty"},
		{name: "no algorithms", edit: func(s *IssuerSpec) { s.Algorithms = nil }, wantField: "issuers[0].algorithms", wantMsg: "list the algorithms this issuer signs with, e.g. [RS256]"},
		{name: "hmac refused", edit: func(s *IssuerSpec) { s.Algorithms = []string{"RS256", "HS256"} }, wantField: "issuers[0].algorithms[1]", wantMsg: "HMAC"},
		{name: "none refused", edit: func(s *IssuerSpec) { s.Algorithms = []string{"none"} }, wantField: "issuers[0].algorithms[0]", wantMsg: "never accepted"},
		{name: "unknown algorithm", edit: func(s *IssuerSpec) { s.Algorithms = []string{"rs256"} }, wantField: "issuers[0].algorithms[0]", wantMsg: "case-sensitive"},
		{name: "duplicate algorithm warns", edit: func(s *IssuerSpec) { s.Algorithms = []string{"RS256", "RS256"} }, warning: "twice"},
		{name: "no key source", edit: func(s *IssuerSpec) { s.JWKSFile = "" }, wantField: "issuers[0]", wantMsg: "jwks_file"},
		{name: "discovery", edit: func(s *IssuerSpec) { s.JWKSFile, s.Discovery = "", true }, check: func(t *testing.T, iss *Issuer) {
			if !iss.KeyRef.Discovery || iss.KeyRef.ConfigURL != "" || !iss.KeyRef.Fetched() || !strings.HasPrefix(iss.KeyRef.ID(), "discovery\x00") {
				t.Errorf("key ref = %+v", iss.KeyRef)
			}
		}},
		{name: "openid_configuration_url implies discovery", edit: func(s *IssuerSpec) {
			s.JWKSFile, s.OpenIDConfigurationURL = "", "https://meta.example.com/oidc.json"
		}, check: func(t *testing.T, iss *Issuer) {
			if !iss.KeyRef.Discovery || iss.KeyRef.ConfigURL != "https://meta.example.com/oidc.json" {
				t.Errorf("key ref = %+v", iss.KeyRef)
			}
		}},
		{name: "discovery and jwks_file", edit: func(s *IssuerSpec) { s.Discovery = true }, wantField: "issuers[0]", wantMsg: "only one of jwks_file, jwks_url and discovery"},
		{name: "discovery of a plain http issuer", edit: func(s *IssuerSpec) { s.JWKSFile, s.Discovery, s.Issuer = "", true, "http://id.example.com" }, wantField: "issuers[0].issuer", wantMsg: "must use https"},
		{name: "discovery of a non-URL issuer", edit: func(s *IssuerSpec) { s.JWKSFile, s.Discovery, s.Issuer = "", true, "corp-idp" }, wantField: "issuers[0].issuer", wantMsg: "or set openid_configuration_url"},
		{name: "openid_configuration_url with credentials", edit: func(s *IssuerSpec) { s.JWKSFile, s.OpenIDConfigurationURL = "", "https://u:p@meta.example.com/x" }, wantField: "issuers[0].openid_configuration_url", wantMsg: "credentials"},
		{name: "two key sources", edit: func(s *IssuerSpec) { s.JWKSURL = "https://id.example.com/jwks" }, wantField: "issuers[0]", wantMsg: "only one"},
		{name: "https url", edit: func(s *IssuerSpec) { s.JWKSFile, s.JWKSURL = "", "https://id.example.com/jwks" }},
		{name: "http loopback url", edit: func(s *IssuerSpec) { s.JWKSFile, s.JWKSURL = "", "http://127.0.0.1:8080/jwks" }},
		{name: "http localhost url", edit: func(s *IssuerSpec) { s.JWKSFile, s.JWKSURL = "", "http://localhost:8080/jwks" }},
		{name: "http remote url", edit: func(s *IssuerSpec) { s.JWKSFile, s.JWKSURL = "", "http://id.example.com/jwks" }, wantField: "issuers[0].jwks_url", wantMsg: "https"},
		{name: "relative url", edit: func(s *IssuerSpec) { s.JWKSFile, s.JWKSURL = "", "/jwks" }, wantField: "issuers[0].jwks_url", wantMsg: "absolute"},
		{name: "url with credentials", edit: func(s *IssuerSpec) { s.JWKSFile, s.JWKSURL = "", "https://u:p@id.example.com/jwks" }, wantField: "issuers[0].jwks_url", wantMsg: "credentials"},
		{name: "min refresh above refresh", edit: func(s *IssuerSpec) {
			s.JWKSFile, s.JWKSURL = "", "https://id.example.com/jwks"
			s.JWKSRefreshInterval, s.JWKSMinRefreshInterval = dur(time.Minute), dur(time.Hour)
		}, wantField: "issuers[0].jwks_min_refresh_interval", wantMsg: "must not exceed"},
		{name: "ca file with jwks_file warns", edit: func(s *IssuerSpec) { s.JWKSCAFile = "ca.pem" }, warning: "only to jwks_url"},
		{name: "missing jwks_file read by Load", readKeys: true,
			wantField: "issuers[0].jwks_file", wantMsg: "cannot read keys from keys/jwks.json: open /policies/keys/jwks.json: no such file"},
		{name: "missing jwks_file not read by Compile", check: func(t *testing.T, iss *Issuer) {
			if iss.FileKeys != nil {
				t.Errorf("Compile read keys: %v", iss.FileKeys)
			}
		}},
		{name: "url is referenced, not fetched", readKeys: true, edit: func(s *IssuerSpec) {
			s.JWKSFile, s.JWKSURL, s.JWKSCAFile = "", "https://id.example.com/jwks", "ca.pem"
			s.JWKSRefreshInterval, s.JWKSMinRefreshInterval = dur(time.Hour), dur(time.Minute)
		}, check: func(t *testing.T, iss *Issuer) {
			want := KeyRef{Issuer: "https://id.example.com/", URL: "https://id.example.com/jwks", CAFile: "/policies/ca.pem",
				RefreshInterval: time.Hour, MinRefreshInterval: time.Minute}
			got := iss.KeyRef
			got.id, want.id = "", ""
			if got != want {
				t.Errorf("key ref = %+v, want %+v", got, want)
			}
			if iss.KeyRef.ID() == "" || iss.FileKeys != nil {
				t.Errorf("id %q, file keys %v", iss.KeyRef.ID(), iss.FileKeys)
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			spec := validIssuerSpec()
			if tc.edit != nil {
				tc.edit(&spec)
			}
			iss, probs := compileIssuer(&spec, "issuers[0]", "/policies", tc.readKeys)
			for _, p := range probs {
				if p.Line != 0 || p.File != "" {
					t.Errorf("problem %v has a line or file", p)
				}
				if !strings.HasPrefix(p.Field, "issuers[0]") {
					t.Errorf("problem field %q", p.Field)
				}
			}
			var firstErr *Problem
			for i := range probs {
				if !probs[i].Warning {
					firstErr = &probs[i]
					break
				}
			}
			if tc.wantField == "" {
				if firstErr != nil {
					t.Fatalf("unexpected problem: %v", firstErr)
				}
				if iss == nil {
					t.Fatal("no issuer")
				}
				if tc.warning != "" && !slices.ContainsFunc(probs, func(p Problem) bool { return p.Warning && strings.Contains(p.Message, tc.warning) }) {
					t.Errorf("no warning containing %q in %v", tc.warning, probs)
				}
				if tc.check != nil {
					tc.check(t, iss)
				}
				return
			}
			if iss != nil {
				t.Errorf("an issuer with errors was compiled")
			}
			if firstErr == nil {
				t.Fatalf("no error problem, want %s: %s", tc.wantField, tc.wantMsg)
			}
			if firstErr.Field != tc.wantField || !strings.Contains(firstErr.Message, tc.wantMsg) {
				t.Errorf("problem = %v, want %s: ...%s...", firstErr, tc.wantField, tc.wantMsg)
			}
		})
	}
}

func TestIssuerFingerprint(t *testing.T) {
	fp := func(edit func(*IssuerSpec)) uint64 {
		t.Helper()
		s := validIssuerSpec()
		if edit != nil {
			edit(&s)
		}
		iss, probs := compileIssuer(&s, "issuers[0]", "", false)
		if iss == nil {
			t.Fatalf("compile: %v", probs)
		}
		return iss.Fingerprint
	}
	base := fp(nil)
	if fp(nil) != base {
		t.Fatal("fingerprint is not deterministic")
	}
	changes := map[string]func(*IssuerSpec){
		"audience":     func(s *IssuerSpec) { s.Audiences = []string{"orders-api", "x"} },
		"algorithm":    func(s *IssuerSpec) { s.Algorithms = []string{"RS256"} },
		"skew":         func(s *IssuerSpec) { s.ClockSkew = &Duration{time.Second} },
		"at+jwt":       func(s *IssuerSpec) { s.RequireATJWT = true },
		"scope claims": func(s *IssuerSpec) { s.ScopeClaims = []string{"scp"} },
		"device claim": func(s *IssuerSpec) { s.DeviceClaim = "did" },
		"jwks file":    func(s *IssuerSpec) { s.JWKSFile = "other.json" },
		"name":         func(s *IssuerSpec) { s.Issuer = "https://other.example.com/" },
		"split list":   func(s *IssuerSpec) { s.Audiences = []string{"orders", "-api"} },
	}
	for name, edit := range changes {
		if fp(edit) == base {
			t.Errorf("changing %s keeps the fingerprint", name)
		}
	}
	if fp(func(s *IssuerSpec) { s.JWKSRefreshInterval = &Duration{time.Hour} }) != base {
		t.Errorf("the refresh interval does not affect validation but changed the fingerprint")
	}
}
