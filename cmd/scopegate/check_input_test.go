package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/scopegate/scopegate/decision/decisiontest"
	scopegatev1 "github.com/scopegate/scopegate/proto/scopegate/v1"
)

func writeFile(t *testing.T, name, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestCheckInput(t *testing.T) {
	pol := examplePolicy(t)
	read := mint(t, "--scope", "orders:read")
	lines := fmt.Sprintf(`{"method":"GET","path":"/orders/1","token":%q,"request_id":"r1"}
{"method":"POST","path":"/orders","headers":{"Authorization":"Bearer %s"},"request_id":"r2"}

{"method":"GET","path":"/healthz"}
{"method":"GET","path":"/orders/1","token":"x","headers":{"authorization":"Bearer y"}}
`, read, read)
	file := writeFile(t, "in.jsonl", lines)

	t.Run("text: one verdict per request", func(t *testing.T) {
		code, out, errs := runCLI(t, "", "check", "--policy", pol, "--input", file)
		if code != exitDeny {
			t.Fatalf("exit %d, want %d (a request is denied)\n%s%s", code, exitDeny, out, errs)
		}
		got := strings.Split(strings.TrimSpace(out), "\n")
		want := []string{"ALLOW route=read-order", "DENY insufficient_scope", "ALLOW route=health", "DENY request_invalid"}
		if len(got) != len(want) {
			t.Fatalf("%d lines, want %d:\n%s", len(got), len(want), out)
		}
		for i, w := range want {
			if !strings.HasPrefix(got[i], w) {
				t.Errorf("line %d = %q, want prefix %q", i+1, got[i], w)
			}
		}
		if strings.Contains(out+errs, read) {
			t.Error("the output echoes the token")
		}
	})
	t.Run("json lines", func(t *testing.T) {
		code, out, errs := runCLI(t, "", "check", "--policy", pol, "--input", file, "-o", "json")
		if code != exitDeny {
			t.Fatalf("exit %d: %s", code, errs)
		}
		got := strings.Split(strings.TrimSpace(out), "\n")
		if len(got) != 4 {
			t.Fatalf("%d lines, want 4 JSON objects:\n%s", len(got), out)
		}
		var first, second decisionJSON
		if err := json.Unmarshal([]byte(got[0]), &first); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal([]byte(got[1]), &second); err != nil {
			t.Fatal(err)
		}
		if !first.Allow || first.Code != "ok" || first.Route != "read-order" || first.RequestID != "r1" ||
			len(first.ScopesUsed) != 1 || first.ScopesUsed[0] != "orders:read" {
			t.Errorf("first = %+v", first)
		}
		if second.Allow || second.Code != "insufficient_scope" || second.RequestID != "r2" || second.HTTPStatus != 403 {
			t.Errorf("second = %+v", second)
		}
	})
	t.Run("stdin, one pretty object, all allowed", func(t *testing.T) {
		in := fmt.Sprintf("{\n  \"method\": \"GET\",\n  \"path\": \"/orders/7\",\n  \"token\": %q\n}\n", read)
		code, out, errs := runCLI(t, in, "check", "--policy", pol, "--input", "-")
		if code != exitOK || !strings.HasPrefix(out, "ALLOW route=read-order") || strings.Count(out, "\n") != 1 {
			t.Errorf("exit %d\n%s%s", code, out, errs)
		}
	})
	t.Run("explain: trace and governance per request", func(t *testing.T) {
		code, out, _ := runCLI(t, "", "check", "--policy", pol, "--input", file, "--explain")
		if code != exitDeny {
			t.Fatalf("exit %d", code)
		}
		flat := spaces.ReplaceAllString(out, " ")
		for _, w := range []string{"4. scopes fail", "orders:write (the token lacks it)", "1. request fail the request sets both"} {
			if !strings.Contains(flat, w) {
				t.Errorf("output lacks %q:\n%s", w, out)
			}
		}
	})

	bad := map[string]struct {
		input string
		want  []string
	}{
		"unknown field":   {`{"methd":"GET","path":"/"}`, []string{"line 1: unknown field \"methd\"; did you mean \"method\"?", "source_address"}},
		"wrong type":      {"{\"path\":\"/\"}\n{\"path\": 3}", []string{"line 2: path: want a string"}},
		"not json":        {"{\"path\":\"/\"}\nGET /orders", []string{"line 2: not JSON"}},
		"not an object":   {`["GET","/"]`, []string{"line 1: a request is a JSON object"}},
		"empty":           {"\n\n", []string{"no requests"}},
		"truncated":       {`{"path":"/"`, []string{"line 1:"}},
		"json field name": {`{"sourceAddres":"1.2.3.4"}`, []string{"did you mean"}},
	}
	for name, tc := range bad {
		t.Run("bad input/"+name, func(t *testing.T) {
			code, out, errs := runCLI(t, tc.input, "check", "--policy", pol, "--input", "-")
			if code != exitUsage {
				t.Fatalf("exit %d, want %d\n%s%s", code, exitUsage, out, errs)
			}
			if out != "" {
				t.Errorf("decided something before refusing the file:\n%s", out)
			}
			for _, w := range tc.want {
				if !strings.Contains(errs, w) {
					t.Errorf("stderr lacks %q:\n%s", w, errs)
				}
			}
		})
	}
	t.Run("input with --path", func(t *testing.T) {
		code, _, errs := runCLI(t, "", "check", "--policy", pol, "--input", file, "--path", "/x")
		if code != exitUsage || !strings.Contains(errs, "--input gives the whole request") {
			t.Errorf("exit %d: %s", code, errs)
		}
	})
	t.Run("missing input file", func(t *testing.T) {
		code, _, errs := runCLI(t, "", "check", "--policy", pol, "--input", filepath.Join(t.TempDir(), "nope.json"))
		if code != exitUsage || !strings.Contains(errs, "nope.json") {
			t.Errorf("exit %d: %s", code, errs)
		}
	})
}

func TestCheckOwners(t *testing.T) {
	pol, err := decisiontest.ExamplePath("examples/orders-full.yaml")
	if err != nil {
		t.Fatal(err)
	}
	alice := mint(t, "--scope", "orders:write", "--sub", "alice")
	owners := writeFile(t, "owners.yaml", "orders:\n  \"42\": [alice, carol]\n  \"43\": bob\n")
	ownersJSON := writeFile(t, "owners.json", `{"orders": {"42": ["alice"], "43": ["bob"]}}`)

	db := filepath.Join(t.TempDir(), "sg.db")
	if code, _, errs := runCLI(t, "42,alice\n43,bob\n", "ownership", "import", "--store", db, "--lookup", "orders"); code != exitOK {
		t.Fatalf("import: %s", errs)
	}
	cases := map[string]struct {
		facts    []string
		path     string
		wantCode int
		want     string
	}{
		"owner, yaml":       {[]string{"--owners", owners}, "/orders/42", exitOK, "ALLOW route=update-order"},
		"owner, json":       {[]string{"--owners", ownersJSON}, "/orders/42", exitOK, "ALLOW route=update-order"},
		"not owner":         {[]string{"--owners", owners}, "/orders/43", exitDeny, "DENY not_owner"},
		"unknown resource":  {[]string{"--owners", owners}, "/orders/44", exitDeny, "DENY resource_not_found"},
		"owner, store":      {[]string{"--store", db}, "/orders/42", exitOK, "ALLOW route=update-order"},
		"not owner, store":  {[]string{"--store", db}, "/orders/43", exitDeny, "DENY not_owner"},
		"no facts at all":   {nil, "/orders/42", exitDeny, "DENY ownership_unavailable"},
		"store must exist":  {[]string{"--store", filepath.Join(t.TempDir(), "none.db")}, "/orders/42", exitUsage, "ownership import"},
		"owners and store":  {[]string{"--store", db, "--owners", owners}, "/orders/42", exitUsage, "use one"},
		"bad owners record": {[]string{"--owners", writeFile(t, "o.yaml", "orders:\n  \"42\": []\n")}, "/orders/42", exitUsage, `o.yaml:2: lookup "orders", key "42": owners list is empty`},
		"bad owners shape":  {[]string{"--owners", writeFile(t, "o.yaml", "- 42\n")}, "/orders/42", exitUsage, "want a mapping of lookup"},
		"owners not a map":  {[]string{"--owners", writeFile(t, "o.yaml", "orders: [42]\n")}, "/orders/42", exitUsage, `lookup "orders": want a mapping of key`},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			args := append([]string{"check", "--policy", pol, "--method", "PUT", "--path", tc.path, "--token", alice}, tc.facts...)
			code, out, errs := runCLI(t, "", args...)
			if code != tc.wantCode || !strings.Contains(out+errs, tc.want) {
				t.Errorf("exit %d (want %d), want %q in:\n%s%s", code, tc.wantCode, tc.want, out, errs)
			}
		})
	}
}

// TestExplainSameTrace: check --explain and client --explain print a trace
// step the same way.
func TestExplainSameTrace(t *testing.T) {
	var a, b strings.Builder
	steps := []traceJSON{{Check: "path", Result: "pass", Detail: "normalized to /x"}, {Check: "scopes", Result: "fail", Detail: "lacks y"}}
	writeTrace(&a, steps)
	v := verdict{}
	for _, s := range steps {
		v.trace = append(v.trace, tracePB(s))
	}
	v.write(&b)
	if !strings.HasSuffix(b.String(), a.String()) {
		t.Errorf("client trace:\n%s\nis not the check trace:\n%s", b.String(), a.String())
	}
	if !strings.Contains(spaces.ReplaceAllString(a.String(), " "), " 2. scopes fail lacks y\n") {
		t.Errorf("trace = %q", a.String())
	}
}

func tracePB(s traceJSON) *scopegatev1.TraceStep {
	return &scopegatev1.TraceStep{Check: s.Check, Result: s.Result, Detail: s.Detail}
}
