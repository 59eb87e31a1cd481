package lint

import (
	"os"
	"strings"
	"testing"

	"github.com/scopegate/scopegate/decision"
)

func compileClean(t *testing.T) *decision.Policy {
	t.Helper()
	data, err := os.ReadFile("testdata/clean.yaml")
	if err != nil {
		t.Fatal(err)
	}
	pol, err := decision.Compile(data, "testdata/clean.yaml", decision.CompileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return pol
}

func TestCheckOpenAPI(t *testing.T) {
	base, err := os.ReadFile("testdata/openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	// edit applies replacements to the base document.
	edit := func(pairs ...string) string {
		s := string(base)
		for i := 0; i+1 < len(pairs); i += 2 {
			if !strings.Contains(s, pairs[i]) {
				t.Fatalf("testdata/openapi.yaml lacks %q", pairs[i])
			}
			s = strings.Replace(s, pairs[i], pairs[i+1], 1)
		}
		return s
	}
	cases := map[string]struct {
		doc  string
		opts OpenAPIOptions
		want []string // substrings, each in some problem; none means no problem
	}{
		"the policy covers the document": {doc: string(base)},
		"an operation without a route": {
			doc:  edit("  /healthz:", "  /items/{itemId}/history:\n    get: {operationId: history, responses: {\"200\": {description: ok}}}\n  /healthz:"),
			want: []string{"api.yaml:20: operation GET /items/{itemId}/history (history) is not covered by the policy: no route matches its path; add a route requiring its scopes"},
		},
		"an operation whose method no route allows": {
			doc:  edit("    get: {operationId: getItem,", "    delete: {operationId: deleteItem, responses: {\"204\": {description: ok}}}\n    get: {operationId: getItem,"),
			want: []string{"operation DELETE /items/{itemId} (deleteItem) is not covered by the policy: a route matches its path but not the method DELETE"},
		},
		"a route with no operation": {
			doc:  edit("  /items/special:\n    get: {operationId: special, responses: {\"200\": {description: ok}}}\n", ""),
			want: []string{`testdata/clean.yaml:14: routes[2]: route "special" (/items/special) reaches no operation of the OpenAPI document api.yaml`},
		},
		"a public route with no operation": {
			doc:  edit("  /healthz:\n    get: {operationId: health, security: [], responses: {\"200\": {description: ok}}}\n", ""),
			want: []string{`route "health" (/healthz) reaches no operation`, "--allow-extra-routes"},
		},
		"public routes allowed": {
			doc:  edit("  /healthz:\n    get: {operationId: health, security: [], responses: {\"200\": {description: ok}}}\n", ""),
			opts: OpenAPIOptions{AllowExtraRoutes: true},
		},
		"scopes that differ": {
			doc:  edit("security: [{oauth: [items:write]}]", "security: [{oauth: [items:write, items:read]}]"),
			want: []string{`operation POST /items (createItem): the OpenAPI document requires items:read and items:write, route "write" requires items:write; make them agree`},
		},
		"alternatives map to any_of": {
			doc:  edit("security: [{oauth: [items:write]}]", "security: [{oauth: [items:write]}, {oauth: [items:read]}]"),
			want: []string{`the OpenAPI document requires items:read or items:write, route "write" requires items:write`},
		},
		"an operation public in the document": {
			doc:  edit("    get: {operationId: special,", "    get: {operationId: special, security: [],"),
			want: []string{`operation GET /items/special (special) is public in the OpenAPI document, but route "special" requires items:read`},
		},
		"optional authentication is public": {
			doc:  edit("    get: {operationId: special,", "    get: {operationId: special, security: [{}, {oauth: [items:read]}],"),
			want: []string{`(special) is public in the OpenAPI document`},
		},
		"a public route where the document wants scopes": {
			doc:  edit("get: {operationId: health, security: [],", "get: {operationId: health,"),
			want: []string{`operation GET /healthz (health) requires items:read in the OpenAPI document, but route "health" is public`},
		},
		"an unknown scheme": {
			doc:  edit("security: [{oauth: [items:write]}]", "security: [{oauth2: [items:write]}]"),
			want: []string{`security scheme "oauth2" is not declared under components.securitySchemes`},
		},
		"a base path": {
			doc:  edit("/items/{itemId}:", "/{itemId}:", "/items:", "/:", "/items/special:", "/special:"),
			opts: OpenAPIOptions{BasePath: "/items/"},
			want: []string{`route "health" (/healthz) reaches no operation`, `operation GET /healthz (health) is public in the OpenAPI document, but route "read" requires items:read`},
		},
		"not OpenAPI 3": {
			doc:  "swagger: \"2.0\"\npaths: {}\n",
			want: []string{"only OpenAPI 3.0 and 3.1 documents are supported"},
		},
		"not YAML": {
			doc:  "openapi: [\n",
			want: []string{"cannot read the OpenAPI document"},
		},
		"no operations": {
			doc:  "openapi: 3.0.0\ninfo: {title: x, version: \"1\"}\npaths: {}\n",
			want: []string{"the OpenAPI document has no operations"},
		},
		"JSON": {
			doc: `{"openapi": "3.0.3", "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
"paths": {"/items/{id}": {"get": {"security": [{"bearer": []}]}}}}`,
			want: []string{`operation GET /items/{id}: the OpenAPI document requires a token (no scope), route "read" requires items:read`},
		},
	}
	pol := compileClean(t)
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			probs := CheckOpenAPI(pol, []byte(tc.doc), "api.yaml", tc.opts)
			wantProblems(t, probs, tc.want)
		})
	}
}

