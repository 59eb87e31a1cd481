package decision

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"
)

// Revocation: refusing tokens before they expire.
//
// A revocation names one token (issuer and jti: never a hash of the raw
// token, whose signature can be re-encoded), every token of a subject, or
// every token of a client, optionally narrowed to one scope, one segment of
// the scope catalog, or one path prefix, optionally only until a time. The
// engine holds them in an immutable RevocationSet, swapped with one pointer
// store like the policy; store/ keeps the system of record and feeds it.
//
// The decision path pays for revocations in proportion to what exists: with
// none, one atomic load and a length check; with a million revoked jtis, one
// map lookup keyed by (issuer, jti), a struct of two strings that hashes
// without allocating. Narrowed revocations are looked up only when some
// exist, in the scopes step (revoke_scope.go).

// RevocationKind says what a revocation targets.
type RevocationKind uint8

// The revocation kinds. Their string forms are a public contract (admin
// API, store tables, audit).
const (
	// RevokeToken targets one token, by issuer and jti.
	RevokeToken RevocationKind = iota + 1
	// RevokeSubject targets every token whose sub is the subject.
	RevokeSubject
	// RevokeClient targets every token issued to the client (client_id,
	// else azp).
	RevokeClient
	// RevokeSession targets the tokens of one session of one issuer: those
	// whose sid claim is SessionID; or, when SessionID is empty, the tokens
	// of Subject that carry no sid (revoke_session.go).
	RevokeSession
	// RevokeDevice targets the tokens issued to one device: those whose
	// device claim (the issuer's device_claim) is DeviceID
	// (revoke_device.go).
	RevokeDevice
	// RevokeAssurance lowers the assurance a subject's tokens carry: on a
	// route whose step_up requires an acr, a token of Subject issued
	// before IssuedBefore counts as if its acr were ACRLevel, so it is
	// refused where that level is not enough (revoke_device.go).
	RevokeAssurance
)

var revocationKindNames = [...]string{RevokeToken: "token", RevokeSubject: "subject", RevokeClient: "client", RevokeSession: "session", RevokeDevice: "device", RevokeAssurance: "assurance"}

// String returns "token", "subject", "client", "session", "device" or
// "assurance" ("" for an invalid kind).
func (k RevocationKind) String() string {
	if int(k) < len(revocationKindNames) {
		return revocationKindNames[k]
	}
	return ""
}

// ParseRevocationKind returns the kind whose string form is s.
func ParseRevocationKind(s string) (RevocationKind, bool) {
	for k := RevokeToken; int(k) < len(revocationKindNames); k++ {
		if revocationKindNames[k] == s {
			return k, true
		}
	}
	return 0, false
}

// Limits on a revocation's fields, in bytes. Every store backend holds every
// revocation that passes Validate, so the limits keep them in the range all
// of them index comfortably.
const (
	MaxRevocationIDBytes     = 64
	MaxRevocationValueBytes  = 1024 // issuer, jti, subject, client id
	MaxRevocationScopeBytes  = 256  // scope, segment name
	MaxRevocationPathBytes   = 1024 // a path-prefix segment
	MaxRevocationReasonBytes = 1024
	MaxRevocationActorBytes  = 512 // created_by
)

// Revocation is one rule that refuses tokens before they expire. It is the
// record every layer shares: the store persists it, the admin API lists it,
// the engine enforces it. A Revocation held by a RevocationSet is never
// modified.
type Revocation struct {
	// ID is unique; the store assigns it.
	ID   string
	Kind RevocationKind
	// Issuer is the token's issuer for RevokeToken (required); for subject
	// and client revocations it limits the revocation to tokens of that
	// issuer, "" meaning every issuer.
	Issuer   string
	JTI      string // RevokeToken only
	Subject  string // RevokeSubject, RevokeAssurance; RevokeSession without SessionID
	ClientID string // RevokeClient only
	// SessionID is the sid claim a RevokeSession targets.
	SessionID string
	// DeviceID is the device claim a RevokeDevice targets.
	DeviceID string
	// ACRLevel is the acr a RevokeAssurance lowers the subject's earlier
	// tokens to ("" for none at all: every acr requirement refuses them).
	ACRLevel string
	// Scope narrows the revocation to that scope: the token keeps its other
	// scopes. "" means every scope.
	Scope string
	// Segment narrows the revocation either to a segment of the policy's
	// scope catalog (a name such as "billing": every scope of the segment is
	// revoked, the others kept) or, when it starts with "/", to requests
	// whose normalized path is that prefix or below it ("/v1/payments").
	// At most one of Scope and Segment is set.
	Segment string
	// Reason is why the revocation was made (a ticket, an incident). It is
	// operator text: audit logs and the admin API show it, denied clients
	// never see it.
	Reason    string
	CreatedAt time.Time
	// Until is when the revocation lapses on its own; zero means never.
	Until time.Time
	// IssuedBefore, when set, limits a subject, client or session
	// revocation to tokens issued before it: those whose iat is earlier,
	// and those with no iat at all (fail closed). Tokens issued at or
	// after it are untouched, so a credential change revokes what came
	// before it only.
	IssuedBefore time.Time
	CreatedBy    string
	// SourceEventTime is when the event that caused the revocation happened
	// (an SSF event's event_timestamp), zero for one an operator made. It
	// does not change what is revoked; every replica measures from it how
	// long the event took to be enforced.
	SourceEventTime time.Time
}

