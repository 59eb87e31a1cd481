package ssf

import (
	"crypto/sha256"
	"encoding/base32"
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/scopegate/scopegate/decision"
)

// Event types: CAEP 1.0, RISC 1.0 and SSF 1.0.
const (
	caep = "https://schemas.openid.net/secevent/caep/event-type/"
	risc = "https://schemas.openid.net/secevent/risc/event-type/"
	sse  = "https://schemas.openid.net/secevent/ssf/event-type/"

	SessionRevoked          = caep + "session-revoked"
	CredentialChange        = caep + "credential-change"
	TokenClaimsChange       = caep + "token-claims-change"
	AssuranceLevelChange    = caep + "assurance-level-change"
	DeviceComplianceChange  = caep + "device-compliance-change"
	AccountDisabled         = risc + "account-disabled"
	AccountPurged           = risc + "account-purged"
	AccountCredentialChange = risc + "account-credential-change-required"
	SessionsRevoked         = risc + "sessions-revoked"
	IdentifierChanged       = risc + "identifier-changed"
	Verification            = sse + "verification"
	StreamUpdated           = sse + "stream-updated"
)

// ActedOn lists the event types this receiver turns into revocations:
// what it requests (events_requested) of a stream it manages.
var ActedOn = []string{SessionRevoked, CredentialChange, TokenClaimsChange, AssuranceLevelChange, DeviceComplianceChange,
	AccountDisabled, AccountPurged, AccountCredentialChange, SessionsRevoked, IdentifierChanged}

// Transmitter is one SSF transmitter this receiver trusts, and how its
// events map to the tokens the policy sees.
type Transmitter struct {
	// Issuer is the transmitter's issuer: every SET's iss must equal it.
	Issuer string
	// Audience lists the values that name this receiver; a SET's aud must
	// contain one.
	Audience []string
	// Keys are the transmitter's signing keys (its jwks_uri).
	Keys decision.KeySource
	// MaxAge and MaxSkew bound iat; zero means DefaultMaxAge and
	// DefaultMaxSkew.
	MaxAge, MaxSkew time.Duration
	// TokenIssuer is the iss of the access tokens its events concern. ""
	// takes the iss of an iss_sub subject; subject revocations from other
	// formats then cover every issuer.
	TokenIssuer string
	// EmailIsSub and OpaqueIsSub say that the subject's email, or opaque id,
	// is the sub claim of its access tokens. Otherwise such subjects cannot
	// be mapped: the event is counted unmappable and skipped.
	EmailIsSub, OpaqueIsSub bool
	// ACRValues maps the levels of assurance-level-change events
	// (current_level) to the acr values access tokens carry for them, when
	// the two differ (nist-aal1 to urn:example:pwd). A level it does not
	// list is taken as the acr value itself.
	ACRValues map[string]string
	// RevocationTTL is how long a revocation made from an event lasts
	// (Revocation.Until): the longest access-token lifetime, after which
	// every token it covers has expired. Zero means never lapse. It must
	// be at least MaxAge, so a replayed SET is refused by its iat after
	// its revocation lapses.
	RevocationTTL time.Duration
}

func (tr *Transmitter) maxAge() time.Duration {
	if tr.MaxAge > 0 {
		return tr.MaxAge
	}
	return DefaultMaxAge
}

func (tr *Transmitter) maxSkew() time.Duration {
	if tr.MaxSkew > 0 {
		return tr.MaxSkew
	}
	return DefaultMaxSkew
}

// Validate reports what makes tr unusable.
func (tr *Transmitter) Validate() error {
	switch {
	case tr.Issuer == "":
		return errEmpty("issuer")
	case len(tr.Audience) == 0:
		return errEmpty("audience")
	case tr.Keys == nil:
		return errNoKeys
	case tr.RevocationTTL != 0 && tr.RevocationTTL < tr.maxAge():
		return errTTL
	}
	for level, acr := range tr.ACRValues {
		if acr == "" || strings.ContainsAny(acr, " \t\r\n") {
			return errorString("ssf: acr_values[" + sanitize(level) + "] must be one acr value, as access tokens carry it (e.g. urn:example:mfa)")
		}
	}
	return nil
}

type errEmpty string

func (e errEmpty) Error() string { return "ssf: transmitter " + string(e) + " is required" }

var errTTL = errorString("ssf: revocation_ttl must be at least max_age, or a replayed SET could apply again")

type errorString string

func (e errorString) Error() string { return string(e) }

