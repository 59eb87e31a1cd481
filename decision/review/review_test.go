package review_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/scopegate/scopegate/decision"
	"github.com/scopegate/scopegate/decision/review"
)

var update = flag.Bool("update", false, "rewrite the golden files")

var now = time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)

func date(s string) time.Time {
	t, err := time.Parse(time.DateOnly, s)
	if err != nil {
		panic(err)
	}
	return t.Add(10 * time.Hour)
}

// Fixture is the input every test builds on: one client per rule.
func Fixture(t testing.TB) review.Input {
	t.Helper()
	pol, err := decision.LoadFile("testdata/policy.yaml", decision.CompileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	use := func(client, scope string, n uint64, last string) review.Use {
		u := review.Use{ClientID: client, Scope: scope, Count: n}
		if last != "" {
			u.LastUsed, u.LastSeen = date(last), date(last)
		}
		return u
	}
	return review.Input{
		Policy: pol, PolicyPath: "testdata/policy.yaml", Now: now, UnusedDays: 90,
		UsageSource: "test", AuditSource: []string{"file:audit.log"}, AuditFrom: now.AddDate(0, 0, -90),
		Uses: []review.Use{
			use("keeper", "orders:read", 40, "2026-11-30"),
			{ClientID: "keeper", Scope: "orders:write", LastSeen: date("2026-11-30")},
			use("idle", "payments:refund", 3, "2026-06-01"),
			use("lapsed", "orders:read", 7, "2026-11-28"),
			use("expiring", "orders:read", 9, "2026-12-01"),
			use("segmented", "reports:read", 11, "2026-11-29"),
			use("legacy", "orders:v1", 5, "2026-11-25"),
			use("straddler", "orders:read", 2, "2026-11-30"),
			use("straddler", "payments:refund", 1, "2026-11-30"),
			use("revoked", "orders:read", 4, "2026-11-30"),
			use("rogue", "orders:write", 6, "2026-11-30"),
		},
		Days: []review.DayUse{
			{ClientID: "keeper", Scope: "orders:read", Day: date("2026-11-29").Truncate(24 * time.Hour), Count: 15},
			{ClientID: "keeper", Scope: "orders:read", Day: date("2026-11-30").Truncate(24 * time.Hour), Count: 25},
			{ClientID: "segmented", Scope: "reports:read", Day: date("2026-11-29").Truncate(24 * time.Hour), Count: 11},
		},
		Accesses: []review.Access{
			{Time: date("2026-11-30"), ClientID: "keeper", Allow: true, Extra: []string{"orders:write"}},
			{Time: date("2026-11-29"), ClientID: "keeper", Allow: true, Extra: []string{"orders:write"}},
			{Time: date("2026-11-30"), ClientID: "straddler", Allow: true, Segments: []string{"payments", "orders"}},
			{Time: date("2026-11-25"), ClientID: "legacy", Allow: true, Deprecated: []string{"orders:v1"}},
			{Time: date("2026-01-01"), ClientID: "straddler", Allow: true, Segments: []string{"reports", "orders"}}, // before AuditFrom
		},
		Revocations: []decision.Revocation{
			{ID: "rv1", Kind: decision.RevokeClient, ClientID: "revoked", Reason: "INC-7", CreatedAt: date("2026-11-30")},
			{ID: "rv0", Kind: decision.RevokeClient, ClientID: "keeper", Reason: "lapsed", CreatedAt: date("2026-10-01"), Until: date("2026-10-02")},
		},
	}
}

func line(t *testing.T, r *review.Report, client, scope string) review.Line {
	t.Helper()
	for _, c := range r.Clients {
		if c.ClientID != client {
			continue
		}
		for _, l := range c.Lines {
			if l.Scope == scope {
				return l
			}
		}
	}
	t.Fatalf("no line for %s / %s", client, scope)
	return review.Line{}
}

// TestRules: each recommendation rule, on the client built to trigger it.
func TestRules(t *testing.T) {
	r := review.Build(Fixture(t))
	cases := []struct {
		name, client, scope, action, reason string
	}{
		{"in use under an active grant", "keeper", "orders:read", review.Keep, "in use"},
		{"unused for the window", "idle", "payments:refund", review.Revoke, "unused for 90+ days"},
		{"a young grant not used yet", "newbie", "payments:refund", review.Keep, "within the 90-day window"},
		{"expired but still used", "lapsed", "orders:read", review.Renew, "expired on 2026-11-01"},
		{"expired and unused", "lapsed-idle", "orders:read", review.Revoke, "remove the grant"},
		{"expiring soon while in use", "expiring", "orders:read", review.Renew, "expires 2026-12-20"},
		{"used scope of a segment grant", "segmented", "reports:read", review.Keep, "in use"},
		{"unused scope of a segment grant", "segmented", "reports:export", review.Narrow, "segment reports"},
		{"deprecated and in use", "legacy", "orders:v1", review.Narrow, "move the client to orders:read"},
		{"retired", "retiree", "old:scope", review.Revoke, "retired"},
		{"segment straddle", "straddler", "orders:read", review.Narrow, "segments_together"},
		{"revocation in force", "revoked", "orders:read", review.Revoke, "rv1"},
		{"used without a grant", "rogue", "orders:write", review.Revoke, "used without any grant"},
		{"seen without a grant", "keeper", "orders:write", review.Revoke, "seen in tokens without any grant"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			l := line(t, r, c.client, c.scope)
			if l.Action != c.action || !strings.Contains(l.Reason, c.reason) {
				t.Errorf("%s / %s: %s (%s); want %s with %q", c.client, c.scope, l.Action, l.Reason, c.action, c.reason)
			}
		})
	}
	t.Run("window", func(t *testing.T) {
		in := Fixture(t)
		in.UnusedDays = 400
		if l := line(t, review.Build(in), "idle", "payments:refund"); l.Action != review.Keep {
			t.Errorf("with --unused-days 400 a scope used 184 days ago is %s (%s); want keep", l.Action, l.Reason)
		}
	})
	t.Run("grant facts", func(t *testing.T) {
		l := line(t, r, "lapsed", "orders:read")
		want := review.Grant{Via: "scope", From: "orders:read", ApprovedBy: "dana", Justification: "pilot",
			ApprovedAt: "2025-06-01T00:00:00Z", ExpiresAt: "2026-11-01T00:00:00Z", Expired: true}
		if len(l.Grants) != 1 || l.Grants[0] != want {
			t.Errorf("grants %+v; want [%+v]", l.Grants, want)
		}
		if l.IdleDays != 4 || l.Count != 7 || l.LastUsed != "2026-11-28T10:00:00Z" {
			t.Errorf("use: idle %d count %d last %s", l.IdleDays, l.Count, l.LastUsed)
		}
	})
	t.Run("audit facts", func(t *testing.T) {
		for _, c := range r.Clients {
			switch c.ClientID {
			case "keeper":
				if len(c.Drift) != 1 || c.Drift[0] != (review.DriftSeen{Scope: "orders:write", Count: 2, Last: "2026-11-30T10:00:00Z"}) {
					t.Errorf("keeper drift %+v", c.Drift)
				}
				if len(c.Revocations) != 0 {
					t.Errorf("a lapsed revocation is listed in force: %v", c.Revocations)
				}
			case "straddler":
				if len(c.Straddles) != 1 || strings.Join(c.Straddles[0].Segments, ",") != "orders,payments" || c.Straddles[0].Count != 1 {
					t.Errorf("straddles %+v (the record before the audit window must not count)", c.Straddles)
				}
			case "legacy":
				want := review.DeprecatedSeen{Scope: "orders:v1", Replacement: "orders:read", Sunset: "2027-06-30T00:00:00Z", Count: 1, Last: "2026-11-25T10:00:00Z"}
				if len(c.Deprecated) != 1 || c.Deprecated[0] != want {
					t.Errorf("legacy deprecated %+v; want [%+v]", c.Deprecated, want)
				}
			case "rogue":
				if c.Registered {
					t.Error("rogue is not in the policy but reported registered")
				}
			}
		}
		if len(r.Revocations) != 1 || r.Revocations[0].ID != "rv1" {
			t.Errorf("revocations in force %+v; want rv1 only", r.Revocations)
		}
	})
	t.Run("summary adds up", func(t *testing.T) {
		s := r.Summary
		var uses uint64
		n := 0
		for _, c := range r.Clients {
			for _, l := range c.Lines {
				uses += l.Count
				n++
			}
		}
		if s.Keep+s.Narrow+s.Renew+s.Revoke != s.Lines || s.Lines != n || s.Uses != uses || uses == 0 {
			t.Errorf("summary %+v; lines %d, uses %d", s, n, uses)
		}
	})
}

