package decision

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

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

// schemaValidator checks a document against the subset of JSON Schema
// 2020-12 that docs/policy.schema.json uses. A keyword it does not know
// fails the test, so the schema cannot rely on a check nothing exercises.
type schemaValidator struct {
	root map[string]any
	errs []string
}

var schemaAnnotations = map[string]bool{"$schema": true, "$defs": true, "title": true, "description": true}

func (v *schemaValidator) fail(path, format string, args ...any) {
	v.errs = append(v.errs, path+": "+fmt.Sprintf(format, args...))
}

func jsonType(x any) string {
	switch x := x.(type) {
	case nil:
		return "null"
	case bool:
		return "boolean"
	case string:
		return "string"
	case float64:
		if x == math.Trunc(x) {
			return "integer"
		}
		return "number"
	case []any:
		return "array"
	case map[string]any:
		return "object"
	}
	return fmt.Sprintf("%T", x)
}

func typeMatches(want string, x any) bool {
	got := jsonType(x)
	return got == want || want == "number" && got == "integer"
}

// valid reports whether x satisfies s, without recording errors.
func (v *schemaValidator) valid(s map[string]any, x any) bool {
	sub := &schemaValidator{root: v.root}
	sub.validate(s, x, "")
	return len(sub.errs) == 0
}

