package decision

import (
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"go.yaml.in/yaml/v3"
	"golang.org/x/text/language"
	"golang.org/x/text/message"

	"github.com/scopegate/scopegate/decision/internal/yamlpos"
)

// The JSON Schema and the reference (docs/policy.schema.json and
// docs/policy.md) describe PolicyFile to users and their editors. These
// tests tie both to the Go types, so that a field added to PolicyFile (or
// any type under it) without its schema property and its documentation, or
// a schema property left behind by a removed field, fails the build.

const (
	schemaPath    = "../docs/policy.schema.json"
	policyDocPath = "../docs/policy.md"
)

func loadPolicySchema(t *testing.T) map[string]any {
	t.Helper()
	data, err := os.ReadFile(schemaPath)
	if err != nil {
		t.Fatal(err)
	}
	var s map[string]any
	if err := json.Unmarshal(data, &s); err != nil {
		t.Fatalf("%s: %v", schemaPath, err)
	}
	return s
}

// schemaChecker compares Go types with schema nodes.
type schemaChecker struct {
	t       *testing.T
	root    map[string]any
	used    map[string]bool       // $defs reached
	checked map[reflect.Type]bool // struct types already compared
}

// resolve follows a local $ref, returning the target and its location.
func (c *schemaChecker) resolve(s map[string]any, where string) (map[string]any, string) {
	r, ok := s["$ref"].(string)
	if !ok {
		return s, where
	}
	name, ok := strings.CutPrefix(r, "#/$defs/")
	defs, _ := c.root["$defs"].(map[string]any)
	target, found := defs[name].(map[string]any)
	if !ok || !found {
		c.t.Errorf("%s: $ref %q does not name an entry of $defs", where, r)
		return map[string]any{}, where
	}
	c.used[name] = true
	return target, "$defs." + name
}

func hasType(s map[string]any, want string) bool {
	switch ty := s["type"].(type) {
	case string:
		return ty == want
	case []any:
		return slices.Contains(ty, any(want))
	}
	return false
}

func (c *schemaChecker) check(t reflect.Type, s map[string]any, where string) {
	for t.Kind() == reflect.Pointer && !isLeaf(t) {
		t = t.Elem()
	}
	if t == durationSpecType {
		if r, _ := s["$ref"].(string); r != "#/$defs/Duration" {
			c.t.Errorf("%s: a Duration field must be {\"$ref\": \"#/$defs/Duration\"}", where)
		}
		c.resolve(s, where)
		return
	}
	s, where = c.resolve(s, where)
	if isLeaf(t) {
		want := ""
		switch t.Kind() {
		case reflect.String:
			want = "string"
		case reflect.Bool:
			want = "boolean"
		case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
			reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
			want = "integer"
		case reflect.Float32, reflect.Float64:
			want = "number"
		}
		switch {
		case want != "" && !hasType(s, want):
			c.t.Errorf("%s: Go type %s needs \"type\": %q", where, t, want)
		case want == "" && t.Kind() != reflect.Interface && s["type"] == nil:
			c.t.Errorf("%s: Go type %s (custom YAML decoding) needs a \"type\"", where, t)
		}
		return
	}
	switch t.Kind() {
	case reflect.Struct:
		if !hasType(s, "object") {
			c.t.Errorf("%s: Go struct %s needs \"type\": \"object\"", where, t)
		}
		if ap, ok := s["additionalProperties"].(bool); !ok || ap {
			c.t.Errorf("%s: Go struct %s needs \"additionalProperties\": false, as the loader rejects unknown keys", where, t)
		}
		if c.checked[t] {
			return
		}
		c.checked[t] = true
		props, _ := s["properties"].(map[string]any)
		sf := yamlFields(t)
		for _, name := range sf.names {
			p, ok := props[name].(map[string]any)
			if !ok {
				c.t.Errorf("%s.properties: no property %q for field %q of Go type %s; add it to %s", where, name, name, t, schemaPath)
				continue
			}
			if d, _ := p["description"].(string); strings.TrimSpace(d) == "" {
				c.t.Errorf("%s.properties.%s: no description", where, name)
			}
			c.check(sf.byName[name], p, where+".properties."+name)
		}
		for name := range props {
			if _, ok := sf.byName[name]; !ok {
				c.t.Errorf("%s.properties: property %q is not a field of Go type %s (no yaml:%q tag); remove it or add the field", where, name, t, name)
			}
		}
	case reflect.Slice, reflect.Array:
		if !hasType(s, "array") {
			c.t.Errorf("%s: Go %s needs \"type\": \"array\"", where, t)
		}
		items, ok := s["items"].(map[string]any)
		if !ok {
			c.t.Errorf("%s: Go %s needs \"items\"", where, t)
			return
		}
		c.check(t.Elem(), items, where+".items")
	case reflect.Map:
		if !hasType(s, "object") {
			c.t.Errorf("%s: Go %s needs \"type\": \"object\"", where, t)
		}
		ap, ok := s["additionalProperties"].(map[string]any)
		if !ok {
			c.t.Errorf("%s: Go %s needs \"additionalProperties\" with the schema of its values", where, t)
			return
		}
		c.check(t.Elem(), ap, where+".additionalProperties")
	default:
		c.t.Errorf("%s: Go type %s is not handled by this test; extend it", where, t)
	}
}

