package yamlpos

import (
	"testing"

	"go.yaml.in/yaml/v3"
)

// doc exercises every construct the index follows. Line numbers matter:
// the cases below name them.
const doc = `defaults: &defaults       # 1
  owner: team-a           # 2
  status: active          # 3
extra: &extra             # 4
  status: deprecated      # 5
  sunset: 2026-01-01      # 6
scopes:                   # 7
  - &first                # 8
    name: a               # 9
    <<: *defaults         # 10
  - <<: [*extra, *defaults]  # 11
    name: b               # 12
  - name: c               # 13
    status: retired       # 14
    <<: *defaults         # 15
  - *first                # 16
  - "<<": literal         # 17
list: &list [x, y]        # 18
alias: *list              # 19
nested:                   # 20
  <<:                     # 21
    <<: *defaults         # 22
    name: inner           # 23
`

func TestPos(t *testing.T) {
	ix := Parse([]byte(doc))
	for name, tc := range map[string]struct {
		path []any
		want Pos
	}{
		"top-level key":                 {[]any{"scopes"}, Pos{7, 1}},
		"list item":                     {[]any{"scopes", 1}, Pos{11, 5}},
		"own key":                       {[]any{"scopes", 0, "name"}, Pos{9, 5}},
		"merged key":                    {[]any{"scopes", 0, "owner"}, Pos{2, 3}},
		"first of merged list wins":     {[]any{"scopes", 1, "status"}, Pos{5, 3}},
		"later of merged list fills in": {[]any{"scopes", 1, "owner"}, Pos{2, 3}},
		"own key beats a later merge":   {[]any{"scopes", 2, "status"}, Pos{14, 5}},
		"alias item follows its anchor": {[]any{"scopes", 3, "name"}, Pos{9, 5}},
		"quoted << is an ordinary key":  {[]any{"scopes", 4, "<<"}, Pos{17, 5}},
		"alias to a list":               {[]any{"alias", 1}, Pos{18, 17}},
		"merge inside a merge":          {[]any{"nested", "owner"}, Pos{2, 3}},
		"own key of the merged mapping": {[]any{"nested", "name"}, Pos{23, 5}},
		"missing leaf: deepest element": {[]any{"scopes", 2, "nope"}, Pos{13, 5}},
		"index out of range":            {[]any{"scopes", 9}, Pos{7, 1}},
		"missing first element":         {[]any{"nope"}, Pos{}},
		"the merge key is not a field":  {[]any{"scopes", 0, "<<"}, Pos{8, 5}},
	} {
		t.Run(name, func(t *testing.T) {
			if got := ix.Pos(tc.path...); got != tc.want {
				t.Errorf("Pos(%v) = %v, want %v", tc.path, got, tc.want)
			}
		})
	}
}

// TestMergeAgreesWithDecoder checks that what the index calls the value of
// a merged key is what the decoder puts there: the two must never disagree
// about which mapping a merged field comes from.
func TestMergeAgreesWithDecoder(t *testing.T) {
	var got struct {
		Scopes []map[string]string `yaml:"scopes"`
	}
	var root yaml.Node
	if err := yaml.Unmarshal([]byte(doc), &root); err != nil {
		t.Fatal(err)
	}
	if err := root.Decode(&got); err != nil {
		t.Fatal(err)
	}
	ix := New(&root)
	_, scopes := Lookup(&root, "scopes")
	for i, m := range got.Scopes {
		for key, want := range m {
			if key == "<<" {
				continue
			}
			k, found := ix.Find("scopes", i, key)
			if !found {
				t.Errorf("scopes[%d].%s: decoded %q, but the index does not find it", i, key, want)
				continue
			}
			_, v := Lookup(scopes.Content[i], key)
			if v.Value != want {
				t.Errorf("scopes[%d].%s: decoder says %q, index (line %d) says %q", i, key, want, k.Line, v.Value)
			}
		}
	}
}

func TestDocuments(t *testing.T) {
	for name, tc := range map[string]struct {
		text string
		want int
	}{
		"explicit start":            {"---\na: 1\n", 2},
		"key in the first document": {"a: 1\n---\nb: 2\n", 1},
		"leading comment":           {"# c\n\na: 1\n", 3},
		"empty":                     {"", 0},
		"syntax error answers 0":    {"a: [1\n", 0},
		"key only in a later one":   {"b: 1\n---\na: 2\n", 0},
	} {
		t.Run(name, func(t *testing.T) {
			if got := Parse([]byte(tc.text)).Line("a"); got != tc.want {
				t.Errorf("Line(a) = %d, want %d", got, tc.want)
			}
		})
	}
	var nilIndex *Index
	if got := nilIndex.Line("a"); got != 0 {
		t.Errorf("nil index: Line = %d, want 0", got)
	}
	var docNode yaml.Node
	if err := yaml.Unmarshal([]byte("x:\n  y: 1\n"), &docNode); err != nil {
		t.Fatal(err)
	}
	if a, b := New(&docNode).Line("x", "y"), New(docNode.Content[0]).Line("x", "y"); a != 2 || b != 2 {
		t.Errorf("document node gives line %d, its content %d; want 2 for both", a, b)
	}
}

func TestMergeSources(t *testing.T) {
	var root yaml.Node
	if err := yaml.Unmarshal([]byte("a: &a {x: 1}\nb: [*a, {y: 2}]\nc: [*a, 3]\nd: 4\n"), &root); err != nil {
		t.Fatal(err)
	}
	m := Deref(&root)
	for key, want := range map[string]int{"a": 1, "b": 2, "c": -1, "d": -1} {
		_, v := Lookup(m, key)
		srcs, ok := MergeSources(v)
		if got := len(srcs); !ok && want != -1 || ok && got != want {
			t.Errorf("MergeSources(%s) = %d sources, ok %v; want %d", key, got, ok, want)
		}
	}
}

// An alias cycle (which the loader rejects before indexing) must not hang.
func TestAliasCycle(t *testing.T) {
	a := &yaml.Node{Kind: yaml.AliasNode}
	a.Alias = a
	if Deref(a) == nil {
		t.Fatal("Deref of a cycle returned nil")
	}
	m := &yaml.Node{Kind: yaml.MappingNode}
	m.Content = []*yaml.Node{{Kind: yaml.ScalarNode, Value: "<<", Tag: "!!merge"}, {Kind: yaml.AliasNode, Alias: m}}
	if k, _ := Lookup(m, "x"); k != nil {
		t.Errorf("Lookup through a merge cycle found %v", k)
	}
}
