package server

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/scopegate/scopegate/server/authzen"
)

// azResult is the part of an evaluation response the tests compare.
type azResult struct {
	Decision bool
	Reason   string
	Field    string // context.error.field
}

func azResults(t *testing.T, rs []authzen.Response) []azResult {
	t.Helper()
	out := make([]azResult, len(rs))
	for i, r := range rs {
		if r.Context == nil {
			t.Fatalf("evaluation %d has no context", i)
		}
		out[i] = azResult{Decision: r.Decision, Reason: r.Context.Reason}
		if r.Context.Error != nil {
			out[i].Field = r.Context.Error.Field
		}
	}
	return out
}

func TestAuthZENEvaluation(t *testing.T) {
	e := startHTTPE2E(t, nil)
	now := time.Now()
	good := mint(t, e.signer, "alice", "app", "items:read", now, time.Hour)
	readOnly := mint(t, e.signer, "bob", "app", "profile", now, time.Hour)
	ev := func(subject, action, resource string) []byte {
		return []byte(`{"subject":` + subject + `,"action":` + action + `,"resource":` + resource + `}`)
	}
	alice := `{"type":"user","id":"alice","properties":{"token":"` + good + `"}}`
	item1 := `{"type":"http_path","id":"/api/items/1"}`
	tests := map[string]struct {
		body   []byte
		hdr    []string
		status int
		want   azResult // for a 200
		field  string   // error field for a 4xx
	}{
		"allow":           {body: ev(alice, `{"name":"GET"}`, item1), status: 200, want: azResult{true, "ok", ""}},
		"lower-case verb": {body: ev(alice, `{"name":"get"}`, item1), status: 200, want: azResult{true, "ok", ""}},
		"path property": {body: ev(alice, `{"name":"GET"}`, `{"type":"item","id":"1","properties":{"path":"/api/items/1"}}`),
			status: 200, want: azResult{true, "ok", ""}},
		"deny: write": {body: ev(alice, `{"name":"DELETE"}`, item1), status: 200, want: azResult{false, "insufficient_scope", ""}},
		"deny: insufficient scope": {body: ev(`{"type":"user","id":"bob","properties":{"token":"`+readOnly+`"}}`, `{"name":"GET"}`, item1),
			status: 200, want: azResult{false, "insufficient_scope", ""}},
		"token from the authorization header": {body: ev(`{"type":"user","id":"alice"}`, `{"name":"GET"}`, item1), hdr: []string{"Authorization", "Bearer " + good},
			status: 200, want: azResult{true, "ok", ""}},
		"no token":          {body: ev(`{"type":"user","id":"alice"}`, `{"name":"GET"}`, item1), status: 200, want: azResult{false, "token_missing", ""}},
		"subject mismatch":  {body: ev(`{"type":"user","id":"mallory","properties":{"token":"`+good+`"}}`, `{"name":"GET"}`, item1), status: 200, want: azResult{false, "request_invalid", ""}},
		"subject is client": {body: ev(`{"type":"client","id":"app","properties":{"token":"`+good+`"}}`, `{"name":"GET"}`, item1), status: 200, want: azResult{true, "ok", ""}},
		"public route":      {body: ev(`{"type":"user","id":"anyone"}`, `{"name":"GET"}`, `{"type":"http_path","id":"/healthz"}`), status: 200, want: azResult{true, "ok", ""}},
		"path tricks":       {body: ev(alice, `{"name":"GET"}`, `{"type":"http_path","id":"/api/items/a%2F..%2Fb"}`), status: 200, want: azResult{false, "path_invalid", ""}},
		"malformed json":    {body: []byte(`{"subject":`), status: 400},
		"wrong type":        {body: ev(`{"type":7,"id":"a"}`, `{"name":"GET"}`, item1), status: 400, field: "subject.type"},
		"missing action":    {body: []byte(`{"subject":` + alice + `,"resource":` + item1 + `}`), status: 400, field: "action"},
		"not a method":      {body: ev(alice, `{"name":"can_read"}`, item1), status: 400, field: "action.name"},
		"no path":           {body: ev(alice, `{"name":"GET"}`, `{"type":"order","id":"1"}`), status: 400, field: "resource"},
		"too large":         {body: bytes.Repeat([]byte(" "), MaxAuthZENBodyBytes+1), status: 413},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			resp := e.do(t, "POST", authzen.EvaluationPath, tc.body, append(tc.hdr, "Content-Type", "application/json", "X-Request-Id", "rid-9")...)
			b := readBody(t, resp)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, b)
			}
			if resp.Header.Get("Content-Type") != "application/json" || resp.Header.Get("X-Request-Id") != "rid-9" {
				t.Errorf("headers %v", resp.Header)
			}
			if strings.Contains(string(b), good) {
				t.Fatal("the response echoes the token")
			}
			if tc.status != 200 {
				var eb authzen.ErrorBody
				if err := json.Unmarshal(b, &eb); err != nil || eb.Status != tc.status || eb.Field != tc.field || eb.Message == "" {
					t.Errorf("error body %s (%v), want field %q", b, err, tc.field)
				}
				return
			}
			var r authzen.Response
			if err := json.Unmarshal(b, &r); err != nil {
				t.Fatal(err)
			}
			if got := azResults(t, []authzen.Response{r})[0]; got != tc.want {
				t.Errorf("result %+v, want %+v: %s", got, tc.want, b)
			}
		})
	}
}

