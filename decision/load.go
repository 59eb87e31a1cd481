package decision

import (
	"bytes"
	"encoding"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"

	"go.yaml.in/yaml/v3"

	"github.com/scopegate/scopegate/decision/internal/yamlpos"
	"github.com/scopegate/scopegate/decision/suggest"
)

// Reading the policy file.
//
// parsePolicyFile turns the YAML text into a PolicyFile in three passes, so
// that a user sees every mistake of the file at once, each with its line:
//
//  1. the text is parsed into a yaml.Node tree (a syntax error stops here);
//  2. the tree is walked against the Go types of PolicyFile, found by
//     reflection over their `yaml` tags, reporting every unknown key (with a
//     suggestion), every value of the wrong shape and every duplicate key;
//     a bad value is replaced by null, and a reported key removed, so that
//     neither stops the next pass;
//  3. the cleaned tree is decoded, non-strictly, into a PolicyFile.
//
// The walk knows nothing of particular fields: a field added to PolicyFile
// (or to any type it contains) is checked the moment it has a yaml tag.

// maxPolicyBytes is the largest policy file that is parsed at all. Policies
// are hand-written; a larger file is a mistake or an attack, and refusing it
// unread bounds the parser's memory.
const maxPolicyBytes = 16 << 20

// maxAliasExpansion bounds how many nodes YAML aliases may add to a document
// when expanded. A few aliases for shared lists are fine; nested aliases
// ("billion laughs") that expand a small file into millions of nodes are
// rejected before anything walks or decodes them.
const maxAliasExpansion = 100_000

// maxMapEntries bounds the entries of a mapping of names (networks,
// windows, ...): far more than any policy needs, and small enough that the
// decoder's duplicate-key check, quadratic in a mapping's size, stays fast.
const maxMapEntries = 10_000

// maxProblems bounds the problems one file reports: past it, a file is
// probably not a policy at all and more lines add nothing.
const maxProblems = 200

// parsePolicyFile parses data, the text of the policy file named filename
// (used in problems only), into a PolicyFile. It returns every problem it
// finds at once; the caller must treat any non-warning problem as fatal.
//
// pf is nil only when the text cannot be read as a policy at all (too large,
// empty, invalid YAML, alias bomb, not a mapping); otherwise pf holds every
// value that could be decoded, with bad values left at their zero value. li
// maps field paths to lines for later checks; it may be nil, and a nil li
// answers 0 for every path.
func parsePolicyFile(data []byte, filename string) (pf *PolicyFile, li *lineIndex, probs []Problem) {
	return parsePolicyFileLimit(data, filename, maxPolicyBytes)
}

// parsePolicyFileLimit is parsePolicyFile with another size limit
// (CompileOptions.MaxPolicyBytes).
func parsePolicyFileLimit(data []byte, filename string, limit int) (pf *PolicyFile, li *lineIndex, probs []Problem) {
	w := &walker{file: filename}
	defer func() {
		// The walk and the decoder only see data the parser accepted, so a
		// panic here is a bug; fail closed with a problem, never a crash.
		if r := recover(); r != nil {
			pf = nil
			probs = append(w.probs, Problem{File: filename, Message: fmt.Sprintf("internal error while reading the policy file: %v", r)})
		}
	}()

	if len(data) > limit {
		w.add(0, "", fmt.Sprintf("the policy file is %d bytes, more than the limit of %s; a policy this large is almost certainly not hand-written, so split it or remove generated content (or raise the server's max_policy_bytes)", len(data), byteSize(limit)))
		return nil, nil, w.probs
	}

	if msg := pemMessage(data); msg != "" {
		w.add(0, "", msg)
		return nil, nil, w.probs
	}

	var src io.Reader = bytes.NewReader(data)
	if len(data) >= paceMinBytes {
		src = &pacedReader{b: data}
		w.pace.on = true
	}
	dec := yaml.NewDecoder(src)
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			w.add(0, "", emptyFileMessage)
		} else {
			w.syntaxError(err, data)
		}
		return nil, nil, w.probs
	}
	root := &doc
	if root.Kind == yaml.DocumentNode {
		if len(root.Content) == 0 {
			w.add(0, "", emptyFileMessage)
			return nil, nil, w.probs
		}
		root = root.Content[0]
	}
	if isNullNode(root) {
		w.add(root.Line, "", emptyFileMessage)
		return nil, nil, w.probs
	}
	li = &lineIndex{ix: yamlpos.New(root)}

	// A second document would be silently ignored by the decoder: refuse it,
	// since whatever the user put there (an issuer, routes) would not apply.
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case errors.Is(err, io.EOF):
	case err != nil:
		w.syntaxError(err, data)
		return nil, li, w.probs
	default:
		if n := documentContent(&extra); n != nil && !isNullNode(n) {
			w.add(n.Line, "", "the file holds more than one YAML document (a second '---'); put the whole policy in one document")
		}
	}

	if !w.checkAliases(root) {
		return nil, li, w.probs
	}
	if root.Kind != yaml.MappingNode {
		w.add(root.Line, "", fmt.Sprintf("the policy must be a mapping of fields (allowed: %s), not %s", strings.Join(yamlFields(policyFileType).names, ", "), describe(root)))
		return nil, li, w.probs
	}

	w.walk(root, policyFileType, "", root.Line)
	w.prune(root)
	li.removed = w.removed

	pf = new(PolicyFile)
	if err := root.Decode(pf); err != nil {
		w.decodeError(err)
	}
	return pf, li, w.problems()
}

