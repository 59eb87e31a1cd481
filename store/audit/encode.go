package audit

import (
	"encoding/hex"
	"iter"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/scopegate/scopegate/decision"
)

// Entry is one encoded record as the sinks receive it: the JSON object and
// the fields a database sink indexes. JSON (no trailing newline) and the
// Entry itself are valid only during the Sink call; a sink that keeps them
// copies JSON.
type Entry struct {
	Time       time.Time
	Type       string // "decision" or "admin"
	DecisionID string
	RequestID  string
	API        string
	Allow      bool
	// Reason is the reason code of a decision, or the status of an admin
	// call ("ok", or its gRPC code in snake case).
	Reason   string
	Route    string
	ClientID string
	Subject  string
	// TraceID and SpanID name the check's span (zero when untraced), for
	// sinks that link a record to its trace.
	TraceID [16]byte
	SpanID  [8]byte
	JSON    []byte
}

// Bounds on request-supplied strings in a record, in bytes: a record must
// stay small whatever a client sends.
const (
	maxShortField = 256
	maxPathField  = 2048
)

// appendDecision appends the JSON record of ev to dst, with the fields
// m masks dropped or hashed (m may be nil: no masking).
func appendDecision(dst []byte, ev *Event, m *masker) ([]byte, Entry) {
	d := &ev.Decision
	code := d.Code
	if !d.Allow && code == decision.OK {
		code = decision.Internal // a deny never claims OK
	}
	id := ev.DecisionID
	if id == "" {
		id = newID()
	}
	e := Entry{Time: ev.Time, Type: "decision", DecisionID: id, RequestID: m.str(mRequestID, truncate(ev.RequestID, maxShortField)),
		API: ev.API.String(), Allow: d.Allow, Reason: code.String(), TraceID: ev.TraceID, SpanID: ev.SpanID}
	dst = append(dst, `{"time":"`...)
	dst = ev.Time.UTC().AppendFormat(dst, time.RFC3339Nano)
	dst = append(dst, `","type":"decision","decision_id":`...)
	dst = appendString(dst, id)
	if e.RequestID != "" {
		dst = append(dst, `,"request_id":`...)
		dst = appendString(dst, e.RequestID)
	}
	if e.TraceID != ([16]byte{}) {
		dst = append(dst, `,"trace_id":"`...)
		dst = hex.AppendEncode(dst, e.TraceID[:])
		dst = append(dst, `","span_id":"`...)
		dst = hex.AppendEncode(dst, e.SpanID[:])
		dst = append(dst, '"')
	}
	dst = append(dst, `,"api":"`...)
	dst = append(dst, e.API...)
	if d.Allow {
		dst = append(dst, `","decision":"allow","reasons":["`...)
	} else {
		dst = append(dst, `","decision":"deny","reasons":["`...)
	}
	dst = append(dst, e.Reason...)
	dst = append(dst, `"]`...)
	if m.on(mMessage) == maskKeep {
		dst = append(dst, `,"message":`...)
		dst = appendString(dst, d.Message())
	} else {
		dst = m.field(dst, mMessage, d.Message())
	}
	if d.Route != nil {
		e.Route = m.str(mRoute, d.Route.Name)
		dst = appendField(dst, "route", e.Route)
	}
	dst = m.field(dst, mMethod, truncate(ev.Method, maxShortField))
	dst = m.field(dst, mHost, truncate(ev.Host, maxShortField))
	path := d.Path
	if path == "" {
		path = ev.RawPath
	}
	switch m.on(mPath) {
	case MaskDrop:
	case MaskHash:
		dst = m.field(dst, mPath, truncate(path, maxPathField))
	default:
		dst = append(dst, `,"path":`...)
		dst = appendString(dst, truncate(path, maxPathField))
	}
	if ev.SourceIP.IsValid() {
		switch m.on(mSourceIP) {
		case MaskDrop:
		case MaskHash:
			dst = m.field(dst, mSourceIP, ev.SourceIP.String())
		default:
			dst = append(dst, `,"source_ip":"`...)
			dst = ev.SourceIP.AppendTo(dst)
			dst = append(dst, '"')
		}
	}
	if t := d.Token; t != nil {
		e.ClientID, e.Subject = m.str(mClientID, t.ClientID), m.str(mSubject, t.Subject)
		dst = appendField(dst, "subject", e.Subject)
		dst = appendField(dst, "client_id", e.ClientID)
		dst = m.field(dst, mIss, t.Issuer)
		dst = m.field(dst, mJTI, t.JTI)
		dst = m.field(dst, mPatient, d.SMARTPatient())
		dst = m.list(dst, mScopesGranted, slices.Values(t.Scopes))
		dst = m.list(dst, mScopesUsed, d.ScopesUsedSeq())
		if dep := d.DeprecatedScopesUsed(); len(dep) > 0 {
			dst = m.list(dst, mDeprecatedScopesUsed, slices.Values(dep))
		}
		if dr, ok := d.DriftReport(); ok && m.on(mDrift) != MaskDrop {
			dst = appendDrift(dst, &dr, m)
		}
	} else if used := d.ScopesUsed(); len(used) > 0 {
		dst = m.list(dst, mScopesUsed, slices.Values(used))
	}
	if missing := d.ChallengeScope(); missing != "" {
		// What an insufficient_scope deny named: the scopes the token
		// lacks, or the alternatives of which it carries none.
		dst = m.list(dst, mScopesMissing, strings.FieldsSeq(missing))
	}
	if sh := d.Shadow; sh.Route != nil && m.on(mShadow) != MaskDrop {
		dst = appendShadow(dst, &sh)
	}
	dst = m.field(dst, mPolicyVersion, d.PolicyVersion())
	dst = append(dst, `,"latency_us":`...)
	dst = strconv.AppendFloat(dst, float64(ev.Latency.Nanoseconds())/1e3, 'f', 3, 64)
	dst = append(dst, '}')
	return dst, e
}

