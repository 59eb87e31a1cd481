package policytest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/scopegate/scopegate/decision"
	"github.com/scopegate/scopegate/decision/internal/yamlpos"
	"github.com/scopegate/scopegate/decision/suggest"
)

// File is one test file. Its YAML field names are a public contract
// (docs/governance-tools.md): extend freely, never rename.
type File struct {
	// Policy names the policy file the tests are for, relative to the test
	// file. Without it, the file tests the policy it is run with.
	Policy string `yaml:"policy"`
	// Now is the default clock of every case (RFC 3339); default: the
	// wall clock when the tests run.
	Now string `yaml:"now"`
	// Owners is the default ownership data of every case.
	Owners OwnersSpec `yaml:"owners"`
	Tests  []Case     `yaml:"tests"`
	// Matrix generates the negative matrix: every route with every scope.
	Matrix *Matrix `yaml:"matrix"`

	// Path is the file the tests were read from.
	Path string `yaml:"-"`
	now  time.Time
}

// OwnersSpec is in-memory ownership data: lookup name → resource key →
// owners. A key that is absent does not exist (resource_not_found).
type OwnersSpec map[string]map[string][]string

// Case is one test case.
type Case struct {
	Name    string      `yaml:"name"`
	Request RequestSpec `yaml:"request"`
	// Token is the token the request carries; absent or "none" sends no
	// Authorization header.
	Token *TokenSpec `yaml:"token"`
	// Now is the clock of this case (RFC 3339).
	Now string `yaml:"now"`
	// Owners is this case's ownership data, for owner rules.
	Owners OwnersSpec `yaml:"owners"`
	Expect Expect     `yaml:"expect"`

	// Line is the case's line in its file, 0 when unknown.
	Line int `yaml:"-"`
	// pos and index place the case in its file, for the lines of its
	// fields.
	pos   *yamlpos.Index
	index int
	now   time.Time
	// AllOwnedBy, when set, makes the ownership store name this subject
	// the owner of every resource (generated cases: the matrix, the
	// examples of the catalog).
	AllOwnedBy string `yaml:"-"`
	// wantScopes holds matrix metadata for reports: the route and scope a
	// generated case tries.
	matrixRoute, matrixScope string
}

// RequestSpec is the request of a case.
type RequestSpec struct {
	Method string `yaml:"method"`
	Path   string `yaml:"path"`
	// SourceIP is the address of the peer that sent the request.
	SourceIP    string `yaml:"source_ip"`
	Environment string `yaml:"environment"`
	Host        string `yaml:"host"`
	// Headers may set authorization (sent as is, instead of the minted
	// token), x-forwarded-for, host and x-request-id: the only headers the
	// engine reads.
	Headers map[string]string `yaml:"headers"`
	// ClientCertificate is the client certificate as PEM (for
	// certificate-bound tokens).
	ClientCertificate string            `yaml:"client_certificate"`
	Attributes        map[string]string `yaml:"attributes"`
}

// TokenSpec describes the token the runner mints for a case.
type TokenSpec struct {
	// None sends no token (written `token: none`).
	None bool `yaml:"-"`
	// Iss defaults to the policy's first issuer, Aud to that issuer's first
	// audience.
	Iss      string     `yaml:"iss"`
	Aud      StringList `yaml:"aud"`
	Sub      string     `yaml:"sub"`
	ClientID string     `yaml:"client_id"`
	// Scope is the scope claim: a space-separated string or a list.
	Scope StringList `yaml:"scope"`
	// Claims are added to (and override) the standard claims.
	Claims map[string]any `yaml:"claims"`
	// TTL is exp - iat (default 1h); IatOffset moves iat (and nbf) from
	// the case's clock, e.g. -5m for a token issued five minutes ago.
	TTL       *decision.Duration `yaml:"ttl"`
	IatOffset Offset             `yaml:"iat_offset"`
	// AuthAge sets auth_time to now minus this duration (step-up checks).
	AuthAge *decision.Duration `yaml:"auth_age"`
	// Typ is the JOSE typ header (default at+jwt); "-" leaves it out.
	Typ string `yaml:"typ"`
}

