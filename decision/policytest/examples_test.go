package policytest

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/scopegate/scopegate/decision/decisiontest"
)

// TestExamples runs the tests that ship beside every example policy, with
// full coverage required, so that the examples cannot rot.
func TestExamples(t *testing.T) {
	root, err := decisiontest.FindModuleRoot("")
	if err != nil {
		t.Fatal(err)
	}
	policies, err := filepath.Glob(filepath.Join(root, "examples", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	ran := 0
	for _, pol := range policies {
		if strings.HasSuffix(pol, "_test.yaml") {
			continue
		}
		files, err := Discover(pol)
		if err != nil {
			t.Fatal(err)
		}
		if len(files) == 0 {
			continue
		}
		ran++
		t.Run(filepath.Base(pol), func(t *testing.T) {
			r, err := Load(pol, Options{})
			if err != nil {
				t.Fatalf("load: %v", err)
			}
			defer r.Close()
			var tests []*File
			for _, p := range files {
				f, err := ReadFile(p)
				if err != nil {
					t.Fatalf("%v", err)
				}
				tests = append(tests, f)
			}
			rep := r.Run(context.Background(), tests)
			var out bytes.Buffer
			rep.WriteText(&out, false)
			if rep.Failed > 0 || rep.Passed == 0 || !rep.Coverage.Full() {
				t.Errorf("example tests of %s:\n%s", filepath.Base(pol), out.String())
			}
			if testing.Verbose() {
				os.Stdout.Write(out.Bytes())
			}
		})
	}
	if ran == 0 {
		t.Fatal("no example policy has tests")
	}
}
