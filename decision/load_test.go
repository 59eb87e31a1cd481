package decision

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// wantProblem is one expected problem: its line, its field and a fragment
// of its message.
type wantProblem struct {
	line  int
	field string
	msg   string
}

func readPolicyFixture(t testing.TB, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "policies", name))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestParsePolicyFileProblems(t *testing.T) {
	tests := map[string]struct {
		file  string
		nilPF bool // the file cannot be read as a policy at all
		want  []wantProblem
	}{
		"valid policy":       {file: "orders.yaml"},
		"anchors and merges": {file: "anchors.yaml"},
		"every field":        {file: "full.yaml"},
		"unknown field with suggestion": {
			file: "unknown_field.yaml",
			want: []wantProblem{{14, "routes[2].match.pathh", `unknown field "pathh"; did you mean "path"? (allowed: methods, path)`}},
		},
		"every problem of a file at once": {
			file: "many_problems.yaml",
			want: []wantProblem{
				{1, "versoin", `unknown field "versoin"; did you mean "version"?`},
				{4, "issuers[0].audience", `unknown field "audience"; did you mean "audiences"?`},
				{6, "issuers[0].algorithms", `expected a list, e.g. [RS256]`},
				{7, "issuers[0].clock_skew", `invalid duration "soon": write it like "30s"`},
				{11, "routes[0].match.methods", `expected a list, e.g. [GET]`},
				{15, "routes[0].publik", `did you mean "public"?`},
				{17, "routes[1].path", `"path" belongs under "match"`},
				{18, "routes[1].public", `expected true or false, got "maybe"`},
				{21, "upstream.strip_authorization", `duplicate key "strip_authorization": it is already set on line 20`},
			},
		},
		"type mismatches": {
			file: "type_mismatch.yaml",
			want: []wantProblem{
				{3, "issuers[0].audiences", `expected a list, e.g. [https://api.example.com], got the single value "https://api.example.com"`},
				{6, "routes", `expected a list, got a mapping (key: value pairs); start each item with "- "`},
				{10, "paths", `expected a mapping of fields (allowed: allow_semicolon, case_insensitive, max_length), got a list`},
			},
		},
		"duplicate keys": {
			file: "duplicate_key.yaml",
			want: []wantProblem{
				{6, "routes[0].match.path", `duplicate key "path": it is already set on line 4`},
				{9, "default", `duplicate key "default": it is already set on line 8`},
			},
		},
		"bad durations": {
			file: "bad_duration.yaml",
			want: []wantProblem{
				{6, "issuers[0].clock_skew", `invalid duration "30"`},
				{7, "issuers[0].jwks_refresh_interval", `duration "-5m" must not be negative`},
				{8, "issuers[0].jwks_min_refresh_interval", `a duration must be a string such as "30s"`},
			},
		},
		"empty file": {
			file:  "empty.yaml",
			nilPF: true,
			want:  []wantProblem{{0, "", "the policy file is empty"}},
		},
		"syntax error": {
			file:  "syntax_error.yaml",
			nilPF: true,
			want:  []wantProblem{{5, "", "invalid YAML: did not find expected ',' or ']'"}},
		},
		"alias bomb": {
			file:  "alias_bomb.yaml",
			nilPF: true,
			want:  []wantProblem{{6, "", "anchors and aliases expand this file by more than 100000 nodes"}},
		},
		"alias cycle": {
			file:  "alias_cycle.yaml",
			nilPF: true,
			want:  []wantProblem{{5, "", "alias *r is inside the value of its own anchor &r"}},
		},
		"second document": {
			file: "multi_document.yaml",
			want: []wantProblem{{6, "", "more than one YAML document"}},
		},
		"not a mapping": {
			file:  "not_mapping.yaml",
			nilPF: true,
			want:  []wantProblem{{1, "", "the policy must be a mapping of fields (allowed: "}},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			pf, _, probs := parsePolicyFile(readPolicyFixture(t, tc.file), tc.file)
			if (pf == nil) != tc.nilPF {
				t.Errorf("PolicyFile nil = %v, want %v", pf == nil, tc.nilPF)
			}
			checkProblems(t, probs, tc.file, tc.want)
		})
	}
}

func checkProblems(t *testing.T, probs []Problem, file string, want []wantProblem) {
	t.Helper()
	if len(probs) != len(want) {
		t.Errorf("got %d problems, want %d:", len(probs), len(want))
		for _, p := range probs {
			t.Errorf("  %s", p)
		}
		return
	}
	for i, w := range want {
		p := probs[i]
		if p.File != file || p.Line != w.line || p.Field != w.field || !strings.Contains(p.Message, w.msg) || p.Warning {
			t.Errorf("problem %d = %s\nwant line %d, field %q, message containing %q", i, p, w.line, w.field, w.msg)
		}
	}
}

