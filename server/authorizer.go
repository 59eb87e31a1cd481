package server

import (
	"context"
	"math/rand/v2"
	"net/netip"

	"google.golang.org/grpc/status"

	"github.com/scopegate/scopegate/decision"
	"github.com/scopegate/scopegate/envoy"
	scopegatev1 "github.com/scopegate/scopegate/proto/scopegate/v1"
)

// Authorizer serves the scopegate.v1.Authorizer API. Like ExtAuthz it
// answers every request in-band: a malformed request is a deny with the
// reason request_invalid, not a gRPC error.
type Authorizer struct {
	scopegatev1.UnimplementedAuthorizerServer
	funnel    *funnel
	responder *envoy.Responder
}

var _ scopegatev1.AuthorizerServer = (*Authorizer)(nil)

// Messages of the request_invalid denies the translation itself finds.
const (
	detailTokenAndHeader = "the request sets both the token field and an authorization header: send the token in one of them"
	detailBadSource      = "source_address is not an IP address: send the client's address without a port, e.g. 203.0.113.7 or 2001:db8::1"
	detailTwoXFF         = "the headers carry x-forwarded-for under more than one spelling of its name: join the values into one header"
)

// Check implements scopegatev1.AuthorizerServer: req goes through the
// funnel (funnel.go) like every protocol's requests.
func (a *Authorizer) Check(ctx context.Context, req *scopegatev1.CheckRequest) (*scopegatev1.CheckResponse, error) {
	f := a.funnel
	var x exchange
	ctx = f.begin(ctx, &x, apiScopegate, carrier{m: req.GetHeaders()})
	ctx, stop := f.bound(ctx, x.start)
	invalid := requestFromAuthorizer(req, &x.req)
	f.decide(ctx, &x, invalid, authorizerHeaderSize(req))
	stop.stop()
	if tr := x.req.Trace; tr != nil {
		if r := f.engine.ShadowRoute(&x.req, &x.d); r != nil {
			tr.Steps = append(tr.Steps, decision.TraceStep{Check: "shadow", Result: "info",
				Detail: "shadow route " + r.Name + " matches; it is evaluated after this answer, off its path (see the audit record and scopegate_shadow_decisions_total)"})
		}
	}
	resp := a.response(&x.d, x.req.Trace)
	x.id = resp.DecisionId
	f.record(ctx, &x)
	if x.callerGone {
		return nil, status.FromContextError(ctx.Err()).Err()
	}
	return resp, nil
}

// DecisionRequest fills out from a Check RPC request exactly as the
// Authorizer does, so offline tools (scopegate check --input) decide the
// same request the server would. It returns the message of a
// request_invalid deny when the request is malformed, or "".
func DecisionRequest(req *scopegatev1.CheckRequest, out *decision.Request) (invalid string) {
	return requestFromAuthorizer(req, out)
}

// requestFromAuthorizer fills out from a Check RPC request. It returns the
// message of a request_invalid deny when the request is malformed, or "".
// Header names are matched case-insensitively, as the API documents.
func requestFromAuthorizer(req *scopegatev1.CheckRequest, out *decision.Request) (invalid string) {
	*out = decision.Request{
		Method:            req.GetMethod(),
		Path:              req.GetPath(),
		Environment:       req.GetEnvironment(),
		ClientCertificate: req.GetClientCertificate(),
		Host:              req.GetHost(),
		Scheme:            req.GetScheme(),
		RequestID:         req.GetRequestId(),
	}
	if attrs := req.GetAttributes(); len(attrs) > 0 {
		out.Attributes = attrs
	}
	if req.GetExplain() {
		out.Trace = &decision.Trace{}
	}
	nxff := 0
	for k, v := range req.GetHeaders() {
		switch {
		case equalFoldASCII(k, "authorization"):
			if out.AuthorizationCount == 0 {
				out.Authorization = v
			}
			out.AuthorizationCount++
		case equalFoldASCII(k, "x-forwarded-for"):
			out.ForwardedFor = v
			nxff++
		case equalFoldASCII(k, "dpop"):
			// A proof (RFC 9449); two keys are two headers, refused.
			out.DPoP = v
			out.DPoPCount++
		case equalFoldASCII(k, "x-forwarded-proto") || k == ":scheme":
			// The scheme a DPoP proof's htu is checked against, unless
			// the scheme field names it.
			if req.GetScheme() == "" {
				out.Scheme = v
			}
		case decision.IsMethodOverrideHeader(k):
			out.AddMethodOverride(v)
		}
	}
	if tok := req.GetToken(); tok != "" {
		if out.AuthorizationCount > 0 {
			return detailTokenAndHeader
		}
		out.Authorization, out.AuthorizationCount = "Bearer "+tok, 1
	}
	if nxff > 1 {
		return detailTwoXFF
	}
	if a := req.GetSourceAddress(); a != "" {
		ip, err := netip.ParseAddr(a)
		if err != nil {
			return detailBadSource
		}
		out.SourceIP = ip.Unmap()
	}
	return ""
}

// response builds the Check RPC reply for d.
func (a *Authorizer) response(d *decision.Decision, tr *decision.Trace) *scopegatev1.CheckResponse {
	code := d.Code
	if !d.Allow && code == decision.OK {
		// A deny must never claim OK: fail closed.
		code = decision.Internal
	}
	resp := &scopegatev1.CheckResponse{
		Allow:         d.Allow,
		Reasons:       []*scopegatev1.Reason{{Code: code.String(), Message: d.Message()}},
		ScopesUsed:    d.ScopesUsed(),
		PolicyVersion: d.PolicyVersion(),
		HttpStatus:    int32(code.HTTPStatus()),
		DecisionId:    newDecisionID(),
	}
	if d.Allow {
		resp.HttpStatus = 200
		hs := envoy.UpstreamHeaders(d)
		resp.Headers = make(map[string]string, len(hs))
		for _, h := range hs {
			resp.Headers[h.Name] = h.Value
		}
	} else {
		resp.WwwAuthenticate = a.responder.WWWAuthenticate(d)
	}
	if d.Route != nil {
		resp.Route = d.Route.Name
	}
	if t := d.Token; t != nil {
		resp.Subject, resp.ClientId, resp.Issuer = t.Subject, t.ClientID, t.Issuer
	}
	if tr != nil {
		resp.Trace = make([]*scopegatev1.TraceStep, len(tr.Steps))
		for i, s := range tr.Steps {
			resp.Trace[i] = &scopegatev1.TraceStep{Check: s.Check, Result: s.Result, Detail: s.Detail}
		}
	}
	return resp
}

// newDecisionID returns 16 random hex digits. Decision ids correlate a
// reply with audit records; they need to be unique, not unpredictable, so
// the runtime's per-thread generator (no lock, no syscall) is enough.
func newDecisionID() string {
	const digits = "0123456789abcdef"
	var b [16]byte
	v := rand.Uint64()
	for i := len(b) - 1; i >= 0; i-- {
		b[i] = digits[v&0xf]
		v >>= 4
	}
	return string(b[:])
}

// equalFoldASCII reports whether s equals lower (a lower-case ASCII name)
// ignoring ASCII case.
func equalFoldASCII(s, lower string) bool {
	if len(s) != len(lower) {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}
