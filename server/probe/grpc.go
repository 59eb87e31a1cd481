package probe

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"maps"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/scopegate/scopegate/decision"
	"github.com/scopegate/scopegate/decision/policytest"
	"github.com/scopegate/scopegate/envoy"
	scopegatev1 "github.com/scopegate/scopegate/proto/scopegate/v1"
)

// ctxEnvironment is the context_extensions key scopegate reads the
// environment from (envoy.RequestFromCheck).
const ctxEnvironment = "environment"

// grpcConn is the connection of a gRPC target and its bound on a check.
type grpcConn struct {
	conn    *grpc.ClientConn
	timeout time.Duration
}

func dialGRPC(addr string, tlsConf *tls.Config, timeout time.Duration) (grpcConn, error) {
	creds := insecure.NewCredentials()
	if tlsConf != nil {
		creds = credentials.NewTLS(tlsConf)
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		return grpcConn{}, fmt.Errorf("--target %s: %w", addr, err)
	}
	return grpcConn{conn: conn, timeout: timeout}, nil
}

func (g grpcConn) Close() error { return g.conn.Close() }

// extAuthz sends cases as Envoy ext_authz v3 CheckRequests, the way Envoy
// does: the original request in attributes.request.http, the client in
// attributes.source, the environment and attributes in
// context_extensions.
type extAuthz struct {
	grpcConn
	client authv3.AuthorizationClient
}

func newExtAuthz(addr string, tlsConf *tls.Config, timeout time.Duration) (*extAuthz, error) {
	g, err := dialGRPC(addr, tlsConf, timeout)
	if err != nil {
		return nil, err
	}
	return &extAuthz{grpcConn: g, client: authv3.NewAuthorizationClient(g.conn)}, nil
}

func (*extAuthz) API() string { return APIEnvoy }

// Carries refuses only an attribute named like the environment key with a
// value other than the environment: both travel in context_extensions.
func (*extAuthz) Carries(req *decision.Request) string {
	if v, ok := req.Attributes[ctxEnvironment]; ok && v != req.Environment {
		return "attribute \"environment\" and the environment travel in the same ext_authz context_extensions key and differ"
	}
	return ""
}

// checkRequest is the ext_authz request that carries req.
func checkRequest(req *decision.Request) *authv3.CheckRequest {
	h := map[string]string{":method": req.Method, ":path": req.Path}
	if req.Host != "" {
		h[":authority"] = req.Host
	}
	if req.AuthorizationCount > 0 {
		h["authorization"] = req.Authorization
	}
	if req.ForwardedFor != "" {
		h["x-forwarded-for"] = req.ForwardedFor
	}
	if req.RequestID != "" {
		h["x-request-id"] = req.RequestID
	}
	attrs := &authv3.AttributeContext{
		Source: &authv3.AttributeContext_Peer{Certificate: req.ClientCertificate},
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Id: req.RequestID, Method: req.Method, Path: req.Path, Host: req.Host, Headers: h,
		}},
	}
	if req.SourceIP.IsValid() {
		attrs.Source.Address = &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
			Address: req.SourceIP.String(), PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 40000},
		}}}
	}
	if len(req.Attributes) > 0 || req.Environment != "" {
		ext := maps.Clone(req.Attributes)
		if ext == nil {
			ext = map[string]string{}
		}
		if req.Environment != "" {
			ext[ctxEnvironment] = req.Environment
		}
		attrs.ContextExtensions = ext
	}
	return &authv3.CheckRequest{Attributes: attrs}
}

func (t *extAuthz) Check(ctx context.Context, req *decision.Request) (policytest.Verdict, error) {
	ctx, cancel := context.WithTimeout(ctx, t.timeout)
	defer cancel()
	resp, err := t.client.Check(ctx, checkRequest(req))
	if err != nil {
		return policytest.Verdict{}, fmt.Errorf("ext_authz Check: %w", err)
	}
	return extAuthzVerdict(resp)
}

