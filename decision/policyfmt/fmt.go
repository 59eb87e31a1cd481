// Package policyfmt formats policy files canonically, as `opa fmt` does
// Rego: every mapping's keys in the order the policy schema documents them
// (docs/policy.schema.json, which follows decision.PolicyFile field for
// field), two-space indentation, comments kept. Formatting is
// idempotent and never changes what the policy means: the formatted text
// decodes to the same decision.PolicyFile.
package policyfmt

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/scopegate/scopegate/decision"
)

// maxBytes bounds a policy file, as the loader does.
const maxBytes = 16 << 20

// Format returns data formatted canonically. Keys the schema does not know
// (a typo the loader will report) keep their place after the known ones,
// so formatting never hides or drops them. A file that is not YAML
// returns an error naming the line.
func Format(data []byte) ([]byte, error) {
	if len(data) > maxBytes {
		return nil, errors.New("the file is larger than 16 MiB")
	}
	if msg := decision.NotPolicyText(data); msg != "" {
		// Refused unread: formatting would print the key.
		return nil, errors.New(msg)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var docs []*yaml.Node
	for {
		var doc yaml.Node
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, errors.New(strings.TrimPrefix(err.Error(), "yaml: "))
		}
		docs = append(docs, &doc)
	}
	if len(docs) == 0 {
		return data, nil
	}
	lines := strings.Split(string(data), "\n")
	blank := map[*yaml.Node]bool{}
	for _, doc := range docs {
		markBlank(doc, lines, blank, map[*yaml.Node]bool{})
	}
	seen := map[*yaml.Node]bool{}
	for _, doc := range docs {
		if doc.Kind == yaml.DocumentNode && len(doc.Content) > 0 {
			order(doc.Content[0], reflect.TypeFor[decision.PolicyFile](), seen)
		}
	}
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	for _, doc := range docs {
		if err := enc.Encode(doc); err != nil {
			return nil, fmt.Errorf("format: %w", err)
		}
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("format: %w", err)
	}
	return restore(buf.Bytes(), docs, blank)
}

// The encoder drops blank lines and quotes every plain scalar with a colon
// inside a flow collection ([orders:read] becomes ['orders:read']). Both
// are put back, so formatting changes only the order of keys and the
// indentation: blank lines that separated entries (routes, scopes) stay,
// and a scalar written plain stays plain.

// markBlank records the entries of block collections that a blank line
// (above their comments) separated from the entry before them.
func markBlank(n *yaml.Node, lines []string, blank, seen map[*yaml.Node]bool) {
	if n == nil || seen[n] || n.Kind == yaml.AliasNode {
		return
	}
	seen[n] = true
	step := 1
	if n.Kind == yaml.MappingNode {
		step = 2
	}
	for i := 0; i < len(n.Content); i += step {
		c := n.Content[i]
		if i > 0 && n.Style&yaml.FlowStyle == 0 && blankAbove(lines, c.Line) {
			blank[c] = true
		}
		markBlank(c, lines, blank, seen)
		if step == 2 && i+1 < len(n.Content) {
			markBlank(n.Content[i+1], lines, blank, seen)
		}
	}
}

// blankAbove reports whether the line above line (1-based), skipping the
// comment lines right above it, is empty.
func blankAbove(lines []string, line int) bool {
	l := line - 1 // the line above, 1-based
	for l >= 1 && strings.HasPrefix(strings.TrimSpace(lines[l-1]), "#") {
		l--
	}
	return l >= 1 && l <= len(lines) && strings.TrimSpace(lines[l-1]) == ""
}

// restore reparses the encoder's output and walks it beside the formatted
// tree, putting back the blank lines and the plain scalars.
func restore(out []byte, docs []*yaml.Node, blank map[*yaml.Node]bool) ([]byte, error) {
	dec := yaml.NewDecoder(bytes.NewReader(out))
	r := &restorer{lines: strings.Split(string(out), "\n"), blank: blank, seen: map[*yaml.Node]bool{}, insert: map[int]bool{}}
	for _, doc := range docs {
		var again yaml.Node
		if err := dec.Decode(&again); err != nil {
			return nil, fmt.Errorf("format: the formatted text does not parse: %w", err)
		}
		r.walk(doc, &again)
	}
	// Right to left, so an edit does not move the columns of the next.
	slices.SortFunc(r.plain, func(a, b *yaml.Node) int {
		if a.Line != b.Line {
			return a.Line - b.Line
		}
		return b.Column - a.Column
	})
	for _, o := range r.plain {
		r.unquote(o)
	}
	var b strings.Builder
	for i, l := range r.lines {
		if r.insert[i+1] && i > 0 && strings.TrimSpace(r.lines[i-1]) != "" {
			b.WriteString("\n")
		}
		b.WriteString(l)
		if i < len(r.lines)-1 {
			b.WriteString("\n")
		}
	}
	return []byte(b.String()), nil
}

type restorer struct {
	lines  []string
	blank  map[*yaml.Node]bool
	seen   map[*yaml.Node]bool
	insert map[int]bool // 1-based lines to put a blank line above
	plain  []*yaml.Node // scalars to write plain again
}

