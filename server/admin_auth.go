package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/auth"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/recovery"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	grpcpeer "google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/scopegate/scopegate/decision"
	"github.com/scopegate/scopegate/store/audit"
)

// Admin authentication. A call is let in when either
//
//   - the TLS handshake verified a client certificate against
//     AdminConfig.ClientCAFile (a certificate is verified when presented;
//     callers without one use a token), or
//   - its "authorization" metadata is "Bearer <token>" where the token is a
//     valid token of one of the policy's issuers (of AdminConfig.Issuers
//     when set), not revoked, carrying the admin scope. The decision engine verifies it, with the same keys,
//     caches and revocations as every decision.
//
// A bearer token that is present must be valid even when a certificate
// already authenticated the call: a bad credential is never ignored. Every
// call, let in or not, is audited with who made it and how it ended.

// adminCall is what one admin call's interceptors and handler learn about
// it, for its audit record.
type adminCall struct {
	mu        sync.Mutex
	principal string
	details   map[string]string
}

type adminCallKey struct{}

func callOf(ctx context.Context) *adminCall {
	c, _ := ctx.Value(adminCallKey{}).(*adminCall)
	return c
}

// noteAudit adds key/value details (non-empty values only) to the call's
// audit record.
func noteAudit(ctx context.Context, kv ...string) {
	c := callOf(ctx)
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] == "" {
			continue
		}
		if c.details == nil {
			c.details = map[string]string{}
		}
		c.details[kv[i]] = kv[i+1]
	}
}

// callerOf returns the authenticated administrator, as recorded on
// revocations (created_by).
func callerOf(ctx context.Context) string {
	if c := callOf(ctx); c != nil {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.principal
	}
	return ""
}

// adminAuth authenticates admin calls.
type adminAuth struct {
	engine *decision.Engine
	scope  string
	// issuers, when not empty, are the only issuers of admin tokens.
	issuers []string
	mtls    bool // client certificates are verified when presented
}

func (a *adminAuth) authenticate(ctx context.Context) (context.Context, error) {
	var who []string
	if a.mtls {
		if cert := verifiedClientCert(ctx); cert != nil {
			who = append(who, "cert:"+cert.Subject.String())
		}
	}
	md, _ := metadata.FromIncomingContext(ctx)
	switch authz := md.Get("authorization"); {
	case len(authz) > 1:
		return ctx, status.Error(codes.Unauthenticated, "the call carries more than one authorization header: send one")
	case len(authz) == 1:
		tok, code, detail := a.engine.Authenticate(ctx, authz[0], a.scope)
		if code != decision.OK {
			c := codes.Unauthenticated
			if code == decision.InsufficientScope {
				c = codes.PermissionDenied
			}
			return ctx, status.Errorf(c, "admin token refused: %s: %s", code, detail)
		}
		if len(a.issuers) > 0 && !slices.Contains(a.issuers, tok.Issuer) {
			return ctx, status.Errorf(codes.PermissionDenied, "admin token refused: its issuer %q is not an admin issuer (--admin-issuer): ask one of those for the token", tok.Issuer)
		}
		who = append(who, tokenPrincipal(tok))
	}
	if len(who) == 0 {
		how := "a bearer token carrying the scope " + a.scope
		if a.mtls {
			how = "a client certificate or " + how
		}
		return ctx, status.Error(codes.Unauthenticated, "the Admin API needs "+how+" (authorization: Bearer <token>)")
	}
	principal := strings.Join(who, " ")
	if len(principal) > decision.MaxRevocationActorBytes {
		principal = principal[:decision.MaxRevocationActorBytes]
	}
	if c := callOf(ctx); c != nil {
		c.mu.Lock()
		c.principal = principal
		c.mu.Unlock()
	}
	return ctx, nil
}

// tokenPrincipal names a token's holder: never the token itself.
func tokenPrincipal(t *decision.Token) string {
	var b strings.Builder
	b.WriteString("token:")
	if t.Subject != "" {
		b.WriteString("sub=" + t.Subject + " ")
	}
	if t.ClientID != "" {
		b.WriteString("client=" + t.ClientID + " ")
	}
	b.WriteString("iss=" + t.Issuer)
	return b.String()
}

func verifiedClientCert(ctx context.Context) *x509.Certificate {
	p, ok := grpcpeer.FromContext(ctx)
	if !ok {
		return nil
	}
	ti, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(ti.State.VerifiedChains) == 0 || len(ti.State.VerifiedChains[0]) == 0 {
		return nil
	}
	return ti.State.VerifiedChains[0][0]
}

