package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/scopegate/scopegate/server"
)

// TestCarelessInputs runs command lines a new user gets wrong (missing
// files, files of the wrong kind, typos and wrong types in settings files)
// and checks that each exits with the documented code and an answer that
// names the setting and the fix: the path once, no Go type or field name,
// no library internals, no stack trace and no key material.
func TestCarelessInputs(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	pol := examplePolicy(t)
	keyPEM, err := os.ReadFile(examplePath(t, "examples/keys/dev-rsa.key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	key := write("key.pem", string(keyPEM))
	missing := filepath.Join(dir, "nope.yaml")
	ctxDir := filepath.Join(dir, "ctx")
	if err := os.MkdirAll(ctxDir, 0o700); err != nil {
		t.Fatal(err)
	}
	// serve flags that keep a serve that got past its checks off the
	// well-known ports (none should get that far).
	serve := func(args ...string) []string {
		return append([]string{"serve", "--policy", pol, "--grpc-addr", "127.0.0.1:0", "--http-addr", "", "--metrics-addr", ""}, args...)
	}
	cases := map[string]struct {
		args []string
		env  map[string]string
		code int
		want []string // in stdout+stderr
	}{
		// Typos in commands and flags.
		"a subcommand typo": {args: []string{"revocations", "lst"}, code: exitUsage, want: []string{`unknown command "lst" for "scopegate revocations"; did you mean list?`}},
		"a group typo":      {args: []string{"report", "usag"}, code: exitUsage, want: []string{"did you mean usage?"}},
		"a command typo":    {args: []string{"chek"}, code: exitUsage, want: []string{"Did you mean this?\n\tcheck"}},
		"a flag typo":       {args: []string{"serve", "--metrics-adr", "x"}, code: exitUsage, want: []string{"unknown flag: --metrics-adr; did you mean --metrics-addr?"}},

		// Files that are not there.
		"check: no policy file":   {args: []string{"check", "--policy", missing, "--path", "/x"}, code: exitUsage, want: []string{"nope.yaml: cannot read the policy file: no such file; check the path"}},
		"lint: no policy file":    {args: []string{"lint", missing}, code: exitUsage, want: []string{"nope.yaml: cannot read the policy file: no such file"}},
		"lint: no --openapi file": {args: []string{"lint", pol, "--openapi", missing}, code: exitUsage, want: []string{"cannot read the OpenAPI document " + missing + ": no such file"}},
		"lint: a directory":       {args: []string{"lint", dir}, code: exitUsage, want: []string{"cannot read the policy file: it is a directory; name the file itself"}},
		"catalog: no policy":      {args: []string{"catalog", missing}, code: exitUsage, want: []string{"nope.yaml: cannot read the policy file: no such file"}},
		"fmt: no file":            {args: []string{"fmt", missing}, code: exitUsage, want: []string{"scopegate fmt: " + missing + ": no such file; check the path"}},
		"test: no policy":         {args: []string{"test", missing}, code: exitUsage, want: []string{"nope.yaml: cannot read the policy file: no such file", "0 passed, 0 failed (the policy does not load)\n"}},
		"test: no test file":      {args: []string{"test", pol, missing}, code: exitUsage, want: []string{"nope.yaml: cannot read the test file: no such file"}},
		"check: no --input file":  {args: []string{"check", "--policy", pol, "--input", missing}, code: exitUsage, want: []string{"--input " + missing + ": no such file"}},
		"check --input: a wrong type": {args: []string{"check", "--policy", pol, "--input", write("wrong.jsonl", `{"method": 5, "path": "/orders/1"}`+"\n")}, code: exitUsage,
			want: []string{"line 1: method: want a string"}},
		"check --input: a header value": {args: []string{"check", "--policy", pol, "--input", write("hdr.jsonl", `{"path": "/x", "headers": {"authorization": 5}}`+"\n")}, code: exitUsage,
			want: []string{"line 1: each value of headers (or another map): want a string"}},
		"check: no --owners":     {args: []string{"check", "--policy", pol, "--owners", missing, "--path", "/x"}, code: exitUsage, want: []string{"--owners " + missing + ": no such file"}},
		"serve: no config file":  {args: serve("--config", missing), code: exitUsage, want: []string{"config file " + missing + ": no such file; check the path"}},
		"serve: no --ssf-config": {args: serve("--ssf-config", missing), code: exitUsage, want: []string{"--ssf-config " + missing + ": no such file"}},
		"ownership import: no --file": {args: []string{"ownership", "import", "--store", filepath.Join(dir, "o.db"), "--lookup", "orders", "--file", missing}, code: exitUsage,
			want: []string{"--file " + missing + ": no such file"}},
		"revoke: no --ca-file": {args: []string{"revoke", "--admin", "127.0.0.1:1", "--token", "x", "--subject", "bob", "--reason", "INC-1", "--ca-file", missing}, code: exitUsage,
			want: []string{"--ca-file " + missing + ": no such file"}},

		// A private key where a policy, test or settings file belongs.
		"check: a private key as policy": {args: []string{"check", "--policy", key, "--path", "/x"}, code: exitUsage, want: []string{"is a PEM private key (PRIVATE KEY), not a policy"}},
		"fmt: a private key":             {args: []string{"fmt", key}, code: exitUsage, want: []string{"is a PEM private key (PRIVATE KEY), not a policy"}},
		"fmt --check: a private key":     {args: []string{"fmt", "--check", key}, code: exitUsage, want: []string{"not a policy"}},
		"test: a private key as policy":  {args: []string{"test", key}, code: exitUsage, want: []string{"is a PEM private key (PRIVATE KEY), not a policy"}},
		"test: a private key as tests":   {args: []string{"test", pol, key}, code: exitUsage, want: []string{"this file is PEM (PRIVATE KEY), not a test file"}},
		"serve: a private key as config": {args: serve("--config", key), code: exitUsage, want: []string{"must be a mapping of settings"}},
		"serve: a private key as --ssf-config": {args: serve("--ssf-config", key), code: exitUsage,
			want: []string{"--ssf-config " + key + ": line 1: want a mapping of fields (got a string)"}},

		// Typos and wrong types in settings files.
		"config: integer": {args: serve("--config", write("c-int.yaml", "token_cache_size: \"lots\"\n")), code: exitUsage,
			want: []string{`token_cache_size: "lots": want an integer, e.g. 100000`}},
		"config: duration": {args: serve("--config", write("c-dur.yaml", "check_timeout: 5\n")), code: exitUsage,
			want: []string{`check_timeout: "5": want a duration (units s, m, h), e.g. 1s`}},
		"config: zero-default duration": {args: serve("--config", write("c-dur0.yaml", "jwks_startup_timeout: soon\n")), code: exitUsage,
			want: []string{`jwks_startup_timeout: "soon": want a duration (units s, m, h), e.g. 30s`}},
		"config: bool": {args: serve("--config", write("c-bool.yaml", "pprof: yes please\n")), code: exitUsage, want: []string{`pprof: "yes please": want true or false`}},
		"config: typo": {args: serve("--config", write("c-typo.yaml", "grpc_adr: 127.0.0.1:1\n")), code: exitUsage, want: []string{`unknown key "grpc_adr": did you mean grpc_addr?`}},
		"config: not YAML": {args: serve("--config", write("c-bad.yaml", "a: [\n")), code: exitUsage,
			want: []string{"c-bad.yaml: not valid YAML: line 1: did not find expected node content"}},
		"environment: integer": {args: serve(), env: map[string]string{"SCOPEGATE_TOKEN_CACHE_SIZE": "lots"}, code: exitUsage,
			want: []string{`SCOPEGATE_TOKEN_CACHE_SIZE="lots": want an integer, e.g. 100000`}},
		"config: a limit out of range": {args: serve("--config", write("c-neg.yaml", "max_inflight: -3\n")), code: exitUsage,
			want: []string{"--max-inflight -3 (SCOPEGATE_MAX_INFLIGHT, config max_inflight): must be positive, e.g. 4096 (the default)"}},
		"flags: every limit out of range": {args: serve("--check-timeout", "0s", "--max-connections", "-1"), code: exitUsage,
			want: []string{"--check-timeout 0s (SCOPEGATE_CHECK_TIMEOUT, config check_timeout): must be positive, e.g. 1s",
				"--max-connections -1 (SCOPEGATE_MAX_CONNECTIONS, config max_connections): must be 0 (no cap) or more"}},
		"flag: integer": {args: serve("--token-cache-size", "lots"), code: exitUsage, want: []string{`--token-cache-size "lots": want an integer, e.g. 100000`}},
		"ssf-config: typo": {args: serve("--ssf-config", write("ssf-typo.yaml", "transmiters: []\n")), code: exitUsage,
			want: []string{`line 1: unknown field "transmiters"; did you mean "transmitters"?`}},
		"ssf-config: duration": {args: serve("--ssf-config", write("ssf-dur.yaml", "transmitters: [{name: a, max_age: soon}]\n")), code: exitUsage,
			want: []string{"line 1: want a duration (units s, m, h), e.g. 30s (got a string)"}},
		"ssf-config: a list wanted": {args: serve("--ssf-config", write("ssf-list.yaml", "transmitters: 5\n")), code: exitUsage,
			want: []string{"line 1: want a list (got an integer)"}},
		"context file: typo": {args: []string{"context", "list"}, env: map[string]string{contextEnv: write("ctx-typo.yaml", "curent: prod\n")}, code: exitUsage,
			want: []string{`line 1: unknown field "curent"; did you mean "current"?`}},
		"context file: wrong type": {args: []string{"context", "list"}, env: map[string]string{contextEnv: write("ctx-type.yaml", "contexts: {a: {tls: yes-please}}\n")}, code: exitUsage,
			want: []string{"line 1: want a mapping of fields (got a string)"}},
	}
	fieldNames := goFieldNames(reflect.TypeOf(server.Config{}))
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			env := map[string]string{"HOME": ctxDir}
			for k, v := range tc.env {
				env[k] = v
			}
			var out, errb bytes.Buffer
			c := &cli{stdin: strings.NewReader(""), stdout: &out, stderr: &errb, lookupEnv: func(k string) (string, bool) {
				v, ok := env[k]
				return v, ok
			}}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			code := c.run(ctx, tc.args)
			text := out.String() + errb.String()
			if code != tc.code {
				t.Fatalf("exit %d, want %d:\n%s", code, tc.code, text)
			}
			for _, w := range tc.want {
				if !strings.Contains(text, w) {
					t.Errorf("output lacks %q:\n%s", w, text)
				}
			}
			checkCarelessAnswer(t, text, fieldNames)
			if strings.Contains(text, "BEGIN PRIVATE KEY") || strings.Contains(text, string(keyPEM[28:60])) {
				t.Errorf("output echoes the private key:\n%s", text)
			}
			for _, p := range []string{missing} {
				if n := strings.Count(text, p); n > 1 {
					t.Errorf("output names %s %d times:\n%s", p, n, text)
				}
			}
		})
	}
}

