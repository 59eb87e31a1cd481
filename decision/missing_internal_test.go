package decision

import (
	"fmt"
	"strings"
	"testing"
)

// TestMissingMemoIsBounded: a route with many scopes does not remember a
// text per missing set without bound, and a set past the bound still gets
// its own, right, text.
func TestMissingMemoIsBounded(t *testing.T) {
	var names []string
	for i := range 12 {
		names = append(names, fmt.Sprintf("s%d", i))
	}
	src := fmt.Sprintf("routes:\n  - name: many\n    match: {methods: [GET], path: /many}\n    require: {all_of: [%s]}\n"+
		"issuers: [{issuer: https://id.example.com/, audiences: [api], jwks_file: keys.json, algorithms: [RS256]}]\n", strings.Join(names, ", "))
	pol, err := Compile([]byte(src), "p.yaml", CompileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	r := pol.Routes[0]
	for used := range uint64(1<<len(names) - 1) { // every set but "all carried"
		var missing []string
		for i, s := range names {
			if used&(1<<i) == 0 {
				missing = append(missing, s)
			}
		}
		if got, want := r.missing(pol, used).scope, strings.Join(missing, " "); got != want {
			t.Fatalf("used %b: scope %q; want %q", used, got, want)
		}
	}
	if n := len(*r.missingMemo.m.Load()); n > maxMissingMemo {
		t.Errorf("the memo holds %d texts; the bound is %d", n, maxMissingMemo)
	}
}