// Whole reports whether the revocation refuses the tokens outright, rather
// than for one scope, segment or path prefix (or, for an assurance
// revocation, on step-up routes only).
func (r *Revocation) Whole() bool {
	return r.Scope == "" && r.Segment == "" && r.Kind != RevokeAssurance
}

// ActiveAt reports whether the revocation is in force at t: it has not
// lapsed.
func (r *Revocation) ActiveAt(t time.Time) bool { return r.Until.IsZero() || t.Before(r.Until) }

// PathPrefix returns the path prefix of a revocation narrowed to one, e.g.
// "/v1/payments".
func (r *Revocation) PathPrefix() (string, bool) {
	if strings.HasPrefix(r.Segment, "/") {
		return r.Segment, true
	}
	return "", false
}

// Target returns the value the revocation is keyed by: the jti, subject or
// client id.
func (r *Revocation) Target() string {
	switch r.Kind {
	case RevokeToken:
		return r.JTI
	case RevokeSubject:
		return r.Subject
	case RevokeClient:
		return r.ClientID
	case RevokeSession:
		if r.SessionID != "" {
			return r.SessionID
		}
		return r.Subject
	case RevokeDevice:
		return r.DeviceID
	case RevokeAssurance:
		return r.Subject
	}
	return ""
}

// Validate reports the first problem that makes r unusable, naming the
// field and the fix. It does not look at ID, CreatedAt or Until, which the
// store fills in and checks against its clock.
func (r *Revocation) Validate() error {
	var want, other1, other2 string
	var wantName, name1, name2 string
	switch r.Kind {
	case RevokeToken:
		want, wantName, other1, name1, other2, name2 = r.JTI, "jti", r.Subject, "subject", r.ClientID, "client_id"
		if r.Issuer == "" {
			return errors.New("revocation: a token revocation needs the token's issuer (iss) as well as its jti")
		}
	case RevokeSubject:
		want, wantName, other1, name1, other2, name2 = r.Subject, "subject", r.JTI, "jti", r.ClientID, "client_id"
	case RevokeClient:
		want, wantName, other1, name1, other2, name2 = r.ClientID, "client_id", r.JTI, "jti", r.Subject, "subject"
	case RevokeSession:
		if err := r.validateSession(); err != nil {
			return err
		}
		want, wantName, other1, name1, other2, name2 = r.Target(), "session_id", r.JTI, "jti", r.ClientID, "client_id"
	case RevokeDevice:
		want, wantName, other1, name1, other2, name2 = r.DeviceID, "device_id", r.JTI, "jti", r.ClientID, "client_id"
		if r.Subject != "" {
			return errors.New("revocation: a device revocation names its target by device_id only: leave subject empty")
		}
	case RevokeAssurance:
		if err := r.validateAssurance(); err != nil {
			return err
		}
		want, wantName, other1, name1, other2, name2 = r.Subject, "subject", r.JTI, "jti", r.ClientID, "client_id"
	default:
		return fmt.Errorf("revocation: kind %d is not one of token, subject, client, session, device, assurance", r.Kind)
	}
	if r.Kind != RevokeSession && r.SessionID != "" {
		return fmt.Errorf("revocation: session_id is for session revocations only: leave it empty for a %s revocation", r.Kind)
	}
	if r.Kind != RevokeDevice && r.DeviceID != "" {
		return fmt.Errorf("revocation: device_id is for device revocations only: leave it empty for a %s revocation", r.Kind)
	}
	if r.Kind != RevokeAssurance && r.ACRLevel != "" {
		return fmt.Errorf("revocation: acr_level is for assurance revocations only: leave it empty for a %s revocation", r.Kind)
	}
	if err := r.validateIssuedBefore(); err != nil {
		return err
	}
	if want == "" {
		return fmt.Errorf("revocation: a %s revocation needs %s", r.Kind, wantName)
	}
	if other1 != "" || other2 != "" {
		return fmt.Errorf("revocation: a %s revocation names its target by %s only: leave %s and %s empty", r.Kind, wantName, name1, name2)
	}
	for _, f := range [...]struct {
		name, v string
		max     int
	}{
		{"id", r.ID, MaxRevocationIDBytes},
		{"issuer", r.Issuer, MaxRevocationValueBytes},
		{wantName, want, MaxRevocationValueBytes},
		{"acr_level", r.ACRLevel, MaxRevocationValueBytes},
		{"scope", r.Scope, MaxRevocationScopeBytes},
		{"segment", r.Segment, MaxRevocationPathBytes},
		{"reason", r.Reason, MaxRevocationReasonBytes},
		{"created_by", r.CreatedBy, MaxRevocationActorBytes},
	} {
		if len(f.v) > f.max {
			return fmt.Errorf("revocation: %s is %d bytes: use at most %d", f.name, len(f.v), f.max)
		}
		if !utf8.ValidString(f.v) || strings.IndexByte(f.v, 0) >= 0 {
			return fmt.Errorf("revocation: %s has invalid UTF-8 or a NUL byte: use UTF-8 text", f.name)
		}
	}
	if strings.TrimSpace(r.Reason) == "" {
		return errors.New("revocation: reason is required: say why (e.g. a ticket or incident reference); it is kept for the audit")
	}
	if r.Scope != "" && r.Segment != "" {
		return errors.New("revocation: set scope or segment, not both: make two revocations to narrow by each")
	}
	if r.Scope != "" && !isScopeToken(r.Scope) {
		return fmt.Errorf("revocation: scope %q contains whitespace, a quote or a backslash; a scope is one token, e.g. billing:write", r.Scope)
	}
	if p, ok := r.PathPrefix(); ok {
		if err := checkPathPrefix(p); err != nil {
			return err
		}
	} else if r.Segment != "" {
		if len(r.Segment) > MaxRevocationScopeBytes {
			return fmt.Errorf("revocation: segment name is %d bytes: use at most %d", len(r.Segment), MaxRevocationScopeBytes)
		}
		if !isScopeToken(r.Segment) {
			return fmt.Errorf("revocation: segment %q is neither a segment name of the scope catalog (e.g. billing) nor a path prefix starting with / (e.g. /v1/payments)", r.Segment)
		}
	}
	return nil
}

