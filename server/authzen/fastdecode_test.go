package authzen

import (
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// fastSeeds are bodies of both kinds: ones the fast decoder must take
// (fast: true) and ones it must leave to the slow path.
var fastSeeds = []struct {
	name, body string
	fast       bool
}{
	{"harness body", `{"subject":{"type":"user","id":"","properties":{"token":"eyJh.eyJi.c2ln","ip_address":"10.1.2.3"}},"action":{"name":"GET"},"resource":{"type":"http_path","id":"/svc1/items/7","properties":{"host":"api.example.com"}}}`, true},
	{"every member", `{"subject":{"type":"user","id":"alice","properties":{"token":"T","ip_address":"::1","client_certificate":":AA==:"}},"action":{"name":"get","properties":{"method":"POST"}},"resource":{"type":"x","id":"1","properties":{"path":"/a?b=1","host":"h"}},"context":{"time":"now","n":[1,2.5e3,{"x":null}]}}`, true},
	{"nulls", `{"subject":{"type":null,"id":"a","properties":{"token":null,"ip_address":null}},"action":{"name":"GET","properties":null},"resource":{"type":"http_path","id":"/x","properties":{"path":null}},"context":null}`, true},
	{"empty token", `{"subject":{"type":"u","properties":{"token":""}},"action":{"name":"GET"},"resource":{"type":"path","id":"/"}}`, true},
	{"escapes", `{"subject":{"type":"u\u0073er","id":"a\"b\\c\/\n\u00e9\u20ac"},"action":{"name":"GET"},"resource":{"type":"http_path","id":"/\u0078"}}`, true},
	{"escaped member name", `{"subject":{"\u0074ype":"user"},"action":{"name":"GET"},"resource":{"type":"http_path","id":"/x"}}`, true},
	{"unknown members", `{"subject":{"type":"u","extra":{"deep":[{"a":1},{"A":2}]}},"action":{"name":"GET"},"resource":{"type":"http_path","id":"/x"},"other":true}`, true},
	{"empty object", `{}`, true},
	{"whitespace", " \t\r\n{ \"subject\" : { \"type\" : \"u\" } } \n", true},
	{"batch", `{"subject":{"type":"user","id":"alice"},"action":{"name":"GET"},"context":{"a":1},"options":{"evaluations_semantic":"deny_on_first_deny"},"evaluations":[{"resource":{"type":"http_path","id":"/a"}},null,{},{"action":{"name":"POST"},"context":null,"subject":{"type":"client","id":"app"}}]}`, true},
	{"batch null evaluations", `{"evaluations":null,"options":null}`, true},
	{"batch empty", `{"evaluations":[],"options":{"evaluations_semantic":null}}`, true},

	{"duplicate member", `{"subject":{"type":"a","type":"b"}}`, false},
	{"case-folded duplicate", `{"subject":{"id":"bob","ID":"alice"}}`, false},
	{"kelvin duplicate", `{"context":{"k":1,"\u212a":2}}`, false},
	{"known member in another case", `{"Subject":{"type":"u"}}`, false},
	{"duplicate deep in context", `{"context":{"a":[{"x":1,"x":2}]}}`, false},
	{"duplicate evaluations", `{"evaluations":[{}],"evaluations":[{},{}]}`, false},
	{"type error", `{"subject":{"type":1}}`, false},
	{"object for a string", `{"action":{"name":{}}}`, false},
	{"string for an object", `{"action":"GET"}`, false},
	{"evaluations not an array", `{"evaluations":{}}`, false},
	{"evaluations item not an object", `{"evaluations":[1]}`, false},
	{"surrogate pair", `{"subject":{"type":"\ud83d\ude00"}}`, false},
	{"lone surrogate", `{"subject":{"type":"\udead"}}`, false},
	{"invalid UTF-8", "{\"subject\":{\"type\":\"\xff\"}}", false},
	{"trailing data", `{} {}`, false},
	{"trailing comma", `{"subject":{"type":"u",}}`, false},
	{"unterminated", `{"subject":`, false},
	{"control character", "{\"subject\":{\"type\":\"a\x01\"}}", false},
	{"bad escape", `{"subject":{"type":"\x"}}`, false},
	{"leading zero", `{"context":{"n":01}}`, false},
	{"many members", `{"context":{` + manyMembers(smallObject+1, "") + `}}`, false},
	{"deep", `{"context":` + strings.Repeat("[", 400) + strings.Repeat("]", 400) + `}`, false},
}

// TestFastDecode checks which bodies the fast decoder takes, and that
// what it makes of them is what the slow path makes.
func TestFastDecode(t *testing.T) {
	for _, tc := range fastSeeds {
		t.Run(tc.name, func(t *testing.T) {
			for _, batch := range []bool{false, true} {
				_, fast := fastEvaluations([]byte(tc.body), batch)
				if fast != tc.fast && (batch || !strings.Contains(tc.name, "evaluations")) {
					t.Errorf("batch=%v: fast path taken = %v, want %v", batch, fast, tc.fast)
				}
				compareDecoders(t, []byte(tc.body), batch)
			}
		})
	}
}

// FuzzFastDecode: for any body the fast decoder takes, the slow path
// accepts it too and decodes the same evaluations.
func FuzzFastDecode(f *testing.F) {
	for _, tc := range fastSeeds {
		f.Add([]byte(tc.body))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		compareDecoders(t, body, false)
		compareDecoders(t, body, true)
	})
}