func TestSchemaMatchesStructs(t *testing.T) {
	root := loadPolicySchema(t)
	if root["$schema"] != "https://json-schema.org/draft/2020-12/schema" {
		t.Errorf("$schema is %v, want draft 2020-12", root["$schema"])
	}
	c := &schemaChecker{t: t, root: root, used: map[string]bool{}, checked: map[reflect.Type]bool{}}
	c.check(policyFileType, root, "(root)")
	defs, _ := root["$defs"].(map[string]any)
	for name := range defs {
		if !c.used[name] {
			t.Errorf("$defs.%s is not used by any property; remove it", name)
		}
	}
}

// yamlToJSON converts a YAML node to the value a JSON Schema validator sees
// (as YAML editors do): aliases expanded, merge keys applied, scalars typed
// by their YAML 1.2 core tag (timestamps stay strings).
func yamlToJSON(n *yaml.Node) any {
	n = yamlpos.Deref(n)
	switch n.Kind {
	case yaml.DocumentNode:
		if len(n.Content) == 0 {
			return nil
		}
		return yamlToJSON(n.Content[0])
	case yaml.SequenceNode:
		out := []any{}
		for _, c := range n.Content {
			out = append(out, yamlToJSON(c))
		}
		return out
	case yaml.MappingNode:
		out := map[string]any{}
		var merges []*yaml.Node
		for i := 0; i+1 < len(n.Content); i += 2 {
			if yamlpos.IsMerge(n.Content[i]) {
				merges = append(merges, n.Content[i+1])
				continue
			}
			out[n.Content[i].Value] = yamlToJSON(n.Content[i+1])
		}
		for _, m := range merges {
			srcs, _ := yamlpos.MergeSources(m)
			for _, src := range srcs {
				for k, val := range yamlToJSON(src).(map[string]any) {
					if _, set := out[k]; !set {
						out[k] = val
					}
				}
			}
		}
		return out
	}
	switch n.ShortTag() {
	case "!!null":
		return nil
	case "!!bool":
		var b bool
		_ = n.Decode(&b)
		return b
	case "!!int", "!!float":
		var f float64
		_ = n.Decode(&f)
		return f
	}
	return n.Value
}

// compilePolicySchema compiles docs/policy.schema.json with a full JSON
// Schema 2020-12 validator, so the schema users' editors apply is the one
// the tests apply.
func compilePolicySchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	sch, err := jsonschema.NewCompiler().Compile(schemaPath)
	if err != nil {
		t.Fatalf("%s: %v", schemaPath, err)
	}
	return sch
}