// isScopeToken reports whether s is one RFC 6749 scope token: no
// whitespace, quote or backslash.
func isScopeToken(s string) bool {
	return s != "" && !strings.ContainsAny(s, " \t\r\n\"\\")
}

// checkPathPrefix accepts a path prefix written as normalized paths are:
// absolute, no query, no empty, "." or ".." segment, no trailing slash.
func checkPathPrefix(p string) error {
	switch {
	case p == "/":
		return errors.New("revocation: segment \"/\" would cover every path: leave segment empty instead")
	case strings.ContainsAny(p, "?#"):
		return fmt.Errorf("revocation: segment %q has a query or fragment: give a path prefix only, e.g. /v1/payments", p)
	case strings.HasSuffix(p, "/"):
		return fmt.Errorf("revocation: segment %q ends with /: drop the trailing slash (%q covers the path and everything below it)", p, strings.TrimRight(p, "/"))
	case strings.ContainsAny(p, " \t\r\n"):
		return fmt.Errorf("revocation: segment %q contains whitespace: percent-encode it as the path is", p)
	}
	for seg := range strings.SplitSeq(p[1:], "/") {
		if seg == "" || seg == "." || seg == ".." {
			return fmt.Errorf("revocation: segment %q has an empty, \".\" or \"..\" path segment: write the normalized path, e.g. /v1/payments", p)
		}
	}
	if _, detail, ok := normalizePath(p, prefixPathSpec(p)); !ok {
		return fmt.Errorf("revocation: segment %q is not a path prefix a request path could have: %s", p, detail)
	}
	return nil
}