func TestAuthZENEvaluations(t *testing.T) {
	e := startHTTPE2E(t, nil)
	good := mint(t, e.signer, "alice", "app", "items:read", time.Now(), time.Hour)
	defaults := `"subject":{"type":"user","id":"alice","properties":{"token":"` + good + `"}},"action":{"name":"GET"},`
	items := `"evaluations":[
		{"resource":{"type":"http_path","id":"/api/items/1"}},
		{"action":{"name":"DELETE"},"resource":{"type":"http_path","id":"/api/items/1"}},
		{"resource":{"type":"http_path","id":"/api/items/2"}},
		{"action":{"name":"can_read"},"resource":{"type":"http_path","id":"/api/items/3"}}
	]`
	permit, deny, bad := azResult{true, "ok", ""}, azResult{false, "insufficient_scope", ""}, azResult{false, "request_invalid", "evaluations[3].action.name"}
	tests := map[string]struct {
		body   string
		status int
		want   []azResult
		single *azResult // a response without evaluations
		field  string
	}{
		"execute_all by default": {body: `{` + defaults + items + `}`, status: 200, want: []azResult{permit, deny, permit, bad}},
		"execute_all": {body: `{` + defaults + items + `,"options":{"evaluations_semantic":"execute_all"}}`, status: 200,
			want: []azResult{permit, deny, permit, bad}},
		"deny_on_first_deny": {body: `{` + defaults + items + `,"options":{"evaluations_semantic":"deny_on_first_deny"}}`, status: 200,
			want: []azResult{permit, deny}},
		"permit_on_first_permit": {body: `{` + defaults + items + `,"options":{"evaluations_semantic":"permit_on_first_permit"}}`, status: 200,
			want: []azResult{permit}},
		"permit_on_first_permit after denies": {body: `{` + defaults + `"evaluations":[{"action":{"name":"DELETE"},"resource":{"type":"http_path","id":"/api/items/1"}},{"resource":{"type":"http_path","id":"/api/items/1"}},{"resource":{"type":"http_path","id":"/nope"}}],"options":{"evaluations_semantic":"permit_on_first_permit"}}`,
			status: 200, want: []azResult{deny, permit}},
		"deny_on_first_deny: an invalid item is a deny": {body: `{` + defaults + `"evaluations":[{"action":{"name":"x y"},"resource":{"type":"http_path","id":"/api/items/1"}},{"resource":{"type":"http_path","id":"/api/items/1"}}],"options":{"evaluations_semantic":"deny_on_first_deny"}}`,
			status: 200, want: []azResult{{false, "request_invalid", "evaluations[0].action.name"}}},
		"item without a subject default": {body: `{"evaluations":[{"action":{"name":"GET"},"resource":{"type":"http_path","id":"/healthz"}}]}`, status: 200,
			want: []azResult{{false, "request_invalid", "evaluations[0].subject"}}},
		"no evaluations: a single evaluation":    {body: `{` + defaults + `"resource":{"type":"http_path","id":"/api/items/1"}}`, status: 200, single: &permit},
		"empty evaluations: a single evaluation": {body: `{` + defaults + `"resource":{"type":"http_path","id":"/api/items/1"},"evaluations":[]}`, status: 200, single: &permit},
		"unknown semantic":                       {body: `{` + defaults + items + `,"options":{"evaluations_semantic":"some"}}`, status: 400, field: "options.evaluations_semantic"},
		"too many":                               {body: `{` + defaults + `"evaluations":[` + strings.Repeat(`{},`, MaxAuthZENEvaluations) + `{}]}`, status: 400, field: "evaluations"},
		"evaluations object":                     {body: `{"evaluations":{}}`, status: 400, field: "evaluations"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			resp := e.do(t, "POST", authzen.EvaluationsPath, []byte(tc.body), "Content-Type", "application/json")
			b := readBody(t, resp)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, b)
			}
			if tc.status != 200 {
				var eb authzen.ErrorBody
				if err := json.Unmarshal(b, &eb); err != nil || eb.Field != tc.field {
					t.Errorf("error body %s, want field %q", b, tc.field)
				}
				return
			}
			if tc.single != nil {
				var r authzen.Response
				if err := json.Unmarshal(b, &r); err != nil || bytes.Contains(b, []byte(`"evaluations"`)) {
					t.Fatalf("single response %s: %v", b, err)
				}
				if got := azResults(t, []authzen.Response{r})[0]; got != *tc.single {
					t.Errorf("result %+v, want %+v", got, *tc.single)
				}
				return
			}
			var r authzen.EvaluationsResponse
			if err := json.Unmarshal(b, &r); err != nil {
				t.Fatal(err)
			}
			got := azResults(t, r.Evaluations)
			if len(got) != len(tc.want) {
				t.Fatalf("%d results %+v, want %+v", len(got), got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Errorf("result %d: %+v, want %+v", i, got[i], tc.want[i])
				}
			}
		})
	}
}