// adminAuditor writes one audit record per admin call: a log line on the
// server's logger always, and the audit log's admin record when there is
// one.
type adminAuditor struct {
	log  *slog.Logger
	sink AdminAuditor // nil: log line only
	pol  func() *decision.Policy
}

func (a *adminAuditor) record(ctx context.Context, method string, start time.Time, call *adminCall, err error) {
	st := status.Convert(err)
	ev := audit.AdminEvent{Time: start, Method: method, Latency: time.Since(start)}
	if p, ok := grpcpeer.FromContext(ctx); ok && p.Addr != nil {
		ev.Peer = p.Addr.String()
	}
	if pol := a.pol(); pol != nil {
		ev.PolicyVersion = pol.Version
	}
	call.mu.Lock()
	ev.Principal, ev.Details = call.principal, call.details
	call.mu.Unlock()
	if err != nil {
		ev.Status, ev.Message = codeName(st.Code()), st.Message()
	}
	attrs := []any{"method", method, "principal", ev.Principal, "peer", ev.Peer, "status", cmpOr(ev.Status, "ok"), "latency", ev.Latency.String()}
	for k, v := range ev.Details {
		attrs = append(attrs, "detail."+k, v)
	}
	if err != nil {
		attrs = append(attrs, "message", ev.Message)
	}
	level := slog.LevelInfo
	if st.Code() == codes.Unauthenticated || st.Code() == codes.PermissionDenied {
		level = slog.LevelWarn
	}
	a.log.Log(context.WithoutCancel(ctx), level, "admin call", attrs...)
	if a.sink != nil && !a.sink.RecordAdmin(context.WithoutCancel(ctx), ev) {
		a.log.Error("admin call not written to the audit log", "method", method, "principal", ev.Principal)
	}
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// codeName is the snake_case name of a gRPC code, e.g. "invalid_argument".
func codeName(c codes.Code) string {
	var b strings.Builder
	for i, r := range c.String() {
		if 'A' <= r && r <= 'Z' {
			if i > 0 {
				b.WriteByte('_')
			}
			r += 'a' - 'A'
		}
		b.WriteRune(r)
	}
	return b.String()
}

// auditUnary runs outside authentication, so refused calls are audited
// too.
func (a *adminAuditor) auditUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	call := &adminCall{}
	start := time.Now()
	resp, err := handler(context.WithValue(ctx, adminCallKey{}, call), req)
	a.record(ctx, shortMethod(info.FullMethod), start, call, err)
	return resp, err
}

func (a *adminAuditor) auditStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	call := &adminCall{}
	start := time.Now()
	err := handler(srv, &callStream{ServerStream: ss, ctx: context.WithValue(ss.Context(), adminCallKey{}, call)})
	a.record(ss.Context(), shortMethod(info.FullMethod), start, call, err)
	return err
}

type callStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *callStream) Context() context.Context { return s.ctx }

// shortMethod turns "/scopegate.v1.Admin/Revoke" into "Revoke"; other
// services (reflection) keep their full name.
func shortMethod(full string) string {
	if rest, ok := strings.CutPrefix(full, "/"+AdminService+"/"); ok {
		return rest
	}
	return strings.TrimPrefix(full, "/")
}

// AdminService is the Admin API's service name.
const AdminService = "scopegate.v1.Admin"

// adminInterceptors returns the admin listener's chains: recovery, audit,
// authentication.
func (s *Server) adminInterceptors(a *adminAuth, aud *adminAuditor) ([]grpc.UnaryServerInterceptor, []grpc.StreamServerInterceptor) {
	rec := recovery.WithRecoveryHandlerContext(func(ctx context.Context, p any) error {
		s.log.ErrorContext(ctx, "panic in admin handler", "panic", p, "stack", string(debug.Stack()))
		return status.Error(codes.Internal, "internal error")
	})
	unary := []grpc.UnaryServerInterceptor{recovery.UnaryServerInterceptor(rec), aud.auditUnary, auth.UnaryServerInterceptor(a.authenticate)}
	stream := []grpc.StreamServerInterceptor{recovery.StreamServerInterceptor(rec), aud.auditStream, auth.StreamServerInterceptor(a.authenticate)}
	return unary, stream
}

// adminTLS builds the listener's TLS configuration from the files, or nil
// for plain text. A certificate is verified when presented, not required:
// callers without one may still come with a bearer token.
func adminTLS(c *AdminConfig) (*tls.Config, error) {
	return listenerTLS("admin", c.TLSCertFile, c.TLSKeyFile, c.ClientCAFile, "administrators'")
}