// prefixPathSpec is the path option under which a path prefix read without
// its policy is normalized: a raw ';' is taken as written (the policy
// allows it, or no path has it).
func prefixPathSpec(p string) *PathSpec {
	return &PathSpec{AllowSemicolon: strings.IndexByte(p, ';') >= 0}
}

// canonicalSegment returns a path-prefix segment in the canonical path
// form ("/%6Frders" becomes "/orders"), so a prefix stored before paths
// were canonicalized, or written by hand into a store, still matches the
// paths it names; anything else is returned as it is. It allocates nothing
// when seg is already canonical.
func canonicalSegment(seg string) string {
	if !strings.HasPrefix(seg, "/") {
		return seg
	}
	norm, _, ok := normalizePath(seg, prefixPathSpec(seg))
	if !ok {
		return seg
	}
	if len(norm) > 1 {
		norm = strings.TrimSuffix(norm, "/")
	}
	return norm
}

// Details of revocation denies. They tell the client what was revoked, not
// why: the reason is operator text kept for the audit.
const (
	detailTokenRevoked        = "the token has been revoked"
	detailSubjectRevoked      = "every token of the token's subject has been revoked"
	detailClientRevoked       = "every token of the token's client has been revoked"
	detailTokenScopeRevoked   = "the scope this route requires has been revoked for this token"
	detailSubjectScopeRevoked = "the scope this route requires has been revoked for the token's subject"
	detailClientScopeRevoked  = "the scope this route requires has been revoked for the token's client"
	detailTokenPathRevoked    = "the token has been revoked for this path"
	detailSubjectPathRevoked  = "the token's subject has been revoked for this path"
	detailClientPathRevoked   = "the token's client has been revoked for this path"
	detailRevocationStale     = "the revocation list has not been synchronized within its staleness bound and the route requires a high-risk scope; denied to fail closed"
)

func wholeDetail(k RevocationKind) string {
	switch k {
	case RevokeSubject:
		return detailSubjectRevoked
	case RevokeClient:
		return detailClientRevoked
	case RevokeSession:
		return detailSessionRevoked
	case RevokeDevice:
		return detailDeviceRevoked
	}
	return detailTokenRevoked
}

// tokenKey and principalKey are struct keys of strings: a lookup hashes
// the strings in place, with no concatenation and no allocation.
type tokenKey struct{ iss, jti string }

// principalKey is a subject or a client of one issuer; iss "" matches
// every issuer.
type principalKey struct{ iss, id string }

// revIndex maps what a token carries to the revocations that target it.
type revIndex struct {
	tokens   map[tokenKey][]*Revocation
	subjects map[principalKey][]*Revocation
	clients  map[principalKey][]*Revocation
	sessions map[sessionKey][]*Revocation
	// devices are keyed by (iss, device id), assurance by (iss, subject);
	// iss "" matches every issuer.
	devices   map[principalKey][]*Revocation
	assurance map[principalKey][]*Revocation
	// byID holds every revocation; in a delta level, a nil value is a
	// revocation removed from an older level.
	byID map[string]*Revocation
}

func newRevIndex(n int) *revIndex {
	return &revIndex{
		tokens:    make(map[tokenKey][]*Revocation, n),
		subjects:  map[principalKey][]*Revocation{},
		clients:   map[principalKey][]*Revocation{},
		sessions:  map[sessionKey][]*Revocation{},
		devices:   map[principalKey][]*Revocation{},
		assurance: map[principalKey][]*Revocation{},
		byID:      make(map[string]*Revocation, n),
	}
}

// A RevocationSet is a base index plus up to two small delta levels that
// shadow it, newest first, like the levels of a log-structured tree. Apply
// copies only the newest level (at most l0Limit changes); when that fills
// it is merged into the older level, and when that holds more than
// l1Limit changes or an eighth of the base, Apply rebuilds everything into
// one base. A change therefore costs O(l0Limit) plus an amortized share of
// the merges, never O(all revocations), while a lookup checks at most three
// maps. Whoever feeds the engine should also rebuild sets off the decision
// path from time to time (Compact, or a fresh NewRevocationSet from the
// store), so the synchronous rebuild is a fallback.
const (
	l0Limit = 64
	l1Limit = 4096
)

