package envoy

import (
	"net/netip"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/scopegate/scopegate/decision"
)

// Header names looked up in a CheckRequest. Envoy sends header keys
// lower-cased, so lookups in the merged headers map are exact.
const (
	hdrAuthorization = "authorization"
	hdrForwardedFor  = "x-forwarded-for"
	hdrRequestID     = "x-request-id"
	hdrMethod        = ":method"
	hdrPath          = ":path"
	hdrAuthority     = ":authority"
	hdrScheme        = ":scheme"
	hdrDPoP          = "dpop"

	// ctxEnvironment is the context_extensions key naming the environment
	// of the request (set per route or virtual host in Envoy's
	// ExtAuthzPerRoute.check_settings).
	ctxEnvironment = "environment"
)

// RequestFromCheck fills out from an ext_authz v3 CheckRequest. It resets
// *out first, so a caller can reuse one Request (set Trace afterwards if it
// wants one). It allocates nothing for the usual Envoy request (merged
// headers map): every string in out is a string of req, so out must not
// outlive req's use by the caller.
//
// Every level of req may be missing (proxyless gRPC clients send sparse
// requests, and a hand-written request may be empty): missing fields stay
// empty, and Decide denies such a request with a reason instead of failing.
//
// Envoy sends headers either merged in attributes.request.http.headers
// (duplicates joined with commas, the default) or raw in header_map (when
// encode_raw_headers is set). With the raw form, repeated Authorization
// headers are counted, so Decide can reject them; repeated X-Forwarded-For
// headers are joined with ", " as the merged form would have.
//
// It returns the message of a request_invalid deny when a field that is
// present cannot be read (today: a source address that is not an IP
// address), or "". The request is then refused, never decided without the
// field: a rule on the client address must not pass for want of one.
func RequestFromCheck(req *authv3.CheckRequest, out *decision.Request) (invalid string) {
	attrs := req.GetAttributes()
	httpReq := attrs.GetRequest().GetHttp()
	src := attrs.GetSource()
	var hs headerSource
	if h := httpReq.GetHeaders(); len(h) > 0 {
		hs.merged = h
	} else {
		hs.raw = httpReq.GetHeaderMap().GetHeaders()
	}
	c := checkFields{
		method: httpReq.GetMethod(), path: httpReq.GetPath(), host: httpReq.GetHost(),
		id: httpReq.GetId(), scheme: httpReq.GetScheme(),
		srcAddress: src.GetAddress().GetSocketAddress().GetAddress(), certificate: src.GetCertificate(),
	}
	ext := attrs.GetContextExtensions()
	c.environment = ext[ctxEnvironment]
	if len(ext) > 0 {
		c.attributes = ext
	}
	return c.translate(&hs, out)
}

// RequestFromOffsets fills out from msg, an encoded CheckRequest, and o,
// where its fields lie (wire.ScanCheckRequest finds them), as
// RequestFromCheck fills it from the decoded message; out's strings are
// substrings of msg. It decodes only the fields the translation reads, and
// checks only those for valid UTF-8. One difference: out.Attributes stays
// nil (only the environment extension is read), since nothing that
// decides or audits reads Attributes. ok is false when a field it read is
// not valid UTF-8: out must not be used then, and the request goes to the
// general decoder, which rejects it as proto.Unmarshal does.
func RequestFromOffsets(msg string, o *CheckOffsets, out *decision.Request) (invalid string, ok bool) {
	o.msg, o.bad = msg, false
	c := checkFields{
		method: o.str(o.Method), path: o.str(o.Path), host: o.str(o.Host), id: o.str(o.ID), scheme: o.str(o.Scheme),
		srcAddress: o.str(o.SourceAddress), certificate: o.str(o.SourceCertificate), environment: o.str(o.Environment),
	}
	hs := headerSource{view: o}
	invalid = c.translate(&hs, out)
	ok = !o.bad
	o.msg = ""
	return invalid, ok
}

// checkFields are the fields of a CheckRequest the translation reads but
// for the headers, from the decoded message or from the encoded one.
type checkFields struct {
	method, path, host, id, scheme string
	srcAddress, certificate        string
	environment                    string
	attributes                     map[string]string
}