// TestJSONGolden pins the JSON shape: field names, numbers as numbers,
// the order of clients and lines.
func TestJSONGolden(t *testing.T) {
	var b bytes.Buffer
	if err := review.WriteJSON(&b, review.Build(Fixture(t))); err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "review.golden.json")
	if *update {
		if err := os.WriteFile(golden, b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(b.Bytes(), want) {
		t.Errorf("JSON differs from %s (go test -update rewrites it after a deliberate change):\n%s", golden, b.String())
	}
	var v map[string]any
	if err := json.Unmarshal(b.Bytes(), &v); err != nil {
		t.Fatal(err)
	}
	if _, ok := v["summary"].(map[string]any)["uses"].(float64); !ok {
		t.Error("summary.uses is not a JSON number")
	}
}

func TestMarkdownAndHTML(t *testing.T) {
	r := review.Build(Fixture(t))
	var md, page bytes.Buffer
	if err := review.Write(&md, r, "markdown"); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"## keeper", "| orders:v1 |", "**narrow**", `approved by dana on 2025-06-01; "pilot"; expires 2026-11-01 (expired)`, "| rv1 | client | revoked |"} {
		if !strings.Contains(md.String(), want) {
			t.Errorf("markdown lacks %q", want)
		}
	}
	if err := review.Write(&page, r, "html"); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"http://", "https://"} {
		for _, l := range strings.Split(page.String(), "\n") {
			if strings.Contains(l, bad) && !strings.Contains(l, "http://www.w3.org/2000/svg") && !strings.Contains(l, "id.example.com") {
				t.Errorf("the page references an external resource: %s", l)
			}
		}
	}
	if !strings.Contains(page.String(), `<script type="application/json" id="review-data">{"version":1,`) {
		t.Error("the page does not embed the report JSON")
	}
	if err := review.Write(&page, r, "pdf"); err == nil {
		t.Error("an unknown format was accepted")
	}
}