// RevocationSet is an immutable snapshot of the revocations in force. The
// engine reads it without locks; a change builds a new set (Apply, which
// shares the unchanged bulk with the old one) and swaps it in with
// Engine.SetRevocations. A nil *RevocationSet holds nothing.
type RevocationSet struct {
	base *revIndex
	// deltas shadow base key by key, newest first: a key present in a
	// delta (even with an empty list) is looked up there only. nil levels
	// are empty.
	deltas [2]*revIndex
	// Counts by kind, and of narrowed revocations, so the decision path
	// skips lookups that cannot match.
	n, nTok, nSub, nCli, nSes, nDev, nAsr, nNarrow int
}

// NewRevocationSet indexes revs. Later entries replace earlier ones with
// the same ID; entries of an unknown kind are ignored (Validate them first
// to report them). Lapsed entries are kept and ignored at lookup; whoever
// builds sets drops them (the store does not list them).
func NewRevocationSet(revs []Revocation) *RevocationSet {
	s := &RevocationSet{base: newRevIndex(len(revs))}
	recs := make([]Revocation, len(revs))
	copy(recs, revs)
	// Backwards, so the last entry of an ID is the one kept.
	for i := len(recs) - 1; i >= 0; i-- {
		r := &recs[i]
		if r.Kind.String() == "" {
			continue
		}
		r.Segment = canonicalSegment(r.Segment)
		if _, dup := s.base.byID[r.ID]; dup {
			continue
		}
		s.base.byID[r.ID] = r
		s.base.setList(r, append(s.listFor(r), r))
		s.count(r, 1)
	}
	return s
}

func (s *RevocationSet) count(r *Revocation, d int) {
	s.n += d
	switch r.Kind {
	case RevokeToken:
		s.nTok += d
	case RevokeSubject:
		s.nSub += d
	case RevokeClient:
		s.nCli += d
	case RevokeSession:
		s.nSes += d
	case RevokeDevice:
		s.nDev += d
	case RevokeAssurance:
		s.nAsr += d
		return // neither whole nor narrowed: the constraints step checks it
	}
	if !r.Whole() {
		s.nNarrow += d
	}
}

// listFor returns the current list of r's key (newest level first).
func (s *RevocationSet) listFor(r *Revocation) []*Revocation {
	switch r.Kind {
	case RevokeToken:
		return s.tokenList(tokenKey{r.Issuer, r.JTI})
	case RevokeSubject:
		return s.principalList(subjectMap, principalKey{r.Issuer, r.Subject})
	case RevokeSession:
		return s.sessionList(r.sessionKey())
	case RevokeDevice:
		return s.principalList(deviceMap, principalKey{r.Issuer, r.DeviceID})
	case RevokeAssurance:
		return s.principalList(assuranceMap, principalKey{r.Issuer, r.Subject})
	default:
		return s.principalList(clientMap, principalKey{r.Issuer, r.ClientID})
	}
}

// setList sets the list of r's key in x.
func (x *revIndex) setList(r *Revocation, l []*Revocation) {
	switch r.Kind {
	case RevokeToken:
		x.tokens[tokenKey{r.Issuer, r.JTI}] = l
	case RevokeSubject:
		x.subjects[principalKey{r.Issuer, r.Subject}] = l
	case RevokeSession:
		x.sessions[r.sessionKey()] = l
	case RevokeDevice:
		x.devices[principalKey{r.Issuer, r.DeviceID}] = l
	case RevokeAssurance:
		x.assurance[principalKey{r.Issuer, r.Subject}] = l
	default:
		x.clients[principalKey{r.Issuer, r.ClientID}] = l
	}
}

// principalMap selects the subject or the client map.
type principalMap uint8

const (
	subjectMap principalMap = iota
	clientMap
	deviceMap
	assuranceMap
)

func (x *revIndex) principals(m principalMap) map[principalKey][]*Revocation {
	switch m {
	case subjectMap:
		return x.subjects
	case deviceMap:
		return x.devices
	case assuranceMap:
		return x.assurance
	}
	return x.clients
}