// Expect is the decision a case expects. Allow or Reason is required;
// every other field is checked only when set.
type Expect struct {
	Allow *bool `yaml:"allow"`
	// Reason is the reason code, e.g. insufficient_scope (ok for an allow).
	Reason string `yaml:"reason"`
	// Route is the name of the route expected to decide.
	Route string `yaml:"route"`
	// ScopesUsed are the scopes expected to satisfy the route, in any
	// order.
	ScopesUsed *[]string `yaml:"scopes_used"`
	// Status is the HTTP status of the answer (200 for an allow).
	Status int `yaml:"status"`
	// MessageContains must appear in the decision's message.
	MessageContains string `yaml:"message_contains"`
}

// Matrix generates one case per route, method and scope: a token holding
// only that scope (and one holding none) expects an allow exactly when the
// scope satisfies the route, computed from the catalog's implications, and
// otherwise insufficient_scope (scope_retired for a retired scope that
// would have). Public, SMART and shadow routes are left out.
type Matrix struct {
	// Routes limits the matrix to these routes; default every route that
	// requires a token.
	Routes []string `yaml:"routes"`
	// Scopes limits the matrix to these scopes; default the catalog, or
	// every scope a route names when there is no catalog.
	Scopes []string `yaml:"scopes"`
	// Params are the values of path parameters by name; default "example".
	Params map[string]string `yaml:"params"`
	// Request, Token, Now and Owners are the context of every generated
	// case: it must satisfy every constraint of the routes, so that only
	// the scope decides. Method, path and scope are set per case. Without
	// Owners, the token's subject owns every resource.
	Request RequestSpec `yaml:"request"`
	Token   *TokenSpec  `yaml:"token"`
	Now     string      `yaml:"now"`
	Owners  OwnersSpec  `yaml:"owners"`

	line int
}

// StringList is a list of strings written as a list, or as one string
// (space-separated for scope).
type StringList []string

// UnmarshalYAML implements yaml.Unmarshaler.
func (l *StringList) UnmarshalYAML(n *yaml.Node) error {
	switch n.Kind {
	case yaml.ScalarNode:
		*l = strings.Fields(n.Value)
		return nil
	case yaml.SequenceNode:
		var s []string
		if err := n.Decode(&s); err != nil {
			return fmt.Errorf("line %d: expected a list of strings", n.Line)
		}
		*l = s
		return nil
	}
	return fmt.Errorf("line %d: expected a string or a list of strings", n.Line)
}

// Offset is a signed duration such as "-5m".
type Offset struct{ time.Duration }

// UnmarshalYAML implements yaml.Unmarshaler.
func (o *Offset) UnmarshalYAML(n *yaml.Node) error {
	d, err := time.ParseDuration(n.Value)
	if n.Kind != yaml.ScalarNode || err != nil {
		return fmt.Errorf("line %d: invalid duration %q: write it like \"-5m\" or \"30s\"", n.Line, n.Value)
	}
	o.Duration = d
	return nil
}

// UnmarshalYAML implements yaml.Unmarshaler: `none` or a mapping of the
// token's fields (unknown fields are refused).
func (t *TokenSpec) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		if n.Value == "none" || n.Tag == "!!null" {
			*t = TokenSpec{None: true}
			return nil
		}
		return fmt.Errorf("line %d: token must be none or a mapping of fields (%s)", n.Line, strings.Join(fieldNames(reflect.TypeFor[TokenSpec]()), ", "))
	}
	if n.Kind != yaml.MappingNode {
		return fmt.Errorf("line %d: token must be none or a mapping of fields", n.Line)
	}
	allowed := fieldNames(reflect.TypeFor[TokenSpec]())
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := n.Content[i]
		if !slices.Contains(allowed, k.Value) {
			// A *yaml.TypeError lets the decoder go on with the rest of
			// the file, so every problem is reported in one run.
			return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: unknown field %q in token%s (allowed: %s)", k.Line, k.Value, suggest.DidYouMean(k.Value, allowed), strings.Join(allowed, ", "))}}
		}
	}
	type plain TokenSpec
	return n.Decode((*plain)(t))
}

