package decision

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/scopegate/scopegate/decision/suggest"
)

// SMART on FHIR scopes (SMART App Launch v2, "Scopes and Launch Context").
//
// A SMART resource scope is
//
//	( "patient" | "user" | "system" ) "/" ( resource-type | "*" ) "." permissions [ "?" param=value ( "&" param=value )* ]
//
// where permissions are v2 letters, a non-empty in-order subsequence of
// "cruds" (create, read, update, delete, search), or the v1 forms read
// (= rs), write (= cud) and * (= cruds). Other scopes (openid, fhirUser,
// launch/patient, offline_access, ...) are not resource scopes and grant no
// FHIR access.
//
// A SMART route derives the FHIR interaction of the request from its method
// and path, and allows it when a token scope's context, type and permission
// cover it. patient/ scopes are further bound to the token's patient claim:
// checked here where the request names the patient (Patient/{id}, the
// Patient compartment) or where an ownership lookup can answer, and
// otherwise passed to the FHIR server as an upstream hint it must apply.
// Query-parameter restrictions are always passed as hints: the PDP has no
// resource data to evaluate them on.

// SMARTContext is the context of a SMART scope.
type SMARTContext uint8

// The SMART scope contexts.
const (
	// SMARTPatient scopes are limited to the launch patient's compartment.
	SMARTPatient SMARTContext = iota + 1
	// SMARTUser scopes are limited by what the user may access.
	SMARTUser
	// SMARTSystem scopes are for backend services under a preset policy.
	SMARTSystem
)

// String returns patient, user or system.
func (c SMARTContext) String() string {
	switch c {
	case SMARTPatient:
		return "patient"
	case SMARTUser:
		return "user"
	case SMARTSystem:
		return "system"
	}
	return ""
}

// SMARTPermissions is a set of SMART v2 permissions.
type SMARTPermissions uint8

// The SMART v2 permissions, in their canonical order c, r, u, d, s.
const (
	SMARTCreate SMARTPermissions = 1 << iota
	SMARTRead
	SMARTUpdate
	SMARTDelete
	SMARTSearch

	smartAllPerms = SMARTCreate | SMARTRead | SMARTUpdate | SMARTDelete | SMARTSearch
)

const smartLetters = "cruds"

// String returns the v2 letters of p in canonical order, e.g. "rs".
func (p SMARTPermissions) String() string {
	var b [5]byte
	n := 0
	for i := range 5 {
		if p&(1<<i) != 0 {
			b[n] = smartLetters[i]
			n++
		}
	}
	return string(b[:n])
}

// SMARTScope is a parsed SMART resource scope. ResourceType and Query are
// substrings of the parsed scope.
type SMARTScope struct {
	Context SMARTContext
	// ResourceType is a FHIR resource type such as Observation, or "*".
	ResourceType string
	Permissions  SMARTPermissions
	// V1 is set when the scope was written with a v1 suffix (read, write,
	// *), which this parser maps to its v2 equivalent.
	V1 bool
	// Query is the raw query restriction after '?', "" when none.
	Query string
}

// SMARTParam is one name=value pair of a query-parameter scope.
type SMARTParam struct {
	Name  string
	Value string
}

// Params returns the query restriction as name=value pairs, in order. The
// values are returned as written in the scope (SMART scopes carry them
// unencoded, e.g. category=http://...|laboratory).
func (s SMARTScope) Params() []SMARTParam {
	if s.Query == "" {
		return nil
	}
	var out []SMARTParam
	for p := range strings.SplitSeq(s.Query, "&") {
		name, value, _ := strings.Cut(p, "=")
		out = append(out, SMARTParam{Name: name, Value: value})
	}
	return out
}

// String returns the scope in canonical v2 form, e.g.
// "patient/Observation.rs?category=laboratory".
func (s SMARTScope) String() string {
	out := s.Context.String() + "/" + s.ResourceType + "." + s.Permissions.String()
	if s.Query != "" {
		out += "?" + s.Query
	}
	return out
}

// Grants reports whether the scope allows permission perm on resource type
// typ ("" for a system-level interaction, which only "*" covers).
func (s SMARTScope) Grants(typ string, perm SMARTPermissions) bool {
	if s.Permissions&perm != perm || perm == 0 {
		return false
	}
	return s.ResourceType == "*" || typ != "" && s.ResourceType == typ
}