// tokenList returns the revocations of (iss, jti), newest level first.
func (s *RevocationSet) tokenList(k tokenKey) []*Revocation {
	for _, x := range s.deltas {
		if x != nil {
			if l, ok := x.tokens[k]; ok {
				return l
			}
		}
	}
	return s.base.tokens[k]
}

func (s *RevocationSet) principalList(m principalMap, k principalKey) []*Revocation {
	for _, x := range s.deltas {
		if x != nil {
			if l, ok := x.principals(m)[k]; ok {
				return l
			}
		}
	}
	return s.base.principals(m)[k]
}

// Len returns the number of revocations in the set, lapsed ones included.
func (s *RevocationSet) Len() int {
	if s == nil {
		return 0
	}
	return s.n
}

// Get returns the revocation with id.
func (s *RevocationSet) Get(id string) (Revocation, bool) {
	if r := s.get(id); r != nil {
		return *r, true
	}
	return Revocation{}, false
}

func (s *RevocationSet) get(id string) *Revocation {
	if s == nil {
		return nil
	}
	for _, x := range s.deltas {
		if x != nil {
			if r, ok := x.byID[id]; ok {
				return r
			}
		}
	}
	return s.base.byID[id]
}

// All returns every revocation active at now, oldest first (then by ID).
// It copies; call it off the decision path.
func (s *RevocationSet) All(now time.Time) []Revocation {
	if s == nil {
		return nil
	}
	out := make([]Revocation, 0, s.n)
	s.each(func(r *Revocation) {
		if r.ActiveAt(now) {
			out = append(out, *r)
		}
	})
	slices.SortFunc(out, func(a, b Revocation) int {
		if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
			return c
		}
		return cmp.Compare(a.ID, b.ID)
	})
	return out
}

// each calls fn for every revocation of the set (deltas applied).
func (s *RevocationSet) each(fn func(*Revocation)) {
	var seen map[string]bool
	for _, x := range s.deltas {
		if x == nil {
			continue
		}
		if seen == nil {
			seen = map[string]bool{}
		}
		for id, r := range x.byID {
			if seen[id] {
				continue
			}
			seen[id] = true
			if r != nil {
				fn(r)
			}
		}
	}
	for id, r := range s.base.byID {
		if !seen[id] {
			fn(r)
		}
	}
}

// clone returns a copy of x (an empty index when x is nil).
func (x *revIndex) clone() *revIndex {
	c := newRevIndex(0)
	if x != nil {
		x.overlayOnto(c)
	}
	return c
}

// overlayOnto copies every entry of x into dst, replacing dst's: x is the
// newer level, and each of its lists is already the whole list of its key.
func (x *revIndex) overlayOnto(dst *revIndex) {
	for k, v := range x.tokens {
		dst.tokens[k] = v
	}
	for k, v := range x.subjects {
		dst.subjects[k] = v
	}
	for k, v := range x.clients {
		dst.clients[k] = v
	}
	for k, v := range x.sessions {
		dst.sessions[k] = v
	}
	for k, v := range x.devices {
		dst.devices[k] = v
	}
	for k, v := range x.assurance {
		dst.assurance[k] = v
	}
	for k, v := range x.byID {
		dst.byID[k] = v
	}
}

// Apply returns a new set: s with put added (replacing any revocation with
// the same ID) and the revocations with the ids in del removed; unknown ids
// are ignored. s itself is unchanged. The new set shares s's bulk, so a
// change costs O(changes since the last rebuild), not O(all revocations).
func (s *RevocationSet) Apply(put []Revocation, del []string) *RevocationSet {
	if s == nil {
		s = NewRevocationSet(nil)
	}
	ns := *s
	d := s.deltas[0].clone()
	ns.deltas[0] = d
	drop := func(old *Revocation) {
		l := slices.DeleteFunc(slices.Clone(ns.listFor(old)), func(o *Revocation) bool { return o.ID == old.ID })
		d.setList(old, l) // an empty list still shadows the older levels
		d.byID[old.ID] = nil
		ns.count(old, -1)
	}
	for _, id := range del {
		if old := ns.get(id); old != nil {
			drop(old)
		}
	}
	recs := make([]Revocation, len(put))
	copy(recs, put)
	for i := range recs {
		r := &recs[i]
		if r.Kind.String() == "" {
			continue
		}
		r.Segment = canonicalSegment(r.Segment)
		if old := ns.get(r.ID); old != nil {
			drop(old)
		}
		d.setList(r, append(slices.Clone(ns.listFor(r)), r))
		d.byID[r.ID] = r
		ns.count(r, 1)
	}
	if len(d.byID) <= l0Limit {
		return &ns
	}
	// Merge the newest level into the older one.
	l1 := s.deltas[1].clone()
	d.overlayOnto(l1)
	ns.deltas = [2]*revIndex{nil, l1}
	if len(l1.byID) <= max(l1Limit, len(s.base.byID)/8) {
		return &ns
	}
	return ns.Compact()
}

