package server

import (
	"context"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/scopegate/scopegate/decision"
	"github.com/scopegate/scopegate/envoy"
	"github.com/scopegate/scopegate/store/audit"
)

// The served ext_authz Check. The generated service handler would make the
// ExtAuthz build every allow as a CheckResponse: a structpb map and half a
// dozen small objects per call, walked again by the codec to encode them.
// extAuthzServiceDesc is the generated description with its one method's
// handler replaced: an allow is returned as an allowReply, which the codec
// (Codec.Marshal) encodes straight from the decision. Denies keep their
// prebuilt CheckResponses. The wire format is unchanged: a test decodes
// every fast encoding and compares it with the Responder's message.

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
		return x.check(ctx, in), nil
	}
	info := extAuthzCheckInfo
	info.Server = srv
	return interceptor(ctx, in, &info, func(ctx context.Context, req any) (any, error) {
		return x.check(ctx, req.(*authv3.CheckRequest)), nil
	})
}

// check decides req and returns the reply for the codec: an *allowReply
// or a *authv3.CheckResponse.
func (x *ExtAuthz) check(ctx context.Context, req *authv3.CheckRequest) any {
	start := time.Now()
	rep := &allowReply{responder: x.responder}
	var r decision.Request
	envoy.RequestFromCheck(req, &r)
	rep.d = x.engine.Decide(ctx, &r)
	d := &rep.d
	x.metrics.observe(apiExtAuthz, d, start)
	x.auditLog.Record(ctx, audit.ExtAuthz, &r, d, start, "")
	if d.Allow {
		return rep
	}
	return x.responder.Response(d)
}

// appendAllow appends the CheckResponse the Responder builds for the allow
// d (envoy.Responder.Response), field for field. It reports false when a
// value is not valid UTF-8, which only proto.Marshal reports properly.
func appendAllow(b []byte, d *decision.Decision) ([]byte, bool) {
	e := respEncoder{b: b, ok: true}
	// status: an OK google.rpc.Status, all fields default.
	e.b = protowire.AppendTag(e.b, fRespStatus, protowire.BytesType)
	e.b = append(e.b, 0)

	at := e.open(fRespOK)
	up := envoy.UpstreamHeaders(d)
	for i := range up {
		e.header(fOKHeaders, up[i].Name, up[i].Value)
	}
	for _, h := range envoy.HintHeaders(d) {
		e.header(fOKHeaders, h.Name, h.Value)
	}
	if d.Policy != nil && d.Policy.Upstream.StripAuthorization {
		e.strAlways(fOKHeadersToRemove, "authorization")
	}
	e.close(at)

	var route, subject, client string
	if d.Route != nil {
		route = d.Route.Name
	}
	if d.Token != nil {
		subject, client = d.Token.Subject, d.Token.ClientID
	}
	md := e.open(fRespDynamicMetadata)
	e.stringField(envoy.MetaRoute, route)
	e.stringField(envoy.MetaPolicyVersion, d.PolicyVersion())
	e.stringField(envoy.MetaSubject, subject)
	e.stringField(envoy.MetaClientID, client)
	e.stringField(envoy.MetaReason, decision.OK.String())
	f := e.open(fStructFields)
	e.strAlways(fMapKey, envoy.MetaScopesUsed)
	v := e.open(fMapValue)
	l := e.open(fValueList)
	for s := range d.ScopesUsedSeq() {
		item := e.open(fListValues)
		e.strAlways(fValueString, s)
		e.close(item)
	}
	e.close(l)
	e.close(v)
	e.close(f)
	e.close(md)
	if !e.ok {
		return b, false
	}
	return e.b, true
}

// header appends one HeaderValueOption that overwrites name with value.
func (e *respEncoder) header(num protowire.Number, name, value string) {
	at := e.open(num)
	hv := e.open(fHVOHeader)
	e.str(fHVKey, name)
	e.str(fHVValue, value)
	e.close(hv)
	e.varint(fHVOAppendAction, uint64(corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD))
	e.close(at)
}

// stringField appends one Struct field holding a string Value.
func (e *respEncoder) stringField(key, value string) {
	at := e.open(fStructFields)
	e.strAlways(fMapKey, key)
	v := e.open(fMapValue)
	e.strAlways(fValueString, value)
	e.close(v)
	e.close(at)
}