// ErrNotSMARTResourceScope is returned (wrapped) by ParseSMARTScope for a
// scope that is not a SMART resource scope at all, such as openid or
// launch/patient, as opposed to a malformed one.
var ErrNotSMARTResourceScope = errors.New("not a SMART resource scope (patient/, user/ or system/)")

const (
	smartWhyNotResource = "not a SMART resource scope"
	smartWhyNoDot       = "no '.' between the resource type and the permissions (e.g. patient/Observation.rs)"
	smartWhyType        = "the resource type must be a FHIR resource type such as Observation, or *"
	smartWhyNoPerms     = "no permissions after '.'; use letters of cruds (e.g. rs) or read, write, *"
	smartWhyPerms       = "permissions must be read, write, * or a non-empty in-order subsequence of cruds (e.g. rs, cud), each letter once"
	smartWhyQuery       = "the query restriction must be name=value pairs joined by '&', with scope characters only (no space, '\"' or '\\')"
)

// ParseSMARTScope parses a SMART App Launch v2 resource scope, accepting
// the v1 permission forms. Out-of-order or unknown permissions (".dus",
// ".rd" written as "dr") are rejected rather than guessed at, and ".read" is
// never read as letters.
func ParseSMARTScope(s string) (SMARTScope, error) {
	sc, why := parseSMARTScope(s)
	switch why {
	case "":
		return sc, nil
	case smartWhyNotResource:
		return SMARTScope{}, fmt.Errorf("scope %s: %w", untrusted(s), ErrNotSMARTResourceScope)
	}
	return SMARTScope{}, errors.New("SMART scope " + untrusted(s) + ": " + why)
}

// parseSMARTScope is ParseSMARTScope without allocation: the reason is a
// constant, "" when s parses.
func parseSMARTScope(s string) (SMARTScope, string) {
	var sc SMARTScope
	var rest string
	switch {
	case strings.HasPrefix(s, "patient/"):
		sc.Context, rest = SMARTPatient, s[len("patient/"):]
	case strings.HasPrefix(s, "user/"):
		sc.Context, rest = SMARTUser, s[len("user/"):]
	case strings.HasPrefix(s, "system/"):
		sc.Context, rest = SMARTSystem, s[len("system/"):]
	default:
		return SMARTScope{}, smartWhyNotResource
	}
	dot := strings.IndexByte(rest, '.')
	if dot < 0 {
		return SMARTScope{}, smartWhyNoDot
	}
	typ, perms := rest[:dot], rest[dot+1:]
	if typ != "*" && !isFHIRType(typ) {
		return SMARTScope{}, smartWhyType
	}
	sc.ResourceType = typ
	if q := strings.IndexByte(perms, '?'); q >= 0 {
		perms, sc.Query = perms[:q], perms[q+1:]
		if !validSMARTQuery(sc.Query) {
			return SMARTScope{}, smartWhyQuery
		}
	}
	switch perms {
	case "":
		return SMARTScope{}, smartWhyNoPerms
	case "read":
		sc.Permissions, sc.V1 = SMARTRead|SMARTSearch, true
	case "write":
		sc.Permissions, sc.V1 = SMARTCreate|SMARTUpdate|SMARTDelete, true
	case "*":
		sc.Permissions, sc.V1 = smartAllPerms, true
	default:
		next := 0 // letters before next are used up
		for i := 0; i < len(perms); i++ {
			k := strings.IndexByte(smartLetters[next:], perms[i])
			if k < 0 {
				return SMARTScope{}, smartWhyPerms
			}
			next += k
			sc.Permissions |= 1 << next
			next++
		}
	}
	return sc, ""
}

// isFHIRType reports whether s looks like a FHIR resource type name: an
// upper-case letter, then letters and digits, at most 64 bytes.
func isFHIRType(s string) bool {
	if s == "" || len(s) > 64 || s[0] < 'A' || s[0] > 'Z' {
		return false
	}
	for i := 1; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9') {
			return false
		}
	}
	return true
}

