// Package yamlpos finds where a value of a YAML document is written, by its
// field path, so that a problem found after decoding (by the compiler, the
// linter, the test runner) points at the line to fix.
//
// Every reader of a YAML file in scopegate goes through it, so they agree
// on the three constructs that make a path and its text differ:
//
//   - aliases (*name) are followed to the value of their anchor (&name);
//   - merge keys (<<: *defaults, or <<: [*a, *b]) bring in the keys of the
//     mappings they name; a key written in the mapping itself wins over a
//     merged one, and of merged mappings the first that has the key wins,
//     as the YAML merge-key rules (and the decoder) have it;
//   - a document node is unwrapped to its content, and an index is built
//     over the first document of a stream only (the one the decoder reads).
package yamlpos

import (
	"bytes"

	"go.yaml.in/yaml/v3"
)

// maxDepth bounds how many aliases and nested merges are followed, so a
// malformed tree (an alias cycle the caller did not reject) cannot loop.
const maxDepth = 64

// Pos is a position in the text: 1-based line and column, 0 when unknown.
type Pos struct{ Line, Column int }

// Deref returns the node n stands for: the value of the anchor an alias
// names, the content of a document. A nil n gives nil.
func Deref(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && i < maxDepth; i++ {
		switch {
		case n.Kind == yaml.AliasNode && n.Alias != nil:
			n = n.Alias
		case n.Kind == yaml.DocumentNode:
			if len(n.Content) == 0 {
				return nil
			}
			n = n.Content[0]
		default:
			return n
		}
	}
	return n
}

// IsMerge reports whether k is a merge key (<<), plain or tagged !!merge;
// a quoted "<<" is an ordinary key.
func IsMerge(k *yaml.Node) bool {
	return k != nil && k.Kind == yaml.ScalarNode && k.Value == "<<" &&
		(k.Tag == "" || k.Tag == "!" || k.ShortTag() == "!!merge") && k.Style&(yaml.DoubleQuotedStyle|yaml.SingleQuotedStyle) == 0
}

// MergeSources returns the mappings the value of a merge key names, in
// order of precedence: a mapping (usually through an alias), or a list of
// them. ok is false when v is neither.
func MergeSources(v *yaml.Node) (srcs []*yaml.Node, ok bool) {
	v = Deref(v)
	if v == nil {
		return nil, false
	}
	switch v.Kind {
	case yaml.MappingNode:
		return []*yaml.Node{v}, true
	case yaml.SequenceNode:
		srcs = make([]*yaml.Node, 0, len(v.Content))
		for _, it := range v.Content {
			it = Deref(it)
			if it == nil || it.Kind != yaml.MappingNode {
				return nil, false
			}
			srcs = append(srcs, it)
		}
		return srcs, true
	}
	return nil, false
}

// Lookup finds key in mapping n (after Deref) and returns its key and value
// nodes: the mapping's own key if it has one (the first, if written twice),
// else the key that its merges bring in. Both are nil when there is none.
func Lookup(n *yaml.Node, key string) (k, v *yaml.Node) {
	return lookup(Deref(n), key, 0)
}

func lookup(n *yaml.Node, key string, depth int) (k, v *yaml.Node) {
	if n == nil || n.Kind != yaml.MappingNode || depth > maxDepth {
		return nil, nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if c := n.Content[i]; c.Kind == yaml.ScalarNode && c.Value == key && !IsMerge(c) {
			return c, n.Content[i+1]
		}
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if !IsMerge(n.Content[i]) {
			continue
		}
		srcs, _ := MergeSources(n.Content[i+1])
		for _, s := range srcs {
			if k, v := lookup(s, key, depth+1); k != nil {
				return k, v
			}
		}
	}
	return nil, nil
}

// Index maps field paths of one document to positions. The zero value and
// a nil *Index answer 0 for every path.
type Index struct{ root *yaml.Node }

// New indexes the tree under root (a document node or its content).
func New(root *yaml.Node) *Index { return &Index{root: Deref(root)} }

// Parse indexes the first document of data. Text that does not parse gives
// an index that answers 0: callers report the syntax error themselves.
func Parse(data []byte) *Index {
	var doc yaml.Node
	if err := yaml.NewDecoder(bytes.NewReader(data)).Decode(&doc); err != nil {
		return &Index{}
	}
	return New(&doc)
}

// Root is the top node of the indexed document, or nil.
func (ix *Index) Root() *yaml.Node {
	if ix == nil {
		return nil
	}
	return ix.root
}

// Find follows path, whose elements are mapping keys (string) and list
// indexes (int), and returns the node each element is written at: for a key
// the key node, for a list index the item. It stops at the deepest element
// that exists; found is false when that is not the last. at is nil when not
// even the first element exists.
func (ix *Index) Find(path ...any) (at *yaml.Node, found bool) {
	if ix == nil || ix.root == nil {
		return nil, false
	}
	n := ix.root
	for i, p := range path {
		var k, v *yaml.Node
		switch p := p.(type) {
		case string:
			k, v = Lookup(n, p)
		case int:
			if s := Deref(n); s != nil && s.Kind == yaml.SequenceNode && p >= 0 && p < len(s.Content) {
				k, v = s.Content[p], s.Content[p]
			}
		}
		if k == nil {
			return at, false
		}
		at, n = k, v
		if i == len(path)-1 {
			return at, true
		}
	}
	return at, len(path) == 0
}

// Pos returns the position of the value at path: for a mapping key the
// position of the key (where the user wrote the field), for a list index
// that of the item. When the path does not exist it answers the position
// of the deepest element that does, or the zero Pos if not even the first
// does.
func (ix *Index) Pos(path ...any) Pos {
	at, _ := ix.Find(path...)
	if at == nil {
		return Pos{}
	}
	return Pos{Line: at.Line, Column: at.Column}
}

// Line is Pos(path...).Line.
func (ix *Index) Line(path ...any) int { return ix.Pos(path...).Line }
