package envoy

import (
	"testing"

	"github.com/scopegate/scopegate/decision"
)

// testPolicy compiles testdata/policy.yaml with an empty static key set:
// the tests here never verify a signature.
func testPolicy(t testing.TB) *decision.Policy {
	t.Helper()
	pol, err := decision.LoadFile("testdata/policy.yaml", decision.CompileOptions{})
	if err != nil {
		t.Fatalf("load test policy: %v", err)
	}
	return pol
}

// route returns the policy's route named name.
func route(t testing.TB, pol *decision.Policy, name string) *decision.Route {
	t.Helper()
	for _, r := range pol.Routes {
		if r.Name == name {
			return r
		}
	}
	t.Fatalf("test policy has no route %q", name)
	return nil
}