// isFHIRID reports whether s is a FHIR logical id: [A-Za-z0-9\-\.]{1,64}.
func isFHIRID(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

// validSMARTQuery checks name=value(&name=value)*, with RFC 6749 scope
// characters only, so that the restriction is also a safe header value.
func validSMARTQuery(q string) bool {
	if q == "" {
		return false
	}
	for p := range strings.SplitSeq(q, "&") {
		name, value, ok := strings.Cut(p, "=")
		if !ok || name == "" || value == "" || strings.IndexByte(name, '?') >= 0 {
			return false
		}
	}
	for i := 0; i < len(q); i++ {
		c := q[i]
		if c < 0x21 || c > 0x7e || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

// ---- FHIR interactions ----

// fhirRequest is the FHIR interaction a request performs.
type fhirRequest struct {
	perm SMARTPermissions
	// typ is the resource type ("" for system-level interactions); id the
	// instance id ("" at type or system level).
	typ, id string
	// compType and compID name the compartment of a compartment search
	// (GET /Patient/123/Observation).
	compType, compID string
}

const (
	fhirMsgBatch     = "a FHIR batch or transaction (POST to the FHIR base) needs authorization of each entry, which cannot be decided from the request line; send the entries as separate requests"
	fhirMsgOperation = "FHIR operations ($name) are not covered by SMART resource scopes; give the operation a route of its own with explicit scopes"
	fhirMsgMetadata  = "the FHIR capability statement (metadata) needs no SMART scope; serve it through a public route"
	fhirMsgShape     = "the path is not a FHIR REST interaction: expected [type], [type]/[id], [type]/[id]/_history[/vid], [type]/_search, [type]/_history, _search, _history or a compartment search [type]/[id]/[type]"
	fhirMsgType      = "the path names no FHIR resource type: a type starts with an upper-case letter and has letters and digits only (e.g. Observation)"
	fhirMsgID        = "the path's FHIR id is invalid: ids are 1-64 letters, digits, '-' and '.'"
	fhirMsgMethod    = "the method does not perform a FHIR interaction on this path (GET/HEAD read and search, POST creates or searches, PUT/PATCH update, DELETE deletes)"
)

func isGet(m string) bool { return m == "GET" || m == "HEAD" }

// fhirInteraction derives the FHIR interaction of method on rel, the path
// below the FHIR base. It returns a constant reason when it cannot.
func fhirInteraction(method, rel string) (fhirRequest, string) {
	var segs [5]string
	n := 0
	rel = strings.TrimPrefix(rel, "/")
	rel = strings.TrimSuffix(rel, "/")
	for rel != "" {
		if n == len(segs) {
			return fhirRequest{}, fhirMsgShape
		}
		seg, more, _ := strings.Cut(rel, "/")
		if seg == "" {
			return fhirRequest{}, fhirMsgShape
		}
		segs[n] = seg
		n++
		rel = more
	}
	for i := range n {
		if segs[i][0] == '$' {
			return fhirRequest{}, fhirMsgOperation
		}
	}
	if n == 0 {
		switch {
		case isGet(method):
			return fhirRequest{perm: SMARTSearch}, ""
		case method == "POST":
			return fhirRequest{}, fhirMsgBatch
		}
		return fhirRequest{}, fhirMsgMethod
	}
	t := segs[0]
	switch t {
	case "_history":
		if n == 1 && isGet(method) {
			return fhirRequest{perm: SMARTSearch}, ""
		}
		return fhirRequest{}, fhirMsgMethod
	case "_search":
		if n == 1 && (isGet(method) || method == "POST") {
			return fhirRequest{perm: SMARTSearch}, ""
		}
		return fhirRequest{}, fhirMsgMethod
	case "metadata":
		return fhirRequest{}, fhirMsgMetadata
	}
	if !isFHIRType(t) {
		return fhirRequest{}, fhirMsgType
	}
	fr := fhirRequest{typ: t}
	if n == 1 {
		switch {
		case isGet(method):
			fr.perm = SMARTSearch
		case method == "POST":
			fr.perm = SMARTCreate
		case method == "PUT" || method == "PATCH":
			fr.perm = SMARTUpdate // conditional update
		case method == "DELETE":
			fr.perm = SMARTDelete // conditional delete
		default:
			return fhirRequest{}, fhirMsgMethod
		}
		return fr, ""
	}
	second := segs[1]
	switch second {
	case "_search":
		if n == 2 && (isGet(method) || method == "POST") {
			fr.perm = SMARTSearch
			return fr, ""
		}
		return fhirRequest{}, fhirMsgMethod
	case "_history":
		if n == 2 && isGet(method) {
			fr.perm = SMARTSearch
			return fr, ""
		}
		return fhirRequest{}, fhirMsgMethod
	}
	if !isFHIRID(second) {
		return fhirRequest{}, fhirMsgID
	}
	fr.id = second
	switch n {
	case 2:
		switch {
		case isGet(method):
			fr.perm = SMARTRead
		case method == "PUT" || method == "PATCH":
			fr.perm = SMARTUpdate
		case method == "DELETE":
			fr.perm = SMARTDelete
		default:
			return fhirRequest{}, fhirMsgMethod
		}
		return fr, ""
	case 3, 4:
		third := segs[2]
		if third == "_history" {
			// Instance history, or a version read (vread).
			if !isGet(method) {
				return fhirRequest{}, fhirMsgMethod
			}
			if n == 4 && !isFHIRID(segs[3]) {
				return fhirRequest{}, fhirMsgID
			}
			fr.perm = SMARTRead
			return fr, ""
		}
		if !isFHIRType(third) {
			return fhirRequest{}, fhirMsgShape
		}
		// Compartment search: [type]/[id]/[type2] or .../[type2]/_search.
		if n == 4 && segs[3] != "_search" {
			return fhirRequest{}, fhirMsgShape
		}
		if !(isGet(method) || n == 4 && method == "POST") {
			return fhirRequest{}, fhirMsgMethod
		}
		return fhirRequest{perm: SMARTSearch, typ: third, compType: t, compID: second}, ""
	}
	return fhirRequest{}, fhirMsgShape
}

func interactionName(p SMARTPermissions) string {
	switch p {
	case SMARTCreate:
		return "create"
	case SMARTRead:
		return "read"
	case SMARTUpdate:
		return "update"
	case SMARTDelete:
		return "delete"
	case SMARTSearch:
		return "search"
	}
	return "?"
}

// ---- Routes ----

// smartRoute is the compiled smart section of a route.
type smartRoute struct {
	// restParam is the index of the template's final {rest...} parameter,
	// whose value is the FHIR path, or -1; then baseSegs leading segments of
	// the path are the FHIR base.
	restParam int
	baseSegs  int
	// lookup is the patient lookup, nil when none.
	lookup   *lookupConf
	claim    string
	upstream bool
	// Prebuilt deny messages.
	noPatient string
	badClaim  string
	noLookup  string
}

// smartRoutes compiles the smart section of every route.
func (c *compiler) smartRoutes(pf *PolicyFile, pol *Policy) {
	for _, r := range pol.Routes {
		spec := &pf.Routes[r.Index]
		sp := spec.SMART
		if sp == nil {
			continue
		}
		i := r.Index
		field := fmt.Sprintf("routes[%d].smart", i)
		line := c.li.line("routes", i, "smart")
		ok := true
		if spec.Public {
			c.errorf(line, field, "a public route needs no token, so it cannot be a SMART route: remove smart or public")
			ok = false
		}
		if spec.Require != nil && (len(spec.Require.AllOf) > 0 || len(spec.Require.AnyOf) > 0) {
			c.errorf(c.li.line("routes", i, "require"), fmt.Sprintf("routes[%d].require", i), "a SMART route is authorized by the token's SMART scopes (patient/, user/, system/), not by require: remove require, or give those scopes a route of their own")
			ok = false
		}
		segs, names, err := parseTemplate(r.Template)
		if err != nil {
			continue // the router reports the template
		}
		sr := &smartRoute{restParam: -1, claim: "patient", upstream: sp.PatientFilterUpstream}
		if len(segs) > 0 && segs[len(segs)-1].kind == segRest {
			sr.restParam = len(names) - 1
		} else {
			for _, s := range segs {
				if s.kind != segLiteral || s.text[0] == '_' || s.text[0] == '$' || 'A' <= s.text[0] && s.text[0] <= 'Z' || s.text == "metadata" {
					break
				}
				sr.baseSegs++
			}
		}
		if sp.PatientClaim != "" {
			sr.claim = sp.PatientClaim
		}
		if sp.PatientLookup != "" {
			spec, found := pf.Lookups[sp.PatientLookup]
			if found {
				// The lookups entry's own checks report a bad timeout.
				sr.lookup = &lookupConf{name: sp.PatientLookup, timeout: defaultLookupTimeout, used: true}
				if spec != nil && spec.Timeout != nil && spec.Timeout.Duration > 0 && spec.Timeout.Duration <= maxLookupTimeout {
					sr.lookup.timeout = spec.Timeout.Duration
				}
			} else {
				var names []string
				for n := range pf.Lookups {
					names = append(names, n)
				}
				sort.Strings(names)
				msg := suggest.DidYouMean(sp.PatientLookup, names)
				c.errorf(c.li.line("routes", i, "smart", "patient_lookup"), field+".patient_lookup", "patient_lookup %q names no entry of lookups%s", sp.PatientLookup, msg)
				ok = false
			}
			if sp.PatientFilterUpstream {
				c.warnf(c.li.line("routes", i, "smart", "patient_filter_upstream"), field+".patient_filter_upstream", "patient_filter_upstream has no effect when patient_lookup is set; remove one")
			}
		} else if !sp.PatientFilterUpstream {
			c.warnf(line, field, "route %q has no patient_lookup: patient/ scopes will reach only Patient resources, the patient compartment, searches and creates; set patient_lookup, or patient_filter_upstream: true if the FHIR server enforces the patient hint", r.Name)
		}
		sr.noPatient = "patient/ scopes need the token's " + sr.claim + " claim (the SMART launch patient), and the token has none"
		sr.badClaim = "the token's " + sr.claim + " claim is not a FHIR id (1-64 letters, digits, '-' and '.')"
		sr.noLookup = "route " + r.Name + " has no patient_lookup, so a patient/ scope cannot reach an instance of this type"
		if ok {
			r.smart = sr
		}
	}
}

// relPath returns the request's path below the FHIR base.
func (sr *smartRoute) relPath(d *Decision) string {
	if sr.restParam >= 0 {
		if sr.restParam < d.Params.Len() {
			return d.Params.At(sr.restParam)
		}
		return ""
	}
	p := d.Path
	for range sr.baseSegs {
		j := strings.IndexByte(p[min(1, len(p)):], '/')
		if j < 0 {
			return ""
		}
		p = p[1+j:]
	}
	return p
}

// ---- Deciding ----

// smartClass ranks the ways a token's scopes can grant an interaction, from
// the least restricted. The PDP tries the classes in this order and the
// first that grants the request wins, so a scope added to a token can only
// add a way to be allowed, never take one away.
type smartClass uint8

const (
	smartOpen         smartClass = iota // user/ or system/, no restriction
	smartPatientOnly                    // patient/, no query
	smartQueryOpen                      // user/ or system/ with a query restriction
	smartQueryPatient                   // patient/ with a query restriction
	smartNone
)

// smartGrants is how a token's scopes can grant one interaction: for each
// class, whether some scope falls in it, and which of the token's first 64
// scopes do (bit i for the i-th scope).
type smartGrants struct {
	any  [smartNone]bool
	mask [smartNone]uint64
}

// smartGrant finds every scope of scopes that grants fr, by class. Query
// restrictions are tracked for the first 64 scopes only (a restricted scope
// beyond them grants nothing, since its restriction could not be passed on).
func smartGrant(scopes []string, fr *fhirRequest) smartGrants {
	var g smartGrants
	for i, s := range scopes {
		sc, why := parseSMARTScope(s)
		if why != "" || !sc.Grants(fr.typ, fr.perm) {
			continue
		}
		patient := sc.Context == SMARTPatient
		var cls smartClass
		switch {
		case sc.Query == "" && !patient:
			cls = smartOpen
		case sc.Query == "":
			cls = smartPatientOnly
		case i >= 64:
			continue
		case !patient:
			cls = smartQueryOpen
		default:
			cls = smartQueryPatient
		}
		g.any[cls] = true
		if i < 64 {
			g.mask[cls] |= 1 << i
		}
	}
	return g
}

// checkSMART authorizes a request on a SMART route: the token's SMART
// scopes must grant the request's FHIR interaction. handled is false when
// the route is not a SMART route. Every scope that could grant the request
// is tried, the least restricted class first; the request is denied only
// when none can (a patient/ scope bound to another patient does not hide a
// user/ scope that grants). On an allow it records on d the scopes that
// granted it (Decision.ScopesUsed) and the restrictions the upstream must
// apply (Decision.UpstreamHints).
func (e *Engine) checkSMART(ctx context.Context, r *Request, d *Decision, now time.Time) (code Code, detail string, handled bool) {
	route := d.Route
	if route == nil || route.smart == nil {
		return OK, "", false
	}
	sr := route.smart
	d.gov.smartDone = true
	d.gov.smartQuery, d.gov.smartPatient, d.gov.smartUsed = 0, false, 0
	tok := d.Token
	if tok == nil {
		return TokenMissing, "", true
	}
	fr, why := fhirInteraction(r.Method, sr.relPath(d))
	if why != "" {
		r.Trace.add("smart", "fail", why)
		return RequestInvalid, why, true
	}
	g := smartGrant(tok.Scopes, &fr)
	// The patient binding does not depend on which patient/ scope is
	// tried: it is checked at most once.
	patientChecked := false
	patientCode, patientDetail := OK, ""
	granted := false
	for cls := smartOpen; cls < smartNone; cls++ {
		if !g.any[cls] {
			continue
		}
		if cls == smartPatientOnly || cls == smartQueryPatient {
			if !patientChecked {
				patientChecked = true
				patientCode, patientDetail = e.smartPatient(ctx, sr, &fr, tok, d)
			}
			if patientCode != OK {
				continue
			}
		} else {
			d.gov.smartPatient = false
		}
		if cls == smartQueryOpen || cls == smartQueryPatient {
			d.gov.smartQuery = g.mask[cls]
		}
		d.gov.smartUsed = g.mask[cls]
		granted = true
		break
	}
	if !granted {
		code, detail = patientCode, patientDetail
		if !patientChecked {
			code, detail = InsufficientScope, smartInsufficient(&fr)
			d.gov.smartMissing = smartMissingScopes(&fr)
		}
		d.gov.smartPatient = false
		r.Trace.add("smart", "fail", detail)
		return code, detail, true
	}
	if r.Trace != nil {
		msg := "the token's SMART scopes grant " + interactionName(fr.perm) + " on " + typeLabel(fr.typ)
		if d.gov.smartQuery != 0 || d.gov.smartPatient {
			msg += "; the upstream applies the restriction"
		}
		r.Trace.add("smart", "pass", msg)
	}
	return OK, "", true
}

// smartScopesUsed yields the token's scopes that granted a SMART request.
func (d *Decision) smartScopesUsed(yield func(string) bool) {
	if d.Token == nil {
		return
	}
	for i, s := range d.Token.Scopes {
		if i >= 64 {
			return
		}
		if d.gov.smartUsed&(1<<i) != 0 && !yield(s) {
			return
		}
	}
}

func typeLabel(typ string) string {
	if typ == "" {
		return "every resource type (system level)"
	}
	return typ
}

func smartInsufficient(fr *fhirRequest) string {
	l := fr.perm.String()
	if fr.typ == "" {
		return "no SMART scope of the token grants " + interactionName(fr.perm) + " at the system level, which needs a wildcard scope such as user/*." + l
	}
	return "no SMART scope of the token grants " + interactionName(fr.perm) + " on " + fr.typ + ": it needs patient/, user/ or system/" + fr.typ + "." + l + " (or the * type)"
}

// smartMissingScopes is what a SMART insufficient_scope deny names: the
// scope of each launch context that would grant the interaction (any one
// would do), space-separated.
func smartMissingScopes(fr *fhirRequest) string {
	typ := fr.typ
	if typ == "" {
		typ = "*"
	}
	s := typ + "." + fr.perm.String()
	return "patient/" + s + " user/" + s + " system/" + s
}

// smartPatient binds a patient/ grant to the token's patient.
func (e *Engine) smartPatient(ctx context.Context, sr *smartRoute, fr *fhirRequest, tok *Token, d *Decision) (Code, string) {
	patient, _ := tok.Claims()[sr.claim].(string)
	switch {
	case patient == "":
		return ClaimConditionFailed, sr.noPatient
	case !isFHIRID(patient):
		return ClaimConditionFailed, sr.badClaim
	}
	switch {
	case fr.compType == "Patient":
		if fr.compID != patient {
			return NotOwner, "the search is in the compartment of Patient/" + fr.compID + ", not of the token's patient"
		}
		return OK, ""
	case fr.typ == "Patient" && fr.id != "":
		if fr.id != patient {
			return NotOwner, "Patient/" + fr.id + " is not the token's patient"
		}
		return OK, ""
	case fr.id != "" && sr.lookup != nil:
		return e.smartLookup(ctx, sr, fr, patient)
	case fr.id != "" && !sr.upstream:
		return OwnershipUnavailable, sr.noLookup
	}
	// Searches, creates, conditional updates and deletes, other
	// compartments: the FHIR server filters to the patient.
	d.gov.smartPatient = true
	return OK, ""
}

// smartLookup asks the route's patient lookup whether the resource belongs
// to the token's patient.
func (e *Engine) smartLookup(ctx context.Context, sr *smartRoute, fr *fhirRequest, patient string) (Code, string) {
	key := fr.typ + "/" + fr.id
	lk := sr.lookup
	store := e.ownership
	if store == nil {
		return OwnershipUnavailable, "no ownership store answers patient lookup " + lk.name + "; denied to fail closed"
	}
	var res ownersResult
	cached := false
	if cs, ok := store.(CachedOwnershipStore); ok {
		res.owners, res.found, cached = cs.CachedOwners(lk.name, key)
	}
	if !cached {
		res = callOwners(ctx, store, lk, key)
	}
	switch {
	case res.err != nil:
		return OwnershipUnavailable, "patient lookup " + lk.name + " for " + key + " failed or timed out; denied to fail closed"
	case !res.found:
		return ResourceNotFound, key + " is unknown to patient lookup " + lk.name
	case !slices.Contains(res.owners, patient):
		return NotOwner, key + " is not in the compartment of the token's patient"
	}
	return OK, ""
}

// The upstream hints of an allowed SMART decision.
const (
	// HintFHIRRestriction carries the query restrictions of the scopes that
	// granted the request, space-separated; the upstream must apply one of
	// them (e.g. category=http://...|laboratory).
	HintFHIRRestriction = "x-scopegate-fhir-restriction"
	// HintFHIRPatient carries the launch patient the upstream must restrict
	// the request to (patient/ scopes the PDP could not check itself).
	HintFHIRPatient = "x-scopegate-fhir-patient"
)

// UpstreamHints returns the restrictions an allowed request carries to the
// upstream, which a proxy adds as request headers and dynamic metadata (the
// proxy must also strip these headers from incoming requests). They exist
// because SMART patient and query-parameter restrictions need resource data
// only the FHIR server holds. nil when there is none. It allocates.
func (d *Decision) UpstreamHints() map[string]string {
	if !d.Allow || d.Token == nil || d.gov.smartQuery == 0 && !d.gov.smartPatient {
		return nil
	}
	m := make(map[string]string, 2)
	if q := d.gov.smartQuery; q != 0 {
		var parts []string
		for i, s := range d.Token.Scopes {
			if i >= 64 {
				break
			}
			if q&(1<<i) == 0 {
				continue
			}
			if sc, why := parseSMARTScope(s); why == "" && !slices.Contains(parts, sc.Query) {
				parts = append(parts, sc.Query)
			}
		}
		m[HintFHIRRestriction] = strings.Join(parts, " ")
	}
	if d.gov.smartPatient && d.Route != nil && d.Route.smart != nil {
		if p, ok := d.Token.Claims()[d.Route.smart.claim].(string); ok {
			m[HintFHIRPatient] = p
		}
	}
	return m
}

// IsSMART reports whether the route is decided by SMART on FHIR scopes, so
// that translators know to send (and to strip from the client) the
// x-scopegate-fhir-* hint headers.
func (r *Route) IsSMART() bool { return r != nil && r.smart != nil }