// Subject is an RFC 9493 subject identifier, or an SSF 1.0 complex subject
// (user, session, device, ...).
type Subject struct {
	Format string `json:"format"`
	// iss_sub
	Iss string `json:"iss,omitempty"`
	Sub string `json:"sub,omitempty"`
	// email
	Email string `json:"email,omitempty"`
	// opaque
	ID string `json:"id,omitempty"`
	// aliases: other identifiers of the same subject (RFC 9493 §3.2.6)
	Identifiers []*Subject `json:"identifiers,omitempty"`
	// complex
	User    *Subject `json:"user,omitempty"`
	Session *Subject `json:"session,omitempty"`
	Device  *Subject `json:"device,omitempty"`
}

// Outcome is what one event of a SET came to.
type Outcome struct {
	EventType string
	// Result is "applied" (Revocations hold what to store), "unknown" (an
	// event type this receiver does not act on), "unmappable" (its subject
	// cannot be tied to token claims), "ignored" (a known event that
	// revokes nothing, e.g. an assurance increase), "verification" or
	// "stream_updated" (SSF 1.0 §8.1.4 and §8.1.5: about the stream,
	// not a subject).
	Result string
	// Detail says why for any result but applied.
	Detail string
	// Subject is a printable form of the event's subject, for the audit.
	Subject string
	// EventTime is event_timestamp, else the SET's toe, else its iat.
	EventTime   time.Time
	Revocations []decision.Revocation
	// State is a verification event's state.
	State string
	// StreamID is the stream a verification or stream-updated event is
	// about (its opaque sub_id); Status and Reason the new status a
	// stream-updated event gives.
	StreamID, Status, Reason string
}

// Map turns each event of set into an Outcome, in a stable order (by
// event type). The revocations it proposes have deterministic IDs derived
// from the transmitter, the jti and the event, so a SET applied twice (a
// redelivery, a restart, two replicas) creates each revocation once: the
// store refuses the second with ErrRevocationExists.
func (tr *Transmitter) Map(set *SET, now time.Time) []Outcome {
	types := make([]string, 0, len(set.Events))
	for t := range set.Events {
		types = append(types, t)
	}
	slices.Sort(types)
	out := make([]Outcome, 0, len(types))
	for _, typ := range types {
		out = append(out, tr.mapEvent(set, typ, set.Events[typ], now))
	}
	return out
}

type eventPayload struct {
	Subject         *Subject `json:"subject"`
	EventTimestamp  *float64 `json:"event_timestamp"`
	ChangeDirection string   `json:"change_direction"`
	CurrentStatus   string   `json:"current_status"`
	State           string   `json:"state"`
	Status          string   `json:"status"`
	Reason          string   `json:"reason"`
	// assurance-level-change
	Namespace     string `json:"namespace"`
	CurrentLevel  string `json:"current_level"`
	PreviousLevel string `json:"previous_level"`
}

func (tr *Transmitter) mapEvent(set *SET, typ string, raw json.RawMessage, now time.Time) Outcome {
	o := Outcome{EventType: typ}
	var p eventPayload
	if err := json.Unmarshal(raw, &p); err != nil {
		o.Result, o.Detail = "unmappable", "the event payload does not decode: "+sanitize(err.Error())
		return o
	}
	o.EventTime = set.IssuedAt
	if !set.TimeOfEvent.IsZero() {
		o.EventTime = set.TimeOfEvent
	}
	if p.EventTimestamp != nil {
		if t, ok := numericDate(*p.EventTimestamp); ok {
			o.EventTime = t
		}
	}
	subj := set.SubID
	if subj == nil {
		subj = p.Subject // CAEP/RISC before SSF 1.0 put it in the event
	}
	o.Subject = subjectString(subj)
	cut := o.EventTime // issued before the event
	if cut.After(now) {
		cut = now
	}
	switch typ {
	case Verification:
		o.Result, o.State, o.StreamID = "verification", p.State, streamSubject(subj)
		return o
	case StreamUpdated:
		o.Result, o.StreamID, o.Status, o.Reason = "stream_updated", streamSubject(subj), p.Status, p.Reason
		return o
	case SessionRevoked:
		return tr.sessionRevoked(set, o, subj, cut, now)
	case CredentialChange, TokenClaimsChange, AccountCredentialChange:
		return tr.subjectBefore(set, o, subj, cut, now)
	case AccountDisabled, AccountPurged, SessionsRevoked, IdentifierChanged:
		// The account as a whole: everything issued before now.
		return tr.subjectBefore(set, o, subj, now, now)
	case AssuranceLevelChange:
		if strings.EqualFold(p.ChangeDirection, "increase") {
			o.Result, o.Detail = "ignored", "an assurance increase revokes nothing"
			return o
		}
		// A decrease, or a change that does not say which way: judge the
		// earlier tokens at the current level (a level at least as high
		// as theirs changes nothing).
		return tr.assuranceLowered(set, o, subj, p.CurrentLevel, cut, now)
	case DeviceComplianceChange:
		if p.CurrentStatus != "not-compliant" {
			o.Result, o.Detail = "ignored", "the device is compliant"
			return o
		}
		return tr.deviceRevoked(set, o, subj, cut, now)
	}
	o.Result, o.Detail = "unknown", "event type not acted on"
	return o
}

