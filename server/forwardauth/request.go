package forwardauth

import (
	"net/http"
	"net/netip"
	"strings"

	"github.com/scopegate/scopegate/decision"
)

// Header names a forward-auth check request is read from, in the canonical
// form net/http stores them in, so each lookup is one map index.
const (
	// HeaderForwardedMethod and HeaderForwardedURI carry the original
	// method and request-URI from Caddy, Traefik and HAProxy glue.
	HeaderForwardedMethod = "X-Forwarded-Method"
	HeaderForwardedURI    = "X-Forwarded-Uri"
	// HeaderOriginalMethod and HeaderOriginalURI carry them from nginx
	// (X-Original-URI is the usual spelling; header names are
	// case-insensitive).
	HeaderOriginalMethod = "X-Original-Method"
	HeaderOriginalURI    = "X-Original-Uri"
	// HeaderForwardedHost is the Host the client asked for.
	HeaderForwardedHost = "X-Forwarded-Host"
	// HeaderForwardedFor is the client address chain; the decision core
	// walks it only through the policy's trusted_proxies.
	HeaderForwardedFor = "X-Forwarded-For"
	// HeaderForwardedClientCert is Envoy's XFCC header.
	HeaderForwardedClientCert = "X-Forwarded-Client-Cert"
	// HeaderClientCert is the RFC 9440 Client-Cert header.
	HeaderClientCert = "Client-Cert"
	// HeaderRequestID is the proxy's request id.
	HeaderRequestID = "X-Request-Id"

	httpAuthorization = "Authorization"
)

// Messages of the request_invalid denies the forward-auth translation finds
// itself. They are constants, so such a deny allocates nothing and is
// cached like any other.
const (
	detailManyMethods       = "the check request carries more than one original-method header value (X-Forwarded-Method, X-Original-Method): the proxy must send exactly one"
	detailManyURIs          = "the check request carries more than one original-URI header value (X-Forwarded-Uri, X-Original-URI): the proxy must send exactly one"
	detailMethodConflict    = "X-Forwarded-Method and X-Original-Method disagree: a client may have forged one of them; configure the proxy to set (overwrite) both, or only one"
	detailURIConflict       = "X-Forwarded-Uri and X-Original-URI disagree: a client may have forged one of them; configure the proxy to set (overwrite) both, or only one"
	detailURIWithoutMethod  = "the check request names the original URI (X-Forwarded-Uri or X-Original-URI) but not the original method: the proxy must send X-Forwarded-Method or X-Original-Method too"
	detailMethodWithoutURI  = "the check request names the original method (X-Forwarded-Method or X-Original-Method) but not the original URI: the proxy must send X-Forwarded-Uri or X-Original-URI too"
	detailNoPathPrefix      = "the check request's path does not start with the configured HTTP path prefix (Envoy http_service path_prefix): align the two settings"
	detailManyCertHeaders   = "the check request carries more than one client-certificate header value (X-Forwarded-Client-Cert, Client-Cert): the proxy must send at most one"
	detailBothCertHeaders   = "the check request carries both X-Forwarded-Client-Cert and Client-Cert: the proxy must send the client certificate in one of them"
	detailManyForwardedHost = "the check request carries more than one X-Forwarded-Host value: the proxy must send exactly one"
)

// Options configure RequestFromHTTP.
type Options struct {
	// PathPrefix is stripped from the check request's own path when no
	// original-URI header is present: Envoy's HTTP ext_authz service sends
	// path_prefix + the original path. "" strips nothing. It must start
	// with '/' and not end with '/' (the server validates it).
	PathPrefix string
}

// HasForwardedURI reports whether r names an original request-URI in a
// forwarded header. Such a request is always a forward-auth check, whatever
// its own path, because its own path is the proxy's fixed auth path.
func HasForwardedURI(r *http.Request) bool {
	return len(r.Header[HeaderForwardedURI]) > 0 || len(r.Header[HeaderOriginalURI]) > 0
}

