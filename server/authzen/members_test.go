package authzen

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// A member encoding/json would fold onto another, or a second copy of a
// member, is refused at every depth and in both endpoints, naming the
// member; unknown members spelled once are still accepted.
func TestAuthZENStrictMembers(t *testing.T) {
	const (
		act = `"action":{"name":"GET"}`
		res = `"resource":{"type":"http_path","id":"/x"}`
	)
	subj := func(s string) string { return `{"subject":{"type":"user",` + s + `},` + act + `,` + res + `}` }
	tests := map[string]struct {
		body  string
		batch bool
		field string // "" when accepted
		msg   string
	}{
		"exact spelling":               {body: subj(`"id":"bob","properties":{"token":"T","ip_address":"10.0.0.1"}`)},
		"unknown members spelled once": {body: `{"subject":{"type":"user","id":"a","properties":{"Department":"x"}},` + act + `,` + res + `,"extra":{"a":[{"b":1}]}}`},
		"escaped name is the name":     {body: subj(`"\u0069d":"bob"`)},
		"many distinct members":        {body: subj(`"id":"bob","properties":{` + manyMembers(40, "") + `}`)},

		"id then ID":            {body: subj(`"id":"bob","ID":"alice"`), field: "subject.ID", msg: `differ only in case`},
		"ID then id":            {body: subj(`"ID":"alice","id":"bob"`), field: "subject.ID", msg: `spell it "id"`},
		"ID alone":              {body: subj(`"ID":"alice"`), field: "subject.ID", msg: `spell it "id"`},
		"Id alone":              {body: subj(`"Id":"alice"`), field: "subject.Id", msg: `spell it "id"`},
		"duplicate id":          {body: subj(`"id":"bob","id":"alice"`), field: "subject.id", msg: "given twice"},
		"escaped duplicate id":  {body: subj(`"id":"bob","\u0069d":"alice"`), field: "subject.id", msg: "given twice"},
		"TOKEN property":        {body: subj(`"id":"a","properties":{"TOKEN":"T"}`), field: "subject.properties.TOKEN", msg: `spell it "token"`},
		"duplicate token":       {body: subj(`"id":"a","properties":{"token":"A","token":"B"}`), field: "subject.properties.token", msg: "given twice"},
		"Subject top level":     {body: `{"Subject":{"type":"user","id":"a"},` + act + `,` + res + `}`, field: "Subject", msg: `spell it "subject"`},
		"long s folds to s":     {body: `{"\u017fubject":{"type":"user","id":"a"},` + act + `,` + res + `}`, field: "\u017fubject", msg: `spell it "subject"`},
		"kelvin sign in a name": {body: subj(`"id":"a","properties":{"to\u212aen":"T"}`), field: "subject.properties.to\u212aen", msg: `spell it "token"`},
		"Method property":       {body: `{"subject":{"type":"user","id":"a"},"action":{"name":"GET","properties":{"Method":"DELETE"}},` + res + `}`, field: "action.properties.Method", msg: `spell it "method"`},
		"PATH property":         {body: `{"subject":{"type":"user","id":"a"},` + act + `,"resource":{"type":"x","id":"1","properties":{"PATH":"/admin"}}}`, field: "resource.properties.PATH", msg: `spell it "path"`},
		"duplicate in context":  {body: `{"subject":{"type":"user","id":"a"},` + act + `,` + res + `,"context":{"a":{"b":1,"b":2}}}`, field: "context.a.b", msg: "given twice"},
		"case pair in context":  {body: `{"subject":{"type":"user","id":"a"},` + act + `,` + res + `,"context":{"role":"x","Role":"y"}}`, field: "context.Role", msg: "differ only in case"},
		"fold pair in a large object": {body: subj(`"id":"bob","properties":{` + manyMembers(40, "") + `,"k":1,"\u212a":2}`),
			field: "subject.properties.\u212a", msg: "differ only in case"},
		"duplicate in a large object": {body: subj(`"id":"bob","properties":{` + manyMembers(40, "") + `,"m3":1}`),
			field: "subject.properties.m3", msg: "given twice"},
		"duplicate inside an array": {body: `{"subject":{"type":"user","id":"a"},` + act + `,` + res + `,"context":{"l":[1,{"x":1,"x":2}]}}`, field: "context.l[1].x", msg: "given twice"},

		"batch item ID": {batch: true, body: `{"evaluations":[{},{"subject":{"type":"user","id":"bob","ID":"alice"}}],` + act + `,` + res + `}`,
			field: "evaluations[1].subject.ID", msg: "differ only in case"},
		"batch default Id": {batch: true, body: `{"subject":{"type":"user","Id":"a"},"evaluations":[{}],` + act + `,` + res + `}`,
			field: "subject.Id", msg: `spell it "id"`},
		"batch Evaluations": {batch: true, body: `{"evaluations":[],"Evaluations":[{}]}`, field: "Evaluations", msg: "differ only in case"},
		"batch options case": {batch: true, body: `{"evaluations":[],"options":{"Evaluations_Semantic":"permit_on_first_permit"}}`,
			field: "options.Evaluations_Semantic", msg: `spell it "evaluations_semantic"`},
		"batch item resource PATH": {batch: true, body: `{"evaluations":[{"resource":{"type":"x","id":"1","properties":{"path":"/a","PATH":"/b"}}}]}`,
			field: "evaluations[0].resource.properties.PATH", msg: "differ only in case"},
		"batch exact": {batch: true, body: `{"evaluations":[{"subject":{"type":"user","id":"bob"}}],"options":{"evaluations_semantic":"execute_all"}}`},

		"deeper than read": {body: `{"context":` + strings.Repeat(`[`, 400) + strings.Repeat(`]`, 400) + `}`, field: "", msg: "nests values more deeply"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			var err *Error
			if tc.batch {
				_, err = ParseEvaluations([]byte(tc.body))
			} else {
				_, err = ParseEvaluation([]byte(tc.body))
			}
			if tc.msg == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("accepted; want %s: %s", tc.field, tc.msg)
			}
			if err.Field != tc.field || !strings.Contains(err.Message, tc.msg) {
				t.Fatalf("got %q: %q; want %q: ...%s...", err.Field, err.Message, tc.field, tc.msg)
			}
		})
	}
}

