package server

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/scopegate/scopegate/decision/decisiontest"
	scopegatev1 "github.com/scopegate/scopegate/proto/scopegate/v1"
)

const secondIssuer = "https://partner.test/"

// withSecondIssuer adds a second issuer (its own key, signed by the
// returned signer) to the e2e policy before the server starts.
func withSecondIssuer(t *testing.T, c *Config) *decisiontest.Signer {
	t.Helper()
	s, err := decisiontest.NewECSigner("p1")
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Dir(c.PolicyPath)
	if err := os.WriteFile(filepath.Join(dir, "partner.json"), decisiontest.JWKS(s), 0o600); err != nil {
		t.Fatal(err)
	}
	pol, err := os.ReadFile(c.PolicyPath)
	if err != nil {
		t.Fatal(err)
	}
	second := "issuers:\n  - issuer: " + secondIssuer + "\n    audiences: [items-api]\n    jwks_file: partner.json\n    algorithms: [ES256]\n"
	out := strings.Replace(string(pol), "issuers:\n", second, 1)
	if err := os.WriteFile(c.PolicyPath, []byte(out), 0o600); err != nil {
		t.Fatal(err)
	}
	return s
}

func partnerToken(t *testing.T, s *decisiontest.Signer, scope string) string {
	t.Helper()
	tok, err := s.Mint(decisiontest.StandardClaims(secondIssuer, testAudience, "partner-ops", "partner-cli", scope, time.Hour, time.Now()), nil)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// Without --admin-issuer, any issuer of the policy mints admin tokens;
// with it, only the pinned issuers do, and a token of another issuer is
// refused even when it carries the admin scope.
func TestAdminIssuerPinning(t *testing.T) {
	for _, tc := range []struct {
		name           string
		issuers        []string
		ownOK, otherOK bool
	}{
		{"unpinned", nil, true, true},
		{"pinned to the first", []string{testIssuer}, true, false},
		{"pinned to the second", []string{secondIssuer}, false, true},
		{"pinned to both", []string{secondIssuer, testIssuer}, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var partner *decisiontest.Signer
			a := startAdminE2E(t, func(c *Config) {
				partner = withSecondIssuer(t, c)
				c.Admin.Issuers = tc.issuers
			})
			for _, call := range []struct {
				who string
				tok string
				ok  bool
			}{
				{"own issuer", a.token, tc.ownOK},
				{"other issuer", partnerToken(t, partner, DefaultAdminScope), tc.otherOK},
			} {
				_, err := a.admin.GetPolicyVersion(as(t, call.tok), &scopegatev1.GetPolicyVersionRequest{})
				if call.ok {
					if err != nil {
						t.Fatalf("%s: %v", call.who, err)
					}
					continue
				}
				wantCode(t, err, codes.PermissionDenied, "is not an admin issuer")
				// A revocation, the call that matters most, is refused too.
				_, err = a.admin.Revoke(as(t, call.tok), &scopegatev1.RevokeRequest{Target: &scopegatev1.RevokeRequest_Subject{Subject: "alice"}, Issuer: testIssuer, Reason: "test"})
				wantCode(t, err, codes.PermissionDenied, "is not an admin issuer")
			}
			// The scope is still required of a pinned issuer's token.
			_, err := a.admin.GetPolicyVersion(as(t, mint(t, a.signer, "ops", "ops-cli", "items:read", time.Now(), time.Hour)), &scopegatev1.GetPolicyVersionRequest{})
			if tc.ownOK {
				wantCode(t, err, codes.PermissionDenied, "insufficient_scope")
			} else if err == nil {
				t.Fatal("a token without the admin scope of an unpinned issuer was let in")
			}
		})
	}
}

// An admin issuer that is not an issuer of the policy could never match:
// the server refuses to start, naming the close match.
func TestAdminIssuerMustBeInThePolicy(t *testing.T) {
	for _, tc := range []struct {
		iss, want string
	}{
		{"https://issuer.test", `did you mean "https://issuer.test/"`},
		{"HTTPS://ISSUER.TEST/", `did you mean "https://issuer.test/"`},
		{"https://elsewhere.test/", "the policy's issuers: https://issuer.test/"},
	} {
		dir := t.TempDir()
		copyFile(t, "testdata/policy.yaml", filepath.Join(dir, "policy.yaml"))
		s, _ := decisiontest.NewECSigner("k1")
		if err := os.WriteFile(filepath.Join(dir, "jwks.json"), decisiontest.JWKS(s), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := NewServer(Config{PolicyPath: filepath.Join(dir, "policy.yaml"), Logger: quietLogger(),
			Admin: AdminConfig{Addr: "127.0.0.1:0", Issuers: []string{tc.iss}}})
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "is not an issuer of the policy") {
			t.Fatalf("admin issuer %q: %v; want an error with %q", tc.iss, err, tc.want)
		}
	}
	for _, bad := range []string{"", " ", "https://a/ https://b/", "https://a/,https://b/"} {
		c := AdminConfig{Addr: "127.0.0.1:0", Issuers: []string{bad}}
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "Admin.Issuers") {
			t.Errorf("Issuers %q: Validate = %v", bad, err)
		}
	}
}

// With the Admin API on and several issuers, an unpinned server warns at
// start; pinned, or with one issuer, it does not.
func TestAdminIssuerStartupWarning(t *testing.T) {
	const warning = "admin tokens are accepted from every issuer"
	for _, tc := range []struct {
		name    string
		second  bool
		issuers []string
		warn    bool
	}{
		{"two issuers unpinned", true, nil, true},
		{"two issuers pinned", true, []string{testIssuer}, false},
		{"one issuer", false, nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var logs lockedBuffer
			startAdminE2E(t, func(c *Config) {
				if tc.second {
					withSecondIssuer(t, c)
				}
				c.Admin.Issuers = tc.issuers
				c.Logger = slog.New(slog.NewTextHandler(&logs, nil))
			})
			if got := strings.Contains(logs.String(), warning); got != tc.warn {
				t.Fatalf("warning logged: %v, want %v: %s", got, tc.warn, logs.String())
			}
		})
	}
}