func (r *restorer) walk(f, o *yaml.Node) {
	if f == nil || o == nil || r.seen[f] || f.Kind != o.Kind || len(f.Content) != len(o.Content) {
		return
	}
	r.seen[f] = true
	if f.Kind == yaml.AliasNode {
		return
	}
	if f.Kind == yaml.ScalarNode && f.Style == 0 && o.Style == yaml.SingleQuotedStyle {
		r.plain = append(r.plain, o)
	}
	for i := range f.Content {
		if i > 0 && r.blank[f.Content[i]] && o.Style&yaml.FlowStyle == 0 {
			l := o.Content[i].Line
			for l > 1 && strings.HasPrefix(strings.TrimSpace(r.lines[l-2]), "#") {
				l--
			}
			r.insert[l] = true
		}
		r.walk(f.Content[i], o.Content[i])
	}
}

// unquote writes o, a scalar the encoder single-quoted, plain again, as
// the source had it.
func (r *restorer) unquote(o *yaml.Node) {
	if o.Line < 1 || o.Line > len(r.lines) || strings.ContainsAny(o.Value, "'\n") {
		return
	}
	line := r.lines[o.Line-1]
	col := o.Column - 1
	quoted := "'" + o.Value + "'"
	if col < 0 || !strings.HasPrefix(line[min(col, len(line)):], quoted) {
		return
	}
	r.lines[o.Line-1] = line[:col] + o.Value + line[col+len(quoted):]
}

// order sorts the keys of n's mappings, recursively, by the field order of
// type t. Aliases are not followed (their anchor is formatted where it
// stands), so alias cycles and alias bombs cost nothing.
func order(n *yaml.Node, t reflect.Type, seen map[*yaml.Node]bool) {
	if n == nil || seen[n] || t == nil {
		return
	}
	seen[n] = true
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Slice, reflect.Array:
		if n.Kind == yaml.SequenceNode {
			for _, c := range n.Content {
				order(c, t.Elem(), seen)
				// The encoder writes a first key's head comment after the
				// dash ("- # comment"): give it to the entry instead, so it
				// stands above the dash.
				if c.Kind == yaml.MappingNode && c.Style&yaml.FlowStyle == 0 && len(c.Content) > 0 && c.Content[0].HeadComment != "" {
					c.HeadComment = strings.TrimPrefix(c.HeadComment+"\n"+c.Content[0].HeadComment, "\n")
					c.Content[0].HeadComment = ""
				}
			}
		}
	case reflect.Map:
		if n.Kind == yaml.MappingNode {
			for i := 1; i < len(n.Content); i += 2 {
				order(n.Content[i], t.Elem(), seen)
			}
		}
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			return
		}
		fields := fieldsOf(t)
		type pair struct {
			key, val *yaml.Node
			rank     int
		}
		pairs := make([]pair, 0, len(n.Content)/2)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			rank := len(fields.order) + 1 // unknown keys: after the known ones
			if k.Tag == "!!merge" || k.Value == "<<" {
				rank = -1 // merge keys first, where YAML readers expect them
			} else if r, ok := fields.rank[k.Value]; ok {
				rank = r
			}
			pairs = append(pairs, pair{k, n.Content[i+1], rank})
		}
		// An alias must follow its anchor: a mapping whose entries hold
		// anchors or aliases keeps its order (its entries are still
		// formatted).
		if !slices.ContainsFunc(pairs, func(p pair) bool { return refs(p.val, map[*yaml.Node]bool{}) }) {
			slices.SortStableFunc(pairs, func(a, b pair) int { return a.rank - b.rank })
		}
		for i, p := range pairs {
			n.Content[2*i], n.Content[2*i+1] = p.key, p.val
			if ft, ok := fields.types[p.key.Value]; ok {
				order(p.val, ft, seen)
			}
		}
	}
}

// refs reports whether n's subtree defines an anchor or uses an alias.
func refs(n *yaml.Node, seen map[*yaml.Node]bool) bool {
	if n == nil || seen[n] {
		return false
	}
	seen[n] = true
	if n.Anchor != "" || n.Kind == yaml.AliasNode {
		return true
	}
	return slices.ContainsFunc(n.Content, func(c *yaml.Node) bool { return refs(c, seen) })
}

type structFields struct {
	order []string
	rank  map[string]int
	types map[string]reflect.Type
}

// fieldsOf lists struct type t's YAML fields in declaration order, as the
// decoder names them (the yaml tag, else the lower-cased Go name; ",inline"
// structs flattened in place).
func fieldsOf(t reflect.Type) *structFields {
	sf := &structFields{rank: map[string]int{}, types: map[string]reflect.Type{}}
	collect(t, sf)
	return sf
}

func collect(t reflect.Type, sf *structFields) {
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("yaml")
		if tag == "-" || (!f.IsExported() && !f.Anonymous) {
			continue
		}
		name, flags, _ := strings.Cut(tag, ",")
		if slices.Contains(strings.Split(flags, ","), "inline") {
			ft := f.Type
			for ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				collect(ft, sf)
			}
			continue
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		if _, dup := sf.rank[name]; dup {
			continue
		}
		sf.rank[name] = len(sf.order)
		sf.order = append(sf.order, name)
		sf.types[name] = f.Type
	}
}

// FieldOrder returns the canonical key order of the policy file's type
// named by the Go type t (for tests that tie it to the schema).
func FieldOrder(t reflect.Type) []string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return slices.Clone(fieldsOf(t).order)
}