const emptyFileMessage = "the policy file is empty; it needs at least issuers and routes (see docs/policy.md)"

var policyFileType = reflect.TypeFor[PolicyFile]()

// documentContent returns the top node of a document, or nil.
func documentContent(n *yaml.Node) *yaml.Node {
	if n.Kind == yaml.DocumentNode {
		if len(n.Content) == 0 {
			return nil
		}
		return n.Content[0]
	}
	if n.Kind == 0 {
		return nil
	}
	return n
}

// walker checks a node tree against Go types and collects problems.
type walker struct {
	file  string
	probs []Problem
	// pace yields now and then while a large file is walked (pace.go).
	pace pacer
	// dropped counts problems not recorded past maxProblems.
	dropped int
	// drop holds the keys of pairs already reported (unknown fields, bad
	// keys); prune removes them before the final decode.
	drop map[*yaml.Node]bool
	// removed holds the field paths whose values were reported and left
	// out of the decode, and the fields unknown keys were probably meant
	// for: the compiler sees them absent, so what it says about them
	// would only repeat the problem already reported.
	removed map[string]bool
}

// remove replaces the value at path by null (see nullifyNode) and records
// the path as reported.
func (w *walker) remove(n *yaml.Node, path string) {
	nullifyNode(n)
	w.reported(path)
}

// reported records that the value at path has a problem already reported.
func (w *walker) reported(path string) {
	if w.removed == nil {
		w.removed = map[string]bool{}
	}
	w.removed[path] = true
}

// dropPair marks the pair of key k for removal.
func (w *walker) dropPair(k *yaml.Node) {
	if w.drop == nil {
		w.drop = map[*yaml.Node]bool{}
	}
	w.drop[k] = true
}

// prune removes the pairs marked by dropPair from every mapping under n,
// so that the decoder neither trips on them nor spends time on them (its
// duplicate-key check is quadratic in a mapping's size).
func (w *walker) prune(n *yaml.Node) {
	if len(w.drop) == 0 {
		return
	}
	if n.Kind == yaml.MappingNode {
		kept := n.Content[:0]
		for i := 0; i+1 < len(n.Content); i += 2 {
			if !w.drop[n.Content[i]] {
				kept = append(kept, n.Content[i], n.Content[i+1])
			}
		}
		n.Content = kept
	}
	for _, c := range n.Content {
		w.prune(c)
	}
}

func (w *walker) add(line int, field, msg string) {
	if len(w.probs) >= maxProblems {
		w.dropped++
		return
	}
	w.probs = append(w.probs, Problem{File: w.file, Line: line, Field: field, Message: msg})
}

// problems returns the problems in line order, and says how many were left
// out.
func (w *walker) problems() []Problem {
	slices.SortStableFunc(w.probs, func(a, b Problem) int { return a.Line - b.Line })
	if w.dropped > 0 {
		w.probs = append(w.probs, Problem{File: w.file, Message: fmt.Sprintf("%d more problems not shown; fix these first", w.dropped)})
	}
	return w.probs
}

