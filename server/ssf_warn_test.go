package server

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"github.com/scopegate/scopegate/decision"
)

// An event's revocation the policy cannot match is logged, naming why.
func TestSSFWarnsOfUnmatchedRevocations(t *testing.T) {
	pol, err := decision.Compile([]byte(`version: t
issuers:
  - issuer: https://id.example.com/
    audiences: [api]
    jwks_file: jwks.json
    algorithms: [ES256]
routes:
  - {name: r, match: {methods: [GET], path: /x}, require: {all_of: [x:read]}}
default: deny
`), "policy.yaml", decision.CompileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	r := &SSFReceiver{log: slog.New(slog.NewTextHandler(&buf, nil)), policy: func() *decision.Policy { return pol }}
	r.warnUnmatched("idp", "credential-change", decision.Revocation{Kind: decision.RevokeSubject, Issuer: "https://id.example.com/", Subject: "a", Reason: "r"})
	if buf.Len() != 0 {
		t.Fatalf("a revocation the policy matches was warned of: %s", buf.String())
	}
	r.warnUnmatched("idp", "device-compliance-change", decision.Revocation{Kind: decision.RevokeDevice, DeviceID: "d", Reason: "r"})
	if !strings.Contains(buf.String(), "cannot match") || !strings.Contains(buf.String(), "device_claim") {
		t.Fatalf("log: %s", buf.String())
	}
}