// schemaFailure is one node of a validation error tree: the keyword that
// failed and where in the document.
type schemaFailure struct {
	keyword, at, msg string
}

func (f schemaFailure) String() string { return f.keyword + " at " + f.at + ": " + f.msg }

// validatePolicyYAML validates a policy file (as YAML editors see it)
// against sch and returns every failure of the error tree, outermost
// first; none when it is valid.
func validatePolicyYAML(t *testing.T, sch *jsonschema.Schema, src []byte) []schemaFailure {
	t.Helper()
	var doc yaml.Node
	if err := yaml.Unmarshal(src, &doc); err != nil {
		t.Fatal(err)
	}
	err := sch.Validate(yamlToJSON(&doc))
	if err == nil {
		return nil
	}
	var ve *jsonschema.ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("validation failed without a validation error: %v", err)
	}
	var out []schemaFailure
	p := message.NewPrinter(language.English)
	var walk func(e *jsonschema.ValidationError)
	walk = func(e *jsonschema.ValidationError) {
		if kw := e.ErrorKind.KeywordPath(); len(kw) > 0 {
			out = append(out, schemaFailure{kw[len(kw)-1], "/" + strings.Join(e.InstanceLocation, "/"), e.ErrorKind.LocalizedString(p)})
		}
		for _, c := range e.Causes {
			walk(c)
		}
	}
	walk(ve)
	return out
}

