package review

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Formats are the output formats of a review.
var Formats = []string{"markdown", "json", "html"}

// Write renders r in format (markdown, json or html) to w.
func Write(w io.Writer, r *Report, format string) error {
	switch format {
	case "json":
		return WriteJSON(w, r)
	case "markdown", "md", "":
		return WriteMarkdown(w, r)
	case "html":
		return WriteHTML(w, r)
	}
	return fmt.Errorf("unknown format %q: use markdown, json or html", format)
}

// WriteJSON writes r as indented JSON, one value, numbers as numbers.
func WriteJSON(w io.Writer, r *Report) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

// cell escapes s for a Markdown table cell.
func cell(s string) string {
	s = strings.ReplaceAll(s, `\`, `\\`)
	s = strings.ReplaceAll(s, "|", `\|`)
	s = strings.ReplaceAll(s, "\r", " ")
	return strings.ReplaceAll(s, "\n", " ")
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// grantText is a line's grants in one cell.
func grantText(l Line) string {
	if len(l.Grants) == 0 {
		return "none"
	}
	var parts []string
	for _, g := range l.Grants {
		s := g.Via + " " + g.From
		if g.ApprovedBy != "" {
			s += "; approved by " + g.ApprovedBy
		}
		if g.ApprovedAt != "" {
			s += " on " + g.ApprovedAt[:10]
		}
		if g.Justification != "" {
			s += `; "` + g.Justification + `"`
		}
		if g.ExpiresAt != "" {
			s += "; expires " + g.ExpiresAt[:10]
			if g.Expired {
				s += " (expired)"
			}
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, " / ")
}

func dateOf(s string) string {
	if len(s) >= 10 {
		return s[:10]
	}
	return dash(s)
}

// WriteMarkdown writes r as a Markdown document.
func WriteMarkdown(w io.Writer, r *Report) error {
	var b bytes.Buffer
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	p("# Access review\n\n")
	p("Generated %s from policy `%s`", r.GeneratedAt, r.Policy.Path)
	if r.Policy.Version != "" {
		p(" (version %s)", r.Policy.Version)
	}
	p(". Usage: %s. Audit: %s", dash(r.Sources.Usage), dash(strings.Join(r.Sources.Audit, ", ")))
	if r.Sources.AuditFrom != "" {
		p(" from %s", r.Sources.AuditFrom)
	}
	p(". A granted scope unused for %d days is to be withdrawn; a grant in use expiring within %d days is to be renewed.\n\n", r.UnusedDays, r.RenewDays)
	s := r.Summary
	p("| Clients | Lines | Keep | Narrow | Renew | Revoke | Uses |\n| ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
	p("| %d | %d | %d | %d | %d | %d | %d |\n", s.Clients, s.Lines, s.Keep, s.Narrow, s.Renew, s.Revoke, s.Uses)
	for _, c := range r.Clients {
		p("\n## %s\n\n", cell(c.ClientID))
		var facts []string
		if c.Name != "" {
			facts = append(facts, "name "+c.Name)
		}
		if c.Owner != "" {
			facts = append(facts, "owner "+c.Owner)
		}
		if !c.Registered {
			facts = append(facts, "**not registered in the policy**")
		}
		facts = append(facts, strconv.FormatUint(c.Uses, 10)+" uses")
		p("%s.\n\n", cell(strings.Join(facts, ", ")))
		if len(c.Lines) > 0 {
			p("| Scope | Status | Grant | Uses | Last used | Idle days | Action | Reason |\n| --- | --- | --- | ---: | --- | ---: | --- | --- |\n")
			for _, l := range c.Lines {
				status := l.Status
				if l.Sunset != "" {
					status += " (sunset " + l.Sunset[:10] + ")"
				}
				idle := "-"
				if l.IdleDays >= 0 {
					idle = strconv.Itoa(l.IdleDays)
				}
				p("| %s | %s | %s | %d | %s | %s | **%s** | %s |\n", cell(l.Scope), cell(status), cell(grantText(l)), l.Count,
					dateOf(l.LastUsed), idle, l.Action, cell(l.Reason))
			}
		}
		if len(c.Drift) > 0 {
			p("\nDrift seen (scopes carried without an active grant):\n\n")
			for _, d := range c.Drift {
				p("- `%s`: %d request(s), last %s\n", d.Scope, d.Count, d.Last)
			}
		}
		if len(c.Deprecated) > 0 {
			p("\nDeprecated scopes still relied on:\n\n")
			for _, d := range c.Deprecated {
				p("- `%s`: %d request(s), last %s", d.Scope, d.Count, d.Last)
				if d.Sunset != "" {
					p("; sunset %s", d.Sunset[:10])
				}
				if d.Replacement != "" {
					p("; replacement `%s`", d.Replacement)
				}
				p("\n")
			}
		}
		if len(c.Straddles) > 0 {
			p("\nSegment straddles (segments held together without approval in `segments_together`):\n\n")
			for _, st := range c.Straddles {
				p("- %s: %d request(s), last %s\n", cell(strings.Join(st.Segments, " + ")), st.Count, st.Last)
			}
		}
		if len(c.Revocations) > 0 {
			p("\nRevocations in force: %s\n", strings.Join(c.Revocations, ", "))
		}
	}
	p("\n## Revocations in force\n\n")
	if len(r.Revocations) == 0 {
		p("None.\n")
	} else {
		p("| ID | Kind | Target | Scope or segment | Reason | Created | By | Until |\n| --- | --- | --- | --- | --- | --- | --- | --- |\n")
		for _, rv := range r.Revocations {
			p("| %s | %s | %s | %s | %s | %s | %s | %s |\n", cell(rv.ID), rv.Kind, cell(rv.Target), cell(dash(rv.Scope+rv.Segment)),
				cell(dash(rv.Reason)), rv.CreatedAt, cell(dash(rv.CreatedBy)), dash(rv.Until))
		}
	}
	_, err := w.Write(b.Bytes())
	return err
}
