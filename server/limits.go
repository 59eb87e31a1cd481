package server

import (
	"context"
	"errors"
	"strconv"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"

	"github.com/scopegate/scopegate/decision"
	scopegatev1 "github.com/scopegate/scopegate/proto/scopegate/v1"
)

// Request limits. A hostile client controls every header Envoy forwards
// and how long it keeps a call open; these bounds keep one such client from
// making a decision arbitrarily expensive. The gRPC message size and the
// streams per connection are bounded by grpc itself (MaxRecvMsgSize,
// MaxConcurrentStreams); the token, path and policy sizes by the engine.
const (
	// DefaultMaxRequestHeaders is the most headers one Check may carry.
	// Envoy's own default limit is 100 headers per request; the pseudo
	// headers (:method, :path, :authority, :scheme) come on top.
	DefaultMaxRequestHeaders = 128
	// DefaultMaxRequestHeaderBytes bounds the headers of one Check, names
	// and values summed. Envoy's default max_request_headers_kb is 60 KiB.
	DefaultMaxRequestHeaderBytes = 64 << 10
	// DefaultCheckTimeout bounds one decision on the server side. A
	// decision is microseconds; only an ownership lookup or a key refetch
	// for an unknown kid can take long, and each has its own shorter bound.
	// Envoy's ext_authz timeout (200 ms by default) usually ends the call
	// first; this bound holds for clients that set no deadline.
	DefaultCheckTimeout = time.Second
)

// errCheckTimeout marks a decision that ran past the check timeout.
var errCheckTimeout = errors.New("check timeout")

// limits are the request limits in force, with their prebuilt messages.
type limits struct {
	maxHeaders     int
	maxHeaderBytes int
	timeout        time.Duration

	msgHeaders, msgHeaderBytes, msgTimeout string
}

func newLimits(c Config) limits {
	return limits{
		maxHeaders:     c.MaxRequestHeaders,
		maxHeaderBytes: c.MaxRequestHeaderBytes,
		timeout:        c.CheckTimeout,
		msgHeaders: "the request carries more than " + strconv.Itoa(c.MaxRequestHeaders) +
			" headers (the server's MaxRequestHeaders limit)",
		msgHeaderBytes: "the request's headers total more than " + strconv.Itoa(c.MaxRequestHeaderBytes) +
			" bytes (the server's MaxRequestHeaderBytes limit)",
		msgTimeout: "the decision took longer than the server's check timeout of " + c.CheckTimeout.String() +
			"; denied to fail closed",
	}
}

// checkHeaders returns the message of a request_invalid deny when the
// headers exceed a limit, or "". Both header forms Envoy may send count.
func (l *limits) checkHeaders(merged map[string]string, raw int, rawBytes int) string {
	n := len(merged) + raw
	if n > l.maxHeaders {
		return l.msgHeaders
	}
	size := rawBytes
	for k, v := range merged {
		size += len(k) + len(v)
	}
	if size > l.maxHeaderBytes {
		return l.msgHeaderBytes
	}
	return ""
}

func (l *limits) extAuthz(req *authv3.CheckRequest) string {
	h := req.GetAttributes().GetRequest().GetHttp()
	raw := h.GetHeaderMap().GetHeaders()
	rawBytes := 0
	for _, hv := range raw {
		rawBytes += len(hv.GetKey()) + len(hv.GetValue()) + len(hv.GetRawValue())
	}
	return l.checkHeaders(h.GetHeaders(), len(raw), rawBytes)
}

func (l *limits) authorizer(req *scopegatev1.CheckRequest) string {
	return l.checkHeaders(req.GetHeaders(), 0, len(req.GetToken()))
}

// limitUnary enforces the request limits on the two decision calls: a
// Check over a header limit is denied in-band with request_invalid (never
// a gRPC error), and a decision that runs past the check timeout is
// answered as an internal error, which Envoy handles by its
// failure_mode_allow and status_on_error settings. Other calls pass
// through untouched.
func (s *Server) limitUnary(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	var api apiKind
	var over string
	switch r := req.(type) {
	case *authv3.CheckRequest:
		api, over = apiExtAuthz, s.limits.extAuthz(r)
	case *scopegatev1.CheckRequest:
		api, over = apiAuthorizer, s.limits.authorizer(r)
	default:
		return handler(ctx, req)
	}
	if over != "" {
		start := time.Now()
		d := decision.Decision{Code: decision.RequestInvalid, Detail: over, Policy: s.engine.Policy()}
		s.metrics.observe(api, &d, start)
		return s.limitResponse(api, &d), nil
	}

	// Only derive a context when the caller's deadline is later than ours:
	// Envoy always sends one (its ext_authz timeout), so the usual call
	// pays nothing here.
	if dl, ok := ctx.Deadline(); !ok || time.Until(dl) > s.limits.timeout {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, s.limits.timeout, errCheckTimeout)
		defer cancel()
	}
	resp, err := handler(ctx, req)
	if err == nil && ctx.Err() != nil {
		if errors.Is(context.Cause(ctx), errCheckTimeout) {
			d := decision.Decision{Code: decision.Internal, Detail: s.limits.msgTimeout, Policy: s.engine.Policy()}
			return s.limitResponse(api, &d), nil
		}
		// The caller's own deadline passed or it cancelled: whatever the
		// decision made of a cut-short lookup is not an answer to send.
		return nil, status.FromContextError(ctx.Err()).Err()
	}
	return resp, err
}

func (s *Server) limitResponse(api apiKind, d *decision.Decision) any {
	if api == apiExtAuthz {
		return s.responder.Response(d)
	}
	return (&Authorizer{engine: s.engine, responder: s.responder}).response(d, nil)
}
