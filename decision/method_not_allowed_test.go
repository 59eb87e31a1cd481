package decision_test

import (
	"context"
	"strings"
	"testing"

	"github.com/scopegate/scopegate/decision"
)

// TestMethodNotAllowedNamesMethods: the deny lists the methods of every
// route whose template matches the path, and allocates nothing when one
// template does.
func TestMethodNotAllowedNamesMethods(t *testing.T) {
	src := `issuers:
  - {issuer: https://id.example.com/, audiences: [api], jwks_file: k.json, algorithms: [RS256]}
routes:
  - {name: get, match: {methods: [GET, HEAD], path: "/orders/{id}"}, require: {all_of: [a]}}
  - {name: new, match: {methods: [POST], path: /orders/new}, require: {all_of: [a]}}
  - {name: files, match: {methods: [GET], path: "/files/{rest...}"}, require: {all_of: [a]}}
`
	pol, err := decision.Compile([]byte(src), "p.yaml", decision.CompileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	e, err := decision.NewEngine(pol, decision.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	ctx := context.Background()
	for path, want := range map[string]string{
		"/orders/1":   "the path allows GET, HEAD",
		"/orders/new": "the path allows GET, HEAD, POST",
		"/files/a/b":  "the path allows GET",
	} {
		req := &decision.Request{Method: "DELETE", Path: path}
		d := e.Decide(ctx, req)
		if d.Code != decision.MethodNotAllowed || !strings.HasSuffix(d.Message(), want) {
			t.Errorf("%s: %v %q, want method_not_allowed ending %q", path, d.Code, d.Message(), want)
		}
	}
	req := &decision.Request{Method: "DELETE", Path: "/orders/1"}
	if n := testing.AllocsPerRun(100, func() { e.Decide(ctx, req) }); n != 0 {
		t.Errorf("a method_not_allowed deny allocates %v times", n)
	}
}