func TestParsePolicyFileInline(t *testing.T) {
	tests := map[string]struct {
		src   string
		nilPF bool
		want  []wantProblem
	}{
		"whitespace only":        {src: "\n   \n", nilPF: true, want: []wantProblem{{0, "", "the policy file is empty"}}},
		"explicit null":          {src: "~\n", nilPF: true, want: []wantProblem{{1, "", "the policy file is empty"}}},
		"scalar document":        {src: "hello\n", nilPF: true, want: []wantProblem{{1, "", `not "hello"`}}},
		"tab indentation":        {src: "routes:\n\t- name: x\n", nilPF: true, want: []wantProblem{{2, "", "never tabs"}}},
		"unknown anchor":         {src: "version: v1\nroutes: *nope\n", nilPF: true, want: []wantProblem{{2, "", "alias *nope names no anchor"}}},
		"unquoted flow brace":    {src: "routes:\n  - name: a\n    match: {path: /orders/{id}}\n", nilPF: true, want: []wantProblem{{3, "", `quote values that contain braces`}}},
		"null sections are fine": {src: "version:\nissuers:\nroutes:\n  -\nupstream:\n"},
		"non-scalar key": {
			src:  "routes:\n  - ? [a, b]\n    : 1\n",
			want: []wantProblem{{2, "routes[0]", "a field name must be a plain word, not a list"}},
		},
		"bad merge": {
			src:  "upstream:\n  <<: 3\n  strip_authorization: true\n",
			want: []wantProblem{{2, `upstream["<<"]`, "a merge key (<<) needs an alias to a mapping"}},
		},
		"merged unknown field": {
			src:  "x-defaults: &d {pathh: /a}\nroutes:\n  - name: a\n    match:\n      <<: *d\n",
			want: []wantProblem{{1, "x-defaults", `unknown field "x-defaults"`}, {1, "routes[0].match.pathh", `did you mean "path"?`}},
		},
		"merge overridden by own key": {
			src: "routes:\n  - &r {name: a, match: {path: /a}}\n  - <<: *r\n    name: b\n",
		},
		"list of structs given a string": {
			src:  "issuers: login.example.com\n",
			want: []wantProblem{{1, "issuers", `expected a list, got "login.example.com"; start each item with "- "`}},
		},
		"string given a list": {
			src:  "version: [1, 2]\n",
			want: []wantProblem{{1, "version", "expected a string, got a list"}},
		},
		"numbers are strings where strings are expected": {src: "version: 3\nenvironment: 2024-01-01\n"},
		"misspelled key far from any field": {
			src:  "frobnicate: true\n",
			want: []wantProblem{{1, "frobnicate", `unknown field "frobnicate" (allowed: `}},
		},
		"problems are sorted by line": {
			src:  "routes:\n  - &a {name: a, match: {pth: /x}}\nversoin: 1\n",
			want: []wantProblem{{2, "routes[0].match.pth", `did you mean "path"?`}, {3, "versoin", `did you mean "version"?`}},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			pf, _, probs := parsePolicyFile([]byte(tc.src), "p.yaml")
			if (pf == nil) != tc.nilPF {
				t.Errorf("PolicyFile nil = %v, want %v", pf == nil, tc.nilPF)
			}
			checkProblems(t, probs, "p.yaml", tc.want)
		})
	}
}

func TestParsePolicyFileTooLarge(t *testing.T) {
	data := bytes.Repeat([]byte("#"), maxPolicyBytes+1)
	pf, li, probs := parsePolicyFile(data, "big.yaml")
	if pf != nil || li != nil {
		t.Errorf("got a policy file from %d bytes", len(data))
	}
	checkProblems(t, probs, "big.yaml", []wantProblem{{0, "", "more than the limit of 16 MiB"}})

	// Exactly at the limit, the file is parsed (and here found empty).
	_, _, probs = parsePolicyFile(data[:maxPolicyBytes], "big.yaml")
	checkProblems(t, probs, "big.yaml", []wantProblem{{0, "", "the policy file is empty"}})
}

func TestParsePolicyFileMapLimit(t *testing.T) {
	var b strings.Builder
	b.WriteString("routes: [{name: h, match: {path: /h}, public: true}]\nnetworks:\n")
	for i := range maxMapEntries + 1 {
		fmt.Fprintf(&b, "  n%d: [10.0.0.0/8]\n", i)
	}
	pf, _, probs := parsePolicyFile([]byte(b.String()), "p.yaml")
	checkProblems(t, probs, "p.yaml", []wantProblem{{2, "networks", "10001 entries, more than the 10000"}})
	if pf == nil || pf.Networks != nil || len(pf.Routes) != 1 {
		t.Errorf("decoded %+v", pf)
	}
}