// yamlErrorLine matches the "yaml: line N: message" form of the parser's
// errors.
var yamlErrorLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// parserErrors are the messages of the YAML parser (as opposed to its
// scanner). For these the parser reports the 0-based line of the construct
// it was in (or of the problem), so the 1-based line is one more.
var parserErrors = map[string]bool{
	"did not find expected <stream-start>":   true,
	"did not find expected <document start>": true,
	"found undefined tag handle":             true,
	"did not find expected node content":     true,
	"did not find expected '-' indicator":    true,
	"did not find expected key":              true,
	"did not find expected ',' or ']'":       true,
	"did not find expected ',' or '}'":       true,
	"found duplicate %YAML directive":        true,
	"found incompatible YAML document":       true,
	"found duplicate %TAG directive":         true,
}

// syntaxHints add the usual cause of a terse parser message.
var syntaxHints = map[string]string{
	"mapping values are not allowed in this context": `check the indentation, and quote a value that contains ": "`,
	"did not find expected key":                      "check the indentation of this line and the ones above it",
	"did not find expected '-' indicator":            `every item of a list starts with "- " at the same indentation`,
	"found character that cannot start any token":    "YAML indents with spaces, never tabs; quote a value that starts with @ or `",
	"did not find expected node content":             "a value is missing or starts with a character that must be quoted",
	"found unexpected end of stream":                 "a quote or bracket is not closed",
	"could not find expected ':'":                    `a key is missing its ":", or a quoted value spans lines`,
	"did not find expected ',' or '}'":               `inside {...} quote values that contain braces, e.g. {path: "/orders/{id}"}`,
	"did not find expected ',' or ']'":               "a list [...] is not closed, or an item needs quotes",
}

var unknownAnchor = regexp.MustCompile(`^yaml: unknown anchor '([^']*)' referenced$`)

// syntaxError reports a YAML parse error with the best line it can find.
func (w *walker) syntaxError(err error, data []byte) {
	msg := err.Error()
	line := 0
	if m := yamlErrorLine.FindStringSubmatch(msg); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = m[2]
		if parserErrors[msg] {
			line++
		}
	} else if m := unknownAnchor.FindStringSubmatch(msg); m != nil {
		line = lineOfText(data, "*"+m[1])
		msg = fmt.Sprintf("alias *%s names no anchor; define it first with &%s", m[1], m[1])
	} else {
		msg = strings.TrimPrefix(msg, "yaml: ")
		if parserErrors[msg] || syntaxHints[msg] != "" {
			// With neither mark past the first line, the parser prints no
			// line at all.
			line = 1
		}
	}
	if h := syntaxHints[msg]; h != "" {
		msg += " (" + h + ")"
	}
	w.add(line, "", "invalid YAML: "+msg)
}

// lineOfText returns the 1-based line of the first occurrence of s in data, or 0.
func lineOfText(data []byte, s string) int {
	i := bytes.Index(data, []byte(s))
	if i < 0 {
		return 0
	}
	return 1 + bytes.Count(data[:i], []byte{'\n'})
}

var typeErrorLine = regexp.MustCompile(`^line (\d+): (.*)$`)

// decodeError turns an error of the final decode into problems. The walk
// has already removed every value the decoder would reject, so this only
// catches what the walk does not model.
func (w *walker) decodeError(err error) {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		msg := strings.TrimPrefix(err.Error(), "yaml: ")
		if strings.Contains(msg, "excessive aliasing") {
			msg = "anchors and aliases expand this file too much; write the repeated parts out instead of nesting aliases"
		}
		w.add(0, "", msg)
		return
	}
	for _, e := range te.Errors {
		line := 0
		if m := typeErrorLine.FindStringSubmatch(e); m != nil {
			line, _ = strconv.Atoi(m[1])
			e = m[2]
		}
		w.add(line, "", e)
	}
}

// checkAliases rejects alias cycles and documents whose aliases expand to
// more than maxAliasExpansion extra nodes. It runs in time linear in the
// number of distinct nodes, whatever the expansion.
func (w *walker) checkAliases(root *yaml.Node) bool {
	literal, aliases := countNodes(root)
	if !aliases {
		return true // nothing expands, nothing can cycle
	}
	a := aliasCheck{size: map[*yaml.Node]int{}, active: map[*yaml.Node]bool{}}
	limit := literal + maxAliasExpansion
	a.limit = limit
	total := a.expanded(root)
	if a.cycle != nil {
		w.add(a.cycle.Line, "", fmt.Sprintf("alias *%s is inside the value of its own anchor &%s, which would never end; an anchor cannot contain itself", a.cycle.Value, a.cycle.Value))
		return false
	}
	if total > limit {
		line := 0
		if a.biggest != nil {
			line = a.biggest.Line
		}
		w.add(line, "", fmt.Sprintf("anchors and aliases expand this file by more than %d nodes; write the repeated parts out instead of nesting aliases", maxAliasExpansion))
		return false
	}
	return true
}