// wantProblems checks that each of want is in some problem, or that there
// is no problem when want is empty.
func wantProblems(t *testing.T, probs []decision.Problem, want []string) {
	t.Helper()
	got := render(probs)
	if len(want) == 0 && len(probs) > 0 {
		t.Fatalf("unexpected problems:\n%s", got)
	}
	for _, w := range want {
		if !strings.Contains(got, w) {
			t.Errorf("no problem contains %q; got:\n%s", w, got)
		}
	}
}

func TestMinimize(t *testing.T) {
	cases := map[string]struct {
		in   [][]string
		want string
	}{
		"superset dropped":   {[][]string{{"a", "b"}, {"a"}}, "a"},
		"duplicates dropped": {[][]string{{"b", "a"}, {"a", "b"}}, "a and b"},
		"sorted":             {[][]string{{"c"}, {"b", "a"}}, "(a and b) or c"},
		"token only":         {[][]string{{}}, "a token (no scope)"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			if got := describeAlts(tc.in); got != tc.want {
				t.Errorf("describeAlts(%v) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

// A shadow route observes the operations it would decide: it reaches them
// (no "reaches no operation"), and its stricter requirement, which is its
// purpose, is not held to the document's. One that observes no operation
// is still reported.
func TestCheckOpenAPIShadowRoutes(t *testing.T) {
	doc, err := os.ReadFile("testdata/openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	clean, err := os.ReadFile("testdata/clean.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		route   string
		want    string
		wantNot string
	}{
		"observing an operation": {
			route:   "  - name: read-strict\n    match: {methods: [GET], path: \"/items/{id}/history\"}\n    require: {all_of: [items:read, items:write]}\n    mode: shadow\n",
			wantNot: "read-strict",
		},
		"observing nothing": {
			route: "  - name: export\n    match: {methods: [GET], path: /export}\n    require: {all_of: [items:read]}\n    mode: shadow\n",
			want:  `route "export" (/export) reaches no operation`,
		},
	} {
		t.Run(name, func(t *testing.T) {
			src := strings.Replace(string(clean), "  - name: health\n", tc.route+"  - name: health\n", 1)
			pol, err := decision.Compile([]byte(src), "p.yaml", decision.CompileOptions{})
			if err != nil {
				t.Fatal(err)
			}
			withHistory := strings.Replace(string(doc), "  /healthz:", "  /items/{itemId}/history:\n    get: {operationId: history, security: [{oauth: [items:read]}], responses: {\"200\": {description: ok}}}\n  /healthz:", 1)
			got := render(CheckOpenAPI(pol, []byte(withHistory), "api.yaml", OpenAPIOptions{}))
			if tc.want != "" && !strings.Contains(got, tc.want) {
				t.Errorf("no problem contains %q; got:\n%s", tc.want, got)
			}
			if tc.wantNot != "" && strings.Contains(got, tc.wantNot) {
				t.Errorf("a problem names the shadow route:\n%s", got)
			}
		})
	}
}

// TestCheckOpenAPIRefs checks documents that define path items, security
// schemes, parameters and responses once and $ref them, as real API
// documents do: what is referenced is checked like what is inline, at the
// line where it is written.
func TestCheckOpenAPIRefs(t *testing.T) {
	pol := compileClean(t)
	for name, tc := range map[string]struct {
		file  string
		pairs []string // replacements in the file
		want  []string // substrings, each in some problem; none means no problem
	}{
		"3.1: path items by reference":  {file: "openapi-ref-3.1.yaml"},
		"3.0: a path item by reference": {file: "openapi-ref-3.0.yaml"},
		"3.1: an operation of a referenced path item": {
			file:  "openapi-ref-3.1.yaml",
			pairs: []string{"security: [{oauth: [items:write]}]", "security: [{oauth: [items:read]}]"},
			want:  []string{`api.yaml:26: operation POST /items (createItem): the OpenAPI document requires items:read, route "write" requires items:write`},
		},
		"3.1: a referenced operation no route covers": {
			file:  "openapi-ref-3.1.yaml",
			pairs: []string{"    items:\n      post:", "    items:\n      delete: {operationId: deleteItems, responses: {\"204\": {description: gone}}}\n      post:"},
			want:  []string{`api.yaml:26: operation DELETE /items (deleteItems) is not covered by the policy: a route matches its path but not the method DELETE`},
		},
		"3.1: a security scheme by reference": {
			file:  "openapi-ref-3.1.yaml",
			pairs: []string{"      type: oauth2\n", "      type: http\n      scheme: bearer\n", "      flows: {clientCredentials: {tokenUrl: https://id.test/token, scopes: {items:read: r, items:write: w}}}\n", ""},
			want:  []string{`api.yaml:22: operation GET /items/{itemId} (getItem): the OpenAPI document requires a token (no scope), route "read" requires items:read`},
		},
		"3.1: a malformed requirement in a referenced operation": {
			file:  "openapi-ref-3.1.yaml",
			pairs: []string{"security: [{oauth: [items:write]}]", "security: [items:write]"},
			want:  []string{`api.yaml:28: paths./items.post.security: each security requirement is a mapping of scheme name to scopes`},
		},
		"3.1: security that is not a list, in a referenced operation": {
			file:  "openapi-ref-3.1.yaml",
			pairs: []string{"security: [{oauth: [items:write]}]", "security: {oauth: [items:write]}"},
			want:  []string{`api.yaml:28: cannot read the OpenAPI document: array build failed, input is not an array, line 28`},
		},
		"3.0: an operation of a referenced path item": {
			file:  "openapi-ref-3.0.yaml",
			pairs: []string{"    get: {operationId: special,", "    get: {operationId: special, security: [],"},
			want:  []string{`api.yaml:22: operation GET /items/special (special) is public in the OpenAPI document, but route "special" requires items:read`},
		},
		"a reference to nothing": {
			file:  "openapi-ref-3.1.yaml",
			pairs: []string{"$ref: '#/components/pathItems/items'", "$ref: '#/components/pathItems/itemz'"},
			want:  []string{`api.yaml:8: cannot read the OpenAPI document: path item build failed: cannot find reference: '#/components/pathItems/itemz'`, "only references within the document"},
		},
		"a reference to another file is not followed": {
			file:  "openapi-ref-3.0.yaml",
			pairs: []string{"$ref: '#/x-path-items/special'", "$ref: 'special.yaml'"},
			want:  []string{`api.yaml:17: cannot read the OpenAPI document: path item build failed: cannot find reference: 'special.yaml'`, `not other files or URLs`},
		},
	} {
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile("testdata/" + tc.file)
			if err != nil {
				t.Fatal(err)
			}
			doc := string(data)
			for i := 0; i+1 < len(tc.pairs); i += 2 {
				if !strings.Contains(doc, tc.pairs[i]) {
					t.Fatalf("testdata/%s lacks %q", tc.file, tc.pairs[i])
				}
				doc = strings.Replace(doc, tc.pairs[i], tc.pairs[i+1], 1)
			}
			probs := CheckOpenAPI(pol, []byte(doc), "api.yaml", OpenAPIOptions{})
			wantProblems(t, probs, tc.want)
		})
	}
}
