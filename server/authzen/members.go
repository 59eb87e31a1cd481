package authzen

import (
	"reflect"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/valyala/fastjson"
)

// encoding/json matches a member name to a struct field case-insensitively
// (with Unicode simple folding: "ID", "Id" and "\u212aey" are "id" and
// "key") and lets the last of two equal members win. Someone else reading
// the same body (a WAF, an audit pipeline, the PEP that built it) may read
// the first, or only the exact name: {"id":"bob","ID":"alice"} would be
// decided for alice while they see bob. So a body is refused when, at any
// depth, one object names a member twice in any spelling encoding/json
// would fold together, or names a member scopegate reads in another case.
// The check runs after encoding/json accepted the body, with fastjson
// (which keeps every member, duplicates included).

// memberSchema is what scopegate reads of one JSON object: the members it
// decodes, and for each the schema of its value (nil: not read, any
// content). elem is the schema of an array's elements.
type memberSchema struct {
	fields map[string]*memberSchema
	elem   *memberSchema
}

var (
	evaluationSchema  = schemaOf(reflect.TypeFor[Evaluation]())
	evaluationsSchema = schemaOf(reflect.TypeFor[Evaluations]())
)

// schemaOf derives the members encoding/json decodes into t from its json
// tags, so the check follows the structs as they change.
func schemaOf(t reflect.Type) *memberSchema {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Slice, reflect.Array:
		if t.Elem().Kind() == reflect.Uint8 { // json.RawMessage: not read here
			return nil
		}
		if e := schemaOf(t.Elem()); e != nil {
			return &memberSchema{elem: e}
		}
		return nil
	case reflect.Struct:
	default:
		return nil
	}
	s := &memberSchema{fields: map[string]*memberSchema{}}
	var add func(t reflect.Type)
	add = func(t reflect.Type) {
		for f := range t.Fields() {
			tag := f.Tag.Get("json")
			name, _, _ := strings.Cut(tag, ",")
			if name == "-" || !f.IsExported() && !f.Anonymous {
				continue
			}
			if f.Anonymous && name == "" && f.Type.Kind() == reflect.Struct {
				add(f.Type)
				continue
			}
			if name == "" {
				name = f.Name
			}
			s.fields[name] = schemaOf(f.Type)
		}
	}
	add(t)
	return s
}

// memberParsers are reused by checkMembers.
var memberParsers fastjson.ParserPool

// checkMembers refuses duplicate and case-variant member names in body, a
// JSON document encoding/json has accepted, read with schema s.
func checkMembers(body []byte, s *memberSchema) *Error {
	p := memberParsers.Get()
	defer memberParsers.Put(p)
	v, err := p.ParseBytes(body)
	if err != nil {
		// encoding/json took it; fastjson is stricter only about depth.
		return &Error{Message: "the body nests values more deeply than scopegate reads (at most " + strconv.Itoa(fastjson.MaxDepth) + " levels)"}
	}
	return walkMembers(v, s, "")
}

func walkMembers(v *fastjson.Value, s *memberSchema, path string) *Error {
	switch v.Type() {
	case fastjson.TypeArray:
		a, _ := v.Array()
		var es *memberSchema
		if s != nil {
			es = s.elem
		}
		for i, e := range a {
			if err := walkMembers(e, es, path+"["+strconv.Itoa(i)+"]"); err != nil {
				return err
			}
		}
	case fastjson.TypeObject:
		o, _ := v.Object()
		return walkObject(o, s, path)
	}
	return nil
}

// smallObject is the size up to which members are compared pairwise;
// larger objects use a map of folded names, so that a body of many
// members costs linear time.
const smallObject = 16

func walkObject(o *fastjson.Object, s *memberSchema, path string) *Error {
	var small [smallObject]string
	names := small[:0]
	var folded map[string]string // folded name → the first spelling
	if o.Len() > smallObject {
		folded = make(map[string]string, o.Len())
	}
	var failure *Error
	o.Visit(func(kb []byte, e *fastjson.Value) {
		if failure != nil {
			return
		}
		k := string(kb)
		field := k
		if path != "" {
			field = path + "." + k
		}
		quoted := strconv.Quote(clip(k))
		prev, dup := "", false
		if folded != nil {
			f := foldName(k)
			if prev, dup = folded[f]; !dup {
				folded[f] = k
			}
		} else {
			for _, n := range names {
				if strings.EqualFold(n, k) {
					prev, dup = n, true
					break
				}
			}
			names = append(names, k)
		}
		switch {
		case dup && prev == k:
			failure = &Error{Field: clip(field), Message: "member " + quoted + " is given twice: give each member once"}
			return
		case dup:
			failure = &Error{Field: clip(field), Message: "member " + quoted + " and member " + strconv.Quote(clip(prev)) + " differ only in case: member names are case-sensitive; give the member once, spelled exactly"}
			return
		}
		var child *memberSchema
		if s != nil && s.fields != nil {
			c, known := s.fields[k]
			if !known {
				for name := range s.fields {
					if strings.EqualFold(name, k) {
						failure = &Error{Field: clip(field), Message: "member " + quoted + " is not " + strconv.Quote(name) + ": member names are case-sensitive; spell it " + strconv.Quote(name)}
						return
					}
				}
			}
			child = c
		}
		failure = walkMembers(e, child, field)
	})
	return failure
}

// foldName maps s to a string equal for exactly the names
// strings.EqualFold (and so encoding/json) treats as equal: each rune
// becomes the smallest rune of its simple-folding orbit. Invalid UTF-8
// becomes U+FFFD, as encoding/json decodes it.
func foldName(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	for _, r := range s {
		if r < utf8.RuneSelf {
			if 'a' <= r && r <= 'z' {
				r -= 'a' - 'A'
			}
			b.WriteRune(r)
			continue
		}
		m := r
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			m = min(m, f)
		}
		b.WriteRune(m)
	}
	return b.String()
}