// fieldNames are the YAML names of struct type t's fields, sorted.
func fieldNames(t reflect.Type) []string {
	var out []string
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
		if name != "" && name != "-" {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

// typeNames maps Go type names in decoder errors to what users call them.
var typeNames = map[string]reflect.Type{
	"File":        reflect.TypeFor[File](),
	"Case":        reflect.TypeFor[Case](),
	"RequestSpec": reflect.TypeFor[RequestSpec](),
	"Expect":      reflect.TypeFor[Expect](),
	"Matrix":      reflect.TypeFor[Matrix](),
}

var (
	yamlLineErr     = regexp.MustCompile(`^line (\d+): (.*)$`)
	yamlUnknownErr  = regexp.MustCompile(`^field (\S+) not found in type policytest\.(\w+)$`)
	yamlTypeNameErr = regexp.MustCompile(`into policytest\.\w+|into decision\.\w+`)
)

// Problem is one error in a test file.
type Problem struct {
	File    string
	Line    int
	Message string
}

func (p Problem) String() string {
	if p.Line > 0 {
		return fmt.Sprintf("%s:%d: %s", p.File, p.Line, p.Message)
	}
	return p.File + ": " + p.Message
}

// FileError is every problem of a test file that cannot be run.
type FileError struct{ Problems []Problem }

func (e *FileError) Error() string {
	parts := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		parts[i] = p.String()
	}
	return strings.Join(parts, "\n")
}

// maxTestFileBytes bounds a test file; tests are hand-written.
const maxTestFileBytes = 16 << 20

// ReadFile reads and checks a test file: unknown fields, bad durations,
// times and reason codes are reported with their lines.
func ReadFile(path string) (*File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, &FileError{[]Problem{{File: path, Message: "cannot read the test file: " + decision.ReadCause(err)}}}
	}
	return Parse(data, path)
}

// Parse reads a test file from its text; path names it in problems.
func Parse(data []byte, path string) (*File, error) {
	fail := func(line int, msg string) error {
		return &FileError{[]Problem{{File: path, Line: line, Message: msg}}}
	}
	if len(data) > maxTestFileBytes {
		return nil, fail(0, "the test file is larger than 16 MiB")
	}
	if t := decision.PEMBlockType(data); t != "" {
		// Never parsed: the parser's message would quote the key.
		return nil, fail(0, "this file is PEM ("+t+"), not a test file: name the policy's *_test.yaml files")
	}
	var f File
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var probs []Problem
	if err := dec.Decode(&f); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fail(0, "the test file is empty; it needs tests: or matrix:")
		}
		// A type error (unknown field, wrong type) leaves the rest of the
		// file decoded: check that too, so one run reports every problem.
		var te *yaml.TypeError
		if !errors.As(err, &te) {
			return nil, decodeProblems(err, path)
		}
		probs = decodeProblems(err, path).(*FileError).Problems
	}
	f.Path = path
	ix := yamlpos.Parse(data)
	for i := range f.Tests {
		if at, ok := ix.Find("tests", i); ok {
			f.Tests[i].Line = at.Line
			f.Tests[i].pos, f.Tests[i].index = ix, i
		}
	}
	if at, ok := ix.Find("matrix"); ok && f.Matrix != nil {
		f.Matrix.line = at.Line
	}
	add := func(line int, format string, args ...any) {
		probs = append(probs, Problem{File: path, Line: line, Message: fmt.Sprintf(format, args...)})
	}
	if len(f.Tests) == 0 && f.Matrix == nil {
		add(0, "the test file has no tests: and no matrix:; add at least one case")
	}
	if f.Now != "" {
		t, err := parseNow(f.Now)
		if err != nil {
			add(0, "now: %v", err)
		}
		f.now = t
	}
	names := map[string]int{}
	for i := range f.Tests {
		c := &f.Tests[i]
		where := fmt.Sprintf("tests[%d]", i)
		if c.Name == "" {
			add(c.Line, "%s: every case needs a name", where)
		} else if prev, dup := names[c.Name]; dup {
			add(c.Line, "%s: the name %q is already used on line %d; names must be unique", where, c.Name, prev)
		} else {
			names[c.Name] = c.Line
		}
		if c.Request.Path == "" {
			add(c.Line, "%s: request.path is required, e.g. /orders/42", where)
		}
		if c.Now != "" {
			t, err := parseNow(c.Now)
			if err != nil {
				add(c.fieldLine("now"), "%s.now: %v", where, err)
			}
			c.now = t
		}
		if err := checkRequest(&c.Request); err != nil {
			add(c.fieldLine("request"), "%s.request: %v", where, err)
		}
		if err := checkExpect(&c.Expect); err != nil {
			line := c.fieldLine("expect")
			if c.Expect.Reason != "" && strings.Contains(err.Error(), "reason") {
				line = c.fieldLine("expect", "reason")
			}
			add(line, "%s.expect: %v", where, err)
		}
	}
	if m := f.Matrix; m != nil {
		if m.Now != "" {
			if _, err := parseNow(m.Now); err != nil {
				add(m.line, "matrix.now: %v", err)
			}
		}
		if m.Request.Method != "" || m.Request.Path != "" {
			add(m.line, "matrix.request: method and path are set per generated case; remove them")
		}
		if m.Token != nil && len(m.Token.Scope) > 0 {
			add(m.line, "matrix.token.scope: the scope is set per generated case; remove it")
		}
		if m.Token != nil && m.Token.None {
			add(m.line, "matrix.token: the matrix needs tokens; give a mapping or leave it out")
		}
		if err := checkRequest(&m.Request); err != nil {
			add(m.line, "matrix.request: %v", err)
		}
	}
	if len(probs) > 0 {
		slices.SortStableFunc(probs, func(a, b Problem) int { return a.Line - b.Line })
		return nil, &FileError{probs}
	}
	return &f, nil
}