func TestParsePolicyFileValues(t *testing.T) {
	pf, _, probs := parsePolicyFile(readPolicyFixture(t, "orders.yaml"), "orders.yaml")
	if len(probs) != 0 || pf == nil {
		t.Fatalf("problems: %v", probs)
	}
	iss := pf.Issuers[0]
	if pf.Version != "v1" || pf.Environment != "prod" || pf.Default != "deny" ||
		iss.Issuer != "https://login.example.com/" || !slices.Equal(iss.Algorithms, []string{"RS256", "ES256"}) ||
		iss.ClockSkew == nil || iss.ClockSkew.Duration != 30*time.Second ||
		iss.JWKSRefreshInterval.Duration != 5*time.Minute || iss.JWKSMinRefreshInterval.Duration != 10*time.Second {
		t.Errorf("decoded %+v, issuer %+v", pf, iss)
	}
	if len(pf.Routes) != 4 || pf.Routes[2].Match.Path != "/admin/{rest...}" || pf.Routes[2].Match.Methods != nil ||
		!slices.Equal(pf.Routes[1].Require.AllOf, []string{"orders:write"}) || !pf.Routes[3].Public {
		t.Errorf("routes %+v", pf.Routes)
	}
	if pf.Upstream == nil || !pf.Upstream.StripAuthorization || pf.Paths == nil || pf.Paths.CaseInsensitive {
		t.Errorf("upstream %+v, paths %+v", pf.Upstream, pf.Paths)
	}

	// Anchors, aliases and merges decode as YAML defines them.
	pf, _, probs = parsePolicyFile(readPolicyFixture(t, "anchors.yaml"), "anchors.yaml")
	if len(probs) != 0 || pf == nil {
		t.Fatalf("problems: %v", probs)
	}
	if a, b := pf.Issuers[0], pf.Issuers[1]; b.Issuer != "https://login2.example.com/" || !slices.Equal(a.Audiences, b.Audiences) ||
		b.JWKSFile != "keys.json" || b.ClockSkew.Duration != time.Minute || a.ClockSkew != nil {
		t.Errorf("merged issuers %+v / %+v", a, b)
	}
	if r := pf.Routes[1]; r.Match.Path != "/orders/{id}" || !slices.Equal(r.Match.Methods, []string{"HEAD"}) || !slices.Equal(r.Require.AllOf, []string{"orders:read"}) {
		t.Errorf("merged route %+v", r)
	}
}

// TestParsePolicyFilePartial checks that values around a bad one are still
// decoded, so later checks can run on the rest of the file.
func TestParsePolicyFilePartial(t *testing.T) {
	pf, _, probs := parsePolicyFile(readPolicyFixture(t, "many_problems.yaml"), "many_problems.yaml")
	if pf == nil || len(probs) == 0 {
		t.Fatalf("pf %v, problems %v", pf, probs)
	}
	if len(pf.Issuers) != 1 || pf.Issuers[0].JWKSFile != "keys.json" || pf.Issuers[0].Algorithms != nil || pf.Issuers[0].ClockSkew != nil {
		t.Errorf("issuer %+v", pf.Issuers)
	}
	if len(pf.Routes) != 2 || pf.Routes[0].Match.Path != "/orders/{id}" || !slices.Equal(pf.Routes[0].Require.AllOf, []string{"orders:read"}) {
		t.Errorf("routes %+v", pf.Routes)
	}
	if pf.Upstream == nil || !pf.Upstream.StripAuthorization {
		t.Errorf("upstream %+v: the first of two duplicate keys is kept", pf.Upstream)
	}
}