// countNodes counts the distinct nodes under n, not following aliases,
// and reports whether any of them is an alias.
func countNodes(n *yaml.Node) (int, bool) {
	c, alias := 1, n.Kind == yaml.AliasNode
	for _, ch := range n.Content {
		cc, a := countNodes(ch)
		c += cc
		alias = alias || a
	}
	return c, alias
}

type aliasCheck struct {
	size    map[*yaml.Node]int
	active  map[*yaml.Node]bool
	limit   int
	cycle   *yaml.Node // an alias found inside its own anchor
	biggest *yaml.Node // the alias with the largest expansion
	bigSize int
}

// expanded returns the number of nodes n stands for once every alias is
// replaced by its anchor's value, saturating just past the limit.
//
// Only an anchored node can be reached twice (an alias names one), so only
// anchored nodes are remembered and marked while expanding: every other
// node is visited once, inside its anchored ancestor's first expansion.
func (a *aliasCheck) expanded(n *yaml.Node) int {
	anchored := n.Anchor != ""
	if anchored {
		if s, ok := a.size[n]; ok {
			return s
		}
		if a.active[n] {
			if a.cycle == nil {
				a.cycle = n
			}
			return a.limit + 1
		}
		a.active[n] = true
	}
	s := 1
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		if a.active[n.Alias] {
			if a.cycle == nil {
				a.cycle = n
			}
			s = a.limit + 1
		} else {
			s += a.expanded(n.Alias)
		}
		if s > a.bigSize {
			a.biggest, a.bigSize = n, s
		}
	}
	for _, ch := range n.Content {
		if s > a.limit {
			break
		}
		s += a.expanded(ch)
	}
	s = min(s, a.limit+1)
	if anchored {
		delete(a.active, n)
		a.size[n] = s
	}
	return s
}

var (
	unmarshalerType     = reflect.TypeFor[yaml.Unmarshaler]()
	textUnmarshalerType = reflect.TypeFor[encoding.TextUnmarshaler]()
	yamlNodeType        = reflect.TypeFor[yaml.Node]()
)

// isLeaf reports whether values of t are decoded whole by the YAML decoder
// (custom unmarshalers, scalars, interfaces) rather than walked.
func isLeaf(t reflect.Type) bool {
	if t == yamlNodeType {
		return true
	}
	pt := reflect.PointerTo(t)
	if t.Implements(unmarshalerType) || pt.Implements(unmarshalerType) ||
		t.Implements(textUnmarshalerType) || pt.Implements(textUnmarshalerType) {
		return true
	}
	switch t.Kind() {
	case reflect.Struct, reflect.Map, reflect.Pointer, reflect.Array:
		return false
	case reflect.Slice:
		return t.Elem().Kind() == reflect.Uint8 // []byte from !!binary
	}
	return true
}

func isNullNode(n *yaml.Node) bool {
	return n.Kind == 0 || n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// nullifyNode replaces a value the decoder would reject by null, so that the
// final decode skips it (the problem is already reported).
func nullifyNode(n *yaml.Node) {
	*n = yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null", Line: n.Line, Column: n.Column}
}

// walk checks n against type t. path is the dotted field path of n, at the
// line a problem with n as a whole is reported on: the line of its key (or
// of the list item), where the user wrote the field.
func (w *walker) walk(n *yaml.Node, t reflect.Type, path string, at int) {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias // cycles were rejected by checkAliases
	}
	for t.Kind() == reflect.Pointer && !isLeaf(t) {
		t = t.Elem()
	}
	if isNullNode(n) {
		return
	}
	if isLeaf(t) {
		w.leaf(n, t, path, at)
		return
	}
	switch t.Kind() {
	case reflect.Struct:
		w.structNode(n, t, path, at)
	case reflect.Map:
		w.mapNode(n, t, path, at)
	case reflect.Slice, reflect.Array:
		w.seqNode(n, t, path, at)
	default:
		w.leaf(n, t, path, at)
	}
}

