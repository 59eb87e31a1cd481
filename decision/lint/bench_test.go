package lint

import (
	"os"
	"testing"
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