// Compact returns the set rebuilt as one flat index (s itself when it is
// one already), so lookups check one map per key again.
func (s *RevocationSet) Compact() *RevocationSet {
	if s == nil || (s.deltas[0] == nil && s.deltas[1] == nil) {
		return s
	}
	all := make([]Revocation, 0, s.n)
	s.each(func(r *Revocation) { all = append(all, *r) })
	return NewRevocationSet(all)
}

// Flat reports whether the set is one index with no delta levels.
func (s *RevocationSet) Flat() bool { return s == nil || (s.deltas[0] == nil && s.deltas[1] == nil) }

// Equal reports whether s and revs hold the same revocations (by ID and
// content), so a resync that found nothing new can keep the set it has.
func (s *RevocationSet) Equal(revs []Revocation) bool {
	if s.Len() != len(revs) {
		return false
	}
	for i := range revs {
		r := s.get(revs[i].ID)
		if r == nil || !sameRevocation(r, &revs[i]) {
			return false
		}
	}
	return true
}

func sameRevocation(a, b *Revocation) bool {
	return a.ID == b.ID && a.Kind == b.Kind && a.Issuer == b.Issuer && a.JTI == b.JTI &&
		a.Subject == b.Subject && a.ClientID == b.ClientID && a.Scope == b.Scope &&
		canonicalSegment(a.Segment) == canonicalSegment(b.Segment) && a.Reason == b.Reason && a.CreatedAt.Equal(b.CreatedAt) &&
		a.Until.Equal(b.Until) && a.CreatedBy == b.CreatedBy &&
		a.SessionID == b.SessionID && a.IssuedBefore.Equal(b.IssuedBefore) &&
		a.DeviceID == b.DeviceID && a.ACRLevel == b.ACRLevel &&
		a.SourceEventTime.Equal(b.SourceEventTime)
}

// candidates are the lists of revocations that may apply to one token: by
// (iss, jti), by subject (this issuer, any issuer) and by client (this
// issuer, any issuer). Lists that cannot match are left nil without a
// lookup.
type candidates [8][]*Revocation

func (s *RevocationSet) candidatesFor(tok *Token, c *candidates) {
	if s.nTok > 0 && tok.JTI != "" {
		c[0] = s.tokenList(tokenKey{tok.Issuer, tok.JTI})
	}
	if s.nSub > 0 && tok.Subject != "" {
		c[1] = s.principalList(subjectMap, principalKey{tok.Issuer, tok.Subject})
		c[2] = s.principalList(subjectMap, principalKey{"", tok.Subject})
	}
	if s.nCli > 0 && tok.ClientID != "" {
		c[3] = s.principalList(clientMap, principalKey{tok.Issuer, tok.ClientID})
		c[4] = s.principalList(clientMap, principalKey{"", tok.ClientID})
	}
	if s.nSes > 0 {
		c[5] = s.sessionList(tokenSessionKey(tok))
	}
	if s.nDev > 0 && tok.DeviceID != "" {
		c[6] = s.principalList(deviceMap, principalKey{tok.Issuer, tok.DeviceID})
		c[7] = s.principalList(deviceMap, principalKey{"", tok.DeviceID})
	}
}

// Revoked returns the revocation that refuses tok outright at now, if any:
// one of its token, subject or client revocations that is not narrowed and
// has not lapsed. Narrowed revocations are the engine's business (they
// depend on the route).
func (s *RevocationSet) Revoked(tok *Token, now time.Time) (Revocation, bool) {
	if r := s.wholeRevocation(tok, now); r != nil {
		return *r, true
	}
	return Revocation{}, false
}

