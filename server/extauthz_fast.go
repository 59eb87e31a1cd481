package server

import (
	"context"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"

	"github.com/scopegate/scopegate/decision"
	"github.com/scopegate/scopegate/envoy"
)

// The served ext_authz Check. The generated service handler would make the
// ExtAuthz build every allow as a CheckResponse: a structpb map and half a
// dozen small objects per call, walked again by the codec to encode them.
// extAuthzServiceDesc is the generated description with its one method's
// handler replaced: an allow is returned as an allowReply, which the codec
// (Codec.Marshal) encodes straight from the decision with wire.AppendAllow.
// Denies keep their prebuilt CheckResponses. The wire format is unchanged:
// tests decode every fast encoding and compare it with the Responder's
// message (envoy/wire's allow_test.go, and TestCodecAllowReply here).

// allowReply is an allow on its way to the codec.
type allowReply struct {
	d         decision.Decision
	responder *envoy.Responder // builds the message when the fast path cannot
}

var extAuthzServiceDesc = func() grpc.ServiceDesc {
	desc := authv3.Authorization_ServiceDesc
	desc.Methods = []grpc.MethodDesc{{MethodName: "Check", Handler: extAuthzCheckHandler}}
	return desc
}()

var extAuthzCheckInfo = grpc.UnaryServerInfo{FullMethod: authv3.Authorization_Check_FullMethodName}

func extAuthzCheckHandler(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
	in := new(authv3.CheckRequest)
	if err := dec(in); err != nil {
		return nil, err
	}
	x := srv.(*ExtAuthz)
	if interceptor == nil {
		return x.check(ctx, in)
	}
	info := extAuthzCheckInfo
	info.Server = srv
	return interceptor(ctx, in, &info, func(ctx context.Context, req any) (any, error) {
		return x.check(ctx, req.(*authv3.CheckRequest))
	})
}

// check takes req through the funnel and returns the reply for the codec:
// an *allowReply or a *authv3.CheckResponse; or the caller's own deadline
// or cancellation as a gRPC status, when it gave up first.
func (x *ExtAuthz) check(ctx context.Context, req *authv3.CheckRequest) (any, error) {
	f := x.funnel
	var ex exchange
	ctx = f.begin(ctx, &ex, apiEnvoy, extAuthzCarrier(req))
	ctx, stop := f.bound(ctx)
	invalid := envoy.RequestFromCheck(req, &ex.req)
	f.decide(ctx, &ex, invalid, extAuthzHeaderSize(req))
	stop.stop()
	var out any
	if ex.d.Allow {
		out = &allowReply{d: ex.d, responder: x.responder}
	} else {
		out = x.responder.Response(&ex.d)
	}
	f.record(ctx, &ex)
	if ex.callerGone {
		return nil, status.FromContextError(ctx.Err()).Err()
	}
	return out, nil
}

// extAuthzCarrier is where the trace context of req is read from: the
// original request's headers, merged or (encode_raw_headers) raw.
func extAuthzCarrier(req *authv3.CheckRequest) carrier {
	h := req.GetAttributes().GetRequest().GetHttp()
	if m := h.GetHeaders(); len(m) > 0 {
		return carrier{m: m}
	}
	return carrier{raw: h.GetHeaderMap().GetHeaders()}
}
