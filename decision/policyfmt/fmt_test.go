package policyfmt

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/scopegate/scopegate/decision"
)

// policies are every policy file of examples/ and decision/testdata.
func policies(t *testing.T) []string {
	t.Helper()
	var out []string
	for _, root := range []string{"../../examples", "../testdata"} {
		err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() && (d.Name() == "helm" || d.Name() == "fuzz") {
				return filepath.SkipDir
			}
			if !d.IsDir() && strings.HasSuffix(p, ".yaml") && !strings.HasSuffix(p, "_test.yaml") {
				out = append(out, p)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if len(out) < 20 {
		t.Fatalf("found only %d policy files", len(out))
	}
	return out
}

// TestIdempotentSameMeaning: fmt(fmt(x)) == fmt(x), and x and fmt(x)
// decode to the same PolicyFile and compile to the same policy.
func TestIdempotentSameMeaning(t *testing.T) {
	compiled := 0
	for _, p := range policies(t) {
		t.Run(p, func(t *testing.T) {
			src, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			once, err := Format(src)
			if err != nil {
				if strings.Contains(p, "syntax_error") {
					return // not YAML: nothing to format
				}
				t.Fatalf("Format: %v", err)
			}
			twice, err := Format(once)
			if err != nil {
				t.Fatalf("Format(Format): %v", err)
			}
			if !bytes.Equal(once, twice) {
				t.Errorf("not idempotent:\n--- once\n%s\n--- twice\n%s", once, twice)
			}
			var a, b decision.PolicyFile
			errA := yaml.Unmarshal(src, &a)
			errB := yaml.Unmarshal(once, &b)
			if (errA == nil) != (errB == nil) {
				t.Fatalf("decode: %v before, %v after", errA, errB)
			}
			if errA == nil && !reflect.DeepEqual(a, b) {
				t.Errorf("the formatted file decodes differently:\n%+v\n%+v", a, b)
			}
			polA, errA := decision.Compile(src, p, decision.CompileOptions{})
			polB, errB := decision.Compile(once, p, decision.CompileOptions{})
			if (errA == nil) != (errB == nil) {
				t.Fatalf("compile: %v before, %v after", errA, errB)
			}
			if errA != nil {
				// The same problems, wherever they moved.
				if countProblems(errA) != countProblems(errB) {
					t.Errorf("problems before:\n%v\nafter:\n%v", errA, errB)
				}
				return
			}
			compiled++
			if !reflect.DeepEqual(polA.File, polB.File) {
				t.Error("the formatted policy compiles from a different PolicyFile")
			}
			if got, want := routeNames(polB), routeNames(polA); !slices.Equal(got, want) {
				t.Errorf("routes %v, want %v", got, want)
			}
			// Comments are kept.
			for _, l := range strings.Split(string(src), "\n") {
				if c := strings.TrimSpace(l); strings.HasPrefix(c, "#") && !bytes.Contains(once, []byte(c)) {
					t.Errorf("comment %q lost", c)
				}
			}
		})
	}
	if compiled < 5 {
		t.Errorf("only %d policies compiled: the meaning check compared too little", compiled)
	}
}

func countProblems(err error) int {
	if le, ok := err.(*decision.LoadError); ok {
		return len(le.Problems)
	}
	return -1
}

func routeNames(p *decision.Policy) []string {
	var out []string
	for _, r := range p.Routes {
		out = append(out, r.Name)
	}
	return out
}

func TestFormatOrdersKeys(t *testing.T) {
	src := `# the policy

# no route: no access
default: deny   # fail closed
routes:
  - require: {all_of: [orders:read]}
    # GET one order
    match: {path: "/orders/{id}", methods: [GET]}
    name: read-order

  - name: health
    public: true
    match:
      path: /healthz
      methods: [GET]
issuers:
    - algorithms: [RS256]
      issuer: https://id.example.com/
      audiences: ['orders-api']
      x_unknown: kept
`
	want := `# the policy

issuers:
  - issuer: https://id.example.com/
    audiences: ['orders-api']
    algorithms: [RS256]
    x_unknown: kept
routes:
  - name: read-order
    # GET one order
    match: {methods: [GET], path: "/orders/{id}"}
    require: {all_of: [orders:read]}

  - name: health
    match:
      methods: [GET]
      path: /healthz
    public: true
# no route: no access
default: deny # fail closed
`
	got, err := Format([]byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
}

func TestFormatErrors(t *testing.T) {
	if _, err := Format([]byte("routes: [\n")); err == nil || !strings.Contains(err.Error(), "line") {
		t.Errorf("err = %v, want the line", err)
	}
	if _, err := Format(bytes.Repeat([]byte("#"), 17<<20)); err == nil {
		t.Error("a file over 16 MiB was formatted")
	}
}

// TestSchemaOrder: the canonical order is the order docs/policy.schema.json
// documents each object's properties in.
func TestSchemaOrder(t *testing.T) {
	data, err := os.ReadFile("../../docs/policy.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	var root yaml.Node // keeps the JSON's key order
	if err := yaml.Unmarshal(data, &root); err != nil {
		t.Fatal(err)
	}
	schema := root.Content[0]
	defs := get(schema, "$defs")
	checked := map[reflect.Type]bool{}
	var walk func(s *yaml.Node, typ reflect.Type, where string)
	walk = func(s *yaml.Node, typ reflect.Type, where string) {
		for typ.Kind() == reflect.Pointer || typ.Kind() == reflect.Slice || typ.Kind() == reflect.Map {
			typ = typ.Elem()
		}
		if typ.Kind() != reflect.Struct || checked[typ] || s == nil {
			return
		}
		s = resolve(s, defs)
		for s != nil && get(s, "properties") == nil {
			// items / additionalProperties / oneOf hold the object.
			next := get(s, "items")
			if next == nil {
				next = get(s, "additionalProperties")
			}
			if next == nil {
				for _, alt := range []string{"oneOf", "anyOf"} {
					if l := get(s, alt); l != nil {
						for _, a := range l.Content {
							if a = resolve(a, defs); get(a, "properties") != nil || get(a, "items") != nil {
								next = a
							}
						}
					}
				}
			}
			if next == nil || next.Kind != yaml.MappingNode {
				return
			}
			s = resolve(next, defs)
		}
		if s == nil {
			return
		}
		checked[typ] = true
		props := get(s, "properties")
		var schemaOrder []string
		for i := 0; i+1 < len(props.Content); i += 2 {
			schemaOrder = append(schemaOrder, props.Content[i].Value)
		}
		goOrder := FieldOrder(typ)
		if !slices.Equal(schemaOrder, goOrder) {
			t.Errorf("%s (%s): schema order %v, fmt order %v", where, typ.Name(), schemaOrder, goOrder)
		}
		fields := fieldsOf(typ)
		for i := 0; i+1 < len(props.Content); i += 2 {
			name := props.Content[i].Value
			if ft, ok := fields.types[name]; ok {
				walk(props.Content[i+1], ft, where+"."+name)
			}
		}
	}
	walk(schema, reflect.TypeFor[decision.PolicyFile](), "policy")
	if len(checked) < 10 {
		t.Errorf("compared only %d object types with the schema", len(checked))
	}
}

func get(n *yaml.Node, key string) *yaml.Node {
	if n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}

func resolve(n, defs *yaml.Node) *yaml.Node {
	for i := 0; i < 8; i++ {
		ref := get(n, "$ref")
		if ref == nil {
			return n
		}
		n = get(defs, strings.TrimPrefix(ref.Value, "#/$defs/"))
	}
	return n
}
