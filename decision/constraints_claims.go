package decision

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

// claimOp is the operator of a claim condition.
type claimOp uint8

const (
	opEquals claimOp = iota
	opIn
	opContains
	opExists
	opAbsent
)

// claimKind is the type of a claim value in a condition.
type claimKind uint8

const (
	kindString claimKind = iota
	kindNumber
	kindBool
)

// claimValue is a compiled ClaimValue.
type claimValue struct {
	kind  claimKind
	s     string
	b     bool
	f     float64
	i     int64
	isInt bool
}

func compileClaimValue(v ClaimValue) (claimValue, error) {
	switch v.Kind {
	case "string":
		return claimValue{kind: kindString, s: v.Text}, nil
	case "bool":
		b, err := strconv.ParseBool(v.Text)
		if err != nil {
			return claimValue{}, fmt.Errorf("invalid boolean %q", v.Text)
		}
		return claimValue{kind: kindBool, b: b}, nil
	case "number":
		cv := claimValue{kind: kindNumber, s: v.Text}
		if i, err := strconv.ParseInt(v.Text, 0, 64); err == nil {
			cv.i, cv.isInt, cv.f = i, true, float64(i)
			return cv, nil
		}
		f, err := strconv.ParseFloat(v.Text, 64)
		if err != nil {
			return claimValue{}, fmt.Errorf("invalid number %q; quote it to compare as a string", v.Text)
		}
		cv.f = f
		return cv, nil
	}
	return claimValue{}, fmt.Errorf("a claim value must not be null; to require that a claim is absent, write exists: false")
}

// matches reports whether the scalar claim value v equals cv, by type: a
// string only equals a string, a number a number (numerically), a boolean a
// boolean. It allocates nothing.
func (cv *claimValue) matches(v any) bool {
	switch x := v.(type) {
	case string:
		return cv.kind == kindString && x == cv.s
	case bool:
		return cv.kind == kindBool && x == cv.b
	case json.Number:
		if cv.kind != kindNumber {
			return false
		}
		if cv.isInt {
			if n, ok := parseJSONInt(string(x)); ok {
				return n == cv.i
			}
		}
		f, err := strconv.ParseFloat(string(x), 64)
		return err == nil && f == cv.f
	case float64:
		return cv.kind == kindNumber && x == cv.f
	}
	return false
}

// parseJSONInt parses a JSON integer of at most 18 digits without
// allocating; ok is false for anything else (fractions, exponents).
func parseJSONInt(s string) (int64, bool) {
	neg := false
	if len(s) > 0 && s[0] == '-' {
		neg, s = true, s[1:]
	}
	if len(s) == 0 || len(s) > 18 {
		return 0, false
	}
	var n int64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	if neg {
		n = -n
	}
	return n, true
}

// claimRef names a claim: its top-level name and, for a dotted name, the
// path into nested objects tried when no top-level claim has that name.
type claimRef struct {
	name string
	path []string
}

func newClaimRef(name string) claimRef {
	r := claimRef{name: name}
	if strings.Contains(name, ".") {
		r.path = strings.Split(name, ".")
	}
	return r
}

// lookup returns the claim's value; JSON null counts as absent.
func (r *claimRef) lookup(claims map[string]any) (any, bool) {
	if v, ok := claims[r.name]; ok {
		return v, v != nil
	}
	if len(r.path) < 2 {
		return nil, false
	}
	var cur any = claims
	for _, p := range r.path {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = m[p]; !ok {
			return nil, false
		}
	}
	return cur, cur != nil
}

// claimCond is a compiled claim condition.
type claimCond struct {
	ref    claimRef
	op     claimOp
	values []claimValue
	// detail is the prebuilt deny message.
	detail string
}