func TestAuthZENMetadataEndpoint(t *testing.T) {
	e := startHTTPE2E(t, nil)
	resp := e.do(t, "GET", authzen.ConfigurationURI, nil)
	b := readBody(t, resp)
	var m authzen.Metadata
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	base := e.base
	want := authzen.Metadata{PolicyDecisionPoint: base, AccessEvaluationEndpoint: base + "/access/v1/evaluation", AccessEvaluationsEndpoint: base + "/access/v1/evaluations"}
	if m != want {
		t.Errorf("metadata %+v, want %+v", m, want)
	}
}

// TestAuthZENWithoutJSONContentType: a POST to an AuthZEN path without a
// JSON content type is answered 415 with the fix, on both paths and with
// every wrong spelling, not taken for a forward-auth check (403 no_route).
func TestAuthZENWithoutJSONContentType(t *testing.T) {
	e := startHTTPE2E(t, nil)
	body := []byte(`{"subject":{"type":"user","id":"alice"},"action":{"name":"GET"},"resource":{"type":"http_path","id":"/healthz"}}`)
	for _, path := range []string{authzen.EvaluationPath, authzen.EvaluationsPath} {
		for name, hdr := range map[string][]string{
			"none":       nil,
			"form":       {"Content-Type", "application/x-www-form-urlencoded"},
			"text":       {"Content-Type", "text/plain"},
			"unparsable": {"Content-Type", "application/json; ="},
		} {
			t.Run(path+"/"+name, func(t *testing.T) {
				resp := e.do(t, "POST", path, body, hdr...)
				b := readBody(t, resp)
				if resp.StatusCode != http.StatusUnsupportedMediaType {
					t.Fatalf("status %d, want 415: %s", resp.StatusCode, b)
				}
				var eb authzen.ErrorBody
				if err := json.Unmarshal(b, &eb); err != nil || !strings.Contains(eb.Message, "Content-Type: application/json") {
					t.Errorf("body %s: want the fix", b)
				}
			})
		}
	}
	// With the content type (and its parameters) it is evaluated.
	resp := e.do(t, "POST", authzen.EvaluationPath, body, "Content-Type", "application/json; charset=utf-8")
	if b := readBody(t, resp); resp.StatusCode != http.StatusOK {
		t.Errorf("status %d: %s", resp.StatusCode, b)
	}
}

