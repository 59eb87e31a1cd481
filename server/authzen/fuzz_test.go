package authzen_test

import (
	"context"
	"testing"

	"github.com/scopegate/scopegate/decision"
	"github.com/scopegate/scopegate/decision/decisiontest"
	"github.com/scopegate/scopegate/server/authzen"
)

// FuzzAuthZENEvaluation feeds any body to the AuthZEN parsers and, for
// every evaluation they accept, the translation and a decision. No input
// may panic; a refusal names its field; and sending the call's
// Authorization header twice never turns a deny into an allow, nor does
// an allow happen on a non-public route without a token.
func FuzzAuthZENEvaluation(f *testing.F) {
	tf := decisiontest.GetTranslatorFuzz(f)
	for _, s := range []string{
		`{"subject":{"type":"user","id":"a","properties":{"token":"` + tf.Tokens[0] + `"}},"action":{"name":"GET"},"resource":{"type":"http_path","id":"/r/1"}}`,
		`{"subject":{"type":"user","id":"a"},"action":{"name":"get"},"resource":{"type":"x","id":"1","properties":{"path":"/internal/1"}},"context":{}}`,
		`{"subject":{"type":"user","id":"a","properties":{"ip_address":"::ffff:10.0.0.1","token":""}},"action":{"name":"x","properties":{"method":"DELETE"}},"resource":{"type":"path","id":"/r/../healthz"}}`,
		`{"subject":{"type":"user","id":"a"},"action":{"name":"GET"},"resource":{"type":"http_path","id":"/r/1"},"evaluations":[{},{"action":{"name":"POST"}},{"resource":{"type":"path","id":"/healthz"}}],"options":{"evaluations_semantic":"deny_on_first_deny"}}`,
		`{"subject":null,"action":[],"resource":"x","context":1}`,
	} {
		f.Add([]byte(s), uint8(0))
		f.Add([]byte(s), uint8(2))
	}
	f.Fuzz(func(t *testing.T, body []byte, sel uint8) {
		var header []string
		if a := tf.AuthzFor(sel, ""); a != "" {
			header = []string{a}
		}
		var evals []authzen.Evaluation
		if ev, perr := authzen.ParseEvaluation(body); perr == nil {
			evals = append(evals, *ev)
		} else if perr.Message == "" {
			t.Fatalf("refusal without a message: %+v", perr)
		}
		if batch, perr := authzen.ParseEvaluations(body); perr == nil {
			_ = batch.Semantic()
			for i := range batch.Evaluations {
				evals = append(evals, batch.Item(i))
			}
		}
		for _, ev := range evals {
			var r decision.Request
			if aerr := ev.Request("", header, &r); aerr != nil {
				if aerr.Message == "" {
					t.Fatalf("refusal without a message: %+v", aerr)
				}
				continue
			}
			d := tf.Engine.Decide(context.Background(), &r)
			if d.Allow && r.Authorization == "" && (d.Route == nil || !d.Route.Public) {
				t.Fatalf("allowed %s %s on route %v without a token", r.Method, r.Path, d.Route)
			}
			if d.Allow || len(header) == 0 {
				continue
			}
			var r2 decision.Request
			if ev.Request("", append(header, header[0]), &r2) == nil {
				if d2 := tf.Engine.Decide(context.Background(), &r2); d2.Allow {
					t.Fatalf("a second Authorization header turned %s into an allow", d.Code)
				}
			}
		}
	})
}