func TestLineIndex(t *testing.T) {
	_, orders, _ := parsePolicyFile(readPolicyFixture(t, "orders.yaml"), "orders.yaml")
	_, anchors, _ := parsePolicyFile(readPolicyFixture(t, "anchors.yaml"), "anchors.yaml")
	tests := map[string]struct {
		li   *lineIndex
		path []any
		want int
	}{
		"top-level key":              {orders, []any{"version"}, 2},
		"block list key":             {orders, []any{"issuers"}, 5},
		"list item":                  {orders, []any{"issuers", 0}, 6},
		"flow list item":             {orders, []any{"issuers", 0, "algorithms", 1}, 9},
		"nested scalar":              {orders, []any{"routes", 3, "match", "path"}, 40},
		"nested block mapping key":   {orders, []any{"routes", 1, "require"}, 28},
		"missing leaf: parent":       {orders, []any{"routes", 0, "match", "nope"}, 18},
		"index out of range: parent": {orders, []any{"routes", 99, "name"}, 16},
		"negative index":             {orders, []any{"routes", -1}, 16},
		"key on a list":              {orders, []any{"routes", "name"}, 16},
		"index on a mapping":         {orders, []any{"upstream", 0}, 45},
		"index on a scalar":          {orders, []any{"version", 0}, 2},
		"unsupported element type":   {orders, []any{"routes", 1.5}, 16},
		"missing top-level key":      {orders, []any{"scopes"}, 0},
		"empty path":                 {orders, nil, 0},
		"nil index":                  {nil, []any{"routes", 0}, 0},
		"key through a merge":        {anchors, []any{"issuers", 1, "audiences"}, 4},
		"own key beats merge":        {anchors, []any{"issuers", 1, "issuer"}, 8},
		"through an alias":           {anchors, []any{"routes", 1, "require", "all_of"}, 16},
		"alias use site":             {anchors, []any{"routes", 1, "require"}, 21},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := tc.li.line(tc.path...); got != tc.want {
				t.Errorf("line(%v) = %d, want %d", tc.path, got, tc.want)
			}
		})
	}
}

// Types for checking that the walk follows the decoder's rules on any type,
// not just PolicyFile's.
type walkInner struct {
	A int `yaml:"a"`
}

type walkEmbedded struct {
	E string `yaml:"e"`
}

type walkOuter struct {
	M      map[string]walkInner `yaml:"m"`
	Inline walkEmbedded         `yaml:",inline"`
	Skip   string               `yaml:"-"`
	P      **walkInner          `yaml:"p"`
	Pair   [2]string            `yaml:"pair"`
	Plain  bool
	Any    any            `yaml:"any"`
	Keys   map[int]string `yaml:"keys"`
	Raw    yaml.Node      `yaml:"raw"`
	Text   time.Time      `yaml:"time"`
}

type walkWithMap struct {
	Name  string            `yaml:"name"`
	Extra map[string]string `yaml:",inline"`
}

func TestWalkFollowsDecoderRules(t *testing.T) {
	tests := map[string]struct {
		typ  reflect.Type
		src  string
		want []wantProblem
	}{
		"valid": {
			typ: reflect.TypeFor[walkOuter](),
			src: "m: {x: {a: 1}}\ne: s\np: {a: 2}\npair: [a, b]\nplain: true\nany: {q: [1, {r: s}]}\nkeys: {1: one}\nraw: [anything]\ntime: 2024-01-02T03:04:05Z\n",
		},
		"errors in maps, pointers, arrays": {
			typ: reflect.TypeFor[walkOuter](),
			src: "m: {x: {a: one, b: 2}}\np: {aa: 2}\npair: [a]\nskip: x\nplain: 3\nkeys: {one: 1}\ntime: never\n",
			want: []wantProblem{
				{1, "m.x.a", `expected a whole number, got "one"`},
				{1, "m.x.b", `unknown field "b" (allowed: a)`},
				{2, "p.aa", `did you mean "a"?`},
				{3, "pair", "expected a list of exactly 2 items, got 1"},
				{4, "skip", `unknown field "skip" (allowed: any, e, keys, m, p, pair, plain, raw, time)`},
				{5, "plain", "expected true or false"},
				{6, "keys", `invalid key: expected a whole number, got "one"`},
				{7, "time", "cannot parse"},
			},
		},
		"map keys with dots": {
			typ:  reflect.TypeFor[walkOuter](),
			src:  "m:\n  a.b: {a: x}\n",
			want: []wantProblem{{2, `m["a.b"].a`, "expected a whole number"}},
		},
		"map given a list": {
			typ:  reflect.TypeFor[walkOuter](),
			src:  "m: [a]\n",
			want: []wantProblem{{1, "m", "expected a mapping of name: value pairs, got a list"}},
		},
		"inline map takes every other key": {
			typ:  reflect.TypeFor[walkWithMap](),
			src:  "name: n\nfoo: bar\nbaz: [1]\n",
			want: []wantProblem{{3, "baz", "expected a string, got a list"}},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			var doc yaml.Node
			if err := yaml.Unmarshal([]byte(tc.src), &doc); err != nil {
				t.Fatal(err)
			}
			w := &walker{file: "w.yaml"}
			w.walk(doc.Content[0], tc.typ, "", 1)
			w.prune(doc.Content[0])
			checkProblems(t, w.probs, "w.yaml", tc.want)
			// After the walk, the cleaned tree always decodes.
			if err := doc.Content[0].Decode(reflect.New(tc.typ).Interface()); err != nil {
				t.Errorf("decoding the cleaned tree: %v", err)
			}
		})
	}
}

