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
	*out = decision.Request{}
	attrs := req.GetAttributes()
	httpReq := attrs.GetRequest().GetHttp()
	src := attrs.GetSource()

	var hs headerSource
	if h := httpReq.GetHeaders(); len(h) > 0 {
		hs.merged = h
	} else {
		hs.raw = httpReq.GetHeaderMap().GetHeaders()
	}

	out.Method = httpReq.GetMethod()
	if out.Method == "" {
		out.Method = hs.get(hdrMethod)
	}
	out.Path = httpReq.GetPath()
	if out.Path == "" {
		out.Path = hs.get(hdrPath)
	}
	out.Host = httpReq.GetHost()
	if out.Host == "" {
		out.Host = hs.get(hdrAuthority)
	}
	out.RequestID = httpReq.GetId()
	if out.RequestID == "" {
		out.RequestID = hs.get(hdrRequestID)
	}
	out.Authorization, out.AuthorizationCount = hs.authorization()
	out.Scheme = httpReq.GetScheme()
	if out.Scheme == "" {
		out.Scheme = hs.get(hdrScheme)
	}
	out.DPoP, out.DPoPCount = hs.count(hdrDPoP)
	out.ForwardedFor = hs.forwardedFor()
	hs.methodOverride(out)

	if a := src.GetAddress().GetSocketAddress().GetAddress(); a != "" {
		ip, err := netip.ParseAddr(a)
		if err != nil {
			invalid = DetailBadSourceAddress
		} else {
			out.SourceIP = ip.Unmap()
		}
	}
	out.ClientCertificate = src.GetCertificate()

	ext := attrs.GetContextExtensions()
	out.Environment = ext[ctxEnvironment]
	if len(ext) > 0 {
		out.Attributes = ext
	}
	return invalid
}

// DetailBadSourceAddress is the request_invalid message of a CheckRequest
// whose source address is not an IP address.
const DetailBadSourceAddress = "attributes.source.address.socket_address.address is not an IP address: send the client's address without a port, e.g. 203.0.113.7 or 2001:db8::1 (a pipe or an unset address sends none)"

// headerSource reads headers from whichever form Envoy sent.
type headerSource struct {
	merged map[string]string
	raw    []*corev3.HeaderValue
}

// get returns the first value of the header named name (lower-case).
func (h *headerSource) get(name string) string {
	if h.merged != nil {
		return h.merged[name]
	}
	for _, hv := range h.raw {
		if strings.EqualFold(hv.GetKey(), name) {
			return rawValue(hv)
		}
	}
	return ""
}

// count returns the first value of the header named name (lower-case)
// and how many headers of that name the request carried (1 at most in a
// merged map, where duplicates arrive comma-joined).
func (h *headerSource) count(name string) (string, int) {
	if h.merged != nil {
		v, ok := h.merged[name]
		if !ok {
			return "", 0
		}
		return v, 1
	}
	first, n := "", 0
	for _, hv := range h.raw {
		if strings.EqualFold(hv.GetKey(), name) {
			if n == 0 {
				first = rawValue(hv)
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
	if h.merged != nil {
		for _, name := range decision.MethodOverrideHeaders {
			if v, ok := h.merged[name]; ok {
				out.AddMethodOverride(v)
			}
		}
		return
	}
	for _, hv := range h.raw {
		if decision.IsMethodOverrideHeader(hv.GetKey()) {
			out.AddMethodOverride(rawValue(hv))
		}
	}
}

// forwardedFor returns X-Forwarded-For, every raw occurrence joined with
// ", " in order, which is how the merged form reads.
func (h *headerSource) forwardedFor() string {
	if h.merged != nil {
		return h.merged[hdrForwardedFor]
	}
	var out string
	n := 0
	for _, hv := range h.raw {
		if !strings.EqualFold(hv.GetKey(), hdrForwardedFor) {
			continue
		}
		if n == 0 {
			out = rawValue(hv)
		} else {
			out = out + ", " + rawValue(hv)
		}
		n++
	}
	return out
}

// rawValue returns a header_map entry's value: Envoy fills raw_value (bytes)
// when encode_raw_headers is set, value otherwise.
func rawValue(hv *corev3.HeaderValue) string {
	if v := hv.GetValue(); v != "" {
		return v
	}
	return string(hv.GetRawValue())
}
