package usage

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/scopegate/scopegate/decision"
)

// Query selects what a report lists.
type Query struct {
	// UnusedFor, when positive, keeps only granted scopes not used for at
	// least this long (never used included): the over-scoped grants.
	UnusedFor time.Duration
	// ClientID keeps only this client; "" keeps every client.
	ClientID string
}

// ScopeUsage is how one client used one scope.
type ScopeUsage struct {
	Scope string
	// Granted: the policy grants the scope to the client, or its tokens
	// were seen carrying it.
	Granted bool
	// Used: an allowed request used the scope.
	Used     bool
	LastUsed time.Time // zero: never
	LastSeen time.Time // zero: never seen in a token
	Count    uint64
}

// ClientUsage is one client's scopes, ordered by scope.
type ClientUsage struct {
	ClientID string
	Scopes   []ScopeUsage
}

// MaxClientIDBytes bounds a client filter.
const MaxClientIDBytes = 1024

// Report lists scope usage per client, ordered by client id. With a Store
// it reads the store (every replica's persisted counts) plus this
// replica's counts not yet persisted.
func (a *Aggregator) Report(ctx context.Context, q Query) ([]ClientUsage, error) {
	if q.UnusedFor < 0 {
		return nil, fmt.Errorf("usage report: unused_for %v is negative: give a positive duration, or 0 for every scope", q.UnusedFor)
	}
	if len(q.ClientID) > MaxClientIDBytes {
		return nil, fmt.Errorf("usage report: client_id is %d bytes long: client ids are at most %d", len(q.ClientID), MaxClientIDBytes)
	}
	now := a.opts.Clock()
	merged := map[[2]string]*ScopeUsage{}
	get := func(client, scope string) *ScopeUsage {
		k := [2]string{client, scope}
		u := merged[k]
		if u == nil {
			u = &ScopeUsage{Scope: scope}
			merged[k] = u
		}
		return u
	}
	add := func(t Tally, count uint64) {
		u := get(t.ClientID, t.Scope)
		u.Count += count
		if t.LastUsed.After(u.LastUsed) {
			u.LastUsed = t.LastUsed
		}
		if t.LastSeen.After(u.LastSeen) {
			u.LastSeen = t.LastSeen
		}
	}
	if a.opts.Store != nil {
		a.flushMu.Lock()
		defer a.flushMu.Unlock()
		stored, err := a.opts.Store.LoadUsage(ctx, q.ClientID)
		if err != nil {
			return nil, fmt.Errorf("usage report: read the usage store: %w", err)
		}
		for _, t := range stored {
			add(t, t.Count)
		}
	}
	a.mu.Lock()
	for client, c := range a.clients {
		if q.ClientID != "" && client != q.ClientID {
			continue
		}
		for scope, st := range c.scopes {
			count := st.count
			if a.opts.Store != nil {
				count = st.pending // the rest is in the store
			}
			add(Tally{ClientID: client, Scope: scope, LastUsed: unixTime(st.lastUsed), LastSeen: unixTime(st.lastSeen)}, count)
		}
	}
	a.mu.Unlock()
	for _, u := range merged {
		u.Used = u.Count > 0 || !u.LastUsed.IsZero()
		u.Granted = !u.LastSeen.IsZero()
	}
	if a.opts.Policy != nil {
		for client, scopes := range PolicyGrants(a.opts.Policy(), now) {
			if q.ClientID != "" && client != q.ClientID {
				continue
			}
			for _, s := range scopes {
				get(client, s).Granted = true
			}
		}
	}

	byClient := map[string][]ScopeUsage{}
	for k, u := range merged {
		if q.UnusedFor > 0 && !(u.Granted && (u.LastUsed.IsZero() || now.Sub(u.LastUsed) >= q.UnusedFor)) {
			continue
		}
		byClient[k[0]] = append(byClient[k[0]], *u)
	}
	out := make([]ClientUsage, 0, len(byClient))
	for client, scopes := range byClient {
		slices.SortFunc(scopes, func(x, y ScopeUsage) int { return strings.Compare(x.Scope, y.Scope) })
		out = append(out, ClientUsage{ClientID: client, Scopes: scopes})
	}
	slices.SortFunc(out, func(x, y ClientUsage) int { return strings.Compare(x.ClientID, y.ClientID) })
	return out, nil
}

// PolicyGrants returns, per registered client of pol, the scopes its
// grants cover at now: each granted scope, and every scope of each granted
// segment; expired grants are left out. A policy without clients returns
// nil.
func PolicyGrants(pol *decision.Policy, now time.Time) map[string][]string {
	if pol == nil || pol.File == nil || len(pol.File.Clients) == 0 {
		return nil
	}
	pf := pol.File
	segScopes := map[string][]string{}
	for _, seg := range pf.Segments {
		segScopes[seg.Name] = append(segScopes[seg.Name], seg.Scopes...)
	}
	for _, sc := range pf.Scopes {
		if sc.Segment != "" {
			segScopes[sc.Segment] = append(segScopes[sc.Segment], sc.Name)
		}
	}
	out := make(map[string][]string, len(pf.Clients))
	for _, c := range pf.Clients {
		var scopes []string
		for _, g := range c.Grants {
			if g.ExpiresAt != "" {
				if exp, ok := parseDate(g.ExpiresAt); ok && !now.Before(exp) {
					continue
				}
			}
			if g.Scope != "" {
				scopes = append(scopes, g.Scope)
			}
			if g.Segment != "" {
				scopes = append(scopes, segScopes[g.Segment]...)
			}
		}
		slices.Sort(scopes)
		out[c.ClientID] = append(out[c.ClientID], slices.Compact(scopes)...)
	}
	return out
}

// parseDate parses a grant date as the policy does: YYYY-MM-DD (00:00 UTC)
// or RFC 3339.
func parseDate(s string) (time.Time, bool) {
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, true
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, true
	}
	return time.Time{}, false
}

// ParseWindow parses a report window: a Go duration ("720h", "90m") or a
// whole number of days ("30d").
func ParseWindow(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, fmt.Errorf("duration is empty: write e.g. 30d or 12h")
	}
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.ParseUint(days, 10, 32)
		if err != nil || n > 100*365 {
			return 0, fmt.Errorf("duration %q: write whole days from 0 to 36500, e.g. 30d, or a Go duration such as 12h", s)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("duration %q: write days (30d) or a Go duration (12h, 90m)", s)
	}
	if d < 0 {
		return 0, fmt.Errorf("duration %q is negative: give a positive duration", s)
	}
	return d, nil
}