// decodeProblems turns a decoder error into problems with lines.
func decodeProblems(err error, path string) error {
	var te *yaml.TypeError
	var msgs []string
	if errors.As(err, &te) {
		msgs = te.Errors
	} else {
		msgs = []string{strings.TrimPrefix(err.Error(), "yaml: ")}
	}
	var probs []Problem
	for _, m := range msgs {
		line := 0
		if sm := yamlLineErr.FindStringSubmatch(m); sm != nil {
			line, _ = strconv.Atoi(sm[1])
			m = sm[2]
		}
		if sm := yamlUnknownErr.FindStringSubmatch(m); sm != nil {
			where := sm[2]
			allowed, hint := "", ""
			if t, ok := typeNames[where]; ok {
				names := fieldNames(t)
				hint = suggest.DidYouMean(sm[1], names)
				allowed = " (allowed: " + strings.Join(names, ", ") + ")"
			}
			m = fmt.Sprintf("unknown field %q%s%s", sm[1], hint, allowed)
		}
		m = yamlTypeNameErr.ReplaceAllString(m, "here")
		probs = append(probs, Problem{File: path, Line: line, Message: m})
	}
	return &FileError{probs}
}

// fieldLine is the line of the case's field at path (e.g. "expect",
// "reason"), else the case's own line.
func (c *Case) fieldLine(path ...string) int {
	full := []any{"tests", c.index}
	for _, k := range path {
		full = append(full, k)
	}
	if at, ok := c.pos.Find(full...); ok {
		return at.Line
	}
	return c.Line
}

func parseNow(s string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("invalid time %q: write an RFC 3339 time such as 2026-11-23T10:00:00Z", s)
	}
	return t, nil
}

// headerNames are the request headers a case may set.
var headerNames = []string{"authorization", "host", "x-forwarded-for", "x-request-id"}

func checkRequest(r *RequestSpec) error {
	for h := range r.Headers {
		if !slices.Contains(headerNames, strings.ToLower(h)) {
			return fmt.Errorf("header %q is not read by the engine; set one of %s", h, strings.Join(headerNames, ", "))
		}
	}
	return nil
}

func checkExpect(e *Expect) error {
	if e.Allow == nil && e.Reason == "" {
		return errors.New("set allow (true or false) or reason (e.g. insufficient_scope)")
	}
	if e.Reason != "" {
		code, ok := decision.ParseCode(e.Reason)
		if !ok {
			names := make([]string, 0, len(decision.Codes()))
			for _, c := range decision.Codes() {
				names = append(names, c.String())
			}
			if hint := suggest.DidYouMean(e.Reason, names); hint != "" {
				return fmt.Errorf("unknown reason %q%s", e.Reason, hint)
			}
			return fmt.Errorf("unknown reason %q; reasons are: %s", e.Reason, strings.Join(names, ", "))
		}
		if e.Allow != nil && *e.Allow != (code == decision.OK) {
			return fmt.Errorf("allow: %v contradicts reason %s", *e.Allow, e.Reason)
		}
	}
	return nil
}
