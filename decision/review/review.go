// Package review builds the periodic access review of a policy's clients:
// for each client and scope, the grant behind it (who approved it, why,
// when, until when), its use, and the action a reviewer should take (keep,
// narrow, renew, revoke) with the reason. It is what an auditor asks of an
// access-control system: what can application X access, why, since when,
// approved by whom, is it still used, is it still appropriate.
//
// The package is pure: the caller reads the usage store, the audit log and
// the revocation store and hands their contents over as plain values
// (Input), so the rules are tested without any backend and every backend
// gives the same report.
package review

import (
	"cmp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/scopegate/scopegate/decision"
)

// Version is the version of the report's JSON shape. Fields may be added
// within a version; none is renamed or removed.
const Version = 1

// DefaultUnusedDays is how long a granted scope may go unused before the
// review recommends withdrawing it.
const DefaultUnusedDays = 90

// DefaultRenewDays is how close to its expiry a grant still in use is
// flagged for renewal.
const DefaultRenewDays = 30

// The actions a line recommends.
const (
	Keep   = "keep"
	Narrow = "narrow"
	Renew  = "renew"
	Revoke = "revoke"
)

// Use is one client's stored use of one scope (the usage store's tally).
type Use struct {
	ClientID string
	Scope    string
	Count    uint64
	LastUsed time.Time // zero: never
	LastSeen time.Time // zero: never in a token
}

// DayUse is one client's use of one scope on one UTC day.
type DayUse struct {
	ClientID string
	Scope    string
	Day      time.Time
	Count    uint64
}

// Access is what the review needs of one audit record: a decision for a
// client, with the drift it showed.
type Access struct {
	Time     time.Time
	ClientID string
	Allow    bool
	// Extra are the scopes the client held no active grant for; Segments
	// the segments the token straddled without approval.
	Extra    []string
	Segments []string
	// Deprecated are the deprecated catalog scopes that helped satisfy
	// the request (deprecated_scopes_used).
	Deprecated []string
}

// Input is everything a review is built from.
type Input struct {
	Policy *decision.Policy
	// PolicyPath names the policy file in the report.
	PolicyPath string
	Now        time.Time
	// UnusedDays (default DefaultUnusedDays) and RenewDays (default
	// DefaultRenewDays) tune the rules.
	UnusedDays int
	RenewDays  int
	Uses       []Use
	Days       []DayUse
	// Accesses are the audit records read, from AuditFrom on.
	Accesses  []Access
	AuditFrom time.Time
	// Revocations are those in force at Now (lapsed ones are ignored).
	Revocations []decision.Revocation
	// Sources describe where usage and audit data came from, for the
	// report's reader ("bolt:scopegate.db", "postgres", "file:audit.log").
	UsageSource string
	AuditSource []string
}

// Report is the review. Its JSON form is stable (Version).
type Report struct {
	Version     int            `json:"version"`
	GeneratedAt string         `json:"generated_at"`
	Policy      PolicyRef      `json:"policy"`
	UnusedDays  int            `json:"unused_days"`
	RenewDays   int            `json:"renew_days"`
	Sources     Sources        `json:"sources"`
	Summary     Summary        `json:"summary"`
	Clients     []Client       `json:"clients"`
	Revocations []RevocationIn `json:"revocations"`
}

// PolicyRef names the policy reviewed.
type PolicyRef struct {
	Path    string `json:"path"`
	Version string `json:"version"`
}

// Sources says where the data came from.
type Sources struct {
	Usage     string   `json:"usage"`
	Audit     []string `json:"audit"`
	AuditFrom string   `json:"audit_from,omitempty"`
}

// Summary counts the lines by action, and the uses.
type Summary struct {
	Clients int    `json:"clients"`
	Lines   int    `json:"lines"`
	Keep    int    `json:"keep"`
	Narrow  int    `json:"narrow"`
	Renew   int    `json:"renew"`
	Revoke  int    `json:"revoke"`
	Uses    uint64 `json:"uses"`
}