// RequestFromHTTP fills out from a forward-auth check request (nginx
// auth_request, Caddy forward_auth, Traefik forwardAuth, Envoy's HTTP
// ext_authz service). It resets *out first. It returns "" or the message of
// a request_invalid deny when the check request is ambiguous, and it never
// reads the request body (nginx announces a body it never sends).
//
// Where each field comes from:
//
//   - Method: X-Forwarded-Method, else X-Original-Method, else the check
//     request's own method (Envoy keeps the original method).
//   - Path: X-Forwarded-Uri, else X-Original-URI, else the check request's
//     own request-URI minus opts.PathPrefix (Envoy sends path_prefix + the
//     original path). The own path is never used when a forwarded header is
//     present: there it is the proxy's fixed auth path.
//   - Authorization: every Authorization value is counted, so two headers
//     are a request_invalid deny in Decide.
//   - SourceIP: the TCP peer (the proxy). ForwardedFor: X-Forwarded-For,
//     every line joined; Decide walks it only through trusted_proxies.
//   - ClientCertificate: the last element's Cert (else Hash) of Envoy's
//     X-Forwarded-Client-Cert, or RFC 9440 Client-Cert, as sent.
//   - Host: X-Forwarded-Host, else Host. RequestID: X-Request-Id.
//
// Environment is never read from a header: a client could set it. Both
// forwarded header families may be present only when they agree, since a
// proxy that sets one family passes the other through from the client.
//
// Every string in out is a string of r, and for the usual request nothing
// is allocated.
func RequestFromHTTP(r *http.Request, opts *Options, out *decision.Request) (invalid string) {
	*out = decision.Request{}
	h := r.Header

	method, nMethod, ok := agreeing(h[HeaderForwardedMethod], h[HeaderOriginalMethod])
	if !ok {
		if nMethod > 1 {
			return detailManyMethods
		}
		return detailMethodConflict
	}
	uri, nURI, ok := agreeing(h[HeaderForwardedURI], h[HeaderOriginalURI])
	if !ok {
		if nURI > 1 {
			return detailManyURIs
		}
		return detailURIConflict
	}
	switch {
	case nURI > 0 && nMethod == 0:
		return detailURIWithoutMethod
	case nMethod > 0 && nURI == 0:
		return detailMethodWithoutURI
	case nURI > 0:
		out.Method, out.Path = method, uri
	default:
		out.Method = r.Method
		out.Path = r.RequestURI
		if out.Path == "" && r.URL != nil {
			// A request built in-process (not read from the wire).
			out.Path = r.URL.RequestURI()
		}
		if p := opts.pathPrefix(); p != "" {
			rest, found := strings.CutPrefix(out.Path, p)
			if !found || (rest != "" && rest[0] != '/' && rest[0] != '?') {
				return detailNoPathPrefix
			}
			if rest == "" || rest[0] == '?' {
				// The original path was "/" (Envoy sends prefix + "/"),
				// but be lenient about a prefix sent bare.
				rest = "/" + rest
			}
			out.Path = rest
		}
	}

	if v := h[httpAuthorization]; len(v) > 0 {
		out.Authorization, out.AuthorizationCount = v[0], len(v)
	}
	dpopFromHTTP(h, out)
	out.ForwardedFor = joinLines(h[HeaderForwardedFor])
	for _, name := range methodOverrideHTTP {
		for _, v := range h[name] {
			out.AddMethodOverride(v)
		}
	}
	out.SourceIP = peerIP(r.RemoteAddr)

	xfcc, cc := h[HeaderForwardedClientCert], h[HeaderClientCert]
	switch {
	case len(xfcc)+len(cc) == 0:
	case len(xfcc) > 0 && len(cc) > 0:
		return detailBothCertHeaders
	case len(xfcc) > 1 || len(cc) > 1:
		return detailManyCertHeaders
	case len(xfcc) == 1:
		out.ClientCertificate = XFCCCertificate(xfcc[0])
	default:
		out.ClientCertificate = strings.TrimSpace(cc[0])
	}

	switch fh := h[HeaderForwardedHost]; len(fh) {
	case 0:
		out.Host = r.Host
	case 1:
		out.Host = fh[0]
	default:
		return detailManyForwardedHost
	}
	if v := h[HeaderRequestID]; len(v) > 0 {
		out.RequestID = v[0]
	}
	return ""
}

