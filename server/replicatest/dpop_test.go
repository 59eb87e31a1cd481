package replicatest_test

import (
	"context"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"

	"github.com/scopegate/scopegate/decision/decisiontest"
)

// decideDPoP asks the replica's ext_authz whether tok, presented with
// proof, may GET https://api.test/api/items/1.
func (r *replica) decideDPoP(tok, proof string) (allow bool, code string) {
	r.c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	resp, err := r.check.Check(ctx, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: "GET", Path: "/api/items/1", Host: "api.test", Scheme: "https",
			Headers: map[string]string{":method": "GET", ":path": "/api/items/1", ":authority": "api.test", ":scheme": "https",
				"authorization": "DPoP " + tok, "dpop": proof},
		}},
	}})
	if err != nil {
		r.c.t.Fatalf("%s: Check: %v\n%s", r.name, err, r.logTail())
	}
	if resp.GetStatus().GetCode() == int32(codes.OK) {
		return true, "ok"
	}
	return false, resp.GetStatus().GetMessage()
}

// Two processes share PostgreSQL: a DPoP proof one accepted is refused as
// replayed by the other (the replay cache is shared through the store),
// and a fresh proof is accepted by either.
func TestReplicasShareDPoPReplay(t *testing.T) {
	dsn := pgDSN(t)
	c := newCluster(t)
	a := c.replica("replica-a", dsn)
	b := c.replica("replica-b", dsn)

	prover, err := decisiontest.NewProver(decisiontest.KindEC)
	must(t, err)
	claims := decisiontest.StandardClaims(issuer, audience, "alice", "web-app", "items:read", time.Hour, time.Now())
	claims["cnf"] = map[string]any{"jkt": prover.JKT}
	tok, err := c.signer.Mint(claims, nil)
	must(t, err)
	proof := func() string {
		p, err := prover.Proof("GET", "https://api.test/api/items/1", tok, time.Now())
		must(t, err)
		return p
	}

	p := proof()
	if allow, code := a.decideDPoP(tok, p); !allow {
		t.Fatalf("A denies a fresh proof: %s\n%s", code, a.logTail())
	}
	if allow, code := b.decideDPoP(tok, p); allow || code != "dpop_proof_replayed" {
		t.Fatalf("B, the proof A accepted: %v %s; want dpop_proof_replayed", allow, code)
	}
	if allow, code := b.decideDPoP(tok, proof()); !allow {
		t.Fatalf("B denies a fresh proof: %s", code)
	}
}