func (c *checkFields) translate(hs *headerSource, out *decision.Request) (invalid string) {
	*out = decision.Request{}
	out.Method = c.method
	if out.Method == "" {
		out.Method = hs.get(hdrMethod)
	}
	out.Path = c.path
	if out.Path == "" {
		out.Path = hs.get(hdrPath)
	}
	out.Host = c.host
	if out.Host == "" {
		out.Host = hs.get(hdrAuthority)
	}
	out.RequestID = c.id
	if out.RequestID == "" {
		out.RequestID = hs.get(hdrRequestID)
	}
	out.Authorization, out.AuthorizationCount = hs.authorization()
	out.Scheme = c.scheme
	if out.Scheme == "" {
		out.Scheme = hs.get(hdrScheme)
	}
	out.DPoP, out.DPoPCount = hs.count(hdrDPoP)
	out.ForwardedFor = hs.forwardedFor()
	hs.methodOverride(out)

	if a := c.srcAddress; a != "" {
		ip, err := netip.ParseAddr(a)
		if err != nil {
			invalid = DetailBadSourceAddress
		} else {
			out.SourceIP = ip.Unmap()
		}
	}
	out.ClientCertificate = c.certificate
	out.Environment = c.environment
	out.Attributes = c.attributes
	return invalid
}

// DetailBadSourceAddress is the request_invalid message of a CheckRequest
// whose source address is not an IP address.
const DetailBadSourceAddress = "attributes.source.address.socket_address.address is not an IP address: send the client's address without a port, e.g. 203.0.113.7 or 2001:db8::1 (a pipe or an unset address sends none)"

// headerSource reads headers from whichever form Envoy sent, decoded
// (merged, raw) or where they lie in the encoded request (view).
type headerSource struct {
	merged map[string]string
	raw    []*corev3.HeaderValue
	view   *CheckOffsets
}

// isMerged reports whether the headers are the merged map: a request with
// one is read from it, as Envoy sends one or the other.
func (h *headerSource) isMerged() bool {
	if h.view != nil {
		return h.view.Merged > 0
	}
	return h.merged != nil
}

// lookup returns the merged map's value of name.
func (h *headerSource) lookup(name string) (string, bool) {
	if h.view != nil {
		return h.view.header(name)
	}
	v, ok := h.merged[name]
	return v, ok
}

// rawLen, rawKey and rawValue read the raw header_map entries.
func (h *headerSource) rawLen() int {
	if h.view != nil {
		return h.view.NumRaw
	}
	return len(h.raw)
}

func (h *headerSource) rawKey(i int) string {
	if h.view != nil {
		return h.view.rawKey(i)
	}
	return h.raw[i].GetKey()
}

// rawValue returns a header_map entry's value: Envoy fills raw_value
// (bytes) when encode_raw_headers is set, value otherwise.
func (h *headerSource) rawValue(i int) string {
	if h.view != nil {
		return h.view.rawValue(i)
	}
	hv := h.raw[i]
	if v := hv.GetValue(); v != "" {
		return v
	}
	return string(hv.GetRawValue())
}

// get returns the first value of the header named name (lower-case).
func (h *headerSource) get(name string) string {
	v, _ := h.count(name)
	return v
}

// count returns the first value of the header named name (lower-case)
// and how many headers of that name the request carried (1 at most in a
// merged map, where duplicates arrive comma-joined).
func (h *headerSource) count(name string) (string, int) {
	if h.isMerged() {
		v, ok := h.lookup(name)
		if !ok {
			return "", 0
		}
		return v, 1
	}
	first, n := "", 0
	for i := range h.rawLen() {
		if strings.EqualFold(h.rawKey(i), name) {
			if n == 0 {
				first = h.rawValue(i)
			}
			n++
		}
	}
	return first, n
}

// authorization returns the Authorization value and how many Authorization
// headers the request carried. A merged map holds at most one (duplicates
// arrive comma-joined, which Decide rejects on its own).
func (h *headerSource) authorization() (string, int) { return h.count(hdrAuthorization) }

// methodOverride records the method-override headers (Decide refuses one
// naming another method than the request's).
func (h *headerSource) methodOverride(out *decision.Request) {
	if h.isMerged() {
		for _, name := range decision.MethodOverrideHeaders {
			if v, ok := h.lookup(name); ok {
				out.AddMethodOverride(v)
			}
		}
		return
	}
	for i := range h.rawLen() {
		if decision.IsMethodOverrideHeader(h.rawKey(i)) {
			out.AddMethodOverride(h.rawValue(i))
		}
	}
}

// forwardedFor returns X-Forwarded-For, every raw occurrence joined with
// ", " in order, which is how the merged form reads.
func (h *headerSource) forwardedFor() string {
	if h.isMerged() {
		return h.get(hdrForwardedFor)
	}
	var out string
	n := 0
	for i := range h.rawLen() {
		if !strings.EqualFold(h.rawKey(i), hdrForwardedFor) {
			continue
		}
		if n == 0 {
			out = h.rawValue(i)
		} else {
			out = out + ", " + h.rawValue(i)
		}
		n++
	}
	return out
}