// leaf decodes n into a fresh value of type t, exactly as the final decode
// will, and reports its error.
func (w *walker) leaf(n *yaml.Node, t reflect.Type, path string, at int) {
	if t == stringType && n.Kind == yaml.ScalarNode && n.Tag != "!!binary" {
		// The decoder takes any such scalar into a plain string (it only
		// fails on !!binary that is not base64): skip decoding it twice,
		// which for most of a big policy's leaves costs a decoder each.
		return
	}
	err := n.Decode(reflect.New(t).Interface())
	if err == nil {
		return
	}
	var te *yaml.TypeError
	var msg string
	if errors.As(err, &te) {
		msg = expectedType(t) + ", got " + describe(n)
	} else {
		// A custom unmarshaler's own message (e.g. Duration's) says how
		// to fix the value.
		msg = strings.TrimPrefix(err.Error(), "yaml: ")
	}
	w.add(at, path, msg)
	w.remove(n, path)
}

var (
	durationSpecType = reflect.TypeFor[Duration]()
	stringType       = reflect.TypeFor[string]()
)

// expectedType describes what a value of type t looks like, for messages.
func expectedType(t reflect.Type) string {
	switch {
	case t == durationSpecType || t.String() == "time.Duration":
		return `expected a duration such as "30s" or "5m"`
	}
	switch t.Kind() {
	case reflect.String:
		return "expected a string"
	case reflect.Bool:
		return "expected true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "expected a whole number"
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "expected a whole number, 0 or more"
	case reflect.Float32, reflect.Float64:
		return "expected a number"
	}
	return "expected a value of another type"
}

// describe names what node n is, for messages.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping (key: value pairs)"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		v := n.Value
		if len(v) > 40 {
			v = v[:37] + "..."
		}
		return strconv.Quote(v)
	}
	return "nothing"
}

// yamlEntry is one key: value pair of a mapping, after merges.
type yamlEntry struct{ key, val *yaml.Node }

// entries returns the pairs of mapping n: its own keys, then the keys its
// "<<" merges bring in that it does not set itself. It reports (and removes)
// duplicate keys and malformed merges.
func (w *walker) entries(n *yaml.Node, path string) []yamlEntry {
	// One allocation for the usual mapping, which merges nothing.
	own, merged := make([]yamlEntry, 0, len(n.Content)/2), []yamlEntry(nil)
	seen := map[string]*yaml.Node{}
	// Pairs that are reported are removed as the loop goes: kept is never
	// ahead of the pair being read.
	kept := n.Content[:0]
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind == yaml.ScalarNode {
			if first, dup := seen[k.Value]; dup {
				w.add(k.Line, fieldJoin(path, k.Value), fmt.Sprintf("duplicate key %q: it is already set on line %d; keep only one", k.Value, first.Line))
				continue
			}
			seen[k.Value] = k
		}
		if yamlpos.IsMerge(k) {
			m, ok := yamlpos.MergeSources(v)
			if !ok {
				w.add(k.Line, fieldJoin(path, "<<"), "a merge key (<<) needs an alias to a mapping, or a list of such aliases, e.g. <<: *defaults")
				continue
			}
			for _, src := range m {
				merged = append(merged, w.entries(src, path)...)
			}
		} else {
			own = append(own, yamlEntry{k, v})
		}
		kept = append(kept, k, v)
	}
	n.Content = kept
	if len(merged) == 0 {
		return own
	}
	// Own keys win over merged ones; of merged ones the first wins.
	out := own
	have := map[string]bool{}
	for _, e := range own {
		have[e.key.Value] = true
	}
	for _, e := range merged {
		if e.key.Kind == yaml.ScalarNode && have[e.key.Value] {
			continue
		}
		have[e.key.Value] = true
		out = append(out, e)
	}
	return out
}

func (w *walker) structNode(n *yaml.Node, t reflect.Type, path string, at int) {
	sf := yamlFields(t)
	if n.Kind != yaml.MappingNode {
		w.add(at, path, fmt.Sprintf("expected a mapping of fields (allowed: %s), got %s", strings.Join(sf.names, ", "), describe(n)))
		w.remove(n, path)
		return
	}
	for _, e := range w.entries(n, path) {
		if e.key.Kind != yaml.ScalarNode {
			w.add(e.key.Line, path, fmt.Sprintf("a field name must be a plain word, not %s", describe(e.key)))
			w.dropPair(e.key)
			continue
		}
		name := e.key.Value
		if ft, ok := sf.byName[name]; ok {
			w.walk(e.val, ft, fieldJoin(path, name), e.key.Line)
			continue
		}
		if sf.inlineMap != nil {
			w.walk(e.val, sf.inlineMap.Elem(), fieldJoin(path, name), e.key.Line)
			continue
		}
		msg := "" // past maxProblems the message is not shown: skip building it
		if len(w.probs) < maxProblems {
			var meant string
			msg, meant = unknownField(name, sf)
			if meant != "" && path != "" {
				meant = path + "." + meant
			}
			if meant != "" {
				w.reported(meant)
			}
		}
		w.add(e.key.Line, fieldJoin(path, name), msg)
		w.dropPair(e.key)
	}
}

