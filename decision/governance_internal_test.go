package decision

import (
	"slices"
	"strings"
	"testing"
	"time"
)

// compileProblems compiles text and returns every problem, warnings
// included (Compile drops the warnings of a policy that compiles).
func compileProblems(t *testing.T, text string) (*Policy, []Problem) {
	t.Helper()
	pf, li, probs := parsePolicyFile([]byte(text), "p.yaml")
	if pf == nil {
		t.Fatalf("parse: %v", probs)
	}
	c := &compiler{file: "p.yaml", li: li, probs: probs}
	pol := c.compile(pf, ".", false)
	return pol, c.probs
}

const govInternalBase = `
issuers:
  - issuer: https://id.example.com/
    audiences: [api]
    jwks_file: keys.json
    algorithms: [RS256]
routes:
  - name: read
    match: {methods: [GET], path: "/orders/{id}"}
    require: {all_of: [orders:read]}
`

func TestGovernanceWarnings(t *testing.T) {
	cases := map[string]struct {
		policy string
		want   []string
	}{
		"undocumented scope": {policy: "scopes:\n  - {name: orders:read}\n", want: []string{"has no description", "has no owner"}},
		"deprecated without replacement or sunset": {policy: "scopes:\n  - {name: orders:read, description: d, owner: o}\n  - {name: x, description: d, owner: o, status: deprecated}\n",
			want: []string{"names no replacement", "has no sunset date"}},
		"implies a retired scope": {policy: "scopes:\n  - {name: orders:read, description: d, owner: o, implies: [x]}\n  - {name: x, description: d, owner: o, status: retired}\n",
			want: []string{`implies retired scope "x"`}},
		"segment without owner": {policy: "scopes:\n  - {name: orders:read, description: d, owner: o}\nsegments:\n  - {name: a, scopes: [orders:read]}\n",
			want: []string{`segment "a" has no owner`}},
		"implicit segment": {policy: "scopes:\n  - {name: orders:read, description: d, owner: o, segment: b}\nsegments:\n  - {name: a, owner: o}\n",
			want: []string{`segment "b" is not declared under segments`}},
		"grant without approval": {policy: "scopes:\n  - {name: orders:read, description: d, owner: o}\nclients:\n  - {client_id: web, grants: [{scope: orders:read}]}\n",
			want: []string{"has no approved_by or justification"}},
		"grant of a retired scope": {policy: "scopes:\n  - {name: orders:read, description: d, owner: o}\n  - {name: x, description: d, owner: o, status: retired}\nclients:\n  - {client_id: web, grants: [{scope: x, approved_by: a, justification: j}]}\n",
			want: []string{`granted retired scope "x"`}},
		"useless cross_segment": {policy: strings.Replace(govInternalBase, "require: {all_of: [orders:read]}", "require: {all_of: [orders:read]}\n    cross_segment: why", 1) + "scopes:\n  - {name: orders:read, description: d, owner: o}\n",
			want: []string{"cross_segment has no effect"}},
		"cross_segment without segments": {policy: strings.Replace(govInternalBase, "require: {all_of: [orders:read]}", "require: {all_of: [orders:read]}\n    cross_segment: why", 1),
			want: []string{"declares no segments"}},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			text := tc.policy
			if !strings.Contains(text, "issuers:") {
				text = govInternalBase + text
			}
			_, probs := compileProblems(t, text)
			var msgs []string
			for _, p := range probs {
				if !p.Warning {
					t.Errorf("unexpected error: %s", p)
				}
				if p.Line == 0 {
					t.Errorf("warning without a line: %s", p)
				}
				msgs = append(msgs, p.String())
			}
			all := strings.Join(msgs, "\n")
			for _, w := range tc.want {
				if !strings.Contains(all, w) {
					t.Errorf("no warning mentions %q:\n%s", w, all)
				}
			}
		})
	}
}

func TestExpandImplied(t *testing.T) {
	pol, probs := compileProblems(t, govInternalBase+`
scopes:
  - {name: orders:read, description: d, owner: o}
  - {name: orders:write, description: d, owner: o, implies: [orders:read]}
  - {name: orders:admin, description: d, owner: o, implies: [orders:write, old]}
  - {name: old, description: d, owner: o, status: retired, implies: [other]}
  - {name: other, description: d, owner: o}
`)
	for _, p := range probs {
		if !p.Warning {
			t.Fatal(p)
		}
	}
	bitsOf := func(names ...string) []uint64 {
		b := make([]uint64, (len(pol.scopeNames)+63)/64)
		for _, n := range names {
			setIndex(b, pol.scopeIndex[n])
		}
		return b
	}
	cases := map[string]struct{ in, want []string }{
		"nothing implied":      {in: []string{"orders:read"}, want: []string{"orders:read"}},
		"direct":               {in: []string{"orders:write"}, want: []string{"orders:read", "orders:write"}},
		"transitive":           {in: []string{"orders:admin"}, want: []string{"orders:admin", "orders:read", "orders:write", "other"}},
		"retired grants none":  {in: []string{"old"}, want: nil},
		"retired and implying": {in: []string{"old", "orders:write"}, want: []string{"orders:read", "orders:write"}},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			b := bitsOf(tc.in...)
			pol.expandImplied(b)
			var got []string
			for i, n := range pol.scopeNames {
				if hasIndex(b, i) {
					got = append(got, n)
				}
			}
			slices.Sort(got)
			if !slices.Equal(got, tc.want) {
				t.Fatalf("expanded %v = %v, want %v", tc.in, got, tc.want)
			}
		})
	}
}

func TestGrantPhases(t *testing.T) {
	pol, probs := compileProblems(t, govInternalBase+`
scopes:
  - {name: orders:read, description: d, owner: o}
  - {name: a, description: d, owner: o}
  - {name: b, description: d, owner: o, implies: [orders:read]}
clients:
  - client_id: web
    grants:
      - {scope: a, approved_by: x, justification: j, expires_at: 2026-03-01}
      - {scope: b, approved_by: x, justification: j, expires_at: "2026-02-01T12:00:00Z"}
      - {scope: a, approved_by: x, justification: j, expires_at: 2026-03-01}
      - {scope: orders:read, approved_by: x, justification: j}
`)
	for _, p := range probs {
		if !p.Warning {
			t.Fatal(p)
		}
	}
	c := pol.gov.clients["web"]
	if len(c.phases) != 3 {
		t.Fatalf("phases = %d, want 3 (two distinct expiries)", len(c.phases))
	}
	has := func(at time.Time, s string) bool { return hasIndex(c.active(at.UnixNano()), pol.scopeIndex[s]) }
	steps := []struct {
		at   time.Time
		want map[string]bool
	}{
		{time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), map[string]bool{"a": true, "b": true, "orders:read": true}},
		{time.Date(2026, 2, 1, 11, 59, 59, 0, time.UTC), map[string]bool{"a": true, "b": true, "orders:read": true}},
		{time.Date(2026, 2, 1, 12, 0, 0, 0, time.UTC), map[string]bool{"a": true, "b": false, "orders:read": true}},
		{time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC), map[string]bool{"a": false, "b": false, "orders:read": true}},
		{time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC), map[string]bool{"a": false, "b": false, "orders:read": true}},
	}
	for _, st := range steps {
		for s, want := range st.want {
			if got := has(st.at, s); got != want {
				t.Errorf("at %s: %s granted = %v, want %v", st.at.Format(time.RFC3339), s, got, want)
			}
		}
	}
}
