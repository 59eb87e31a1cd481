package envoy

import (
	"unicode/utf8"

	"github.com/scopegate/scopegate/decision"
)

// The lazy form of RequestFromCheck. The translation reads a handful of a
// CheckRequest's fields; decoding the whole message builds a map entry for
// every header and checks every string for valid UTF-8, which under load
// costs more than the decision. wire.ScanCheckRequest instead walks the
// encoded message once and records in a CheckOffsets where the fields the
// translation may read lie; RequestFromOffsets decodes those, and checks
// those for UTF-8, when it reads them. Headers the translation does not
// name are never materialised: only their count and size are kept, for the
// server's header limits.

// ViewHeaders are the merged-map headers RequestFromOffsets may read,
// lower-case; CheckOffsets.Headers[i] is the value of ViewHeaders[i].
var ViewHeaders = append(append([]string{
	hdrAuthorization, hdrForwardedFor, hdrRequestID, hdrMethod, hdrPath, hdrAuthority, hdrScheme, hdrDPoP,
}, decision.MethodOverrideHeaders[:]...), TraceHeaders[:]...)

// TraceHeaders are the trace-context headers (W3C Trace Context and B3,
// single and multi) that TraceFromOffsets reads for the server's tracing;
// the decision reads none of them.
var TraceHeaders = [NumTraceHeaders]string{
	"traceparent", "tracestate", "b3", "x-b3-traceid", "x-b3-spanid", "x-b3-parentspanid", "x-b3-sampled", "x-b3-flags",
}

// NumTraceHeaders is len(TraceHeaders).
const NumTraceHeaders = 8

// ViewContextKey is the context_extensions key RequestFromOffsets reads.
const ViewContextKey = ctxEnvironment

// maxViewHeaders bounds ViewHeaders (a bit each in CheckOffsets.Present).
const maxViewHeaders = 32

// MaxRawHeaders is the most header_map entries a CheckOffsets holds: a
// request with more goes to the general decoder.
const MaxRawHeaders = 64

// Span is the bytes [Start, End) of an encoded message.
type Span struct{ Start, End int32 }

// RawHeader is where one header_map entry's key, value and raw_value lie.
type RawHeader struct{ Key, Value, RawValue Span }

// CheckOffsets is where the fields RequestFromOffsets reads lie in an
// encoded CheckRequest. Each field is its last occurrence on the wire, as
// in the message proto.Unmarshal builds (the last value wins, also for a
// repeated key of the merged map); absent fields are empty spans.
type CheckOffsets struct {
	// attributes.request.http.
	Method, Path, Host, ID, Scheme Span
	// attributes.source: the socket address's address, and certificate.
	SourceAddress, SourceCertificate Span
	// attributes.context_extensions[ViewContextKey].
	Environment Span

	// The merged headers map: Headers[i] is the value of ViewHeaders[i]
	// when bit i of Present is set. Merged is the number of its distinct
	// keys and MergedBytes their names and (last) values summed.
	Present     uint32
	Headers     [maxViewHeaders]Span
	Merged      int
	MergedBytes int

	// header_map: its first NumRaw entries, in order, and their keys,
	// values and raw values summed in bytes.
	Raw      [MaxRawHeaders]RawHeader
	NumRaw   int
	RawBytes int

	// The message, while RequestFromOffsets reads it, and whether a field
	// read was not valid UTF-8. They live here, not in a reader of their
	// own, so that the offsets stay on their caller's stack: Go's escape
	// analysis would move them to the heap with any reader that holds
	// both a pointer to them and the strings the request keeps.
	msg string
	bad bool
}

// HeaderSize returns how many headers the request carries, merged map and
// header_map together, and their names and values summed in bytes.
func (o *CheckOffsets) HeaderSize() (count, bytes int) {
	return o.Merged + o.NumRaw, o.MergedBytes + o.RawBytes
}

// str returns the field at sp, recording whether it is valid UTF-8
// (proto.Unmarshal rejects such a proto3 string).
func (o *CheckOffsets) str(sp Span) string {
	s := o.msg[sp.Start:sp.End]
	if !utf8.ValidString(s) {
		o.bad = true
	}
	return s
}

// header returns the merged map's value of name, one of ViewHeaders.
func (o *CheckOffsets) header(name string) (string, bool) {
	for i, h := range ViewHeaders {
		if h == name {
			if o.Present&(1<<i) == 0 {
				return "", false
			}
			return o.str(o.Headers[i]), true
		}
	}
	panic("envoy: a header outside ViewHeaders was read from CheckOffsets")
}

// TraceFromOffsets copies the values of TraceHeaders from the message
// msg that o was scanned from into out (out[i] for TraceHeaders[i]),
// from the merged map or, without one, the first header_map entry of each
// name. A value that is not valid UTF-8 is left out: it names no trace,
// and tracing never rejects a request.
func TraceFromOffsets(msg string, o *CheckOffsets, out *[NumTraceHeaders]string) {
	o.msg = msg
	defer func() { o.msg = "" }()
	if o.Merged > 0 {
		base := len(ViewHeaders) - NumTraceHeaders
		for i := range TraceHeaders {
			if o.Present&(1<<(base+i)) != 0 {
				if v := msg[o.Headers[base+i].Start:o.Headers[base+i].End]; utf8.ValidString(v) {
					out[i] = v
				}
			}
		}
		return
	}
	for j := 0; j < o.NumRaw; j++ {
		k := o.rawKey(j)
		for i, name := range TraceHeaders {
			if out[i] == "" && k == name {
				h := &o.Raw[j]
				v := msg[h.Value.Start:h.Value.End]
				if v == "" {
					v = msg[h.RawValue.Start:h.RawValue.End]
				}
				if utf8.ValidString(v) {
					out[i] = v
				}
			}
		}
	}
}

// rawKey returns header_map entry i's key, unchecked: it is only compared
// with ASCII names, which a key that is not valid UTF-8 never matches,
// even under strings.EqualFold (an invalid byte reads as U+FFFD).
func (o *CheckOffsets) rawKey(i int) string {
	k := o.Raw[i].Key
	return o.msg[k.Start:k.End]
}

// rawValue returns header_map entry i's value, or its raw_value (bytes,
// which need not be UTF-8) when value is empty.
func (o *CheckOffsets) rawValue(i int) string {
	h := &o.Raw[i]
	if h.Value.End > h.Value.Start {
		return o.str(h.Value)
	}
	return o.msg[h.RawValue.Start:h.RawValue.End]
}
