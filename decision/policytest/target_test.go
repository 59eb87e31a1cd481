package policytest

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/scopegate/scopegate/decision"
	"github.com/scopegate/scopegate/decision/decisiontest"
)

// fakeTarget answers with the verdict answer gives for each request, and
// keeps what it was sent.
type fakeTarget struct {
	refuse string
	answer func(req *decision.Request) (Verdict, error)
	sent   []decision.Request
}

func (f *fakeTarget) Carries(req *decision.Request) string {
	if f.refuse != "" && req.Environment != "" {
		return f.refuse
	}
	return ""
}

func (f *fakeTarget) Check(_ context.Context, req *decision.Request) (Verdict, error) {
	f.sent = append(f.sent, *req)
	return f.answer(req)
}

// claimsOf decodes the payload of the bearer token in authz.
func claimsOf(t *testing.T, authz string) map[string]any {
	t.Helper()
	parts := strings.Split(strings.TrimPrefix(authz, "Bearer "), ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %q", authz)
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var c map[string]any
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	return c
}

func parseTests(t *testing.T, text string) *File {
	t.Helper()
	f, err := Parse([]byte(text), "t_test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// TestRunTargetComparesWhatTheWireReturns: a field the wire does not
// return is neither compared nor claimed as wanted; a field it returns
// is compared, and the verdict always is.
func TestRunTargetComparesWhatTheWireReturns(t *testing.T) {
	r := loadRunner(t, "small.yaml")
	f := parseTests(t, `
tests:
  - name: deny with reason
    request: {path: /items/1}
    token: none
    expect: {reason: token_missing, route: read, status: 401}
  - name: allow on route
    request: {path: /items/1, headers: {authorization: "Bearer x"}}
    expect: {allow: true, route: read, scopes_used: [items:read]}
`)
	// allowed is the answer to the second case (it sends "Bearer x").
	allowed := Verdict{Allow: true, Reason: "ok", Route: "read", HasRoute: true, ScopesUsed: []string{"items:read"}, HasScopesUsed: true}
	for name, tc := range map[string]struct {
		denied, allowed Verdict
		pass            [2]bool
		wantFirst       string
		gotFirst        string
		wantSecond      string
	}{
		"verdict only: compared on the verdict": {
			allowed: Verdict{Allow: true}, pass: [2]bool{true, true}, wantFirst: "deny", gotFirst: "deny", wantSecond: "allow",
		},
		"reason and status returned and wrong": {
			denied: Verdict{Reason: "token_invalid", Status: 401}, allowed: allowed, pass: [2]bool{false, true},
			wantFirst: "deny token_missing status=401", gotFirst: "deny token_invalid status=401",
			wantSecond: "allow route=read scopes_used=[items:read]",
		},
		"route returned and different": {
			denied: Verdict{Reason: "token_missing", Status: 401, Route: "write", HasRoute: true}, allowed: allowed, pass: [2]bool{false, true},
			wantFirst: "deny token_missing route=read status=401",
		},
		"scopes used returned and different": {
			denied: Verdict{Reason: "token_missing", Status: 401, Route: "read", HasRoute: true}, pass: [2]bool{true, false},
			allowed: Verdict{Allow: true, Reason: "ok", Route: "read", HasRoute: true, ScopesUsed: []string{"items:admin"}, HasScopesUsed: true},
		},
	} {
		t.Run(name, func(t *testing.T) {
			ft := &fakeTarget{answer: func(req *decision.Request) (Verdict, error) {
				if req.Authorization == "Bearer x" {
					return tc.allowed, nil
				}
				return tc.denied, nil
			}}
			rep := r.RunTarget(context.Background(), []*File{f}, ft, TargetOptions{})
			for i, res := range rep.Results {
				if res.Pass != tc.pass[i] {
					t.Errorf("%s: pass %v, want %v (want %q, got %q)", res.Name, res.Pass, tc.pass[i], res.Want, res.Got)
				}
			}
			if tc.wantFirst != "" && rep.Results[0].Want != tc.wantFirst {
				t.Errorf("want %q, reported %q", tc.wantFirst, rep.Results[0].Want)
			}
			if tc.gotFirst != "" && rep.Results[0].Got != tc.gotFirst {
				t.Errorf("got %q, reported %q", tc.gotFirst, rep.Results[0].Got)
			}
			if tc.wantSecond != "" && rep.Results[1].Want != tc.wantSecond {
				t.Errorf("want %q, reported %q", tc.wantSecond, rep.Results[1].Want)
			}
		})
	}
}

// TestRunTargetSkips: what cannot be sent as the file means it is
// skipped with its reason, counted apart, and never sent.
func TestRunTargetSkips(t *testing.T) {
	r := loadRunner(t, "small.yaml")
	signer, err := decisiontest.NewECSigner("test-1")
	if err != nil {
		t.Fatal(err)
	}
	f := parseTests(t, `
tests:
  - name: fixed now
    now: 2026-01-01T00:00:00Z
    request: {path: /items/1}
    token: none
    expect: {allow: false}
  - name: owners
    request: {path: /items/1}
    owners: {orders: {"1": [a]}}
    token: none
    expect: {allow: false}
  - name: other issuer
    request: {path: /items/1}
    token: {iss: https://elsewhere.test/, scope: items:read}
    expect: {allow: true}
  - name: environment
    request: {path: /items/1, environment: prod}
    token: none
    expect: {allow: false}
  - name: sent
    request: {path: /items/1}
    token: {sub: probe, scope: items:read}
    expect: {allow: true}
matrix:
  scopes: [items:read]
`)
	ft := &fakeTarget{refuse: "no place for the environment", answer: func(*decision.Request) (Verdict, error) { return Verdict{Allow: true}, nil }}
	rep := r.RunTarget(context.Background(), []*File{f}, ft, TargetOptions{Signer: signer, Issuer: "https://id.test/", Audience: "api-synthetic"})
	skips := map[string]string{}
	for _, res := range rep.Results {
		if res.Skip != "" {
			skips[res.Name] = res.Skip
		}
	}
	for name, want := range map[string]string{
		"fixed now":    "fixes now",
		"owners":       "ownership data",
		"other issuer": `names issuer "https://elsewhere.test/"`,
		"environment":  "no place for the environment",
	} {
		if !strings.Contains(skips[name], want) {
			t.Errorf("%s: skip %q, want it to say %q", name, skips[name], want)
		}
	}
	matrix := 0
	for _, res := range rep.Results {
		if res.Matrix {
			matrix++
			if !strings.Contains(res.Skip, "matrix case") {
				t.Errorf("matrix case %s not skipped: %+v", res.Name, res)
			}
		}
	}
	if matrix == 0 {
		t.Fatal("the matrix generated no case")
	}
	if rep.Passed != 1 || rep.Failed != 0 || rep.Skipped != 4+matrix {
		t.Errorf("passed %d failed %d skipped %d, want 1 0 %d", rep.Passed, rep.Failed, rep.Skipped, 4+matrix)
	}
	if len(ft.sent) != 1 {
		t.Fatalf("sent %d requests, want only the case that can be sent", len(ft.sent))
	}
	c := claimsOf(t, ft.sent[0].Authorization)
	if c["iss"] != "https://id.test/" || c["aud"] != "api-synthetic" || c["sub"] != "probe" || c["scope"] != "items:read" {
		t.Errorf("minted claims %v: want the test issuer and audience", c)
	}
	var out bytes.Buffer
	rep.WriteText(&out, false)
	if !strings.HasSuffix(out.String(), "1 passed, 0 failed, "+strconv.Itoa(4+matrix)+" skipped\n") || strings.Contains(out.String(), "coverage") {
		t.Errorf("text report:\n%s", out.String())
	}

	// Without a key, a case whose token must be minted is skipped; one
	// that sends its own Authorization header still runs.
	g := parseTests(t, `
tests:
  - name: minted
    request: {path: /items/1}
    token: {scope: items:read}
    expect: {allow: true}
  - name: supplied
    request: {path: /items/1, headers: {authorization: "Bearer supplied"}}
    token: {scope: items:read}
    expect: {allow: true}
`)
	ft.sent = nil
	rep = r.RunTarget(context.Background(), []*File{g}, ft, TargetOptions{})
	if !strings.Contains(rep.Results[0].Skip, "--target-key") || rep.Results[1].Skip != "" || !rep.Results[1].Pass {
		t.Errorf("results %+v", rep.Results)
	}
	if len(ft.sent) != 1 || ft.sent[0].Authorization != "Bearer supplied" {
		t.Errorf("sent %+v", ft.sent)
	}
}

// TestRunTargetUnreachable: a target that does not answer fails the case
// with the error; it never passes.
func TestRunTargetUnreachable(t *testing.T) {
	r := loadRunner(t, "small.yaml")
	f := parseTests(t, `
tests:
  - name: denied anyway
    request: {path: /items/1}
    token: none
    expect: {allow: false}
`)
	ft := &fakeTarget{answer: func(*decision.Request) (Verdict, error) { return Verdict{}, errors.New("connection refused") }}
	rep := r.RunTarget(context.Background(), []*File{f}, ft, TargetOptions{})
	if rep.Failed != 1 || rep.Results[0].Pass || rep.Results[0].Error != "connection refused" {
		t.Errorf("report %+v", rep)
	}
}