// libraryInternals are phrases of the libraries' own errors that an answer
// must have translated.
var libraryInternals = regexp.MustCompile(`rpc error|desc = |goroutine \d|panic:|\bopen /|not found in type|cannot unmarshal|main\.\w+|(?:^|\s)yaml: |\bstruct \{`)

// checkCarelessAnswer fails when text shows a Go field name of
// server.Config (e.g. MetricsAddr) or a library's internals.
func checkCarelessAnswer(t *testing.T, text string, fieldNames []string) {
	t.Helper()
	if m := libraryInternals.FindString(text); m != "" {
		t.Errorf("output shows library internals %q:\n%s", m, text)
	}
	for _, f := range fieldNames {
		if regexp.MustCompile(`\b` + f + `\b`).MatchString(text) {
			t.Errorf("output names the Go field %s:\n%s", f, text)
		}
	}
}

// goFieldNames are the names of t's fields (and its nested structs') that
// read as Go identifiers, not words: MetricsAddr, GRPCAddr.
func goFieldNames(t reflect.Type) []string {
	var out []string
	for i := range t.NumField() {
		f := t.Field(i)
		if regexp.MustCompile(`[a-z][A-Z]|[A-Z]{2}[a-z]`).MatchString(f.Name) {
			out = append(out, f.Name)
		}
		if ft := f.Type; ft.Kind() == reflect.Struct && ft.PkgPath() == t.PkgPath() {
			out = append(out, goFieldNames(ft)...)
		}
	}
	return out
}

