package policytest

import (
	"context"
	"testing"
)

// BenchmarkDecideCase measures one test case: minting and signing its
// token, then deciding it (the signature is verified every time, since
// every case mints a fresh token).
func BenchmarkDecideCase(b *testing.B) {
	r, err := Load("testdata/small.yaml", Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	c := &Case{Name: "read", Request: RequestSpec{Path: "/items/1"}, Token: &TokenSpec{Sub: "a", Scope: StringList{"items:read"}}}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		d, err := r.Decide(ctx, c, nil)
		if err != nil || !d.Allow {
			b.Fatalf("%v %v", err, d.Code)
		}
	}
}
