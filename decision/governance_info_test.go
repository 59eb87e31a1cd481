package decision_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/scopegate/scopegate/decision"
)

const infoPolicy = `issuers:
  - issuer: https://id.test/
    audiences: [api]
    jwks_url: https://id.test/jwks.json
    algorithms: [ES256]
routes:
  - name: read
    match: {methods: [GET], path: "/items/{id}"}
    require: {all_of: [items:read]}
  - name: special
    match: {methods: [GET], path: /items/special}
    require: {all_of: [items:admin]}
  - name: rest
    match: {path: "/items/{id}/{rest...}"}
    require: {all_of: [items:read]}
scopes:
  - {name: items:read, description: r, owner: o, segment: items}
  - {name: items:write, description: w, owner: o, segment: items, implies: [items:read]}
  - {name: items:admin, description: a, owner: o, segment: admin}
  - {name: items:old, description: x, owner: o, segment: items, status: retired, implies: [items:read]}
  - {name: items:nobody}
segments:
  - {name: items, owner: team-items, description: Items}
  - {name: admin, owner: team-admin}
clients:
  - client_id: app
    grants:
      - {scope: items:write, approved_by: ann, approved_at: 2026-01-01, justification: j}
      - {segment: admin, approved_by: bob, justification: k, expires_at: 2026-06-01}
      - {scope: items:old, approved_by: cy, justification: l}
`

func compileInfo(t *testing.T) *decision.Policy {
	t.Helper()
	pol, err := decision.Compile([]byte(infoPolicy), "info.yaml", decision.CompileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return pol
}

func TestPolicyWarnings(t *testing.T) {
	pol := compileInfo(t)
	var msgs []string
	for _, w := range pol.Warnings {
		if !w.Warning {
			t.Errorf("a warning is not marked as one: %v", w)
		}
		msgs = append(msgs, w.String())
	}
	all := strings.Join(msgs, "\n")
	for _, want := range []string{`scope "items:nobody" has no description`, `client "app" is granted retired scope "items:old"`} {
		if !strings.Contains(all, want) {
			t.Errorf("warnings lack %q:\n%s", want, all)
		}
	}
}

func TestMatchRoute(t *testing.T) {
	pol := compileInfo(t)
	cases := map[string]struct {
		method, path string
		route        string
		pathMatched  bool
	}{
		"param":                  {"GET", "/items/7", "read", true},
		"literal wins":           {"GET", "/items/special", "special", true},
		"normalized first":       {"GET", "/items/./x/../special", "special", true},
		"rest":                   {"DELETE", "/items/7/a/b", "rest", true},
		"method not allowed":     {"POST", "/items/7", "", true},
		"no route":               {"GET", "/other", "", false},
		"a path that won't pass": {"GET", "/items/a%2Fb", "", false},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			r, matched := pol.MatchRoute(tc.method, tc.path)
			got := ""
			if r != nil {
				got = r.Name
			}
			if got != tc.route || matched != tc.pathMatched {
				t.Errorf("MatchRoute(%s %s) = %q, %v; want %q, %v", tc.method, tc.path, got, matched, tc.route, tc.pathMatched)
			}
		})
	}
}

func TestGovernanceInfo(t *testing.T) {
	pol := compileInfo(t)
	segs := pol.Segments()
	if len(segs) != 2 || segs[0].Name != "items" || segs[0].Owner != "team-items" || segs[0].Description != "Items" ||
		!slices.Equal(segs[0].Scopes, []string{"items:read", "items:write", "items:old"}) || segs[1].Name != "admin" {
		t.Errorf("Segments = %+v", segs)
	}
	if got := pol.SegmentOf("items:admin"); got != "admin" {
		t.Errorf("SegmentOf(items:admin) = %q", got)
	}
	if got := pol.SegmentOf("items:nobody"); got != "" {
		t.Errorf("SegmentOf(items:nobody) = %q", got)
	}
	var names []string
	for _, s := range pol.CatalogScopes() {
		names = append(names, s.Name)
	}
	if !slices.Equal(names, []string{"items:read", "items:write", "items:admin", "items:old", "items:nobody"}) {
		t.Errorf("CatalogScopes = %v", names)
	}

	before := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	after := time.Date(2026, 7, 1, 0, 0, 0, 0, time.UTC)
	cases := map[string]struct {
		client, scope string
		via           []string // Via of each grant, in order
		from          string
		activeBefore  bool
		activeAfter   bool
	}{
		"granted directly":       {"app", "items:write", []string{"scope"}, "", true, true},
		"implied by a grant":     {"app", "items:read", []string{"implies"}, "items:write", true, true},
		"through a segment":      {"app", "items:admin", []string{"segment"}, "", true, false},
		"retired grants nothing": {"app", "items:old", nil, "", false, false},
		"not granted":            {"app", "items:nobody", nil, "", false, false},
		"unknown client":         {"other", "items:read", nil, "", false, false},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			gs := pol.GrantsCovering(tc.client, tc.scope)
			var via []string
			for _, g := range gs {
				via = append(via, g.Via)
			}
			if !slices.Equal(via, tc.via) {
				t.Fatalf("GrantsCovering(%s, %s) vias = %v, want %v", tc.client, tc.scope, via, tc.via)
			}
			if len(gs) == 0 {
				return
			}
			if gs[0].From != tc.from || gs[0].ActiveAt(before) != tc.activeBefore || gs[0].ActiveAt(after) != tc.activeAfter {
				t.Errorf("grant = %+v", gs[0])
			}
		})
	}
	if gs := pol.GrantsCovering("app", "items:write"); gs[0].Grant.ApprovedBy != "ann" || !gs[0].ApprovedAt.Equal(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("grant record = %+v", gs[0])
	}

	held, ok := pol.ClientScopes("app", before)
	if !ok || !slices.Equal(held, []string{"items:admin", "items:read", "items:write"}) {
		t.Errorf("ClientScopes(before) = %v, %v", held, ok)
	}
	held, _ = pol.ClientScopes("app", after)
	if !slices.Equal(held, []string{"items:read", "items:write"}) {
		t.Errorf("ClientScopes(after) = %v", held)
	}
	if _, ok := pol.ClientScopes("other", before); ok {
		t.Error("an unknown client is registered")
	}
}
