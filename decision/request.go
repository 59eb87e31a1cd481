package decision

import (
	"net/netip"
	"strings"
)

// Request is the protocol-independent description of one request to
// authorize. Translators (envoy/, server/) fill it from an ext_authz
// CheckRequest, a forward-auth HTTP request or a scopegate Check RPC; they do
// no I/O and make no decision. Only the fields Decide needs are carried, so a
// translator looks up a handful of headers instead of copying all of them.
type Request struct {
	// Method is the HTTP method of the original request, e.g. "GET".
	Method string
	// Path is the original request-target path as received, possibly with a
	// query string; Decide normalizes it.
	Path string
	// Authorization is the raw value of the Authorization header ("" when
	// absent). AuthorizationCount is how many Authorization headers the
	// request carried (a translator that only sees a merged value sets 1 and
	// leaves the comma to Decide).
	Authorization      string
	AuthorizationCount int
	// SourceIP is the address of the peer that sent the request to the proxy
	// (Envoy's source.address), if known.
	SourceIP netip.Addr
	// ForwardedFor is the X-Forwarded-For header, consulted only through the
	// policy's trusted hops.
	ForwardedFor string
	// Environment is the deployment environment for this request (from
	// context_extensions or the Check RPC); "" means the server's default.
	Environment string
	// ClientCertificate is the peer certificate as URL-encoded PEM (Envoy's
	// source.certificate), or PEM, if the proxy forwarded one.
	ClientCertificate string
	// Host is the :authority / Host of the original request.
	Host string
	// Scheme is the URI scheme of the original request ("https"), as the
	// proxy reports it (Envoy's attributes.request.http.scheme,
	// X-Forwarded-Proto); a DPoP proof's htu is checked against Scheme,
	// Host and Path.
	Scheme string
	// DPoP is the value of the request's DPoP proof header (RFC 9449), ""
	// when absent; DPoPCount is how many DPoP headers it carried (a
	// translator that only sees a merged value sets 1 and leaves the
	// comma to Decide).
	DPoP      string
	DPoPCount int
	// MethodOverride holds the values of the request's method-override
	// headers (MethodOverrideHeaders), joined with ", " when there are
	// several; "" when there are none. Frameworks behind the proxy run the
	// method they name instead of Method, so Decide refuses a request
	// where one names another method (request_invalid). Translators fill
	// it with AddMethodOverride.
	MethodOverride string
	// RequestID is the proxy's request id (x-request-id), for audit.
	RequestID string
	// TraceID and SpanID name the span the server recorded for this check
	// (zero when it recorded none), so the audit record links to its
	// trace. Decide never reads them.
	TraceID [16]byte
	SpanID  [8]byte
	// Attributes carries extra facts (context_extensions, Check RPC
	// attributes). It is read, never written, by Decide.
	Attributes map[string]string
	// Trace, when non-nil, receives every step Decide runs (--explain). It is
	// nil on the serving path, where it costs nothing.
	Trace *Trace
}

// MethodOverrideHeaders are the headers web frameworks read as the
// request's "real" method (Rails, Express's method-override, Symfony,
// Laravel, ASP.NET, Spring's HiddenHttpMethodFilter variants), lower-case.
var MethodOverrideHeaders = [...]string{"x-http-method-override", "x-http-method", "x-method-override"}

// IsMethodOverrideHeader reports whether name (any case) is one of
// MethodOverrideHeaders.
func IsMethodOverrideHeader(name string) bool {
	for _, h := range MethodOverrideHeaders {
		if len(name) == len(h) && equalFoldASCII(name, h) {
			return true
		}
	}
	return false
}

// AddMethodOverride records one method-override header value: the first
// is kept as it is (no allocation), later ones are joined with ", ".
func (r *Request) AddMethodOverride(v string) {
	if r.MethodOverride == "" {
		r.MethodOverride = v
		return
	}
	r.MethodOverride += ", " + v
}

// methodOverrideAgrees reports whether every comma-separated value of
// override names method (in any case, as frameworks upper-case it), so
// that honouring it changes nothing. Empty values are ignored.
func methodOverrideAgrees(override, method string) bool {
	for v := range strings.SplitSeq(override, ",") {
		v = strings.TrimSpace(v)
		if v != "" && !strings.EqualFold(v, method) {
			return false
		}
	}
	return true
}

func equalFoldASCII(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// Trace records the checks Decide ran, for `scopegate check --explain`.
type Trace struct {
	Steps []TraceStep
}

// TraceStep is one check and its outcome.
type TraceStep struct {
	Check  string // e.g. "route", "token", "scopes"
	Result string // "pass", "fail" or "skip"
	Detail string
}

func (t *Trace) add(check, result, detail string) {
	if t != nil {
		t.Steps = append(t.Steps, TraceStep{Check: check, Result: result, Detail: detail})
	}
}