// TestOutputJSONOfListings: context list and version print JSON (and YAML)
// with -o, with numbers and booleans as such.
func TestOutputJSONOfListings(t *testing.T) {
	ctxFile := filepath.Join(t.TempDir(), "context.yaml")
	env := map[string]string{contextEnv: ctxFile}
	run := func(args ...string) (int, string, string) {
		var out, errb bytes.Buffer
		c := &cli{stdin: strings.NewReader(""), stdout: &out, stderr: &errb, lookupEnv: func(k string) (string, bool) { v, ok := env[k]; return v, ok }}
		return c.run(context.Background(), args), out.String(), errb.String()
	}
	if code, _, errs := run("context", "set", "prod", "--admin-addr", "10.0.0.1:9193", "--addr", "10.0.0.1:9191"); code != exitOK {
		t.Fatalf("context set: %d %s", code, errs)
	}
	code, out, errs := run("context", "list", "-o", "json")
	var list struct {
		File     string
		Current  string
		Contexts []struct {
			Name      string
			Current   bool
			AdminAddr string `json:"admin_addr"`
			Addr      string
		}
	}
	if code != exitOK || json.Unmarshal([]byte(out), &list) != nil {
		t.Fatalf("context list -o json: exit %d: %s%s", code, out, errs)
	}
	if list.File != ctxFile || list.Current != "prod" || len(list.Contexts) != 1 || !list.Contexts[0].Current ||
		list.Contexts[0].AdminAddr != "10.0.0.1:9193" || list.Contexts[0].Addr != "10.0.0.1:9191" {
		t.Errorf("context list -o json = %+v", list)
	}
	if code, out, _ := run("context", "list", "-o", "yaml"); code != exitOK || !strings.Contains(out, "current: true\n") {
		t.Errorf("context list -o yaml: exit %d:\n%s", code, out)
	}
	code, out, errs = run("version", "-o", "json")
	var v map[string]string
	if code != exitOK || json.Unmarshal([]byte(out), &v) != nil || v["version"] == "" || v["go"] == "" {
		t.Errorf("version -o json: exit %d: %s%s", code, out, errs)
	}
}

