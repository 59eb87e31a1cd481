package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/scopegate/scopegate/decision"
	"github.com/scopegate/scopegate/decision/policytest"
)

// explainCmd is `check --explain`: every check the decision ran, then the
// governance behind each scope that decided.
type explainCmd struct{ checkCmd }

func (k *explainCmd) run(ctx context.Context, c *cli) int {
	k.explain = true
	return k.checkCmd.run(ctx, c)
}

// scopeGovernance is the catalog entry, segment and grants behind one
// scope that satisfied the route (an allow) or that the route requires (a
// deny).
type scopeGovernance struct {
	Scope string `json:"scope"`
	// Missing is set, on a deny, for a required scope the token neither
	// carries nor implies.
	Missing bool `json:"missing,omitempty"`
	// Via is the token scope that implies Scope, when the token does not
	// carry Scope itself.
	Via     string            `json:"via,omitempty"`
	Catalog *catalogEntryJSON `json:"catalog,omitempty"`
	Segment *segmentEntryJSON `json:"segment,omitempty"`
	Client  string            `json:"client,omitempty"`
	Grants  []grantRecordJSON `json:"grants,omitempty"`
	Notes   []string          `json:"notes,omitempty"`
}

type catalogEntryJSON struct {
	Description string `json:"description,omitempty"`
	Owner       string `json:"owner,omitempty"`
	Risk        string `json:"risk,omitempty"`
	Status      string `json:"status"`
	Replacement string `json:"replacement,omitempty"`
	Sunset      string `json:"sunset,omitempty"`
}

type segmentEntryJSON struct {
	Name  string `json:"name"`
	Owner string `json:"owner,omitempty"`
}

type grantRecordJSON struct {
	Scope         string `json:"scope,omitempty"`
	Segment       string `json:"segment,omitempty"`
	Via           string `json:"via"`
	ApprovedBy    string `json:"approved_by,omitempty"`
	ApprovedAt    string `json:"approved_at,omitempty"`
	ExpiresAt     string `json:"expires_at,omitempty"`
	Justification string `json:"justification,omitempty"`
	Expired       bool   `json:"expired,omitempty"`
}

// governanceOf collects the governance behind the scopes that decided d:
// for an allow the scopes used, for a deny every scope the route requires,
// so a deny shows what the caller would need and who grants it.
func governanceOf(d *decision.Decision) []scopeGovernance {
	pol := d.Policy
	if pol == nil || d.Route == nil || d.Route.Public {
		return nil
	}
	now := time.Now()
	scopes := d.ScopesUsed()
	missing := d.MissingScopes()
	if !d.Allow {
		scopes = nil
		for _, s := range slices.Concat(d.Route.AllOf, d.Route.AnyOf) {
			if !slices.Contains(scopes, s) {
				scopes = append(scopes, s)
			}
		}
	}
	var out []scopeGovernance
	for _, s := range scopes {
		g := scopeGovernance{Scope: s}
		if !d.Allow && d.Token != nil && slices.Contains(missing, s) {
			// What the deny names (an any_of alternative only when the
			// token carries none of them).
			g.Missing = true
		}
		if d.Token != nil && !g.Missing && !slices.Contains(d.Token.Scopes, s) {
			for _, t := range d.Token.Scopes {
				if policytest.Held(pol, t)[s] {
					g.Via = t
					break
				}
			}
		}
		if info, ok := pol.ScopeInfo(s); ok {
			g.Catalog = &catalogEntryJSON{Description: info.Description, Owner: info.Owner, Risk: info.Risk, Status: info.Status, Replacement: info.Replacement}
			if !info.Sunset.IsZero() {
				g.Catalog.Sunset = info.Sunset.Format(time.DateOnly)
			}
		} else {
			g.Notes = append(g.Notes, "not in a scope catalog")
		}
		if seg := pol.SegmentOf(s); seg != "" {
			g.Segment = &segmentEntryJSON{Name: seg}
			for _, si := range pol.Segments() {
				if si.Name == seg {
					g.Segment.Owner = si.Owner
				}
			}
		}
		if d.Token != nil && d.Token.ClientID != "" {
			g.Client = d.Token.ClientID
			if _, registered := pol.ClientScopes(d.Token.ClientID, now); !registered {
				g.Notes = append(g.Notes, "client "+d.Token.ClientID+" is not registered")
			} else {
				for _, gi := range pol.GrantsCovering(d.Token.ClientID, s) {
					r := grantRecordJSON{
						Scope: gi.Grant.Scope, Segment: gi.Grant.Segment, Via: gi.Via,
						ApprovedBy: gi.Grant.ApprovedBy, ApprovedAt: gi.Grant.ApprovedAt, ExpiresAt: gi.Grant.ExpiresAt,
						Justification: gi.Grant.Justification, Expired: !gi.ActiveAt(now),
					}
					g.Grants = append(g.Grants, r)
				}
				if len(g.Grants) == 0 {
					g.Notes = append(g.Notes, "client "+d.Token.ClientID+" holds no grant of it")
				}
			}
		}
		out = append(out, g)
	}
	return out
}