// sessionRevoked revokes the session's tokens (sid) when the subject names
// a session, and the user's tokens that carry no sid issued before the
// event (they may belong to the session: fail closed). With a user only,
// every token of the user issued before the event.
func (tr *Transmitter) sessionRevoked(set *SET, o Outcome, s *Subject, cut, now time.Time) Outcome {
	var sid string
	user := s
	if s != nil && s.Format == "complex" {
		user = s.User
		if s.Session != nil {
			sid = s.Session.ID
			if sid == "" {
				sid = s.Session.Sub
			}
		}
	}
	sub, iss, ok := tr.mapUser(user)
	if !ok {
		iss = tr.TokenIssuer
	}
	if sid == "" {
		if !ok {
			o.Result, o.Detail = "unmappable", unmappableDetail(user)
			return o
		}
		return tr.subjectBefore(set, o, s, cut, now)
	}
	if iss == "" {
		o.Result, o.Detail = "unmappable", "a session revocation needs the tokens' issuer: set token_issuer, or send an iss_sub user"
		return o
	}
	rev := tr.revocation(set, o.EventType, 0, now)
	rev.Kind, rev.Issuer, rev.SessionID = decision.RevokeSession, iss, sid
	o.Revocations = append(o.Revocations, rev)
	if ok {
		r2 := tr.revocation(set, o.EventType, 1, now)
		r2.Kind, r2.Issuer, r2.Subject, r2.IssuedBefore = decision.RevokeSession, iss, sub, cut
		o.Revocations = append(o.Revocations, r2)
	}
	o.Result = "applied"
	return o
}

// subjectBefore revokes the subject's tokens issued before cut.
func (tr *Transmitter) subjectBefore(set *SET, o Outcome, s *Subject, cut, now time.Time) Outcome {
	user := s
	if s != nil && s.Format == "complex" {
		user = s.User
	}
	sub, iss, ok := tr.mapUser(user)
	if !ok {
		o.Result, o.Detail = "unmappable", unmappableDetail(user)
		return o
	}
	rev := tr.revocation(set, o.EventType, 0, now)
	rev.Kind, rev.Issuer, rev.Subject, rev.IssuedBefore = decision.RevokeSubject, iss, sub, cut
	o.Revocations, o.Result = []decision.Revocation{rev}, "applied"
	return o
}

// assuranceLowered makes an assurance revocation: on step-up routes, the
// subject's tokens issued before cut count as if their acr were level's.
func (tr *Transmitter) assuranceLowered(set *SET, o Outcome, s *Subject, level string, cut, now time.Time) Outcome {
	o = tr.subjectBefore(set, o, s, cut, now)
	if o.Result != "applied" {
		return o
	}
	acr := level
	if v, ok := tr.ACRValues[level]; ok {
		acr = v
	}
	if strings.ContainsAny(acr, " \t\r\n") {
		acr = "" // not an acr value: no level at all (fail closed)
	}
	r := &o.Revocations[0]
	r.Kind, r.ACRLevel = decision.RevokeAssurance, acr
	return o
}

// deviceRevoked revokes the tokens issued before cut to the device a
// complex subject names (its opaque id, or its iss_sub sub), of
// token_issuer (every issuer without one).
func (tr *Transmitter) deviceRevoked(set *SET, o Outcome, s *Subject, cut, now time.Time) Outcome {
	var id string
	if s != nil && s.Format == "complex" && s.Device != nil {
		switch s.Device.Format {
		case "opaque":
			id = s.Device.ID
		case "iss_sub":
			id = s.Device.Sub
		}
	}
	if id == "" {
		o.Result, o.Detail = "unmappable", "the event names no device (a complex subject with a device of format opaque or iss_sub)"
		return o
	}
	rev := tr.revocation(set, o.EventType, 0, now)
	rev.Kind, rev.Issuer, rev.DeviceID, rev.IssuedBefore = decision.RevokeDevice, tr.TokenIssuer, id, cut
	o.Revocations, o.Result = []decision.Revocation{rev}, "applied"
	return o
}