// Client is one client's part of the review.
type Client struct {
	ClientID   string `json:"client_id"`
	Name       string `json:"name,omitempty"`
	Owner      string `json:"owner,omitempty"`
	Registered bool   `json:"registered"`
	Uses       uint64 `json:"uses"`
	Lines      []Line `json:"lines"`
	// Daily is the client's uses per UTC day, every scope summed, oldest
	// first: the data of the usage chart.
	Daily     []DayPoint  `json:"daily"`
	Drift     []DriftSeen `json:"drift"`
	Straddles []Straddle  `json:"straddles"`
	// Deprecated are the deprecated scopes the audit log shows the
	// client's requests relying on, with their sunset.
	Deprecated  []DeprecatedSeen `json:"deprecated"`
	Revocations []string         `json:"revocations"`
}

// DeprecatedSeen is a deprecated scope a client's requests relied on, as
// the audit log recorded it.
type DeprecatedSeen struct {
	Scope       string `json:"scope"`
	Replacement string `json:"replacement,omitempty"`
	Sunset      string `json:"sunset,omitempty"`
	Count       int    `json:"count"`
	Last        string `json:"last"`
}

// DayPoint is a count on one day (YYYY-MM-DD).
type DayPoint struct {
	Day   string `json:"day"`
	Count uint64 `json:"count"`
}

// Line is one scope of one client.
type Line struct {
	Scope       string `json:"scope"`
	Segment     string `json:"segment,omitempty"`
	Status      string `json:"status"`
	Sunset      string `json:"sunset,omitempty"`
	Replacement string `json:"replacement,omitempty"`
	// Grants are the client's grants covering the scope, expired ones
	// included; empty when it holds none.
	Grants   []Grant `json:"grants"`
	Granted  bool    `json:"granted"`
	Count    uint64  `json:"count"`
	LastUsed string  `json:"last_used,omitempty"`
	LastSeen string  `json:"last_seen,omitempty"`
	// IdleDays is the whole days since the last use, or since the grant
	// when never used (-1 when neither is known).
	IdleDays int    `json:"idle_days"`
	Action   string `json:"action"`
	Reason   string `json:"reason"`
}

// Grant is one approval behind a line.
type Grant struct {
	// Via is scope, segment or implies; From the granted scope or segment
	// (for implies, the granted scope that implies this one).
	Via           string `json:"via"`
	From          string `json:"from"`
	ApprovedBy    string `json:"approved_by,omitempty"`
	Justification string `json:"justification,omitempty"`
	ApprovedAt    string `json:"approved_at,omitempty"`
	ExpiresAt     string `json:"expires_at,omitempty"`
	Expired       bool   `json:"expired"`
}

// DriftSeen is a scope a client's tokens carried without an active grant,
// as the audit log recorded it.
type DriftSeen struct {
	Scope string `json:"scope"`
	Count int    `json:"count"`
	Last  string `json:"last"`
}

// Straddle is a combination of segments a client's tokens held without
// approval (segments_together).
type Straddle struct {
	Segments []string `json:"segments"`
	Count    int      `json:"count"`
	Last     string   `json:"last"`
}

// RevocationIn is a revocation in force.
type RevocationIn struct {
	ID        string `json:"id"`
	Kind      string `json:"kind"`
	Target    string `json:"target"`
	Issuer    string `json:"issuer,omitempty"`
	Scope     string `json:"scope,omitempty"`
	Segment   string `json:"segment,omitempty"`
	Reason    string `json:"reason,omitempty"`
	CreatedAt string `json:"created_at"`
	CreatedBy string `json:"created_by,omitempty"`
	Until     string `json:"until,omitempty"`
}

const day = 24 * time.Hour