// policyFiles returns every policy file of the repository's examples and
// test data (a YAML file with a top-level routes key, and every file of
// decision/testdata/policies), by path from the repository root.
func policyFiles(t *testing.T) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir("..", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel := filepath.ToSlash(strings.TrimPrefix(p, ".."+string(filepath.Separator)))
		if d.IsDir() {
			if strings.HasPrefix(d.Name(), ".") && p != ".." {
				return filepath.SkipDir
			}
			return nil
		}
		if ext := filepath.Ext(p); ext != ".yaml" && ext != ".yml" {
			return nil
		}
		if !strings.HasPrefix(rel, "examples/") && !strings.Contains("/"+rel, "/testdata/") {
			return nil
		}
		src, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if strings.HasPrefix(rel, "decision/testdata/policies/") || hasTopLevelKey(src, "routes") {
			out = append(out, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// hasTopLevelKey reports whether src is a YAML mapping with key.
func hasTopLevelKey(src []byte, key string) bool {
	var doc yaml.Node
	if yaml.Unmarshal(src, &doc) != nil || len(doc.Content) == 0 || doc.Content[0].Kind != yaml.MappingNode {
		return false
	}
	m := doc.Content[0]
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return true
		}
	}
	return false
}

// knownBadPolicies are the policy files of the test data that the loader
// refuses, with the schema keyword that must refuse them too, at the
// location given; an empty keyword marks a file refused before any schema
// applies (YAML syntax, duplicate keys, alias cycles and bombs, several
// documents), which the validator is not given.
var knownBadPolicies = map[string]schemaFailure{
	"decision/testdata/policies/alias_bomb.yaml":     {},
	"decision/testdata/policies/alias_cycle.yaml":    {},
	"decision/testdata/policies/duplicate_key.yaml":  {},
	"decision/testdata/policies/multi_document.yaml": {},
	"decision/testdata/policies/syntax_error.yaml":   {},
	"decision/testdata/policies/bad_duration.yaml":   {keyword: "type", at: "/issuers/0/clock_skew"},
	"decision/testdata/policies/empty.yaml":          {keyword: "type", at: "/"},
	"decision/testdata/policies/not_mapping.yaml":    {keyword: "type", at: "/"},
	"decision/testdata/policies/many_problems.yaml":  {keyword: "additionalProperties", at: "/"},
	"decision/testdata/policies/type_mismatch.yaml":  {keyword: "type", at: "/routes"},
	"decision/testdata/policies/unknown_field.yaml":  {keyword: "additionalProperties", at: "/routes/2/match"},
	"decision/testdata/constraints/bad.yaml":         {keyword: "pattern", at: "/windows/weekdays/to"},
	"decision/testdata/constraints/bad_types.yaml":   {keyword: "type", at: "/routes/0/when/claims/0/equals"},
	"cmd/scopegate/testdata/bad-policy.yaml":         {keyword: "pattern", at: "/routes/0/match/path"},
	"server/testdata/policy-broken.yaml":             {keyword: "additionalProperties", at: "/routes/0"},
}

// TestSchemaValidatesPolicyFiles runs every policy file of the examples
// and the test data through the schema: the ones the loader accepts must
// validate, the ones it refuses must fail on the keyword knownBadPolicies
// names.
func TestSchemaValidatesPolicyFiles(t *testing.T) {
	sch := compilePolicySchema(t)
	files := policyFiles(t)
	if len(files) < 10 {
		t.Fatalf("found only %d policy files: %q", len(files), files)
	}
	for _, rel := range files {
		t.Run(rel, func(t *testing.T) {
			src, err := os.ReadFile(filepath.Join("..", rel))
			if err != nil {
				t.Fatal(err)
			}
			_, loadErr := Compile(src, filepath.Join("..", rel), CompileOptions{})
			bad, known := knownBadPolicies[rel]
			switch {
			case loadErr == nil && known:
				t.Fatalf("the loader accepts %s: remove it from knownBadPolicies", rel)
			case loadErr == nil:
				if errs := validatePolicyYAML(t, sch, src); len(errs) > 0 {
					t.Errorf("the schema rejects a policy the loader accepts:\n%s", joinFailures(errs))
				}
			case !known:
				t.Fatalf("the loader refuses %s (%v): add it to knownBadPolicies with the schema keyword that refuses it", rel, loadErr)
			case bad.keyword != "":
				errs := validatePolicyYAML(t, sch, src)
				if !slices.ContainsFunc(errs, func(f schemaFailure) bool { return f.keyword == bad.keyword && f.at == bad.at }) {
					t.Errorf("want %s to fail at %s, got:\n%s", bad.keyword, bad.at, joinFailures(errs))
				}
			}
		})
	}
	for rel := range knownBadPolicies {
		if !slices.Contains(files, rel) {
			t.Errorf("knownBadPolicies names %s, which is not a policy file of the repository", rel)
		}
	}
}

func joinFailures(fs []schemaFailure) string {
	var b strings.Builder
	for _, f := range fs {
		b.WriteString(f.String() + "\n")
	}
	return b.String()
}

func TestSchemaValidatesPolicies(t *testing.T) {
	sch := compilePolicySchema(t)
	t.Run("docs example", func(t *testing.T) {
		if errs := validatePolicyYAML(t, sch, policyDocExample(t)); len(errs) > 0 {
			t.Errorf("the schema rejects the example of %s:\n%s", policyDocPath, joinFailures(errs))
		}
	})

	const base = "issuers:\n  - {issuer: i, audiences: [a], jwks_file: k.json, algorithms: [RS256]}\n"
	invalid := map[string]struct {
		src, keyword, at string
	}{
		"unknown field":       {"routes:\n  - {name: r, match: {pathh: /x}}\n", "additionalProperties", "/routes/0/match"},
		"methods not a list":  {"routes:\n  - {name: r, match: {path: /x, methods: GET}}\n", "type", "/routes/0/match/methods"},
		"lower-case method":   {"routes:\n  - {name: r, match: {path: /x, methods: [get]}}\n", "anyOf", "/routes/0/match/methods/0"},
		"HMAC algorithm":      {"issuers:\n  - {issuer: i, audiences: [a], jwks_file: k.json, algorithms: [HS256]}\nroutes: [{name: r, match: {path: /x}, public: true}]\n", "enum", "/issuers/0/algorithms/0"},
		"two key sources":     {"issuers:\n  - {issuer: i, audiences: [a], jwks_file: k.json, jwks_url: https://x/j, algorithms: [RS256]}\nroutes: [{name: r, match: {path: /x}, public: true}]\n", "oneOf", "/issuers/0"},
		"no key source":       {"issuers:\n  - {issuer: i, audiences: [a], algorithms: [RS256]}\nroutes: [{name: r, match: {path: /x}, public: true}]\n", "oneOf", "/issuers/0"},
		"duration unit":       {base + "routes: [{name: r, match: {path: /x}, when: {max_token_age: 30}}]\n", "type", "/routes/0/when/max_token_age"},
		"negative duration":   {base + "routes: [{name: r, match: {path: /x}, when: {max_token_age: -5m}}]\n", "pattern", "/routes/0/when/max_token_age"},
		"path without slash":  {"routes: [{name: r, match: {path: orders}, public: true}]\n", "pattern", "/routes/0/match/path"},
		"rest not last":       {"routes: [{name: r, match: {path: \"/{rest...}/x\"}, public: true}]\n", "pattern", "/routes/0/match/path"},
		"trailing slash":      {"routes: [{name: r, match: {path: /orders/}, public: true}]\n", "pattern", "/routes/0/match/path"},
		"default allow":       {"default: allow\nroutes: [{name: r, match: {path: /x}, public: true}]\n", "enum", "/default"},
		"no routes":           {"version: v1\n", "required", "/"},
		"scope with space":    {base + "routes: [{name: r, match: {path: /x}, require: {all_of: [\"a b\"]}}]\n", "pattern", "/routes/0/require/all_of/0"},
		"claim value mapping": {base + "routes: [{name: r, match: {path: /x}, when: {claims: [{claim: c, equals: {a: 1}}]}}]\n", "type", "/routes/0/when/claims/0/equals"},
	}
	for name, tc := range invalid {
		t.Run(name, func(t *testing.T) {
			errs := validatePolicyYAML(t, sch, []byte(tc.src))
			if !slices.ContainsFunc(errs, func(f schemaFailure) bool { return f.keyword == tc.keyword && f.at == tc.at }) {
				t.Errorf("want %s to fail at %s, got:\n%s", tc.keyword, tc.at, joinFailures(errs))
			}
		})
	}
}

// policyDocExample returns the first ```yaml block of docs/policy.md.
func policyDocExample(t *testing.T) []byte {
	t.Helper()
	doc, err := os.ReadFile(policyDocPath)
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(doc), "```yaml\n")
	block, _, ok2 := strings.Cut(rest, "```")
	if !ok || !ok2 {
		t.Fatalf("%s has no ```yaml block", policyDocPath)
	}
	return []byte(block)
}