// holds evaluates the condition against the token's claims.
func (c *claimCond) holds(claims map[string]any) bool {
	v, present := c.ref.lookup(claims)
	switch c.op {
	case opExists:
		return present
	case opAbsent:
		return !present
	}
	if !present {
		return false
	}
	switch c.op {
	case opEquals:
		return c.values[0].matches(v)
	case opIn:
		if arr, ok := v.([]any); ok {
			for _, e := range arr {
				if c.anyValue(e) {
					return true
				}
			}
			return false
		}
		return c.anyValue(v)
	case opContains:
		want := &c.values[0]
		switch x := v.(type) {
		case []any:
			for _, e := range x {
				if want.matches(e) {
					return true
				}
			}
		case string:
			// A space-separated list, as scope and some IdPs' groups are.
			if want.kind != kindString || want.s == "" {
				return false
			}
			for rest := x; rest != ""; {
				var w string
				w, rest, _ = strings.Cut(rest, " ")
				if w == want.s {
					return true
				}
			}
		}
	}
	return false
}

func (c *claimCond) anyValue(v any) bool {
	for i := range c.values {
		if c.values[i].matches(v) {
			return true
		}
	}
	return false
}

// compileClaimCond compiles one condition of a when block; base and field
// locate it for problems.
func (c *compiler) compileClaimCond(spec *ClaimConditionSpec, owner string, base []any, field string) (claimCond, bool) {
	line := c.li.line(base...)
	if spec.Claim == "" {
		c.errorf(line, field+".claim", "every claim condition names its claim, e.g. {claim: groups, contains: on-call}")
		return claimCond{}, false
	}
	var ops []string
	if spec.Equals != nil {
		ops = append(ops, "equals")
	}
	if spec.In != nil {
		ops = append(ops, "in")
	}
	if spec.Contains != nil {
		ops = append(ops, "contains")
	}
	if spec.Exists != nil {
		ops = append(ops, "exists")
	}
	switch len(ops) {
	case 0:
		c.errorf(line, field, "the condition on claim %q has no operator; add one of equals, in, contains or exists", spec.Claim)
		return claimCond{}, false
	case 1:
	default:
		c.errorf(line, field, "the condition on claim %q has several operators (%s); write one condition per operator", spec.Claim, strings.Join(ops, ", "))
		return claimCond{}, false
	}
	cc := claimCond{ref: newClaimRef(spec.Claim)}
	var desc string
	add := func(v ClaimValue, at []any, f string) bool {
		cv, err := compileClaimValue(v)
		if err != nil {
			c.errorf(c.li.line(at...), f, "%s", err)
			return false
		}
		cc.values = append(cc.values, cv)
		return true
	}
	switch {
	case spec.Equals != nil:
		cc.op = opEquals
		if !add(*spec.Equals, append(base, "equals"), field+".equals") {
			return claimCond{}, false
		}
		desc = "equal " + quoteClaimValue(*spec.Equals)
	case spec.In != nil:
		cc.op = opIn
		if len(spec.In) == 0 {
			c.errorf(c.li.line(append(base, "in")...), field+".in", "in needs at least one value")
			return claimCond{}, false
		}
		var vs []string
		for j, v := range spec.In {
			if !add(v, append(base, "in", j), fmt.Sprintf("%s.in[%d]", field, j)) {
				return claimCond{}, false
			}
			vs = append(vs, quoteClaimValue(v))
		}
		desc = "be one of [" + strings.Join(vs, ", ") + "]"
	case spec.Contains != nil:
		cc.op = opContains
		if !add(*spec.Contains, append(base, "contains"), field+".contains") {
			return claimCond{}, false
		}
		desc = "contain " + quoteClaimValue(*spec.Contains)
	default:
		if *spec.Exists {
			cc.op, desc = opExists, "be present"
		} else {
			cc.op, desc = opAbsent, "be absent"
		}
	}
	cc.detail = owner + ": claim " + spec.Claim + " must " + desc
	return cc, true
}

func quoteClaimValue(v ClaimValue) string {
	if v.Kind == "string" {
		return strconv.Quote(v.Text)
	}
	return v.Text
}