// methodOverrideHTTP are decision.MethodOverrideHeaders in net/http's
// canonical form, as r.Header holds them.
var methodOverrideHTTP = func() (c [len(decision.MethodOverrideHeaders)]string) {
	for i, h := range decision.MethodOverrideHeaders {
		c[i] = http.CanonicalHeaderKey(h)
	}
	return c
}()

func (o *Options) pathPrefix() string {
	if o == nil {
		return ""
	}
	return o.PathPrefix
}

// agreeing returns the one value the two header families name together.
// n is the number of values of the family with the most; ok is false when
// a family has more than one value or the two families disagree.
func agreeing(a, b []string) (v string, n int, ok bool) {
	n = max(len(a), len(b))
	if n > 1 {
		return "", n, false
	}
	switch {
	case len(a) == 1 && len(b) == 1:
		return a[0], 1, a[0] == b[0]
	case len(a) == 1:
		return a[0], 1, true
	case len(b) == 1:
		return b[0], 1, true
	}
	return "", 0, true
}

// joinLines joins repeated header lines with ", ", as one merged header
// reads; a single line is returned as is.
func joinLines(v []string) string {
	switch len(v) {
	case 0:
		return ""
	case 1:
		return v[0]
	}
	return strings.Join(v, ", ")
}

// peerIP returns the IP of a net/http RemoteAddr ("ip:port"), or the zero
// Addr when it is not an IP address (a Unix socket).
func peerIP(remote string) netip.Addr {
	if ap, err := netip.ParseAddrPort(remote); err == nil {
		return ap.Addr().Unmap()
	}
	if a, err := netip.ParseAddr(remote); err == nil {
		return a.Unmap()
	}
	return netip.Addr{}
}

// XFCCCertificate returns the client certificate named by an Envoy
// X-Forwarded-Client-Cert value: the Cert (URL-encoded PEM) of its last
// element, which Envoy appends for the client it saw, else that element's
// Hash (hex SHA-256 of the DER), else "". Elements are separated by
// unquoted commas and pairs by unquoted semicolons; quoted values may hold
// both and backslash escapes. The result is a substring of v.
func XFCCCertificate(v string) string {
	// Find where the last element starts: after the last unquoted comma.
	start, inQuote := 0, false
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case inQuote && c == '\\':
			i++
		case c == '"':
			inQuote = !inQuote
		case !inQuote && c == ',':
			start = i + 1
		}
	}
	var cert, hash string
	elem := v[start:]
	for elem != "" {
		var pair string
		pair, elem = cutUnquoted(elem, ';')
		key, val, found := strings.Cut(pair, "=")
		if !found {
			continue
		}
		key = strings.TrimSpace(key)
		val = strings.TrimSpace(val)
		if len(val) >= 2 && val[0] == '"' && val[len(val)-1] == '"' {
			val = val[1 : len(val)-1]
		}
		switch {
		case strings.EqualFold(key, "Cert"):
			cert = val
		case strings.EqualFold(key, "Hash"):
			hash = val
		}
	}
	if cert != "" {
		return cert
	}
	return hash
}

// cutUnquoted splits s at the first sep outside double quotes.
func cutUnquoted(s string, sep byte) (before, after string) {
	inQuote := false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case inQuote && c == '\\':
			i++
		case c == '"':
			inQuote = !inQuote
		case !inQuote && c == sep:
			return s[:i], s[i+1:]
		}
	}
	return s, ""
}