// unknownField says that name is not a field of sf, suggests the closest
// field name, or the nested field it probably belongs under; meant is the
// dotted path (relative to sf) of the field suggested, or "". Field names
// are plain words, so the path needs no brackets.
func unknownField(name string, sf *structFields) (msg, meant string) {
	msg = fmt.Sprintf("unknown field %q", name)
	close, d := suggest.Options{}.Closest(name, sf.names)
	parent := ""
	for _, p := range sf.names {
		pt := sf.byName[p]
		for pt.Kind() == reflect.Pointer {
			pt = pt.Elem()
		}
		if pt.Kind() == reflect.Struct && !isLeaf(pt) {
			if _, ok := yamlFields(pt).byName[name]; ok {
				parent = p
				break
			}
		}
	}
	// A field of a nested mapping written one level too high is a likelier
	// mistake than a typo two edits away.
	switch {
	case close != "" && (d <= 1 || parent == ""):
		msg += fmt.Sprintf("; did you mean %q?", close)
		meant = close
	case parent != "":
		msg += fmt.Sprintf("; %q belongs under %q", name, parent)
		meant = parent + "." + name
	}
	return msg + " (allowed: " + strings.Join(sf.names, ", ") + ")", meant
}

func (w *walker) mapNode(n *yaml.Node, t reflect.Type, path string, at int) {
	if n.Kind != yaml.MappingNode {
		w.add(at, path, "expected a mapping of name: value pairs, got "+describe(n))
		w.remove(n, path)
		return
	}
	entries := w.entries(n, path)
	if len(entries) > maxMapEntries {
		w.add(at, path, fmt.Sprintf("%d entries, more than the %d a mapping of names may hold", len(entries), maxMapEntries))
		w.remove(n, path)
		return
	}
	for _, e := range entries {
		if err := e.key.Decode(reflect.New(t.Key()).Interface()); err != nil || e.key.Kind != yaml.ScalarNode {
			w.add(e.key.Line, path, fmt.Sprintf("invalid key: %s, got %s", expectedType(t.Key()), describe(e.key)))
			w.dropPair(e.key)
			continue
		}
		w.walk(e.val, t.Elem(), fieldJoin(path, e.key.Value), e.key.Line)
	}
}

func (w *walker) seqNode(n *yaml.Node, t reflect.Type, path string, at int) {
	if n.Kind != yaml.SequenceNode {
		w.add(at, path, expectedList(n, t))
		w.remove(n, path)
		return
	}
	if t.Kind() == reflect.Array && len(n.Content) != t.Len() {
		w.add(at, path, fmt.Sprintf("expected a list of exactly %d items, got %d", t.Len(), len(n.Content)))
		w.remove(n, path)
		return
	}
	for i, it := range n.Content {
		w.pace.tick()
		w.walk(it, t.Elem(), path+"["+strconv.Itoa(i)+"]", it.Line)
	}
}

// plainListItem matches values that can be written in a flow list as is.
var plainListItem = regexp.MustCompile(`^[A-Za-z0-9_./:+*-]{1,40}$`)

// expectedList explains that a list is expected where n is not one.
func expectedList(n *yaml.Node, t reflect.Type) string {
	elem := t.Elem()
	for elem.Kind() == reflect.Pointer {
		elem = elem.Elem()
	}
	if (elem.Kind() == reflect.Struct || elem.Kind() == reflect.Map) && !isLeaf(elem) {
		return fmt.Sprintf(`expected a list, got %s; start each item with "- "`, describe(n))
	}
	if n.Kind == yaml.ScalarNode && plainListItem.MatchString(n.Value) {
		return fmt.Sprintf("expected a list, e.g. [%s], got the single value %q", n.Value, n.Value)
	}
	return "expected a list, e.g. [a, b], got " + describe(n)
}

