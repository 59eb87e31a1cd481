// Package wiretest holds the messages the tests of the hand-written
// protobuf codec (package wire and the server's gRPC codec) share: the
// request Envoy sends, and corpora of requests and responses each marked
// with whether the fast path must take it.
package wiretest

import (
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/scopegate/scopegate/decision"
	"github.com/scopegate/scopegate/envoy"
	"github.com/scopegate/scopegate/envoy/wire"
)

// Token stands in for a bearer token: the decoder never looks inside.
var Token = "eyJhbGciOiJSUzI1NiIsImtpZCI6ImRldi1yc2EtMSIsInR5cCI6ImF0K2p3dCJ9." + strings.Repeat("x", 700)

// Peer is a peer at a socket address.
func Peer(addr string, port uint32) *authv3.AttributeContext_Peer {
	return &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
		SocketAddress: &corev3.SocketAddress{Address: addr, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port}},
	}}}
}

// EnvoyCheckRequest is a CheckRequest as Envoy sends it for a GET with the
// usual headers.
func EnvoyCheckRequest() *authv3.CheckRequest {
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source:      Peer("10.0.0.7", 51234),
		Destination: Peer("10.0.0.2", 8080),
		Request: &authv3.AttributeContext_Request{
			Time: &timestamppb.Timestamp{Seconds: 1_790_000_000, Nanos: 123_000_000},
			Http: &authv3.AttributeContext_HttpRequest{
				Id: "6f1c2b9e-0a7d-4c1b-9a51-2f0f4a4d7c11", Method: "GET", Path: "/svc1/items/42?view=full",
				Host: "api.example.com", Scheme: "https", Protocol: "HTTP/1.1",
				Headers: map[string]string{
					":authority": "api.example.com", ":method": "GET", ":path": "/svc1/items/42?view=full", ":scheme": "https",
					"user-agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36", "accept": "application/json",
					"x-request-id": "6f1c2b9e-0a7d-4c1b-9a51-2f0f4a4d7c11", "x-forwarded-proto": "https",
					"x-envoy-expected-rq-timeout-ms": "15000", "authorization": "Bearer " + Token,
				},
			},
		},
		ContextExtensions: map[string]string{"environment": "prod"},
	}}
}

