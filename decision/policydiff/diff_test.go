package policydiff

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/scopegate/scopegate/decision"
)

var diffAt = time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)

func compile(t *testing.T, text string) *decision.Policy {
	t.Helper()
	pol, err := decision.Compile([]byte(text), "p.yaml", decision.CompileOptions{})
	if err != nil {
		t.Fatalf("compile: %v\n%s", err, text)
	}
	return pol
}

// want is one expected change: every set field must match.
type want struct {
	kind, op, subject string
	verdict           Verdict
	detail            string // substring
}

func (w want) matches(c Change) bool {
	return c.Kind == w.kind && (w.op == "" || c.Op == w.op) && strings.Contains(c.Subject, w.subject) &&
		(w.verdict == "" || c.Verdict == w.verdict) && strings.Contains(c.Detail, w.detail)
}

func TestCompare(t *testing.T) {
	b, err := os.ReadFile("testdata/base.yaml")
	if err != nil {
		t.Fatal(err)
	}
	base := string(b)
	// edit returns base with replacements applied.
	edit := func(pairs ...string) string {
		s := base
		for i := 0; i+1 < len(pairs); i += 2 {
			if !strings.Contains(s, pairs[i]) {
				t.Fatalf("testdata/base.yaml lacks %q", pairs[i])
			}
			s = strings.Replace(s, pairs[i], pairs[i+1], 1)
		}
		return s
	}
	cases := map[string]struct {
		new  string
		want []want
		// counts, when set, are the exact numbers of wider changes and of
		// all changes.
		counts []int
	}{
		"no change": {new: base, counts: []int{0, 0}},
		"a weaker requirement": {
			new:    edit("require: {all_of: [items:read]}", "require: {any_of: [items:read, items:write]}"),
			want:   []want{{"route", "changed", "read", Wider, "a token with only [items:write] is allowed now"}},
			counts: []int{1, 1},
		},
		"a stronger requirement": {
			new:    edit("require: {all_of: [items:write]}", "require: {all_of: [items:write, items:read]}"),
			want:   []want{{"route", "changed", "write", Narrower, "a token with only [items:write] is refused now"}},
			counts: []int{0, 1},
		},
		"an equivalent rewrite": {
			new:    edit("require: {all_of: [items:write]}", "require: {any_of: [items:write]}"),
			want:   []want{{"route", "changed", "write", Neutral, "all of [items:write] → any of [items:write]"}},
			counts: []int{0, 1},
		},
		"a route made public": {
			new:    edit("    require: {all_of: [items:write]}\n", "    public: true\n"),
			want:   []want{{"route", "changed", "write", Wider, "no token is needed now"}},
			counts: []int{1, -1},
		},
		"methods": {
			new:  edit("methods: [GET, DELETE], path: \"/admin", "methods: [GET, POST], path: \"/admin"),
			want: []want{{"route", "changed", "admin", Wider, "now also allows POST"}, {"route", "changed", "admin", Narrower, "no longer allows DELETE"}},
		},
		"a new route, denied before": {
			new:  edit("  - name: health\n", "  - name: export\n    match: {methods: [GET], path: /export}\n    require: {all_of: [items:read]}\n  - name: health\n"),
			want: []want{{"route", "added", "export (GET /export)", Wider, "GET /export, denied before, now needs all of [items:read]"}},
		},
		"a new route that takes requests from another": {
			new:  edit("  - name: health\n", "  - name: special\n    match: {methods: [GET], path: /items/special}\n    require: {all_of: [admin:all]}\n  - name: health\n"),
			want: []want{{"route", "added", "special", Wider, "takes GET /items/special from route read"}},
		},
		"a removed route": {
			new:  edit("  - name: write\n    match: {methods: [POST], path: /items}\n    require: {all_of: [items:write]}\n", ""),
			want: []want{{"route", "removed", "write", Narrower, "POST /items, which needed all of [items:write], is denied now"}},
		},
		"a constraint dropped": {
			new:  edit("    when:\n      source_ip: {allow: [office]}\n", ""),
			want: []want{{"route", "changed", "admin", Wider, "drops constraint when.source_ip (was {allow: [office]})"}},
		},
		"a constraint added": {
			new:  edit("    require: {all_of: [items:write]}\n", "    require: {all_of: [items:write]}\n    when: {step_up: {acr: [mfa]}}\n"),
			want: []want{{"route", "changed", "write", Narrower, "adds constraint when.step_up: {acr: [mfa]}"}},
		},
		"source_ip allow list widened": {
			new:  edit("source_ip: {allow: [office]}", "source_ip: {allow: [office, 192.0.2.0/24]}"),
			want: []want{{"route", "changed", "admin", Wider, "source_ip now allows 192.0.2.0/24"}},
		},
		"a scope retired": {
			new:  edit("status: deprecated, replacement: items:read, sunset: 2027-01-01, implies", "status: retired, replacement: items:read, implies"),
			want: []want{{"scope", "changed", "items:old", Narrower, "status deprecated → retired"}},
		},
		"an implication added": {
			new:  edit("{name: items:write, description: w, owner: o, segment: items, risk: medium}", "{name: items:write, description: w, owner: o, segment: items, risk: medium, implies: [items:read]}"),
			want: []want{{"scope", "changed", "items:write", Wider, "now implies items:read"}, {"route", "changed", "read", Wider, "[items:write] is allowed now"}},
		},
		"re-segmented, risk and lifetime": {
			new: edit("{name: admin:all, description: a, owner: o, segment: admin, risk: high, max_lifetime: 1h}", "{name: admin:all, description: a, owner: o, segment: items, risk: medium, max_lifetime: 2h}"),
			want: []want{
				{"scope", "changed", "admin:all", Neutral, "re-segmented: admin → items"},
				{"scope", "changed", "admin:all", Neutral, "risk high → medium"},
				{"scope", "changed", "admin:all", Wider, "max_lifetime 1h → 2h"},
				{"client", "changed", "ops", Narrower, "loses admin:all"},
			},
		},
		"scopes added and removed": {
			new:  edit("  - {name: admin:all,", "  - {name: items:export, description: e, owner: o, segment: items}\n  - {name: admin:all,"),
			want: []want{{"scope", "added", "items:export", Neutral, "segment items"}},
		},
		"a client gains a scope": {
			new:  edit("      - {scope: items:read, approved_by: x, justification: y}\n", "      - {scope: items:read, approved_by: x, justification: y}\n      - {scope: admin:all, approved_by: boss, justification: \"on call\"}\n"),
			want: []want{{"client", "changed", "app", Wider, `gains admin:all (approved by boss, "on call")`}},
		},
		"a grant extended": {
			new:  edit("expires_at: 2027-01-01}", "expires_at: 2028-01-01}"),
			want: []want{{"client", "changed", "app", Wider, "grant of scope items:write extended to 2028-01-01 (was 2027-01-01)"}},
		},
		"a client removed, drift relaxed": {
			new: edit("  - client_id: ops\n    owner: o\n    drift: enforce\n    grants:\n      - {segment: admin, approved_by: x, justification: y}\n", "drift: {default_mode: off}\n"),
			want: []want{
				{"client", "removed", "ops", Narrower, "it held admin:all"},
				{"drift", "changed", "default_mode", Wider, "drift default mode monitor → off"},
			},
		},
		"a client's drift mode": {
			new:  edit("    drift: enforce\n", "    drift: monitor\n"),
			want: []want{{"client", "changed", "ops", Wider, "drift mode enforce → monitor"}},
		},
		"issuers": {
			new: edit("    audiences: [api]\n", "    audiences: [api, other]\n    require_at_jwt: true\n"),
			want: []want{
				{"issuer", "changed", "https://id.test/", Wider, "accepts audiences other"},
				{"issuer", "changed", "https://id.test/", Narrower, "require_at_jwt false → true"},
			},
		},
		"device claim added": {
			new:  edit("    audiences: [api]\n", "    audiences: [api]\n    device_claim: did\n"),
			want: []want{{"issuer", "changed", "https://id.test/", Narrower, "device_claim (none) → did"}},
		},
		"discovery and introspection": {
			new: edit("    jwks_url: https://id.test/jwks.json\n", "    discovery: true\n    introspection: {endpoint: https://id.test/introspect, client_id: gw, client_secret_env: S}\n"),
			want: []want{
				{"issuer", "changed", "https://id.test/", Wider, "key set https://id.test/jwks.json → discovery"},
				{"issuer", "changed", "https://id.test/", Wider, "accepts opaque tokens by introspection at https://id.test/introspect"},
			},
		},
		"a network widened": {
			new:  edit("office: [10.0.0.0/8]", "office: [10.0.0.0/8, 0.0.0.0/0]"),
			want: []want{{"policy", "changed", "networks.office", Wider, "gains 0.0.0.0/0"}},
		},
	}
	old := compile(t, base)
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			d := Compare(old, compile(t, tc.new), diffAt)
			var out bytes.Buffer
			d.WriteText(&out)
			for _, w := range tc.want {
				found := false
				for _, c := range d.Changes {
					if w.matches(c) {
						found = true
						break
					}
				}
				if !found {
					t.Errorf("no change matches %+v:\n%s", w, out.String())
				}
			}
			if len(tc.counts) == 2 {
				if d.Count(Wider) != tc.counts[0] {
					t.Errorf("%d wider changes, want %d:\n%s", d.Count(Wider), tc.counts[0], out.String())
				}
				if tc.counts[1] >= 0 && len(d.Changes) != tc.counts[1] {
					t.Errorf("%d changes, want %d:\n%s", len(d.Changes), tc.counts[1], out.String())
				}
			}
		})
	}
}

