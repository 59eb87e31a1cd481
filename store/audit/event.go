package audit

import (
	"net/netip"
	"time"

	"github.com/scopegate/scopegate/decision"
)

// API names the decision API a decision came through. Its string form is
// the "api" field of a record and a contract with log queries.
type API uint8

// The decision APIs.
const (
	ExtAuthz API = iota
	Authorizer
	HTTP
	AuthZEN
	numAPIs
)

var apiNames = [numAPIs]string{ExtAuthz: "ext_authz", Authorizer: "authorizer", HTTP: "http", AuthZEN: "authzen"}

// String returns the API's name in records, e.g. "ext_authz".
func (a API) String() string {
	if a >= numAPIs {
		return "unknown"
	}
	return apiNames[a]
}

// Event is one decision as the decision path hands it to the Logger. It
// is copied by value into the buffer: it holds the Decision itself (whose
// Token, Route and Policy point at immutable, shared data) and the few
// request fields a record names, never the request's headers, so building
// it costs no allocation and no credential can leak into a record.
type Event struct {
	// Decision is the decision as Decide returned it.
	Decision decision.Decision
	// Time is when the request arrived; Latency how long deciding took.
	Time    time.Time
	Latency time.Duration
	// Method, Host and RequestID are copied from the request.
	Method    string
	Host      string
	RequestID string
	// RawPath is the request path up to its query, kept only when the
	// decision has no normalized path (the path did not normalize).
	RawPath string
	// DecisionID correlates the record with the reply that carried it; ""
	// gets a fresh id when the record is written.
	DecisionID string
	SourceIP   netip.Addr
	API        API
	// TraceID and SpanID name the check's span; zero when it was not traced.
	TraceID [16]byte
	SpanID  [8]byte

	// write is set when the event goes to the sinks; an allow that
	// sampling skipped still reaches the observer.
	write bool
	admin *AdminEvent
	// bucket is the caller's counters in its lane (see lane.counts).
	bucket [2]uint16
}

// Sampled reports whether the event is written to the sinks (every deny;
// the sampled allows).
func (e *Event) Sampled() bool { return e.write }

// Observer receives every decision event, written or sampled out, on the
// Logger's goroutine, never on the decision path. Observe must not retain
// e and should return quickly: while it runs, the buffer fills.
type Observer interface {
	Observe(e *Event)
}

// rawPathOf returns path up to its query. A raw '#' is part of the path
// as sent (scopegate refuses it), so the record shows it.
func rawPathOf(path string) string {
	for i := 0; i < len(path); i++ {
		if path[i] == '?' {
			return path[:i]
		}
	}
	return path
}