// mapUser returns the sub claim and token issuer a user subject stands
// for.
func (tr *Transmitter) mapUser(s *Subject) (sub, iss string, ok bool) {
	if s == nil {
		return "", "", false
	}
	iss = tr.TokenIssuer
	switch s.Format {
	case "iss_sub":
		if iss == "" {
			iss = s.Iss
		}
		return s.Sub, iss, s.Sub != ""
	case "email":
		return s.Email, iss, tr.EmailIsSub && s.Email != ""
	case "opaque":
		return s.ID, iss, tr.OpaqueIsSub && s.ID != ""
	case "aliases":
		// The first identifier that maps names the subject; an alias list
		// inside an alias list is not allowed (RFC 9493 §3.2.6).
		for _, a := range s.Identifiers {
			if a != nil && a.Format != "aliases" {
				if sub, iss, ok := tr.mapUser(a); ok {
					return sub, iss, true
				}
			}
		}
	}
	return "", "", false
}

func unmappableDetail(s *Subject) string {
	if s == nil {
		return "the event names no user subject"
	}
	switch s.Format {
	case "email":
		return "an email subject maps to tokens only when the transmitter sets email_is_sub"
	case "opaque":
		return "an opaque subject maps to tokens only when the transmitter sets opaque_is_sub"
	case "aliases":
		return "no identifier of the aliases subject maps to token claims (iss_sub, or email or opaque with email_is_sub or opaque_is_sub)"
	}
	return "subject format " + sanitize(s.Format) + " does not map to token claims"
}

func (tr *Transmitter) revocation(set *SET, typ string, i int, now time.Time) decision.Revocation {
	r := decision.Revocation{
		ID:        RevocationID(tr.Issuer, set.JTI, typ, i),
		Reason:    "ssf " + shortType(typ) + " jti " + set.JTI,
		CreatedBy: "ssf:" + tr.Issuer,
	}
	if len(r.Reason) > decision.MaxRevocationReasonBytes {
		r.Reason = r.Reason[:decision.MaxRevocationReasonBytes]
	}
	if tr.RevocationTTL > 0 {
		r.Until = now.Add(tr.RevocationTTL)
	}
	return r
}

// RevocationID is the deterministic id of the i-th revocation an event of
// a SET makes: "ssf-" and 40 base32 characters of a SHA-256 of the
// transmitter, jti and event type.
func RevocationID(transmitter, jti, eventType string, i int) string {
	h := sha256.Sum256([]byte(transmitter + "\x00" + jti + "\x00" + eventType + "\x00" + strconv.Itoa(i)))
	return "ssf-" + strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(h[:25]))
}

func shortType(typ string) string {
	if i := strings.LastIndex(typ, "/event-type/"); i >= 0 {
		return typ[i+len("/event-type/"):]
	}
	return typ
}

// ShortType is the event type's last path segment (session-revoked), the
// metrics label; event types of no known profile are "other".
func ShortType(typ string) string {
	if strings.HasPrefix(typ, caep) || strings.HasPrefix(typ, risc) || strings.HasPrefix(typ, sse) {
		return shortType(typ)
	}
	return "other"
}

// streamSubject is the stream id an SSF stream event names: its sub_id
// must be an opaque subject whose id is the stream id.
func streamSubject(s *Subject) string {
	if s == nil || s.Format != "opaque" {
		return ""
	}
	return s.ID
}

func subjectString(s *Subject) string {
	if s == nil {
		return ""
	}
	switch s.Format {
	case "iss_sub":
		return "iss_sub:" + s.Iss + " " + s.Sub
	case "email":
		return "email:" + s.Email
	case "opaque":
		return "opaque:" + s.ID
	case "aliases":
		parts := make([]string, 0, len(s.Identifiers))
		for _, a := range s.Identifiers {
			if a != nil && a.Format != "aliases" {
				parts = append(parts, subjectString(a))
			}
		}
		return "aliases:[" + strings.Join(parts, " ") + "]"
	case "complex":
		parts := []string{}
		for _, p := range []struct {
			n string
			s *Subject
		}{{"user", s.User}, {"session", s.Session}, {"device", s.Device}} {
			if p.s != nil {
				parts = append(parts, p.n+"="+subjectString(p.s))
			}
		}
		return "complex:{" + strings.Join(parts, " ") + "}"
	}
	return s.Format
}