// Marshal is proto.Marshal, failing t on an error.
func Marshal(t testing.TB, m proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// AppendUnknown appends field 999 (a varint) to b.
func AppendUnknown(b []byte) []byte {
	b = protowire.AppendTag(b, 999, protowire.VarintType)
	return protowire.AppendVarint(b, 1)
}

// WrapHTTP wraps inner (the encoding of an HttpRequest) into a CheckRequest.
func WrapHTTP(inner []byte) []byte {
	req := protowire.AppendTag(nil, wire.RequestHTTP, protowire.BytesType)
	req = protowire.AppendBytes(req, inner)
	attrs := protowire.AppendTag(nil, wire.AttrRequest, protowire.BytesType)
	attrs = protowire.AppendBytes(attrs, req)
	out := protowire.AppendTag(nil, wire.CheckRequestAttributes, protowire.BytesType)
	return protowire.AppendBytes(out, attrs)
}

// RequestCase is an encoded CheckRequest and whether the fast decoder
// must take it (true) or hand it to proto.Unmarshal (false).
type RequestCase struct {
	B    []byte
	Fast bool
}

// RequestCases are the CheckRequests every decoder test runs: Envoy's
// usual request, every field of the fast path, and each kind of input the
// fast path must refuse.
func RequestCases(t testing.TB) map[string]RequestCase {
	full := EnvoyCheckRequest()
	full.Attributes.Source.Service = "web"
	full.Attributes.Source.Principal = "spiffe://example/web"
	full.Attributes.Source.Certificate = "-----BEGIN%20CERTIFICATE-----"
	full.Attributes.Source.Labels = map[string]string{"app": "web", "zone": "a"}
	full.Attributes.Destination.Address.GetSocketAddress().PortSpecifier = &corev3.SocketAddress_NamedPort{NamedPort: "http"}
	full.Attributes.Destination.Address.GetSocketAddress().Protocol = corev3.SocketAddress_UDP
	full.Attributes.Destination.Address.GetSocketAddress().ResolverName = "dns"
	full.Attributes.Destination.Address.GetSocketAddress().Ipv4Compat = true
	full.Attributes.Destination.Address.GetSocketAddress().NetworkNamespaceFilepath = "/run/netns/a"
	h := full.Attributes.Request.Http
	h.Query, h.Fragment, h.Body, h.Size, h.RawBody = "view=full", "top", "{}", -1, []byte{0, 0xff, 1}

	raw := EnvoyCheckRequest()
	raw.Attributes.Request.Http.Headers = nil
	raw.Attributes.Request.Http.HeaderMap = &corev3.HeaderMap{Headers: []*corev3.HeaderValue{
		{Key: ":method", RawValue: []byte("GET")},
		{Key: "Authorization", RawValue: []byte("Bearer " + Token)},
		{Key: "x-forwarded-for", Value: "203.0.113.7"},
		{Key: "x-forwarded-for", RawValue: []byte("10.0.0.1")},
	}}

	withMeta := EnvoyCheckRequest()
	withMeta.Attributes.MetadataContext = &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{"a": {}}}
	withTLS := EnvoyCheckRequest()
	withTLS.Attributes.TlsSession = &authv3.AttributeContext_TLSSession{Sni: "api.example.com"}
	withPipe := EnvoyCheckRequest()
	withPipe.Attributes.Source.Address = &corev3.Address{Address: &corev3.Address_Pipe{Pipe: &corev3.Pipe{Path: "/run/scopegate.sock"}}}

	usual := Marshal(t, EnvoyCheckRequest())
	second := Marshal(t, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source: Peer("", 9),
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Path: "/other", Headers: map[string]string{"authorization": "Bearer second", "x-new": "1"},
		}},
	}})
	badUTF8 := WrapHTTP(protowire.AppendBytes(protowire.AppendTag(nil, wire.HTTPPath, protowire.BytesType), []byte{'/', 0xff}))
	badUTF8Header := func() []byte {
		e := protowire.AppendTag(nil, wire.MapKey, protowire.BytesType)
		e = protowire.AppendString(e, "x")
		e = protowire.AppendTag(e, wire.MapValue, protowire.BytesType)
		e = protowire.AppendBytes(e, []byte{0xc3})
		return WrapHTTP(protowire.AppendBytes(protowire.AppendTag(nil, wire.HTTPHeaders, protowire.BytesType), e))
	}()
	entryNoKey := func() []byte {
		e := protowire.AppendTag(nil, wire.MapValue, protowire.BytesType)
		e = protowire.AppendString(e, "v")
		return WrapHTTP(protowire.AppendBytes(protowire.AppendTag(nil, wire.HTTPHeaders, protowire.BytesType), e))
	}()

	return map[string]RequestCase{
		"envoy request":              {usual, true},
		"every fast field":           {Marshal(t, full), true},
		"header_map":                 {Marshal(t, raw), true},
		"empty":                      {nil, true},
		"empty attributes":           {Marshal(t, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{}}), true},
		"empty request message":      {Marshal(t, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{}}}), true},
		"two messages merge":         {append(append([]byte{}, usual...), second...), true},
		"map entry without a key":    {entryNoKey, true},
		"unknown top-level field":    {AppendUnknown(append([]byte{}, usual...)), false},
		"unknown http field":         {WrapHTTP(AppendUnknown(nil)), false},
		"metadata_context":           {Marshal(t, withMeta), false},
		"tls_session":                {Marshal(t, withTLS), false},
		"pipe address":               {Marshal(t, withPipe), false},
		"invalid UTF-8 path":         {badUTF8, false},
		"invalid UTF-8 header value": {badUTF8Header, false},
		"truncated":                  {usual[:len(usual)-3], false},
		"length past the end":        {[]byte{0x0a, 0x7f, 0x00}, false},
		"wrong wire type":            {protowire.AppendVarint(protowire.AppendTag(nil, wire.CheckRequestAttributes, protowire.VarintType), 1), false},
	}
}

// ResponseCase is a CheckResponse and whether the fast encoder must take
// it (true) or leave it to proto.Marshal (false).
type ResponseCase struct {
	M    *authv3.CheckResponse
	Fast bool
}