func TestOutput(t *testing.T) {
	b, err := os.ReadFile("testdata/base.yaml")
	if err != nil {
		t.Fatal(err)
	}
	old := compile(t, string(b))
	newer := compile(t, strings.Replace(string(b), "require: {all_of: [items:read]}", "require: {any_of: [items:read, items:write]}", 1))
	d := Compare(old, newer, diffAt)
	d.Old, d.New = "old.yaml", "new.yaml"
	var text bytes.Buffer
	d.WriteText(&text)
	for _, w := range []string{"Access changes from old.yaml to new.yaml", "\nRoutes\n", "  ~ read  WIDER  requirement", "\n1 wider, 0 narrower, 0 neutral\n"} {
		if !strings.Contains(text.String(), w) {
			t.Errorf("text lacks %q:\n%s", w, text.String())
		}
	}
	var js bytes.Buffer
	if err := d.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	var got struct {
		Old, New string
		Changes  []Change
		Summary  map[string]int
	}
	if err := json.Unmarshal(js.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	if got.Old != "old.yaml" || len(got.Changes) != 1 || got.Changes[0].Verdict != Wider || got.Summary["wider"] != 1 {
		t.Errorf("JSON = %+v", got)
	}
	empty := Compare(old, old, diffAt)
	js.Reset()
	if err := empty.WriteJSON(&js); err != nil || !strings.Contains(js.String(), `"changes": []`) {
		t.Errorf("empty diff JSON: %v\n%s", err, js.String())
	}
}

func TestLoad(t *testing.T) {
	if _, err := Load("testdata/base.yaml"); err != nil {
		t.Errorf("Load: %v", err)
	}
	var le *decision.LoadError
	if _, err := Load("testdata/none.yaml"); !errors.As(err, &le) {
		t.Errorf("missing file: %v", err)
	}
}

// A scope's description is the text users consent to: a change of it is
// reported, NEUTRAL, with the old and the new text (in JSON too).
func TestDescriptionChange(t *testing.T) {
	b, err := os.ReadFile("testdata/base.yaml")
	if err != nil {
		t.Fatal(err)
	}
	base := string(b)
	for name, tc := range map[string]struct{ from, to, old, new string }{
		"reworded":   {from: "description: r,", to: `description: "See and export your items",`, old: "r", new: "See and export your items"},
		"to empty":   {from: "description: w,", to: `description: "",`, old: "w", new: ""},
		"deprecated": {from: "description: old,", to: "description: older,", old: "old", new: "older"},
	} {
		t.Run(name, func(t *testing.T) {
			if !strings.Contains(base, tc.from) {
				t.Fatalf("base lacks %q", tc.from)
			}
			d := Compare(compile(t, base), compile(t, strings.Replace(base, tc.from, tc.to, 1)), diffAt)
			if len(d.Changes) != 1 {
				t.Fatalf("changes = %+v, want one", d.Changes)
			}
			c := d.Changes[0]
			if c.Kind != "scope" || c.Op != "changed" || c.Verdict != Neutral || c.Old != tc.old || c.New != tc.new {
				t.Errorf("change = %+v", c)
			}
			if !strings.Contains(c.Detail, `description "`+tc.old+`" → "`+tc.new+`"`) {
				t.Errorf("detail %q lacks the old and new text", c.Detail)
			}
			var out bytes.Buffer
			if err := d.WriteJSON(&out); err != nil {
				t.Fatal(err)
			}
			var got struct {
				Changes []map[string]any `json:"changes"`
			}
			if err := json.Unmarshal(out.Bytes(), &got); err != nil || len(got.Changes) != 1 || got.Changes[0]["old"] != nilIfEmpty(tc.old) || got.Changes[0]["new"] != nilIfEmpty(tc.new) {
				t.Errorf("JSON %s", out.String())
			}
		})
	}
}

func nilIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}
