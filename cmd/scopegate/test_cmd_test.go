package main

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

const watchPolicy = `issuers:
  - issuer: https://id.example.com/
    audiences: [orders-api]
    jwks_file: jwks.json
    algorithms: [RS256]
routes:
  - name: read-order
    match: {methods: [GET], path: "/orders/{id}"}
    require: {all_of: [orders:read]}
default: deny
`

const twoCases = `tests:
  - name: reads with orders:read
    request: {method: GET, path: /orders/1}
    token: {scope: orders:read}
    expect: {allow: true, route: read-order}
  - name: writes are refused
    request: {method: POST, path: /orders/1}
    token: {scope: orders:read}
    expect: {allow: true}
`

// testDir writes a policy and its test file into a new directory.
func testDir(t *testing.T, tests string) (policy, testFile string) {
	t.Helper()
	dir := t.TempDir()
	policy = filepath.Join(dir, "p.yaml")
	testFile = filepath.Join(dir, "p_test.yaml")
	for name, body := range map[string]string{policy: watchPolicy, testFile: tests, filepath.Join(dir, "jwks.json"): devJWKS(t)} {
		if err := os.WriteFile(name, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return policy, testFile
}

func TestTestRunAndFormats(t *testing.T) {
	policy, _ := testDir(t, twoCases)

	t.Run("run filters by name", func(t *testing.T) {
		code, out, errs := runCLI(t, "", "test", policy, "--run", "^reads")
		if code != exitOK || !strings.HasSuffix(out, "1 passed, 0 failed\n") {
			t.Errorf("exit %d\n%s%s", code, out, errs)
		}
		code, out, _ = runCLI(t, "", "test", policy, "--run", "refused|nothing")
		if code != exitError || !strings.HasSuffix(out, "0 passed, 1 failed\n") || !strings.Contains(out, "FAIL writes are refused") {
			t.Errorf("exit %d\n%s", code, out)
		}
		code, _, errs = runCLI(t, "", "test", policy, "--run", "(")
		if code != exitUsage || !strings.Contains(errs, "--run \"(\" is not a regular expression") {
			t.Errorf("exit %d: %s", code, errs)
		}
	})
	t.Run("junit", func(t *testing.T) {
		code, out, _ := runCLI(t, "", "test", policy, "--format", "junit")
		if code != exitError {
			t.Fatalf("exit %d", code)
		}
		var got junitSuites
		if err := xml.Unmarshal([]byte(out), &got); err != nil {
			t.Fatalf("not XML: %v\n%s", err, out)
		}
		if got.Tests != 2 || got.Failures != 1 || got.Errors != 0 || len(got.Suites) != 1 || len(got.Suites[0].Cases) != 2 {
			t.Fatalf("report = %+v", got)
		}
		c := got.Suites[0].Cases
		if c[0].Failure != nil || c[1].Failure == nil || c[1].Name != "writes are refused" || c[1].Line != 6 ||
			!strings.Contains(c[1].Failure.Message, "deny method_not_allowed") {
			t.Errorf("cases = %+v / %+v", c[0], c[1].Failure)
		}
		if !strings.HasPrefix(out, `<?xml version="1.0" encoding="UTF-8"?>`) {
			t.Errorf("no XML header:\n%s", out)
		}
	})
	t.Run("tap", func(t *testing.T) {
		code, out, _ := runCLI(t, "", "test", policy, "--format", "tap")
		if code != exitError {
			t.Fatalf("exit %d", code)
		}
		for _, w := range []string{"TAP version 14\n1..2\n", "ok 1 - reads with orders:read\n", "not ok 2 - writes are refused\n  ---\n",
			"  want: allow\n", "  got: 'deny method_not_allowed", "  ...\n"} {
			if !strings.Contains(out, w) {
				t.Errorf("TAP lacks %q:\n%s", w, out)
			}
		}
		if !strings.HasSuffix(out, "# 1 passed, 1 failed\n") {
			t.Errorf("TAP does not end with the totals:\n%s", out)
		}
	})
	t.Run("json", func(t *testing.T) {
		_, out, _ := runCLI(t, "", "test", policy, "--format", "json", "--run", "reads")
		var got struct{ Passed, Failed int }
		if err := json.Unmarshal([]byte(out), &got); err != nil || got.Passed != 1 || got.Failed != 0 {
			t.Errorf("%v %+v\n%s", err, got, out)
		}
	})
	t.Run("bad format", func(t *testing.T) {
		code, _, errs := runCLI(t, "", "test", policy, "--format", "xunit")
		if code != exitUsage || !strings.Contains(errs, "want one of text, json, junit, tap") {
			t.Errorf("exit %d: %s", code, errs)
		}
	})
}

// TestTestBrokenFiles: a test file with typos is reported with
// suggestions, its cases do not run, and the summary stays the last line;
// JUnit shows the file as an error.
func TestTestBrokenFiles(t *testing.T) {
	policy, _ := testDir(t, twoCases)
	broken := filepath.Join(filepath.Dir(policy), "broken_test.yaml")
	body := "policy: p.yaml\ntests:\n  - name: typo\n    request: {path: /orders/1}\n    expect: {reason: token_expird, rout: read-order}\n"
	if err := os.WriteFile(broken, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errs := runCLI(t, "", "test", policy, policy[:len(policy)-5]+"_test.yaml", broken)
	if code != exitUsage {
		t.Fatalf("exit %d\n%s%s", code, out, errs)
	}
	for _, w := range []string{`did you mean "token_expired"?`, `unknown field "rout"; did you mean "route"?`} {
		if !strings.Contains(errs, w) {
			t.Errorf("stderr lacks %q:\n%s", w, errs)
		}
	}
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if last := lines[len(lines)-1]; last != "1 passed, 1 failed" {
		t.Errorf("last line = %q\n%s", last, out)
	}
	_, out, _ = runCLI(t, "", "test", policy, policy[:len(policy)-5]+"_test.yaml", broken, "--format", "junit")
	var got junitSuites
	if err := xml.Unmarshal([]byte(out), &got); err != nil {
		t.Fatal(err)
	}
	if got.Errors != 1 || len(got.Suites) != 2 || got.Suites[1].Cases[0].Error == nil {
		t.Errorf("report = %+v", got)
	}
}

// syncBuffer is a bytes.Buffer safe for the watch loop and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestTestWatch(t *testing.T) {
	policy, testFile := testDir(t, twoCases)
	var out, errs syncBuffer
	c := &cli{stdin: strings.NewReader(""), stdout: &out, stderr: &errs}
	k := &testCmd{policy: policy, watch: true, format: "text"}
	tr, code := k.prepare(c)
	if code != exitOK {
		t.Fatal(errs.String())
	}
	ctx, cancel := context.WithCancel(context.Background())
	runs := make(chan int, 10)
	done := make(chan int)
	go func() { done <- k.watchLoop(ctx, c, tr, func(code int) { runs <- code }) }()

	wait := func(what string) int {
		t.Helper()
		select {
		case code := <-runs:
			return code
		case <-time.After(10 * time.Second):
			t.Fatalf("no run after %s\nstdout: %s\nstderr: %s", what, out.String(), errs.String())
			return 0
		}
	}
	if code := wait("start"); code != exitError {
		t.Errorf("first run exit %d, want %d", code, exitError)
	}
	// Fix the failing case, saved the way editors do: a new file renamed
	// over the old one.
	fixed := strings.Replace(twoCases, "expect: {allow: true}\n", "expect: {reason: method_not_allowed}\n", 1)
	tmp := testFile + ".tmp"
	if err := os.WriteFile(tmp, []byte(fixed), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, testFile); err != nil {
		t.Fatal(err)
	}
	if code := wait("saving the test file"); code != exitOK {
		t.Errorf("second run exit %d\n%s", code, out.String())
	}
	if !strings.HasSuffix(out.String(), "2 passed, 0 failed\n") {
		t.Errorf("stdout:\n%s", out.String())
	}
	// Saving an unrelated file runs nothing.
	if err := os.WriteFile(filepath.Join(filepath.Dir(policy), "notes.txt"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	select {
	case <-runs:
		t.Error("an unrelated file started a run")
	case <-time.After(400 * time.Millisecond):
	}
	cancel()
	select {
	case code := <-done:
		if code != exitOK {
			t.Errorf("watch returned %d, want the last run's %d", code, exitOK)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("watch did not stop when its context ended")
	}
}

// devJWKS is the published development key set: a jwks_file must now
// hold a usable key wherever the policy is loaded.
func devJWKS(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "keys", "jwks.json"))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
