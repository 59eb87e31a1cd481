package lint

import (
	"os"
	"testing"

	"github.com/scopegate/scopegate/decision"
)

// BenchmarkLint measures a whole lint of a small policy, shadow analysis
// included.
func BenchmarkLint(b *testing.B) {
	data, err := os.ReadFile("testdata/clean.yaml")
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		res, err := Lint(data, "clean.yaml", Options{Now: lintNow})
		if err != nil || res.Errors() != 0 {
			b.Fatal(err, res.Problems)
		}
	}
}

// BenchmarkCheckOpenAPI measures the check of a small OpenAPI document
// (four operations) against the policy it matches.
func BenchmarkCheckOpenAPI(b *testing.B) {
	data, err := os.ReadFile("testdata/clean.yaml")
	if err != nil {
		b.Fatal(err)
	}
	doc, err := os.ReadFile("testdata/openapi.yaml")
	if err != nil {
		b.Fatal(err)
	}
	pol, err := decision.Compile(data, "clean.yaml", decision.CompileOptions{})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if probs := CheckOpenAPI(pol, doc, "openapi.yaml", OpenAPIOptions{}); len(probs) != 0 {
			b.Fatal(probs)
		}
	}
}
