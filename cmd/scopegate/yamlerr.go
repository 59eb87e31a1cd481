package main

import (
	"errors"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/scopegate/scopegate/decision/suggest"
)

// yamlDecodeError rewrites the error of decoding a settings file (the
// context file, --ssf-config) into target in the file's own terms. The
// YAML library names Go types ("field transmiters not found in type
// main.ssfFile", "cannot unmarshal !!int `5` into []struct { Name string
// ... }") and quotes the start of the value, which may be a secret; this
// names the field, what it wants and, for an unknown field, the nearest
// known one, and never the value.
func yamlDecodeError(err error, target any) string {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return strings.TrimPrefix(err.Error(), "yaml: ")
	}
	known := yamlFieldNames(reflect.TypeOf(target), nil)
	msgs := make([]string, 0, len(te.Errors))
	for _, e := range te.Errors {
		msgs = append(msgs, yamlTypeMessage(e, known))
	}
	return strings.Join(msgs, "; ")
}

var (
	yamlUnknownField = regexp.MustCompile(`^(line \d+): field (\S+) not found in type \S+$`)
	yamlWrongType    = regexp.MustCompile("^(line \\d+): cannot unmarshal !!(\\w+) `.*` into (.+)$")
)

func yamlTypeMessage(e string, known []string) string {
	if m := yamlUnknownField.FindStringSubmatch(e); m != nil {
		msg := m[1] + `: unknown field "` + m[2] + `"`
		if s := suggest.Closest(m[2], known); s != "" {
			msg += `; did you mean "` + s + `"?`
		}
		return msg
	}
	if m := yamlWrongType.FindStringSubmatch(e); m != nil {
		return m[1] + ": " + wantOfGoType(m[3]) + " (got " + yamlTagName(m[2]) + ")"
	}
	return e
}

// wantOfGoType says, in a file's terms, what a Go type the decoder wanted
// takes.
func wantOfGoType(t string) string {
	switch {
	case t == "time.Duration":
		return "want a duration (units s, m, h), e.g. 30s"
	case strings.HasPrefix(t, "[]"):
		return "want a list"
	case strings.HasPrefix(t, "map[") || strings.HasPrefix(t, "struct") || strings.HasPrefix(t, "*struct") || strings.Contains(t, "."):
		return "want a mapping of fields"
	case t == "bool":
		return "want true or false"
	case strings.HasPrefix(t, "int") || strings.HasPrefix(t, "uint"):
		return "want an integer, e.g. 100"
	case strings.HasPrefix(t, "float"):
		return "want a number"
	case t == "string":
		return "want a string"
	}
	return "wrong type of value"
}

func yamlTagName(tag string) string {
	switch tag {
	case "str":
		return "a string"
	case "int":
		return "an integer"
	case "float":
		return "a number"
	case "bool":
		return "true or false"
	case "seq":
		return "a list"
	case "map":
		return "a mapping"
	}
	return "!!" + tag
}

// yamlFieldNames lists the yaml field names of t and of the structs it
// holds, for "did you mean".
func yamlFieldNames(t reflect.Type, seen map[reflect.Type]bool) []string {
	if seen == nil {
		seen = map[reflect.Type]bool{}
	}
	for t != nil && (t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice || t.Kind() == reflect.Map) {
		t = t.Elem()
	}
	if t == nil || t.Kind() != reflect.Struct || seen[t] || t == reflect.TypeOf(time.Time{}) {
		return nil
	}
	seen[t] = true
	var out []string
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "" || name == "-" {
			continue
		}
		if !slices.Contains(out, name) {
			out = append(out, name)
		}
		for _, n := range yamlFieldNames(f.Type, seen) {
			if !slices.Contains(out, n) {
				out = append(out, n)
			}
		}
	}
	return out
}