// writeGovernanceText prints, after an --explain trace, the catalog entry,
// segment and grant behind each scope that decided, and any drift or
// deprecated scope the decision carries.
func writeGovernanceText(w io.Writer, d *decision.Decision) {
	gov := governanceOf(d)
	drift, hasDrift := d.DriftReport()
	deprecated := d.DeprecatedScopesUsed()
	if len(gov) == 0 && !hasDrift && len(deprecated) == 0 {
		return
	}
	fmt.Fprintln(w, "  governance:")
	for _, g := range gov {
		head := g.Scope
		if g.Missing {
			head += " (the token lacks it)"
		}
		if g.Via != "" {
			head += " (implied by " + g.Via + ")"
		}
		fmt.Fprintf(w, "    %s\n", head)
		if c := g.Catalog; c != nil {
			parts := []string{fmt.Sprintf("%q", c.Description), "owner " + govDash(c.Owner), "risk " + govDash(c.Risk), "status " + c.Status}
			if c.Replacement != "" {
				parts = append(parts, "replacement "+c.Replacement)
			}
			if c.Sunset != "" {
				parts = append(parts, "sunset "+c.Sunset)
			}
			fmt.Fprintf(w, "      catalog: %s\n", strings.Join(parts, ", "))
		}
		if s := g.Segment; s != nil {
			fmt.Fprintf(w, "      segment: %s (owner %s)\n", s.Name, govDash(s.Owner))
		}
		for _, gr := range g.Grants {
			what := "scope " + gr.Scope
			if gr.Segment != "" {
				what = "segment " + gr.Segment
			}
			line := fmt.Sprintf("client %s, %s (%s)", g.Client, what, gr.Via)
			if gr.ApprovedBy != "" || gr.ApprovedAt != "" {
				line += ", approved by " + govDash(gr.ApprovedBy) + " on " + govDash(gr.ApprovedAt)
			}
			if gr.ExpiresAt != "" {
				verb := "expires"
				if gr.Expired {
					verb = "expired"
				}
				line += ", " + verb + " " + gr.ExpiresAt
			}
			if gr.Justification != "" {
				line += fmt.Sprintf(": %q", gr.Justification)
			}
			fmt.Fprintf(w, "      grant:   %s\n", line)
		}
		for _, n := range g.Notes {
			fmt.Fprintf(w, "      note:    %s\n", n)
		}
	}
	if len(deprecated) > 0 {
		fmt.Fprintf(w, "    deprecated scopes used: %s\n", strings.Join(deprecated, ", "))
	}
	if hasDrift {
		mode := "monitored"
		if drift.Enforced {
			mode = "enforced"
		}
		fmt.Fprintf(w, "    drift (%s): %s\n", mode, drift.Message)
		if len(drift.Extra) > 0 {
			fix := "add the grant to the client in the policy, or stop the authorization server issuing the scope"
			if drift.Unregistered {
				fix = "register the client under clients with its grants, or stop the authorization server issuing it tokens for this API"
			}
			fmt.Fprintf(w, "      extra scopes: %s: %s\n", strings.Join(drift.Extra, ", "), fix)
		}
		if len(drift.Segments) > 0 {
			fmt.Fprintf(w, "      segment straddle: %s (scopes %s, granted or not): approve the combination in the client's segments_together, or split the client in one per segment\n",
				strings.Join(drift.Segments, " + "), strings.Join(drift.Straddled, ", "))
		}
	}
}

func govDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