// fieldJoin appends a mapping key to a dotted field path, bracketing keys that
// are not plain words.
func fieldJoin(path, key string) string {
	plain := key != ""
	for i := 0; i < len(key) && plain; i++ {
		c := key[i]
		plain = c == '_' || c == '-' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
	}
	switch {
	case !plain:
		return path + "[" + strconv.Quote(key) + "]"
	case path == "":
		return key
	}
	return path + "." + key
}

// structFields are the YAML field names of a struct type, as the decoder
// sees them.
type structFields struct {
	byName map[string]reflect.Type
	names  []string // sorted, for messages
	// inlineMap is the type of an ",inline" map field, which takes every
	// key that is not a field; nil if none.
	inlineMap reflect.Type
}

var fieldCache sync.Map // reflect.Type -> *structFields

// yamlFields returns the fields of struct type t by their YAML names,
// following the decoder's rules: the `yaml` tag's name (default: the Go
// name lower-cased), "-" skipped, ",inline" structs flattened.
func yamlFields(t reflect.Type) *structFields {
	if v, ok := fieldCache.Load(t); ok {
		return v.(*structFields)
	}
	sf := &structFields{byName: map[string]reflect.Type{}}
	collectFields(t, sf)
	for name := range sf.byName {
		sf.names = append(sf.names, name)
	}
	slices.Sort(sf.names)
	v, _ := fieldCache.LoadOrStore(t, sf)
	return v.(*structFields)
}

func collectFields(t reflect.Type, sf *structFields) {
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() && !f.Anonymous {
			continue
		}
		tag := f.Tag.Get("yaml")
		if tag == "" && !strings.Contains(string(f.Tag), ":") {
			tag = string(f.Tag)
		}
		if tag == "-" {
			continue
		}
		name, flags, _ := strings.Cut(tag, ",")
		if slices.Contains(strings.Split(flags, ","), "inline") {
			ft := f.Type
			for ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			switch ft.Kind() {
			case reflect.Map:
				sf.inlineMap = ft
			case reflect.Struct:
				collectFields(ft, sf)
			}
			continue
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		sf.byName[name] = f.Type
	}
}

// lineIndex finds the line of a value of the policy file by its field path,
// so that checks made after decoding (the compiler's) can point at the line
// to fix. It follows aliases and merge keys as the decoder does (see
// yamlpos).
type lineIndex struct {
	ix *yamlpos.Index
	// removed holds the field paths the walk reported and left out of the
	// decoded file (see walker.removed).
	removed map[string]bool
}

// covered reports whether field is, or lies under, a field whose problem
// the walk already reported: a check of the decoded file sees that field
// absent, and what it would say repeats (or follows from) that problem.
func (li *lineIndex) covered(field string) bool {
	if li == nil || len(li.removed) == 0 {
		return false
	}
	for f := field; f != ""; {
		if li.removed[f] {
			return true
		}
		i := strings.LastIndexAny(f, ".[")
		if i < 0 {
			break
		}
		f = f[:i]
	}
	return false
}

// line returns the line of the value at path, whose elements are mapping
// keys (string) and list indexes (int): line("routes", 3, "match", "path").
// For a mapping key it is the line the key is written on (where its value
// starts); for a list item the line of the item. When the path does not
// exist, it returns the line of the deepest element of the path that does,
// or 0 if not even the first does. A nil index answers 0.
func (li *lineIndex) line(path ...any) int {
	if li == nil {
		return 0
	}
	return li.ix.Line(path...)
}

// byteSize writes n as MiB when it is a whole number of MiB, else in bytes.
func byteSize(n int) string {
	if n >= 1<<20 && n%(1<<20) == 0 {
		return fmt.Sprintf("%d MiB", n>>20)
	}
	return fmt.Sprintf("%d bytes", n)
}

// pemMessage refuses a file that is PEM (a private key, a certificate)
// rather than a policy, naming only the block's type: the YAML parser would
// quote its first bytes, and a private key must not reach a log.
func pemMessage(data []byte) string {
	block, _ := pem.Decode(data)
	if block == nil {
		return ""
	}
	what := "a PEM file"
	if strings.Contains(block.Type, "PRIVATE KEY") {
		what = "a PEM private key"
	}
	return "this file is " + what + " (" + block.Type + "), not a policy: give the policy's YAML file; keys the policy trusts go in an issuer's jwks_file, as a JWK set"
}