// appendShadow appends the would-be outcome of a rule in shadow mode: kind
// "route" for a shadow route, "scopes" for scopes' shadow when blocks.
func appendShadow(dst []byte, sh *decision.ShadowOutcome) []byte {
	kind, result := "route", "allow"
	if sh.Scopes {
		kind = "scopes"
	}
	if !sh.Allow {
		result = "deny"
	}
	dst = append(dst, `,"shadow":{"kind":`...)
	dst = appendString(dst, kind)
	dst = append(dst, `,"route":`...)
	dst = appendString(dst, sh.Route.Name)
	dst = append(dst, `,"decision":`...)
	dst = appendString(dst, result)
	dst = append(dst, `,"reason":`...)
	dst = appendString(dst, sh.Code.String())
	return append(dst, '}')
}

func appendDrift(dst []byte, dr *decision.DriftReport, m *masker) []byte {
	dst = append(dst, `,"drift":{"mode":`...)
	if dr.Enforced {
		dst = append(dst, `"enforce"`...)
	} else {
		dst = append(dst, `"monitor"`...)
	}
	if dr.Unregistered {
		dst = append(dst, `,"unregistered":true`...)
	}
	// The scopes in it are the token's (hashed with the drift field);
	// the segments are the policy's names.
	dst = appendSeq(dst, "extra", slices.Values(dr.Extra), m, mDrift)
	if len(dr.Expired) > 0 {
		dst = appendSeq(dst, "expired", slices.Values(dr.Expired), m, mDrift)
	}
	if len(dr.Segments) > 0 {
		// A straddle is apart from extra: its scopes are granted, only
		// not approved together (segments_together).
		dst = appendSeq(dst, "segments", slices.Values(dr.Segments), nil, 0)
		dst = appendSeq(dst, "straddled", slices.Values(dr.Straddled), m, mDrift)
	}
	return append(dst, '}')
}

// appendAdmin appends the JSON record of an admin call, masked by m.
func appendAdmin(dst []byte, a *AdminEvent, m *masker) ([]byte, Entry) {
	status := a.Status
	if status == "" {
		status = "ok"
	}
	id := newID()
	e := Entry{Time: a.Time, Type: "admin", DecisionID: id, API: "admin", Allow: status == "ok", Reason: status}
	dst = append(dst, `{"time":"`...)
	dst = a.Time.UTC().AppendFormat(dst, time.RFC3339Nano)
	dst = append(dst, `","type":"admin","decision_id":`...)
	dst = appendString(dst, id)
	dst = m.field(dst, mMethod, a.Method)
	dst = m.field(dst, mPrincipal, a.Principal)
	dst = m.field(dst, mPeer, a.Peer)
	dst = append(dst, `,"status":`...)
	dst = appendString(dst, status)
	dst = m.field(dst, mMessage, a.Message)
	if len(a.Details) > 0 && m.on(mDetails) != MaskDrop {
		dst = append(dst, `,"details":{`...)
		keys := make([]string, 0, len(a.Details))
		for k := range a.Details {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for i, k := range keys {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendString(dst, k)
			dst = append(dst, ':')
			dst = m.value(dst, mDetails, truncate(a.Details[k], maxPathField))
		}
		dst = append(dst, '}')
	}
	dst = m.field(dst, mPolicyVersion, a.PolicyVersion)
	dst = append(dst, `,"latency_us":`...)
	dst = strconv.AppendFloat(dst, float64(a.Latency.Nanoseconds())/1e3, 'f', 3, 64)
	dst = append(dst, '}')
	return dst, e
}

// appendField appends ,"name":"value" unless value is empty.
func appendField(dst []byte, name, value string) []byte {
	if value == "" {
		return dst
	}
	dst = append(dst, ',', '"')
	dst = append(dst, name...)
	dst = append(dst, '"', ':')
	return appendString(dst, value)
}

// list appends field f with the strings of seq as a JSON list (an empty
// one as []), unless f is dropped; each element is hashed when f is.
func (m *masker) list(dst []byte, f maskField, seq iter.Seq[string]) []byte {
	if m.on(f) == MaskDrop {
		return dst
	}
	return appendSeq(dst, maskFieldNames[f], seq, m, f)
}

// appendSeq appends the field name with the strings of seq as a JSON
// list, each masked as field f of m (m nil: as they are).
func appendSeq(dst []byte, name string, seq iter.Seq[string], m *masker, f maskField) []byte {
	dst = append(dst, ',', '"')
	dst = append(dst, name...)
	dst = append(dst, '"', ':', '[')
	first := true
	for s := range seq {
		if !first {
			dst = append(dst, ',')
		}
		first = false
		dst = m.value(dst, f, s)
	}
	return append(dst, ']')
}

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string. Invalid UTF-8 becomes U+FFFD;
// control characters, and U+2028/U+2029 (line breaks to JavaScript), are
// escaped, so a record is always one valid line.
func appendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// truncate cuts s to at most n bytes, at a character boundary.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// newID returns 16 random hex digits, the form of the Authorizer's
// decision ids.
func newID() string {
	var b [16]byte
	v := rand.Uint64()
	for i := len(b) - 1; i >= 0; i-- {
		b[i] = hexDigits[v&0xf]
		v >>= 4
	}
	return string(b[:])
}
