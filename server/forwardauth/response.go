package forwardauth

import (
	"io"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/scopegate/scopegate/decision"
	"github.com/scopegate/scopegate/envoy"
)

// Canonical names of the headers a forward-auth answer carries.
const (
	httpHeaderReason          = "X-Scopegate-Reason"
	httpHeaderWWWAuthenticate = "Www-Authenticate"
	httpHeaderContentType     = "Content-Type"
	httpHeaderContentLength   = "Content-Length"
	httpHeaderCacheControl    = "Cache-Control"
	// HeaderEnvoyHeadersToRemove asks Envoy's HTTP ext_authz filter to
	// remove the listed request headers before the request goes upstream;
	// other proxies ignore it.
	HeaderEnvoyHeadersToRemove = "X-Envoy-Auth-Headers-To-Remove"

	contentTypeJSON = "application/json"
)

// maxHTTPDenies bounds the forward-auth deny cache of one policy. Deny
// messages are constants, so a policy has at most (routes+1) × codes
// distinct denies in practice; the bound only guards memory if some message
// ever carried request data.
const maxHTTPDenies = 4096

// Shared header values. A response's header map holds these slices
// directly; net/http never writes into a value slice, and each has
// len == cap, so an Add on a response appends to a copy.
var (
	httpReasonOK   = []string{decision.OK.String()}
	httpNoStore    = []string{"no-store"}
	httpJSON       = []string{contentTypeJSON}
	httpStripAuthz = []string{"authorization"}
)

// Responder writes decisions as forward-auth HTTP answers: the answer
// nginx auth_request, Caddy forward_auth, Traefik forwardAuth and Envoy's
// HTTP ext_authz service expect. It is safe for concurrent use.
//
// A deny is the very deny of the ext_authz Responder it wraps (same status,
// x-scopegate-reason, WWW-Authenticate challenge and JSON body), prebuilt
// once per (policy, route, code, message) and shared, so a deny costs a map
// lookup and writes shared header values. An allow writes the three
// upstream headers, which depend on the token.
type Responder struct {
	r     *envoy.Responder
	cache atomic.Pointer[httpDenyCache]
	names atomic.Pointer[httpNames]
	mu    sync.Mutex // serializes cache growth
}

// NewResponder returns a Responder whose denies are r's (a default
// ext_authz Responder when r is nil).
func NewResponder(r *envoy.Responder) *Responder {
	if r == nil {
		r = envoy.NewResponder(envoy.ResponderOptions{})
	}
	return &Responder{r: r}
}

// httpDeny is a prebuilt forward-auth deny.
type httpDeny struct {
	status    int
	reason    []string
	challenge []string // nil: no challenge
	length    []string
	body      string
}

type httpDenyKey struct {
	route  *decision.Route
	code   decision.Code
	detail string
}

// httpDenyCache is the deny cache of one policy: an immutable map replaced
// as a whole when an entry is added (denies are few and soon all cached).
type httpDenyCache struct {
	pol *decision.Policy
	m   map[httpDenyKey]*httpDeny
}

// httpNames are a policy's upstream header names in canonical form.
type httpNames struct {
	pol   *decision.Policy
	names [3]string
}

// Write answers a forward-auth check with d:
//
//   - Allow: 200 with the subject, client and scopes headers (always all
//     three, empty when there is no value, so that Caddy 2.6's copy_headers
//     never leaks a placeholder and a forged client header is overwritten),
//     x-scopegate-reason: ok, and X-Envoy-Auth-Headers-To-Remove:
//     authorization when the policy strips Authorization.
//   - Deny: the HTTP status of the reason (401, 403 or 400), the
//     x-scopegate-reason header, the WWW-Authenticate challenge if any and
//     the JSON body {"allow":false,"reason":…,"message":…,"route":…}.
//   - Internal error: 500 with the same headers and body.
//
// Every answer carries Cache-Control: no-store.
func (h *Responder) Write(w http.ResponseWriter, d *decision.Decision) {
	hdr := w.Header()
	hdr[httpHeaderCacheControl] = httpNoStore
	if d.Allow {
		h.writeAllow(w, hdr, d)
		return
	}
	e := h.deny(d)
	hdr[httpHeaderReason] = e.reason
	hdr[httpHeaderContentType] = httpJSON
	hdr[httpHeaderContentLength] = e.length
	if e.challenge != nil {
		hdr[httpHeaderWWWAuthenticate] = e.challenge
	}
	if d.DPoPNonce != "" {
		hdr.Set(envoy.HeaderDPoPNonce, d.DPoPNonce)
	}
	w.WriteHeader(e.status)
	_, _ = io.WriteString(w, e.body)
}