// extAuthzVerdict reads the verdict of an ext_authz answer: an allow's
// dynamic metadata (reason, route, scopes_used), a deny's status,
// x-scopegate-reason header and JSON body (reason, route, message).
func extAuthzVerdict(resp *authv3.CheckResponse) (policytest.Verdict, error) {
	if resp.GetStatus().GetCode() == int32(codes.OK) && resp.GetErrorResponse() == nil {
		v := policytest.Verdict{Allow: true, Status: 200}
		md := resp.GetDynamicMetadata().GetFields()
		v.Reason = md[envoy.MetaReason].GetStringValue()
		if r, ok := md[envoy.MetaRoute]; ok {
			v.Route, v.HasRoute = r.GetStringValue(), true
		}
		if s, ok := md[envoy.MetaScopesUsed]; ok {
			v.HasScopesUsed = true
			for _, e := range s.GetListValue().GetValues() {
				v.ScopesUsed = append(v.ScopesUsed, e.GetStringValue())
			}
		}
		return v, nil
	}
	denied := resp.GetDeniedResponse()
	if denied == nil {
		denied = resp.GetErrorResponse()
	}
	v := policytest.Verdict{Reason: resp.GetStatus().GetMessage(), Status: 403}
	if denied == nil {
		return v, nil
	}
	if c := denied.GetStatus().GetCode(); c != 0 {
		v.Status = int(c)
	}
	for _, h := range denied.GetHeaders() {
		if h.GetHeader().GetKey() == envoy.HeaderReason {
			v.Reason = h.GetHeader().GetValue()
		}
	}
	readDenyBody(&v, []byte(denied.GetBody()))
	return v, nil
}

// readDenyBody reads scopegate's JSON deny body ({"reason", "message",
// "route"}); a body that is not one (another server answered) adds
// nothing.
func readDenyBody(v *policytest.Verdict, body []byte) {
	var b struct {
		Reason  *string `json:"reason"`
		Message *string `json:"message"`
		Route   *string `json:"route"`
	}
	if json.Unmarshal(body, &b) != nil {
		return
	}
	if b.Reason != nil && v.Reason == "" {
		v.Reason = *b.Reason
	}
	if b.Message != nil {
		v.Message, v.HasMessage = *b.Message, true
	}
	if b.Route != nil {
		v.Route, v.HasRoute = *b.Route, true
	}
}

// checkRPC sends cases through the scopegate Check RPC, whose answer
// carries every field a case can expect.
type checkRPC struct {
	grpcConn
	client scopegatev1.AuthorizerClient
}

func newCheckRPC(addr string, tlsConf *tls.Config, timeout time.Duration) (*checkRPC, error) {
	g, err := dialGRPC(addr, tlsConf, timeout)
	if err != nil {
		return nil, err
	}
	return &checkRPC{grpcConn: g, client: scopegatev1.NewAuthorizerClient(g.conn)}, nil
}

func (*checkRPC) API() string                      { return APIScopegate }
func (*checkRPC) Carries(*decision.Request) string { return "" }

// authorizerRequest is the Check RPC request that carries req.
func authorizerRequest(req *decision.Request) *scopegatev1.CheckRequest {
	out := &scopegatev1.CheckRequest{
		Method: req.Method, Path: req.Path, Host: req.Host, Environment: req.Environment,
		Attributes: req.Attributes, ClientCertificate: req.ClientCertificate, RequestId: req.RequestID,
	}
	if req.SourceIP.IsValid() {
		out.SourceAddress = req.SourceIP.String()
	}
	h := map[string]string{}
	if req.AuthorizationCount > 0 {
		h["authorization"] = req.Authorization
	}
	if req.ForwardedFor != "" {
		h["x-forwarded-for"] = req.ForwardedFor
	}
	if len(h) > 0 {
		out.Headers = h
	}
	return out
}

func (t *checkRPC) Check(ctx context.Context, req *decision.Request) (policytest.Verdict, error) {
	ctx, cancel := context.WithTimeout(ctx, t.timeout)
	defer cancel()
	resp, err := t.client.Check(ctx, authorizerRequest(req))
	if err != nil {
		return policytest.Verdict{}, fmt.Errorf("scopegate Check: %w", err)
	}
	v := policytest.Verdict{
		Allow: resp.GetAllow(), Status: int(resp.GetHttpStatus()),
		Route: resp.GetRoute(), HasRoute: true,
		ScopesUsed: resp.GetScopesUsed(), HasScopesUsed: true,
	}
	if rs := resp.GetReasons(); len(rs) > 0 {
		v.Reason = rs[0].GetCode()
		v.Message, v.HasMessage = rs[0].GetMessage(), true
	}
	return v, nil
}