// ResponseCases are the CheckResponses every encoder test runs: what the
// Responder sends under pol, every covered field, and each kind of message
// the fast encoder must leave to proto.Marshal.
func ResponseCases(pol *decision.Policy) map[string]ResponseCase {
	r := envoy.NewResponder(envoy.ResponderOptions{})
	hvo := func(k, v string) *corev3.HeaderValueOption {
		return &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: k, Value: v}, AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD}
	}
	nested, _ := structpb.NewStruct(map[string]any{
		"s": "x", "empty": "", "n": 0.0, "f": -1.5, "t": true, "b": false, "null": nil,
		"list": []any{"a", 1.0, []any{}, map[string]any{"k": "v"}}, "obj": map[string]any{"deep": map[string]any{}},
	})
	full := &authv3.CheckResponse{
		Status: &rpcstatus.Status{Code: -3, Message: "msg"},
		HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{
			Headers:                 []*corev3.HeaderValueOption{hvo("a", "1"), {Header: &corev3.HeaderValue{Key: "raw", RawValue: []byte{0, 1, 0xff}}, KeepEmptyValue: true}, {}},
			HeadersToRemove:         []string{"authorization", ""},
			ResponseHeadersToAdd:    []*corev3.HeaderValueOption{hvo("x-r", "y")},
			QueryParametersToRemove: []string{"token"},
		}},
		DynamicMetadata: nested,
	}
	long := &authv3.CheckResponse{Status: &rpcstatus.Status{Code: 7}, HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
		Status: &typev3.HttpStatus{Code: typev3.StatusCode_Forbidden}, Headers: []*corev3.HeaderValueOption{hvo("h", strings.Repeat("v", 200))},
		Body: strings.Repeat("b", 20000),
	}}}
	withDetails := proto.Clone(long).(*authv3.CheckResponse)
	withDetails.Status.Details = []*anypb.Any{{TypeUrl: "x"}}
	withAppend := &authv3.CheckResponse{HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{
		Headers: []*corev3.HeaderValueOption{{Header: &corev3.HeaderValue{Key: "a"}, Append: wrapperspb.Bool(true)}},
	}}}
	//lint:ignore SA1019 the encoder must refuse the deprecated field, so the test sets it
	withOKMeta := &authv3.CheckResponse{HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{DynamicMetadata: &structpb.Struct{}}}}
	withQuery := &authv3.CheckResponse{HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{
		QueryParametersToSet: []*corev3.QueryParameter{{Key: "a", Value: "b"}},
	}}}
	withUnknown := proto.Clone(long).(*authv3.CheckResponse)
	withUnknown.GetDeniedResponse().ProtoReflect().SetUnknown(AppendUnknown(nil))
	badUTF8 := &authv3.CheckResponse{HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{Body: "\xff"}}}
	nilHeader := &authv3.CheckResponse{HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{Headers: []*corev3.HeaderValueOption{nil}}}}
	deep := structpb.NewStringValue("leaf")
	for range wire.MaxStructDepth + 2 {
		deep = structpb.NewStructValue(&structpb.Struct{Fields: map[string]*structpb.Value{"d": deep}})
	}
	return map[string]ResponseCase{
		"allow": {r.Response(&decision.Decision{Allow: true, Policy: pol,
			Token: &decision.Token{Subject: "alice", ClientID: "app", Scopes: []string{"items:read", "profile"}}}), true},
		"allow, public route":  {r.Response(&decision.Decision{Allow: true, Policy: pol}), true},
		"insufficient scope":   {r.Response(&decision.Decision{Code: decision.InsufficientScope, Policy: pol}), true},
		"token invalid":        {r.Response(&decision.Decision{Code: decision.TokenInvalid, Policy: pol}), true},
		"internal error":       {r.Response(&decision.Decision{Code: decision.Internal, Policy: pol}), true},
		"empty":                {&authv3.CheckResponse{}, true},
		"every covered field":  {full, true},
		"long fields":          {long, true},
		"status details":       {withDetails, false},
		"deprecated append":    {withAppend, false},
		"ok dynamic_metadata":  {withOKMeta, false},
		"query parameters set": {withQuery, false},
		"unknown fields":       {withUnknown, false},
		"invalid UTF-8":        {badUTF8, false},
		"nil header":           {nilHeader, false},
		"nil metadata value":   {&authv3.CheckResponse{DynamicMetadata: &structpb.Struct{Fields: map[string]*structpb.Value{"x": nil}}}, false},
		"too deep":             {&authv3.CheckResponse{DynamicMetadata: &structpb.Struct{Fields: map[string]*structpb.Value{"d": deep}}}, false},
	}
}