// TestPolicyDocExample compiles the complete example that opens the
// reference, so the first thing a reader copies always loads.
func TestPolicyDocExample(t *testing.T) {
	src := policyDocExample(t)
	if _, _, probs := parsePolicyFile(src, "policy.yaml"); len(probs) > 0 {
		t.Fatalf("the example of %s has problems: %v", policyDocPath, probs)
	}
	pol, err := Compile(src, "policy.yaml", CompileOptions{})
	if err != nil {
		t.Fatalf("the example of %s does not compile: %v", policyDocPath, err)
	}
	e, err := NewEngine(pol, Options{Keys: StaticKeyResolver(StaticKeys{})})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	for _, tc := range []struct {
		method, path string
		want         Code
	}{
		{"GET", "/healthz", OK},
		{"GET", "/orders/42", TokenMissing},
		{"DELETE", "/orders/42", MethodNotAllowed},
		{"GET", "/nothing", NoRoute},
	} {
		if d := e.Decide(context.Background(), &Request{Method: tc.method, Path: tc.path}); d.Code != tc.want {
			t.Errorf("%s %s: %s, want %s", tc.method, tc.path, d.Code, tc.want)
		}
	}
}

// TestPolicyDocReasonTable checks the reason-code table of the reference
// against the codes themselves: every code, its status and its challenge.
func TestPolicyDocReasonTable(t *testing.T) {
	doc, err := os.ReadFile(policyDocPath)
	if err != nil {
		t.Fatal(err)
	}
	row := regexp.MustCompile("(?m)^\\| `([a-z_]+)` \\| (\\d{3}) \\| ([^|]*?) \\|")
	challenges := map[Challenge]string{
		ChallengeNone:              "none",
		ChallengeBare:              "`Bearer`",
		ChallengeInvalidToken:      "`invalid_token`",
		ChallengeInvalidRequest:    "`invalid_request`",
		ChallengeInsufficientScope: "`insufficient_scope`",
		ChallengeStepUp:            "`insufficient_user_authentication`",
		ChallengeDPoPProof:         "DPoP `invalid_dpop_proof`",
		ChallengeDPoPToken:         "DPoP `invalid_token`",
		ChallengeDPoPNonce:         "DPoP `use_dpop_nonce`",
	}
	documented := map[string]bool{}
	for _, m := range row.FindAllStringSubmatch(string(doc), -1) {
		code, ok := ParseCode(m[1])
		if !ok {
			t.Errorf("%s documents reason %q, which is not a code", policyDocPath, m[1])
			continue
		}
		documented[m[1]] = true
		if st := strconv.Itoa(code.HTTPStatus()); m[2] != st {
			t.Errorf("%s: %s is documented with status %s, it is %s", policyDocPath, m[1], m[2], st)
		}
		if want := challenges[code.Challenge()]; m[3] != want {
			t.Errorf("%s: %s is documented with challenge %q, it is %q", policyDocPath, m[1], m[3], want)
		}
	}
	for _, c := range Codes() {
		if !documented[c.String()] {
			t.Errorf("%s: reason %s is missing from the table of reasons", policyDocPath, c)
		}
	}
}

