package catalogdoc

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

// Without Options.Now the document depends on the policy alone, so the
// CI recipe `scopegate catalog --out … && git diff --exit-code` passes
// whatever the time of day: the example requests are decided at noon UTC
// of the latest grant approval.
func TestRenderWithoutNowIsDeterministic(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("testdata", "orders.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	render := func(t *testing.T) string {
		var out bytes.Buffer
		if err := Render(context.Background(), &out, data, "orders.yaml", Options{}); err != nil {
			t.Fatal(err)
		}
		return out.String()
	}
	var first, again string
	var now time.Time
	// In a synctest bubble the clock Render reads moves a second and more
	// between the renderings without the test waiting for it.
	synctest.Test(t, func(t *testing.T) {
		first = render(t)
		time.Sleep(1100 * time.Millisecond)
		again = render(t)
		now = time.Now().UTC()
	})
	if again != first {
		t.Fatal("two renderings without --now differ")
	}
	for _, leak := range []string{now.Format("2006-01-02T15:04"), now.Add(-time.Minute).Format("2006-01-02T15:04")} {
		if strings.Contains(first, leak) {
			t.Errorf("the output embeds the wall clock (%s)", leak)
		}
	}
	if !strings.Contains(first, "(noon UTC of the latest grant approval in the policy") {
		t.Errorf("the output does not say when it decided:\n%s", first)
	}
	// And the reference is the latest approved_at at noon.
	latest := ""
	for _, l := range strings.Split(string(data), "\n") {
		if i := strings.Index(l, "approved_at: "); i >= 0 {
			d := strings.TrimSpace(strings.Trim(strings.Fields(l[i+len("approved_at: "):])[0], ",}"))
			if d > latest {
				latest = d
			}
		}
	}
	if latest == "" {
		latest = "2000-01-01" // no grant has an approval date
	}
	if !strings.Contains(first, "decided at "+latest+"T12:00:00Z") {
		t.Errorf("not decided at noon of %q:\n%.600s", latest, first)
	}
}

// A scope in mode shadow has its constraints listed as not enforced.
func TestShadowScopeConstraintsMarked(t *testing.T) {
	const policy = `issuers:
  - issuer: https://id.test/
    audiences: [api]
    jwks_url: https://id.test/jwks.json
    algorithms: [RS256]
networks:
  office: [10.0.0.0/8]
routes:
  - name: read
    match: {methods: [GET], path: "/items/{id}"}
    require: {any_of: [items:read, items:export]}
scopes:
  - name: items:read
    description: r
    owner: t
    mode: shadow
    when: {source_ip: {allow: [office]}}
  - name: items:export
    description: e
    owner: t
    when: {source_ip: {allow: [office]}}
`
	var out bytes.Buffer
	if err := Render(context.Background(), &out, []byte(policy), "p.yaml", Options{Now: catalogNow}); err != nil {
		t.Fatal(err)
	}
	doc := out.String()
	read := doc[strings.Index(doc, "### `items:read`"):]
	export := doc[strings.Index(doc, "### `items:export`"):]
	if i := strings.Index(read, "### `items:export`"); i >= 0 {
		read = read[:i]
	}
	if i := strings.Index(export, "### `items:read`"); i >= 0 {
		export = export[:i]
	}
	if !strings.Contains(read, "**not enforced**") {
		t.Errorf("the shadow scope's constraints are not marked:\n%s", read)
	}
	if strings.Contains(export, "not enforced") {
		t.Errorf("an enforced scope's constraints are marked not enforced:\n%s", export)
	}
}

func TestReferenceTime(t *testing.T) {
	const policy = `issuers:
  - issuer: https://id.test/
    audiences: [api]
    jwks_url: https://id.test/jwks.json
    algorithms: [RS256]
routes:
  - name: read
    match: {methods: [GET], path: "/items/{id}"}
    require: {all_of: [items:read]}
scopes:
  - {name: items:read, description: r, owner: t}
clients:
  - client_id: a
    grants:
      - {scope: items:read, approved_by: x, approved_at: 2026-03-04, justification: j}
  - client_id: b
    grants:
      - {scope: items:read, approved_by: x, approved_at: "2026-05-06T23:30:00+02:00", justification: j}
      - {scope: items:read, approved_by: x, approved_at: 2025-12-31, justification: j}
`
	var out bytes.Buffer
	if err := Render(context.Background(), &out, []byte(policy), "p.yaml", Options{}); err != nil {
		t.Fatal(err)
	}
	// 2026-05-06T23:30+02:00 is 21:30 UTC on the 6th: noon UTC that day.
	if !strings.Contains(out.String(), "decided at 2026-05-06T12:00:00Z") {
		t.Errorf("reference time wrong:\n%.500s", out.String())
	}
}
