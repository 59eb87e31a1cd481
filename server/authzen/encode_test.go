package authzen

import (
	"encoding/json"
	"testing"
)

var awkward = "a\"b\\c<d>e&f\x00\x1f\b\f\n\r\t\x7f é€\u2028\u2029\xff\xc3(😀"

// TestAppendJSON checks the append encoders against encoding/json.
func TestAppendJSON(t *testing.T) {
	responses := map[string]Response{
		"bare allow": {Decision: true},
		"bare deny":  {},
		"allow": {Decision: true, Context: &Context{ID: "ok", Reason: "ok", HTTPStatus: 200, Route: "items-read",
			ScopesUsed: []string{"items:read", "a"}, PolicyVersion: "v1"}},
		"deny": {Context: &Context{ID: "insufficient_scope", Reason: "insufficient_scope", HTTPStatus: 403,
			ReasonAdmin: map[string]string{"en": awkward}, ReasonUser: map[string]string{"en": "x", "de": "y", "fr": awkward},
			WWWAuthenticate: `Bearer realm="scopegate", error="insufficient_scope"`, ScopesMissing: []string{awkward}}},
		"internal": {Context: &Context{ID: "internal", Reason: "internal", HTTPStatus: 500, ReasonAdmin: map[string]string{},
			Error: &ErrorBody{Status: 500, Message: awkward}}},
		"invalid": Invalid(&Error{Field: "evaluations[3].action.name", Message: awkward}),
	}
	all := EvaluationsResponse{}
	for name, r := range responses {
		check(t, name, r.AppendJSON(nil), &r)
		all.Evaluations = append(all.Evaluations, r)
	}
	check(t, "evaluations", all.AppendJSON(nil), &all)
	check(t, "no evaluations", (&EvaluationsResponse{}).AppendJSON(nil), &EvaluationsResponse{})
	check(t, "empty evaluations", (&EvaluationsResponse{Evaluations: []Response{}}).AppendJSON(nil), &EvaluationsResponse{Evaluations: []Response{}})
	for name, e := range map[string]ErrorBody{
		"error":   {Status: 400, Error: "request_invalid", Field: "subject.type", Message: awkward},
		"minimal": {},
	} {
		check(t, name, e.AppendJSON([]byte("prefix")), &e, "prefix")
	}
}

func check(t *testing.T, name string, got []byte, v any, prefix ...string) {
	t.Helper()
	want, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if len(prefix) > 0 {
		want = append([]byte(prefix[0]), want...)
	}
	if string(got) != string(want) {
		t.Errorf("%s:\n got %s\nwant %s", name, got, want)
	}
}

// FuzzAppendString: any string is encoded as encoding/json encodes it.
func FuzzAppendString(f *testing.F) {
	f.Add(awkward)
	f.Add("plain")
	f.Fuzz(func(t *testing.T, s string) {
		want, _ := json.Marshal(s)
		if got := appendString(nil, s); string(got) != string(want) {
			t.Fatalf("%q:\n got %s\nwant %s", s, got, want)
		}
	})
}