// wholeRevocation looks the token's keys up one by one (cheaper than
// gathering candidates when, as usual, only one kind of revocation
// exists).
func (s *RevocationSet) wholeRevocation(tok *Token, now time.Time) *Revocation {
	if s == nil || s.n == s.nNarrow+s.nAsr || tok == nil {
		return nil
	}
	if s.nTok > 0 && tok.JTI != "" {
		if r := firstWhole(tok, s.tokenList(tokenKey{tok.Issuer, tok.JTI}), now); r != nil {
			return r
		}
	}
	if s.nSub > 0 && tok.Subject != "" {
		if r := firstWhole(tok, s.principalList(subjectMap, principalKey{tok.Issuer, tok.Subject}), now); r != nil {
			return r
		}
		if r := firstWhole(tok, s.principalList(subjectMap, principalKey{"", tok.Subject}), now); r != nil {
			return r
		}
	}
	if s.nCli > 0 && tok.ClientID != "" {
		if r := firstWhole(tok, s.principalList(clientMap, principalKey{tok.Issuer, tok.ClientID}), now); r != nil {
			return r
		}
		if r := firstWhole(tok, s.principalList(clientMap, principalKey{"", tok.ClientID}), now); r != nil {
			return r
		}
	}
	if s.nSes > 0 {
		if r := firstWhole(tok, s.sessionList(tokenSessionKey(tok)), now); r != nil {
			return r
		}
	}
	if s.nDev > 0 && tok.DeviceID != "" {
		if r := firstWhole(tok, s.principalList(deviceMap, principalKey{tok.Issuer, tok.DeviceID}), now); r != nil {
			return r
		}
		if r := firstWhole(tok, s.principalList(deviceMap, principalKey{"", tok.DeviceID}), now); r != nil {
			return r
		}
	}
	return nil
}

func firstWhole(tok *Token, l []*Revocation, now time.Time) *Revocation {
	for _, r := range l {
		if r.Whole() && r.ActiveAt(now) && r.covers(tok) {
			return r
		}
	}
	return nil
}

// SetRevocations makes rs the revocations in force for every later
// decision; nil removes them all. Build rs with NewRevocationSet or Apply.
func (e *Engine) SetRevocations(rs *RevocationSet) { e.revocations.Store(rs) }

// Revocations returns the revocations in force (nil if none were set).
func (e *Engine) Revocations() *RevocationSet { return e.revocations.Load() }

// MarkRevocationsSynced records that the revocations in force were brought
// up to date with the system of record at t. Past Options.RevocationStale
// After without a mark, routes that require a high-risk scope deny with
// revocation_stale.
func (e *Engine) MarkRevocationsSynced(t time.Time) {
	if t.IsZero() {
		e.revSynced.Store(0)
		return
	}
	e.revSynced.Store(t.UnixNano())
}

// RevocationsSyncedAt returns the last MarkRevocationsSynced time (zero if
// never).
func (e *Engine) RevocationsSyncedAt() time.Time {
	n := e.revSynced.Load()
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n)
}

// checkRevoked is the revocation step: a token refused outright by a
// token, subject or client revocation is denied with revoked. Narrowed
// revocations and staleness are checked in the scopes step.
func (e *Engine) checkRevoked(_ *Policy, tok *Token, now time.Time) (Code, string) {
	rs := e.revocations.Load()
	if rs == nil || rs.n == rs.nNarrow+rs.nAsr {
		return OK, ""
	}
	nowN := now.UnixNano()
	// A set is immutable and a whole revocation never starts late: once
	// none applies under rs, none will while rs is in force (a new
	// revocation makes a new set). The clock must not have gone back.
	if m := tok.notRevoked.Load(); m != nil && m.set == rs && nowN >= m.at {
		return OK, ""
	}
	if r := rs.wholeRevocation(tok, now); r != nil {
		return Revoked, wholeDetail(r.Kind)
	}
	tok.notRevoked.Store(&revocationMemo{set: rs, at: nowN})
	return OK, ""
}

// revocationMemo records that no whole revocation of set applied to a token
// at the time at (Unix nanoseconds).
type revocationMemo struct {
	set *RevocationSet
	at  int64
}

// engineRevocations is the revocation state of an Engine (embedded).
type engineRevocations struct {
	revocations atomic.Pointer[RevocationSet]
	// revSynced is MarkRevocationsSynced's time in Unix ns, 0 for never.
	revSynced     atomic.Int64
	revStaleAfter time.Duration
}