func (h *Responder) writeAllow(w http.ResponseWriter, hdr http.Header, d *decision.Decision) {
	names := h.canonicalNames(d.Policy)
	up := envoy.UpstreamHeaders(d)
	// One allocation holds the three value slices' backing arrays.
	vals := new([3]string)
	for i := range up {
		vals[i] = up[i].Value
		hdr[names[i]] = vals[i : i+1 : i+1]
	}
	for _, hh := range hints(d) { // SMART routes only
		hdr.Set(hh.Name, hh.Value)
	}
	hdr[httpHeaderReason] = httpReasonOK
	if d.Policy != nil && d.Policy.Upstream.StripAuthorization {
		hdr[HeaderEnvoyHeadersToRemove] = httpStripAuthz
	}
	w.WriteHeader(http.StatusOK)
}

// canonicalNames returns pol's upstream header names in canonical form,
// computed once per policy.
func (h *Responder) canonicalNames(pol *decision.Policy) *[3]string {
	if n := h.names.Load(); n != nil && n.pol == pol {
		return &n.names
	}
	u := envoy.UpstreamNames(pol)
	n := &httpNames{pol: pol, names: [3]string{
		http.CanonicalHeaderKey(u.SubjectHeader),
		http.CanonicalHeaderKey(u.ClientHeader),
		http.CanonicalHeaderKey(u.ScopesHeader),
	}}
	h.names.Store(n)
	return &n.names
}

// deny returns the prebuilt deny for d, building and caching it the first
// time.
func (h *Responder) deny(d *decision.Decision) *httpDeny {
	key := httpDenyKey{route: d.Route, code: d.Code, detail: d.Detail}
	c := h.cache.Load()
	if c != nil && c.pol == d.Policy {
		if e, ok := c.m[key]; ok {
			return e
		}
	}
	e := h.buildDeny(d)
	h.mu.Lock()
	defer h.mu.Unlock()
	c = h.cache.Load()
	if c == nil || c.pol != d.Policy {
		// First deny under this policy (or a reload): start afresh, so
		// an old policy's routes are not kept alive.
		h.cache.Store(&httpDenyCache{pol: d.Policy, m: map[httpDenyKey]*httpDeny{key: e}})
		return e
	}
	if cur, ok := c.m[key]; ok {
		return cur
	}
	if len(c.m) >= maxHTTPDenies {
		return e
	}
	m := make(map[httpDenyKey]*httpDeny, len(c.m)+1)
	for k, v := range c.m {
		m[k] = v
	}
	m[key] = e
	h.cache.Store(&httpDenyCache{pol: d.Policy, m: m})
	return e
}

// buildDeny derives the forward-auth deny from the ext_authz deny, so both
// protocols answer a deny with the same status, headers and body.
func (h *Responder) buildDeny(d *decision.Decision) *httpDeny {
	resp := h.r.Response(d)
	hr := resp.GetDeniedResponse()
	if hr == nil {
		hr = resp.GetErrorResponse()
	}
	status := int(hr.GetStatus().GetCode())
	if status == 0 && resp.GetErrorResponse() != nil {
		// ext_authz leaves an error's status to Envoy's status_on_error;
		// forward-auth answers the reason's own (503 for an issuer that
		// cannot be reached, 500 for an internal error).
		status = d.Code.HTTPStatus()
	}
	if status < 400 {
		// A deny must never look like an allow: fail closed.
		status = http.StatusInternalServerError
	}
	e := &httpDeny{
		status: status,
		reason: []string{resp.GetStatus().GetMessage()},
		body:   hr.GetBody(),
	}
	e.length = []string{strconv.Itoa(len(e.body))}
	if challenge := h.r.WWWAuthenticate(d); challenge != "" {
		e.challenge = []string{challenge}
	}
	return e
}

// hints returns both SMART hint headers of an allow on a SMART route,
// empty when the decision carries no such hint. Forward-auth gateways copy
// listed auth-response headers onto the request: an empty value overwrites
// a client's copy, and a Caddy that is sent no value at all forwards its
// literal placeholder. nil for other routes. (ext_authz instead removes a
// hint it does not set: envoy.HintHeadersToRemove.)
func hints(d *decision.Decision) []envoy.UpstreamHeader {
	if !d.Allow || !d.Route.IsSMART() {
		return nil
	}
	h := d.UpstreamHints()
	return []envoy.UpstreamHeader{
		{Name: decision.HintFHIRRestriction, Value: h[decision.HintFHIRRestriction]},
		{Name: decision.HintFHIRPatient, Value: h[decision.HintFHIRPatient]},
	}
}