// TestPolicyDocCoversFields checks that the reference names every field of
// the policy file.
func TestPolicyDocCoversFields(t *testing.T) {
	doc, err := os.ReadFile(policyDocPath)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[reflect.Type]bool{}
	var walk func(reflect.Type, string)
	walk = func(ty reflect.Type, where string) {
		for ty.Kind() == reflect.Pointer || ty.Kind() == reflect.Slice || ty.Kind() == reflect.Array || ty.Kind() == reflect.Map {
			ty = ty.Elem()
		}
		if ty.Kind() != reflect.Struct || isLeaf(ty) || seen[ty] {
			return
		}
		seen[ty] = true
		sf := yamlFields(ty)
		for _, name := range sf.names {
			if !strings.Contains(string(doc), "`"+name+"`") {
				t.Errorf("%s does not document field %s%s (as `%s`)", policyDocPath, where, name, name)
			}
			walk(sf.byName[name], where+name+".")
		}
	}
	walk(policyFileType, "")
}

// TestPolicyDocWholeExamples compiles every ```yaml block of
// docs/policy.md that is a whole policy file (it sets version), so the
// examples given for each kind of token load as they stand.
func TestPolicyDocWholeExamples(t *testing.T) {
	doc, err := os.ReadFile(policyDocPath)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for rest := string(doc); ; {
		var block string
		var ok bool
		if _, rest, ok = strings.Cut(rest, "```yaml\n"); !ok {
			break
		}
		block, rest, _ = strings.Cut(rest, "```")
		if !strings.Contains("\n"+block, "\nversion: ") {
			continue
		}
		n++
		if _, _, probs := parsePolicyFile([]byte(block), "policy.yaml"); len(probs) > 0 {
			t.Errorf("example %d of %s has problems: %v\n%s", n, policyDocPath, probs, block)
			continue
		}
		if _, err := Compile([]byte(block), "policy.yaml", CompileOptions{}); err != nil {
			t.Errorf("example %d of %s does not compile: %v\n%s", n, policyDocPath, err, block)
		}
	}
	if n < 3 {
		t.Fatalf("%s has %d whole policy examples; want one for each kind of token (JWT, opaque, DPoP)", policyDocPath, n)
	}
}