func stamp(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

// Build makes the review of in.
func Build(in Input) *Report {
	if in.UnusedDays <= 0 {
		in.UnusedDays = DefaultUnusedDays
	}
	if in.RenewDays <= 0 {
		in.RenewDays = DefaultRenewDays
	}
	pol := in.Policy
	r := &Report{Version: Version, GeneratedAt: stamp(in.Now), UnusedDays: in.UnusedDays, RenewDays: in.RenewDays,
		Policy:  PolicyRef{Path: in.PolicyPath},
		Sources: Sources{Usage: in.UsageSource, Audit: slices.Clone(in.AuditSource), AuditFrom: stamp(in.AuditFrom)},
		Clients: []Client{}, Revocations: []RevocationIn{}}
	if r.Sources.Audit == nil {
		r.Sources.Audit = []string{}
	}
	if pol != nil {
		r.Policy.Version = pol.Version
	}

	clients := map[string]*Client{}
	scopes := map[string]map[string]*Line{}
	client := func(id string) *Client {
		c := clients[id]
		if c == nil {
			c = &Client{ClientID: id, Lines: []Line{}, Daily: []DayPoint{}, Drift: []DriftSeen{}, Straddles: []Straddle{}, Deprecated: []DeprecatedSeen{}, Revocations: []string{}}
			clients[id] = c
			scopes[id] = map[string]*Line{}
		}
		return c
	}
	line := func(id, scope string) *Line {
		client(id)
		l := scopes[id][scope]
		if l == nil {
			l = &Line{Scope: scope, Grants: []Grant{}, IdleDays: -1}
			scopes[id][scope] = l
		}
		return l
	}

	// The policy's clients and every scope their grants name or cover.
	if pol != nil && pol.File != nil {
		for _, cs := range pol.File.Clients {
			c := client(cs.ClientID)
			c.Name, c.Owner, c.Registered = cs.Name, cs.Owner, true
			for _, s := range grantScopes(pol, cs) {
				line(cs.ClientID, s)
			}
		}
	}
	for _, u := range in.Uses {
		l := line(u.ClientID, u.Scope)
		l.Count += u.Count
		if u.LastUsed.After(parse(l.LastUsed)) {
			l.LastUsed = stamp(u.LastUsed)
		}
		if u.LastSeen.After(parse(l.LastSeen)) {
			l.LastSeen = stamp(u.LastSeen)
		}
	}
	daily := map[string]map[string]uint64{}
	for _, d := range in.Days {
		client(d.ClientID)
		if daily[d.ClientID] == nil {
			daily[d.ClientID] = map[string]uint64{}
		}
		daily[d.ClientID][d.Day.UTC().Format(time.DateOnly)] += d.Count
	}
	auditFacts(in, client)
	revs := revocationsInForce(in, r, client)

	for id, c := range clients {
		for _, l := range scopes[id] {
			fill(pol, in, c, l, revs[id])
			c.Lines = append(c.Lines, *l)
			c.Uses += l.Count
		}
		slices.SortFunc(c.Lines, func(a, b Line) int { return strings.Compare(a.Scope, b.Scope) })
		for d, n := range daily[id] {
			c.Daily = append(c.Daily, DayPoint{Day: d, Count: n})
		}
		slices.SortFunc(c.Daily, func(a, b DayPoint) int { return strings.Compare(a.Day, b.Day) })
		r.Clients = append(r.Clients, *c)
	}
	slices.SortFunc(r.Clients, func(a, b Client) int { return strings.Compare(a.ClientID, b.ClientID) })
	r.Summary.Clients = len(r.Clients)
	for _, c := range r.Clients {
		r.Summary.Uses += c.Uses
		for _, l := range c.Lines {
			r.Summary.Lines++
			switch l.Action {
			case Keep:
				r.Summary.Keep++
			case Narrow:
				r.Summary.Narrow++
			case Renew:
				r.Summary.Renew++
			case Revoke:
				r.Summary.Revoke++
			}
		}
	}
	return r
}

// grantScopes returns the scopes a client's grants name or cover (expired
// grants included, so that a lapsed grant is reviewed too), sorted.
func grantScopes(pol *decision.Policy, cs decision.ClientSpec) []string {
	segs := map[string][]string{}
	for _, s := range pol.Segments() {
		segs[s.Name] = s.Scopes
	}
	var out []string
	for _, g := range cs.Grants {
		if g.Scope != "" {
			out = append(out, g.Scope)
			if info, ok := pol.ScopeInfo(g.Scope); ok {
				out = append(out, info.Implies...)
			}
		}
		for _, s := range segs[g.Segment] {
			out = append(out, s)
			if info, ok := pol.ScopeInfo(s); ok {
				out = append(out, info.Implies...)
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// auditFacts folds the audit records into each client's drift and
// straddles.
func auditFacts(in Input, client func(string) *Client) {
	type agg struct {
		n    int
		last time.Time
	}
	drift := map[[2]string]*agg{}
	strad := map[[2]string]*agg{}
	depr := map[[2]string]*agg{}
	bump := func(m map[[2]string]*agg, k [2]string, t time.Time) {
		a := m[k]
		if a == nil {
			a = &agg{}
			m[k] = a
		}
		a.n++
		if t.After(a.last) {
			a.last = t
		}
	}
	for _, a := range in.Accesses {
		if a.ClientID == "" {
			continue
		}
		if !in.AuditFrom.IsZero() && a.Time.Before(in.AuditFrom) {
			continue
		}
		for _, s := range a.Extra {
			bump(drift, [2]string{a.ClientID, s}, a.Time)
		}
		for _, s := range a.Deprecated {
			bump(depr, [2]string{a.ClientID, s}, a.Time)
		}
		if len(a.Segments) > 0 {
			segs := slices.Clone(a.Segments)
			slices.Sort(segs)
			bump(strad, [2]string{a.ClientID, strings.Join(slices.Compact(segs), "\x00")}, a.Time)
		}
	}
	for k, a := range drift {
		c := client(k[0])
		c.Drift = append(c.Drift, DriftSeen{Scope: k[1], Count: a.n, Last: stamp(a.last)})
	}
	for k, a := range strad {
		c := client(k[0])
		c.Straddles = append(c.Straddles, Straddle{Segments: strings.Split(k[1], "\x00"), Count: a.n, Last: stamp(a.last)})
	}
	for k, a := range depr {
		c := client(k[0])
		d := DeprecatedSeen{Scope: k[1], Count: a.n, Last: stamp(a.last)}
		if info, ok := in.Policy.ScopeInfo(k[1]); ok {
			d.Replacement, d.Sunset = info.Replacement, stamp(info.Sunset)
		}
		c.Deprecated = append(c.Deprecated, d)
	}
	// Sorted once every client is known.
	seen := map[string]bool{}
	for k := range drift {
		seen[k[0]] = true
	}
	for k := range strad {
		seen[k[0]] = true
	}
	for k := range depr {
		seen[k[0]] = true
	}
	for id := range seen {
		c := client(id)
		slices.SortFunc(c.Drift, func(a, b DriftSeen) int { return strings.Compare(a.Scope, b.Scope) })
		slices.SortFunc(c.Deprecated, func(a, b DeprecatedSeen) int { return strings.Compare(a.Scope, b.Scope) })
		slices.SortFunc(c.Straddles, func(a, b Straddle) int {
			return strings.Compare(strings.Join(a.Segments, ","), strings.Join(b.Segments, ","))
		})
	}
}

// revocationsInForce lists the revocations in force in r and returns, per
// client, those that name it (kind client).
func revocationsInForce(in Input, r *Report, client func(string) *Client) map[string][]decision.Revocation {
	out := map[string][]decision.Revocation{}
	revs := slices.Clone(in.Revocations)
	slices.SortFunc(revs, func(a, b decision.Revocation) int {
		return cmp.Or(a.CreatedAt.Compare(b.CreatedAt), strings.Compare(a.ID, b.ID))
	})
	for _, rv := range revs {
		if !rv.ActiveAt(in.Now) {
			continue
		}
		r.Revocations = append(r.Revocations, RevocationIn{ID: rv.ID, Kind: rv.Kind.String(), Target: rv.Target(), Issuer: rv.Issuer,
			Scope: rv.Scope, Segment: rv.Segment, Reason: rv.Reason, CreatedAt: stamp(rv.CreatedAt), CreatedBy: rv.CreatedBy, Until: stamp(rv.Until)})
		if rv.Kind == decision.RevokeClient && rv.ClientID != "" {
			c := client(rv.ClientID)
			c.Revocations = append(c.Revocations, rv.ID)
			out[rv.ClientID] = append(out[rv.ClientID], rv)
		}
	}
	return out
}

func parse(s string) time.Time {
	t, _ := time.Parse(time.RFC3339, s)
	return t
}

// fill completes l from the policy and chooses its action.
func fill(pol *decision.Policy, in Input, c *Client, l *Line, revs []decision.Revocation) {
	l.Status = "unknown"
	var info decision.ScopeInfo
	inCatalog := false
	if pol != nil {
		if info, inCatalog = pol.ScopeInfo(l.Scope); inCatalog {
			l.Status, l.Segment, l.Replacement, l.Sunset = info.Status, info.Segment, info.Replacement, stamp(info.Sunset)
		} else if !pol.HasScopeCatalog() {
			l.Status = "active"
		}
	}
	var grants []decision.GrantInfo
	if pol != nil && c.Registered {
		grants = pol.GrantsCovering(c.ClientID, l.Scope)
		if l.Status == "retired" {
			grants = retiredGrants(pol, c.ClientID, l.Scope)
		}
	}
	var firstApproved, latestExpiry time.Time
	active := false
	for _, g := range grants {
		from := cmp.Or(g.Grant.Scope, g.Grant.Segment)
		if g.Via == "implies" && g.From != "" {
			from = g.From
		}
		gr := Grant{Via: g.Via, From: from, ApprovedBy: g.Grant.ApprovedBy, Justification: g.Grant.Justification,
			ApprovedAt: stamp(g.ApprovedAt), ExpiresAt: stamp(g.ExpiresAt), Expired: !g.ActiveAt(in.Now)}
		l.Grants = append(l.Grants, gr)
		if !gr.Expired {
			active = true
			if !g.ExpiresAt.IsZero() && (latestExpiry.IsZero() || g.ExpiresAt.After(latestExpiry)) {
				latestExpiry = g.ExpiresAt
			}
		}
		if !g.ApprovedAt.IsZero() && (firstApproved.IsZero() || g.ApprovedAt.Before(firstApproved)) {
			firstApproved = g.ApprovedAt
		}
	}
	noExpiry := false
	for _, g := range grants {
		if g.ActiveAt(in.Now) && g.ExpiresAt.IsZero() {
			noExpiry = true
		}
	}
	l.Granted = active
	lastUsed := parse(l.LastUsed)
	switch {
	case !lastUsed.IsZero():
		l.IdleDays = int(in.Now.Sub(lastUsed) / day)
	case !firstApproved.IsZero():
		l.IdleDays = int(in.Now.Sub(firstApproved) / day)
	}
	unused := time.Duration(in.UnusedDays) * day
	usedRecently := !lastUsed.IsZero() && in.Now.Sub(lastUsed) < unused
	idle := lastUsed.IsZero() || in.Now.Sub(lastUsed) >= unused
	// A grant younger than the window is not yet judged unused.
	young := lastUsed.IsZero() && !firstApproved.IsZero() && in.Now.Sub(firstApproved) < unused
	onlyIndirect := len(l.Grants) > 0
	for _, g := range l.Grants {
		if !g.Expired && g.Via == "scope" {
			onlyIndirect = false
		}
	}
	never := "never used"
	if !lastUsed.IsZero() {
		never = "last used " + lastUsed.UTC().Format(time.DateOnly) + ", " + strconv.Itoa(l.IdleDays) + " days ago"
	}
	set := func(action, reason string) { l.Action, l.Reason = action, reason }
	switch {
	case len(revs) > 0:
		set(Revoke, "revocation "+revs[0].ID+" of the client is in force ("+cmp.Or(revs[0].Reason, "no reason given")+"): withdraw its grants, or they return when it is lifted")
	case l.Status == "retired" && len(l.Grants) > 0:
		set(Revoke, "the scope is retired and grants nothing: remove the grant"+replacedBy(l))
	case !active && len(l.Grants) > 0 && usedRecently:
		set(Renew, "the grant expired "+expiredOn(l)+" but the scope is still used ("+never+"); renew the approval, or stop issuing the scope")
	case !active && len(l.Grants) > 0:
		set(Revoke, "the grant expired "+expiredOn(l)+" and the scope is not in use ("+never+"): remove the grant")
	case !active && l.Count > 0:
		set(Revoke, "used without any grant ("+never+"); stop the authorization server issuing it to this client, or register a grant with its approval")
	case !active:
		set(Revoke, "seen in tokens without any grant, never used: stop the authorization server issuing it to this client")
	case idle && !young && onlyIndirect:
		set(Narrow, "held only through "+indirect(l)+" and unused for "+strconv.Itoa(in.UnusedDays)+"+ days ("+never+"): grant the scopes in use instead")
	case idle && !young:
		set(Revoke, "unused for "+strconv.Itoa(in.UnusedDays)+"+ days ("+never+"): withdraw the grant (least privilege)")
	case l.Status == "deprecated" && l.Count > 0:
		set(Narrow, "deprecated"+sunsetOn(l)+" and still used: move the client to "+cmp.Or(l.Replacement, "its replacement")+" and remove this grant")
	case !noExpiry && !latestExpiry.IsZero() && latestExpiry.Sub(in.Now) < time.Duration(in.RenewDays)*day && usedRecently:
		set(Renew, "the grant expires "+latestExpiry.UTC().Format(time.DateOnly)+", within "+strconv.Itoa(in.RenewDays)+" days, and the scope is in use: renew the approval")
	case len(c.Straddles) > 0 && l.Segment != "" && straddles(c, l.Segment):
		set(Narrow, "tokens of the client straddle segment "+l.Segment+" with others it is not approved to combine: approve the combination in segments_together, or split the client")
	case young:
		set(Keep, "granted "+firstApproved.UTC().Format(time.DateOnly)+", within the "+strconv.Itoa(in.UnusedDays)+"-day window; not used yet")
	default:
		set(Keep, "in use under an active grant: "+never)
	}
}

func replacedBy(l *Line) string {
	if l.Replacement != "" {
		return " (replaced by " + l.Replacement + ")"
	}
	return ""
}

func sunsetOn(l *Line) string {
	if l.Sunset != "" {
		return " (sunset " + l.Sunset[:10] + ")"
	}
	return ""
}

func expiredOn(l *Line) string {
	last := ""
	for _, g := range l.Grants {
		if g.ExpiresAt > last {
			last = g.ExpiresAt
		}
	}
	if last == "" {
		return ""
	}
	return "on " + last[:10]
}

func indirect(l *Line) string {
	var parts []string
	for _, g := range l.Grants {
		if !g.Expired {
			parts = append(parts, g.Via+" "+g.From)
		}
	}
	return strings.Join(parts, ", ")
}

func straddles(c *Client, seg string) bool {
	for _, s := range c.Straddles {
		if slices.Contains(s.Segments, seg) {
			return true
		}
	}
	return false
}

// retiredGrants returns the grants of client that name the retired scope:
// they grant nothing, so GrantsCovering leaves them out, but a review must
// list them to have them removed.
func retiredGrants(pol *decision.Policy, client, scope string) []decision.GrantInfo {
	var out []decision.GrantInfo
	for _, cs := range pol.File.Clients {
		if cs.ClientID != client {
			continue
		}
		for _, g := range cs.Grants {
			if g.Scope != scope {
				continue
			}
			gi := decision.GrantInfo{ClientID: client, Grant: g, Via: "scope"}
			gi.ApprovedAt, _ = ParseGrantDate(g.ApprovedAt)
			gi.ExpiresAt, _ = ParseGrantDate(g.ExpiresAt)
			out = append(out, gi)
		}
	}
	return out
}

// ParseGrantDate parses a grant date as the policy does: YYYY-MM-DD (00:00
// UTC) or RFC 3339.
func ParseGrantDate(s string) (time.Time, bool) {
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, true
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, true
	}
	return time.Time{}, false
}
