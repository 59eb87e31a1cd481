package policytest

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

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

const contextPolicy = `issuers:
  - issuer: https://id.test/
    audiences: [api]
    jwks_url: https://id.test/jwks.json
    algorithms: [ES256]
lookups:
  items: {}
routes:
  - name: read
    match: {methods: [GET], path: "/items/{id}"}
    require: {all_of: [items:read]}
  - name: mine
    match: {methods: [GET], path: "/mine/{id}"}
    require: {all_of: [items:read]}
    owner: {lookup: items, key: "{id}", claim: sub}
  - name: office
    match: {methods: [GET], path: "/office/{id}"}
    require: {all_of: [items:read]}
    when: {time: {within: [hours]}}
windows:
  hours: {zone: UTC, days: [mon-fri], from: "09:00", to: "17:00"}
default: deny
`

// TestRunTargetSkips: what cannot be sent as the file means it is
// skipped with its reason, counted apart, and never sent; what the
// context does not change is sent, fixed clock, ownership data and
// matrix cases included.
func TestRunTargetSkips(t *testing.T) {
	r, err := New([]byte(contextPolicy), "context.yaml", Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	signer, err := decisiontest.NewECSigner("test-1")
	if err != nil {
		t.Fatal(err)
	}
	f := parseTests(t, `
owners: {items: {"1": [alice]}}
tests:
  - name: owned
    request: {path: /mine/1}
    token: {sub: alice, scope: items:read}
    expect: {allow: true}
  - name: owned, but the scope is missing first
    request: {path: /mine/1}
    token: {sub: alice, scope: other}
    expect: {reason: insufficient_scope}
  - name: office hours at a fixed Monday
    now: 2026-11-23T10:00:00Z
    request: {path: /office/1}
    token: {sub: alice, scope: items:read}
    expect: {allow: true}
  - name: a fixed now that does not matter
    now: 2026-11-23T10:00:00Z
    request: {path: /items/1}
    token: {sub: alice, scope: items:read}
    expect: {allow: true}
  - name: other issuer
    request: {path: /items/1}
    token: {iss: https://elsewhere.test/, scope: items:read}
    expect: {allow: true}
  - name: environment
    request: {path: /items/1, environment: prod}
    token: none
    expect: {allow: false}
matrix:
  routes: [read, mine]
  scopes: [items:read]
`)
	ft := &fakeTarget{refuse: "no place for the environment", answer: func(*decision.Request) (Verdict, error) { return Verdict{Allow: true}, nil }}
	sunday := func() time.Time { return time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC) }
	rep := r.RunTarget(context.Background(), []*File{f}, ft, TargetOptions{Signer: signer, Issuer: "https://id.test/", Audience: "api-synthetic", Now: sunday})
	skips := map[string]string{}
	for _, res := range rep.Results {
		if res.Error != "" {
			t.Errorf("%s: %s", res.Name, res.Error)
		}
		skips[res.Name] = res.Skip
	}
	for name, want := range map[string]string{
		"owned":                                 "consults the ownership store",
		"owned, but the scope is missing first": "",
		"office hours at a fixed Monday":        "fixes now (2026-11-23T10:00:00Z), and the policy decides it otherwise at the deployment's clock (deny outside_time_window instead of allow)",
		"a fixed now that does not matter":      "",
		"other issuer":                          `names issuer "https://elsewhere.test/"`,
		"environment":                           "no place for the environment",
		"matrix: GET /items/example (read) with items:read": "",
		"matrix: GET /items/example (read) with (no scope)": "",
		"matrix: GET /mine/example (mine) with items:read":  "consults the ownership store",
		"matrix: GET /mine/example (mine) with (no scope)":  "",
	} {
		got, ok := skips[name]
		if !ok {
			t.Errorf("no case %q in %v", name, skips)
			continue
		}
		if want == "" && got != "" || !strings.Contains(got, want) {
			t.Errorf("%s: skip %q, want %q", name, got, want)
		}
	}
	if rep.Passed+rep.Failed != 5 || rep.Skipped != 5 {
		t.Errorf("passed %d failed %d skipped %d, want 5 sent and 5 skipped", rep.Passed, rep.Failed, rep.Skipped)
	}
	if len(ft.sent) != 5 {
		t.Fatalf("sent %d requests, want the 5 that can be sent", len(ft.sent))
	}
	c := claimsOf(t, ft.sent[0].Authorization)
	if c["iss"] != "https://id.test/" || c["aud"] != "api-synthetic" || c["sub"] != "alice" || c["scope"] != "other" ||
		c["iat"] != float64(sunday().Unix()) {
		t.Errorf("minted claims %v: want the test issuer and audience, issued at the wall clock", c)
	}
	var out bytes.Buffer
	rep.WriteText(&out, false)
	if !strings.HasSuffix(out.String(), "5 skipped\n") || strings.Contains(out.String(), "coverage") {
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

// TestRunTargetSuppliedTokenFromEnv: ${SCOPEGATE_TEST_...} in a supplied
// Authorization header is read from the environment; other names, and
// unset ones, fail the case without sending it or echoing a value.
func TestRunTargetSuppliedTokenFromEnv(t *testing.T) {
	r := loadRunner(t, "small.yaml")
	f := parseTests(t, `
tests:
  - name: from the environment
    request: {path: /items/1, headers: {authorization: "Bearer ${SCOPEGATE_TEST_TOKEN}"}}
    expect: {allow: true}
  - name: unset
    request: {path: /items/1, headers: {authorization: "Bearer ${SCOPEGATE_TEST_UNSET}"}}
    expect: {allow: true}
  - name: another secret
    request: {path: /items/1, headers: {authorization: "Bearer ${AWS_SECRET_ACCESS_KEY}"}}
    expect: {allow: true}
`)
	env := map[string]string{"SCOPEGATE_TEST_TOKEN": "tok-123", "AWS_SECRET_ACCESS_KEY": "do-not-send"}
	ft := &fakeTarget{answer: func(req *decision.Request) (Verdict, error) { return Verdict{Allow: true}, nil }}
	rep := r.RunTarget(context.Background(), []*File{f}, ft, TargetOptions{Env: func(n string) (string, bool) { v, ok := env[n]; return v, ok }})
	if len(ft.sent) != 1 || ft.sent[0].Authorization != "Bearer tok-123" {
		t.Fatalf("sent %+v, want only the first case, with the variable's value", ft.sent)
	}
	for i, want := range []string{"", "${SCOPEGATE_TEST_UNSET}, which is not set", "only variables whose name starts with SCOPEGATE_TEST_"} {
		res := rep.Results[i]
		if want == "" && (!res.Pass || res.Error != "") || !strings.Contains(res.Error, want) {
			t.Errorf("%s: pass %v, error %q, want %q", res.Name, res.Pass, res.Error, want)
		}
		if strings.Contains(res.Error, "do-not-send") || strings.Contains(res.Error, "tok-123") {
			t.Errorf("%s: the error echoes a value: %s", res.Name, res.Error)
		}
	}
}