func TestParsePolicyFileProblemCap(t *testing.T) {
	var b strings.Builder
	for i := range maxProblems + 50 {
		b.WriteString("unknown")
		b.WriteString(strings.Repeat("x", i%7))
		b.WriteString(string(rune('a'+i%26)) + string(rune('a'+i/26)))
		b.WriteString(": 1\n")
	}
	_, _, probs := parsePolicyFile([]byte(b.String()), "p.yaml")
	if len(probs) != maxProblems+1 || probs[len(probs)-1].Message != "50 more problems not shown; fix these first" {
		t.Errorf("got %d problems, last %v", len(probs), probs[len(probs)-1])
	}
}

func FuzzParsePolicyFile(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "policies", "*.yaml"))
	for _, name := range files {
		data, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		pf, li, probs := parsePolicyFile(data, "f.yaml")
		if pf == nil && len(probs) == 0 {
			t.Fatal("no policy and no problem")
		}
		for _, p := range probs {
			if p.Message == "" || strings.Contains(p.Message, "internal error") {
				t.Fatalf("problem %v", p)
			}
		}
		li.line("routes", 0, "match", "path")
	})
}

func BenchmarkParsePolicyFile(b *testing.B) {
	data := readPolicyFixture(b, "orders.yaml")
	b.ReportAllocs()
	for b.Loop() {
		if _, _, probs := parsePolicyFile(data, "orders.yaml"); len(probs) != 0 {
			b.Fatal(probs)
		}
	}
}

// TestValidFixturesCompile keeps the valid fixtures valid beyond the YAML
// layer, so the schema tests validate policies the loader really accepts.
func TestValidFixturesCompile(t *testing.T) {
	for _, name := range []string{"orders.yaml", "anchors.yaml", "full.yaml"} {
		t.Run(name, func(t *testing.T) {
			if _, err := Compile(readPolicyFixture(t, name), name, CompileOptions{}); err != nil {
				t.Error(err)
			}
		})
	}
}

// TestStructuralErrorHidesNothing checks that a value of the wrong shape
// does not stop the checks of the rest of the file: one run reports it and
// every problem the compiler finds elsewhere, in line order, while what the
// compiler would say about the value left out (here: "the policy has no
// routes" for a routes: of the wrong shape) is not repeated.
func TestStructuralErrorHidesNothing(t *testing.T) {
	for name, tc := range map[string]struct {
		src  string
		want []Problem // Line, Field and a part of Message
	}{
		"one structural, two semantic": {
			src: `issuers:
  - issuer: https://id.test/
    audiences: [api]
    jwks_url: https://id.test/jwks.json
    algorithms: [ES256]
default: allow
routes:
  - name: a
    match: {path: /a, methods: GET}
    require: {all_of: [orders:read]}
  - name: a
    match: {path: /b}
    require: {all_of: [orders:read]}
`,
			want: []Problem{
				{Line: 6, Field: "default", Message: `"allow" is not accepted`},
				{Line: 9, Field: "routes[0].match.methods", Message: "expected a list, e.g. [GET]"},
				{Line: 11, Field: "routes[1].name", Message: `route name "a" is already used by routes[0]`},
			},
		},
		"what follows from a bad value is not repeated": {
			src: `issuers: {issuer: https://id.test/}
default: allow
routes:
  - name: a
    match: {pathh: /a}
    require: {all_of: [orders:read]}
`,
			want: []Problem{
				{Line: 1, Field: "issuers", Message: "expected a list"},
				{Line: 2, Field: "default", Message: `"allow" is not accepted`},
				{Line: 5, Field: "routes[0].match.pathh", Message: `did you mean "path"?`},
			},
		},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Compile([]byte(tc.src), "p.yaml", CompileOptions{})
			var le *LoadError
			if !errors.As(err, &le) {
				t.Fatalf("Compile: %v, want a LoadError", err)
			}
			got := le.Problems
			if len(got) != len(tc.want) {
				t.Fatalf("%d problems, want %d:\n%v", len(got), len(tc.want), err)
			}
			for i, w := range tc.want {
				g := got[i]
				if g.Line != w.Line || g.Field != w.Field || !strings.Contains(g.Message, w.Message) {
					t.Errorf("problem %d = %s, want line %d, field %s, message containing %q", i, g, w.Line, w.Field, w.Message)
				}
			}
		})
	}
}