// BenchmarkAuthZEN is the server's own share of an AuthZEN evaluation and
// of a batch of ten, without the network: route the request, read and
// parse the body, decide each evaluation (cached token), and encode the
// answer. The body is the one the bench harness sends.
func BenchmarkAuthZEN(b *testing.B) {
	e := startE2E(b, nil)
	good := mint(b, e.signer, "alice", "app", "items:read", time.Now(), time.Hour)
	item := `{"subject":{"type":"user","id":"","properties":{"token":"` + good + `","ip_address":"203.0.113.9"}},` +
		`"action":{"name":"GET"},"resource":{"type":"http_path","id":"/api/items/1","properties":{"host":"api.example.com"}}}`
	h := e.srv.HTTPHandler()
	for _, bc := range []struct {
		name, path, body string
		want             string
	}{
		{"single", authzen.EvaluationPath, item, `{"decision":true`},
		{"batch10", authzen.EvaluationsPath, `{"evaluations":[` + strings.Repeat(item+",", 9) + item + `]}`, `{"evaluations":[{"decision":true`},
	} {
		b.Run(bc.name, func(b *testing.B) {
			body := []byte(bc.body)
			rd := bytes.NewReader(body)
			r, err := http.NewRequest("POST", "http://127.0.0.1"+bc.path, io.NopCloser(rd))
			if err != nil {
				b.Fatal(err)
			}
			r.RequestURI, r.RemoteAddr = bc.path, "127.0.0.1:40000"
			r.Header.Set("Content-Type", "application/json")
			w := &bodyWriter{discardWriter: discardWriter{h: http.Header{}}}
			serve := func() {
				rd.Reset(body)
				clear(w.h)
				w.body = w.body[:0]
				h.ServeHTTP(w, r)
			}
			serve()
			e.srv.engine.WaitTokenCache()
			serve()
			if w.code != 200 || !bytes.HasPrefix(w.body, []byte(bc.want)) {
				b.Fatalf("status %d, body %s", w.code, w.body)
			}
			b.ReportAllocs()
			for b.Loop() {
				serve()
			}
			if w.code != 200 || !bytes.HasPrefix(w.body, []byte(bc.want)) {
				b.Fatalf("status %d, body %s", w.code, w.body)
			}
		})
	}
}

// bodyWriter is a discardWriter that keeps the body, so a benchmark can
// check the answer it measured.
type bodyWriter struct {
	discardWriter
	body []byte
}

func (w *bodyWriter) Write(b []byte) (int, error) {
	w.body = append(w.body, b...)
	return len(b), nil
}

func (w *bodyWriter) WriteString(s string) (int, error) {
	w.body = append(w.body, s...)
	return len(s), nil
}

// BenchmarkAuthZENFloor is an AuthZEN evaluation, and a batch of ten, over
// loopback HTTP/1.1, client included, against the bench harness's floor: a
// handler that reads the body and answers as many allows.
func BenchmarkAuthZENFloor(b *testing.B) {
	e := startHTTPE2E(b, nil)
	good := mint(b, e.signer, "alice", "app", "items:read", time.Now(), time.Hour)
	item := `{"subject":{"type":"user","id":"","properties":{"token":"` + good + `","ip_address":"203.0.113.9"}},` +
		`"action":{"name":"GET"},"resource":{"type":"http_path","id":"/api/items/1","properties":{"host":"api.example.com"}}}`
	one := []byte(`{"decision":true}`)
	ten := []byte(`{"evaluations":[` + strings.Repeat(`{"decision":true},`, 9) + `{"decision":true}]}`)
	noop := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Path == authzen.EvaluationsPath {
			_, _ = w.Write(ten)
			return
		}
		_, _ = w.Write(one)
	}))
	defer noop.Close()
	for _, bc := range []struct{ name, path, body string }{
		{"single", authzen.EvaluationPath, item},
		{"batch10", authzen.EvaluationsPath, `{"evaluations":[` + strings.Repeat(item+",", 9) + item + `]}`},
	} {
		for _, srv := range []struct{ name, base string }{{"scopegate", e.base}, {"noop", noop.URL}} {
			b.Run(bc.name+"/"+srv.name, func(b *testing.B) {
				body := []byte(bc.body)
				rd := bytes.NewReader(body)
				req, err := http.NewRequest("POST", srv.base+bc.path, rd)
				if err != nil {
					b.Fatal(err)
				}
				req.Header.Set("Content-Type", "application/json")
				req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
				client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
				defer client.CloseIdleConnections()
				b.ReportAllocs()
				for b.Loop() {
					rd.Reset(body)
					req.Body = io.NopCloser(rd)
					resp, err := client.Do(req)
					if err != nil {
						b.Fatal(err)
					}
					buf, err := io.ReadAll(resp.Body)
					resp.Body.Close()
					if err != nil || resp.StatusCode != 200 || !bytes.Contains(buf, []byte(`"decision":true`)) {
						b.Fatalf("status %d, body %s, %v", resp.StatusCode, buf, err)
					}
				}
			})
		}
	}
}