func (v *schemaValidator) validate(s map[string]any, x any, path string) {
	keys := make([]string, 0, len(s))
	for k := range s {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		val := s[k]
		switch k {
		case "$ref":
			name, _ := strings.CutPrefix(val.(string), "#/$defs/")
			target, ok := v.root["$defs"].(map[string]any)[name].(map[string]any)
			if !ok {
				v.fail(path, "unresolvable $ref %v", val)
				continue
			}
			v.validate(target, x, path)
		case "type":
			var types []string
			switch ty := val.(type) {
			case string:
				types = []string{ty}
			case []any:
				for _, e := range ty {
					types = append(types, e.(string))
				}
			}
			if !slices.ContainsFunc(types, func(t string) bool { return typeMatches(t, x) }) {
				v.fail(path, "expected %v, got %s", types, jsonType(x))
				return
			}
		case "enum":
			if !slices.ContainsFunc(val.([]any), func(e any) bool { return reflect.DeepEqual(e, x) }) {
				v.fail(path, "%v is not one of %v", x, val)
			}
		case "pattern":
			if str, ok := x.(string); ok && !regexp.MustCompile(val.(string)).MatchString(str) {
				v.fail(path, "%q does not match %s", str, val)
			}
		case "minLength":
			if str, ok := x.(string); ok && len([]rune(str)) < int(val.(float64)) {
				v.fail(path, "%q is shorter than %v", str, val)
			}
		case "minimum":
			if n, ok := x.(float64); ok && n < val.(float64) {
				v.fail(path, "%v is less than %v", n, val)
			}
		case "minItems":
			if a, ok := x.([]any); ok && len(a) < int(val.(float64)) {
				v.fail(path, "fewer than %v items", val)
			}
		case "uniqueItems":
			if a, ok := x.([]any); ok && val.(bool) {
				for i := range a {
					for j := range i {
						if reflect.DeepEqual(a[i], a[j]) {
							v.fail(path, "item %d repeats item %d", i, j)
						}
					}
				}
			}
		case "items":
			if a, ok := x.([]any); ok {
				for i, e := range a {
					v.validate(val.(map[string]any), e, path+"["+strconv.Itoa(i)+"]")
				}
			}
		case "required":
			if m, ok := x.(map[string]any); ok {
				for _, r := range val.([]any) {
					if _, ok := m[r.(string)]; !ok {
						v.fail(path, "missing required property %q", r)
					}
				}
			}
		case "properties":
			if m, ok := x.(map[string]any); ok {
				for name, ps := range val.(map[string]any) {
					if e, ok := m[name]; ok {
						v.validate(ps.(map[string]any), e, path+"."+name)
					}
				}
			}
		case "additionalProperties":
			m, ok := x.(map[string]any)
			if !ok {
				continue
			}
			props, _ := s["properties"].(map[string]any)
			for name, e := range m {
				if _, declared := props[name]; declared {
					continue
				}
				switch ap := val.(type) {
				case bool:
					if !ap {
						v.fail(path, "property %q is not allowed", name)
					}
				case map[string]any:
					v.validate(ap, e, path+"."+name)
				}
			}
		case "anyOf", "oneOf":
			n := 0
			for _, alt := range val.([]any) {
				if v.valid(alt.(map[string]any), x) {
					n++
				}
			}
			if n == 0 || k == "oneOf" && n > 1 {
				v.fail(path, "%d of the %s alternatives hold", n, k)
			}
		default:
			if !schemaAnnotations[k] {
				v.fail(path, "keyword %q is not supported by this test's validator; extend it", k)
			}
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

func validatePolicyYAML(t *testing.T, root map[string]any, src []byte) []string {
	t.Helper()
	var doc yaml.Node
	if err := yaml.Unmarshal(src, &doc); err != nil {
		t.Fatal(err)
	}
	v := &schemaValidator{root: root}
	v.validate(root, yamlToJSON(&doc), "(root)")
	return v.errs
}

func TestSchemaValidatesPolicies(t *testing.T) {
	root := loadPolicySchema(t)
	for _, name := range []string{"orders.yaml", "anchors.yaml", "full.yaml"} {
		t.Run(name, func(t *testing.T) {
			if errs := validatePolicyYAML(t, root, readPolicyFixture(t, name)); len(errs) > 0 {
				t.Errorf("the schema rejects a valid policy:\n%s", strings.Join(errs, "\n"))
			}
		})
	}
	t.Run("docs example", func(t *testing.T) {
		if errs := validatePolicyYAML(t, root, policyDocExample(t)); len(errs) > 0 {
			t.Errorf("the schema rejects the example of %s:\n%s", policyDocPath, strings.Join(errs, "\n"))
		}
	})

	const base = "issuers:\n  - {issuer: i, audiences: [a], jwks_file: k.json, algorithms: [RS256]}\n"
	invalid := map[string]struct {
		src, want string
	}{
		"unknown field":       {"routes:\n  - {name: r, match: {pathh: /x}}\n", `property "pathh" is not allowed`},
		"methods not a list":  {"routes:\n  - {name: r, match: {path: /x, methods: GET}}\n", "expected [array], got string"},
		"lower-case method":   {"routes:\n  - {name: r, match: {path: /x, methods: [get]}}\n", "0 of the anyOf alternatives hold"},
		"HMAC algorithm":      {"issuers:\n  - {issuer: i, audiences: [a], jwks_file: k.json, algorithms: [HS256]}\nroutes: [{name: r, match: {path: /x}, public: true}]\n", `HS256 is not one of`},
		"two key sources":     {"issuers:\n  - {issuer: i, audiences: [a], jwks_file: k.json, jwks_url: https://x/j, algorithms: [RS256]}\nroutes: [{name: r, match: {path: /x}, public: true}]\n", "2 of the oneOf alternatives hold"},
		"no key source":       {"issuers:\n  - {issuer: i, audiences: [a], algorithms: [RS256]}\nroutes: [{name: r, match: {path: /x}, public: true}]\n", "0 of the oneOf alternatives hold"},
		"duration unit":       {base + "routes: [{name: r, match: {path: /x}, when: {max_token_age: 30}}]\n", "expected [string], got integer"},
		"negative duration":   {base + "routes: [{name: r, match: {path: /x}, when: {max_token_age: -5m}}]\n", "does not match"},
		"path without slash":  {"routes: [{name: r, match: {path: orders}, public: true}]\n", `"orders" does not match`},
		"rest not last":       {"routes: [{name: r, match: {path: \"/{rest...}/x\"}, public: true}]\n", "does not match"},
		"trailing slash":      {"routes: [{name: r, match: {path: /orders/}, public: true}]\n", "does not match"},
		"default allow":       {"default: allow\nroutes: [{name: r, match: {path: /x}, public: true}]\n", `allow is not one of [deny]`},
		"no routes":           {"version: v1\n", `missing required property "routes"`},
		"scope with space":    {base + "routes: [{name: r, match: {path: /x}, require: {all_of: [\"a b\"]}}]\n", "does not match"},
		"claim value mapping": {base + "routes: [{name: r, match: {path: /x}, when: {claims: [{claim: c, equals: {a: 1}}]}}]\n", "expected [string number boolean], got object"},
	}
	for name, tc := range invalid {
		t.Run(name, func(t *testing.T) {
			errs := validatePolicyYAML(t, root, []byte(tc.src))
			if !slices.ContainsFunc(errs, func(e string) bool { return strings.Contains(e, tc.want) }) {
				t.Errorf("want an error containing %q, got %q", tc.want, errs)
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
