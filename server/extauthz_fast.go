package server

import (
	"context"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/scopegate/scopegate/decision"
	"github.com/scopegate/scopegate/envoy"
	"github.com/scopegate/scopegate/envoy/wire"
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
	in := new(extAuthzInput)
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
		return x.check(ctx, req.(*extAuthzInput))
	})
}

// extAuthzInput is an ext_authz CheckRequest as the served Check
// receives it: already translated, since the codec decodes only what the
// translation reads (Codec.Unmarshal, decodeExtAuthz).
type extAuthzInput struct {
	req     decision.Request
	invalid string // the translation's request_invalid message, or ""
	hs      headerSize
	// The trace context the funnel reads: the decoded message's headers
	// (msg), or, from a scanned request, the values of envoy.TraceHeaders.
	msg   carrier
	trace [envoy.NumTraceHeaders]string
}

// fromMessage translates a decoded CheckRequest.
func (r *extAuthzInput) fromMessage(m *authv3.CheckRequest) {
	r.invalid = envoy.RequestFromCheck(m, &r.req)
	r.hs = extAuthzHeaderSize(m)
	r.msg = extAuthzCarrier(m)
}

// carrier returns where the request's trace context is read from.
func (r *extAuthzInput) carrier() carrier {
	if r.msg.m != nil || r.msg.raw != nil {
		return r.msg
	}
	return carrier{trace: &r.trace}
}

// decodeExtAuthz decodes and translates b. The usual request is scanned
// (wire.ScanCheckRequest) and only what the translation reads is decoded;
// a request the scan does not cover, or in which a field the translation
// read is not valid UTF-8, is decoded whole (wire.DecodeCheckRequest, then
// proto.Unmarshal), which rejects what proto.Unmarshal rejects.
func decodeExtAuthz(b []byte, r *extAuthzInput) error {
	var o envoy.CheckOffsets
	if wire.ScanCheckRequest(b, &o) {
		// One copy of the message, which gRPC reuses once the codec
		// returns: the request's strings are substrings of it.
		msg := string(b)
		if invalid, ok := envoy.RequestFromOffsets(msg, &o, &r.req); ok {
			r.invalid = invalid
			r.hs.count, r.hs.bytes = o.HeaderSize()
			envoy.TraceFromOffsets(msg, &o, &r.trace)
			return nil
		}
	}
	var m authv3.CheckRequest
	if !wire.DecodeCheckRequest(b, &m) {
		if err := proto.Unmarshal(b, &m); err != nil {
			return err
		}
	}
	r.fromMessage(&m)
	return nil
}

// check takes in through the funnel and returns the reply for the codec:
// an *allowReply or a *authv3.CheckResponse; or the caller's own deadline
// or cancellation as a gRPC status, when it gave up first.
func (x *ExtAuthz) check(ctx context.Context, in *extAuthzInput) (any, error) {
	f := x.funnel
	var ex exchange
	ctx = f.begin(ctx, &ex, apiEnvoy, in.carrier())
	ctx, stop := f.bound(ctx, ex.start)
	ex.req = in.req
	f.decide(ctx, &ex, in.invalid, in.hs)
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