// manyMembers is n distinct members m0..m(n-1) with suffix appended.
func manyMembers(n int, suffix string) string {
	parts := make([]string, n)
	for i := range parts {
		parts[i] = `"m` + strings.Repeat("x", i%3) + itoa(i) + suffix + `":1`
	}
	return strings.Join(parts, ",")
}

func itoa(i int) string {
	if i < 10 {
		return string(rune('0' + i))
	}
	return itoa(i/10) + string(rune('0'+i%10))
}

// foldName must agree with strings.EqualFold, which is what encoding/json
// applies to member names.
func TestFoldNameMatchesEqualFold(t *testing.T) {
	names := []string{"id", "ID", "Id", "iD", "k", "K", "\u212a", "s", "S", "\u017f", "token", "TOKEN", "to\u212aen",
		"\u00e9", "\u00c9", "\u03a3", "\u03c3", "\u03c2", "a\xff", "a\xfe", "a\ufffd", "", "1", "_", "ß", "ẞ"}
	for _, a := range names {
		for _, b := range names {
			if got, want := foldName(a) == foldName(b), strings.EqualFold(a, b); got != want {
				t.Errorf("foldName(%q)==foldName(%q) is %v; EqualFold says %v", a, b, got, want)
			}
		}
	}
}

// FuzzAuthZENMemberNames: whatever body the parsers accept has, in every
// object at every depth, no two member names that encoding/json would
// fold together. The check here is independent of checkMembers: a token
// walk with encoding/json's own decoder.
func FuzzAuthZENMemberNames(f *testing.F) {
	for _, s := range []string{
		`{"subject":{"type":"user","id":"bob","ID":"alice"},"action":{"name":"GET"},"resource":{"type":"http_path","id":"/x"}}`,
		`{"subject":{"type":"user","id":"bob"},"action":{"name":"GET"},"resource":{"type":"http_path","id":"/x"},"context":{"a":[{"b":1,"B":2}]}}`,
		`{"evaluations":[{"subject":{"type":"user","\u0069d":"a","id":"b"}}]}`,
		`{"evaluations":[],"options":{"evaluations_semantic":"execute_all"}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		_, e1 := ParseEvaluation(body)
		_, e2 := ParseEvaluations(body)
		if e1 != nil && e2 != nil {
			return
		}
		if a, b, ok := foldedPair(body); ok {
			t.Fatalf("accepted a body naming %q and %q in one object: %s", a, b, body)
		}
	})
}

// foldedPair finds two member names of one object that strings.EqualFold
// treats as equal.
func foldedPair(body []byte) (string, string, bool) {
	dec := json.NewDecoder(bytes.NewReader(body))
	type frame struct {
		object bool
		names  []string
		key    bool // the next token is a member name
	}
	var stack []*frame
	for {
		tok, err := dec.Token()
		if err != nil {
			return "", "", false
		}
		var top *frame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		if top != nil && top.object && top.key {
			if name, ok := tok.(string); ok {
				for _, n := range top.names {
					if strings.EqualFold(n, name) {
						return n, name, true
					}
				}
				top.names = append(top.names, name)
				top.key = false
				continue
			}
		}
		switch tok {
		case json.Delim('{'):
			stack = append(stack, &frame{object: true, key: true})
			continue
		case json.Delim('['):
			stack = append(stack, &frame{})
			continue
		case json.Delim('}'), json.Delim(']'):
			stack = stack[:len(stack)-1]
		}
		if len(stack) > 0 && stack[len(stack)-1].object {
			stack[len(stack)-1].key = true
		}
	}
}