// TestBenchOutputJSON: bench -o json prints the report on standard output
// (the figures for people go to standard error); --json-file still writes
// it to a file.
func TestBenchOutputJSON(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a small load")
	}
	file := filepath.Join(t.TempDir(), "bench.json")
	code, out, errs := runCLI(t, "", "bench", "--requests", "50", "--rounds", "1", "--noop=false", "--routes", "2", "--clients", "0",
		"--concurrency", "2", "--warmup", "0s", "-o", "json", "--json-file", file)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errs)
	}
	var rep struct {
		CPUs    int `json:"cpus"`
		Results []struct {
			API string `json:"api"`
		} `json:"results"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil || rep.CPUs == 0 || len(rep.Results) == 0 {
		t.Fatalf("stdout is not the JSON report (%v):\n%s", err, out)
	}
	if errs == "" {
		t.Error("the figures for people did not go to standard error")
	}
	if b, err := os.ReadFile(file); err != nil || !json.Valid(b) {
		t.Errorf("--json-file: %v", err)
	}
}

// TestEveryCommandSaysWhatItDoes: scopegate --help describes every
// command, groups included, in words of its own.
func TestEveryCommandSaysWhatItDoes(t *testing.T) {
	root := (&cli{stdin: strings.NewReader(""), stdout: &bytes.Buffer{}, stderr: &bytes.Buffer{}}).rootCommand()
	for _, cmd := range root.Commands() {
		if s := cmd.Short; s == "" || strings.HasPrefix(s, "commands: see") {
			t.Errorf("%s: summary %q says nothing about the command", cmd.Name(), s)
		}
	}
}