func compareDecoders(t *testing.T, body []byte, batch bool) {
	t.Helper()
	if checkObject(body) != nil {
		return
	}
	fast, ok := fastEvaluations(body, batch)
	if !ok {
		return
	}
	var slow Evaluations
	var err *Error
	if batch {
		err = decodeSlow(body, &slow)
	} else {
		err = decodeSlow(body, &slow.Evaluation)
	}
	if err != nil {
		t.Fatalf("batch=%v: the fast decoder took %q, the slow path refused it: %v", batch, body, err)
	}
	if !sameContext(fast.Context, slow.Context) {
		t.Fatalf("batch=%v: context %q, slow path %q", batch, fast.Context, slow.Context)
	}
	if len(fast.Evaluations) != len(slow.Evaluations) || (fast.Evaluations == nil) != (slow.Evaluations == nil) {
		t.Fatalf("batch=%v: %d evaluations, slow path %d", batch, len(fast.Evaluations), len(slow.Evaluations))
	}
	for i := range fast.Evaluations {
		if !sameContext(fast.Evaluations[i].Context, slow.Evaluations[i].Context) {
			t.Fatalf("item %d context %q, slow path %q", i, fast.Evaluations[i].Context, slow.Evaluations[i].Context)
		}
		fast.Evaluations[i].Context, slow.Evaluations[i].Context = nil, nil
	}
	fast.Context, slow.Context = nil, nil
	if !reflect.DeepEqual(fast, &slow) {
		f, _ := json.Marshal(fast)
		s, _ := json.Marshal(&slow)
		t.Fatalf("batch=%v: body %q\nfast %s\nslow %s", batch, body, f, s)
	}
}

// sameContext compares two contexts as JSON values: the fast decoder
// keeps a context compact, the slow path as sent.
func sameContext(a, b json.RawMessage) bool {
	if (a == nil) != (b == nil) {
		return false
	}
	if a == nil {
		return true
	}
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	return reflect.DeepEqual(x, y)
}

// TestFastSchema checks the fast decoder's member lists against the
// structs' json tags, as the slow path reads them.
func TestFastSchema(t *testing.T) {
	names := func(s *memberSchema) []string {
		var out []string
		for n := range s.fields {
			out = append(out, n)
		}
		slices.Sort(out)
		return out
	}
	sorted := func(l []string) []string { return slices.Sorted(slices.Values(l)) }
	ev, evs := evaluationSchema, evaluationsSchema
	for _, c := range []struct {
		name   string
		schema *memberSchema
		list   []string
	}{
		{"evaluation", ev, evaluationMembers},
		{"evaluations", evs, evaluationsMembers},
		{"item", evs.fields["evaluations"].elem, evaluationMembers},
		{"subject", ev.fields["subject"], subjectMembers},
		{"subject.properties", ev.fields["subject"].fields["properties"], subjectProps},
		{"action", ev.fields["action"], actionMembers},
		{"action.properties", ev.fields["action"].fields["properties"], actionProps},
		{"resource", ev.fields["resource"], resourceMembers},
		{"resource.properties", ev.fields["resource"].fields["properties"], resourceProps},
		{"options", evs.fields["options"], optionsMembers},
	} {
		if got, want := sorted(c.list), names(c.schema); !slices.Equal(got, want) {
			t.Errorf("%s: the fast decoder reads %v, the structs hold %v", c.name, got, want)
		}
	}
}
