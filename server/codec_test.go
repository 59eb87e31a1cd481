package server

import (
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/scopegate/scopegate/decision"
	"github.com/scopegate/scopegate/envoy"
	scopegatev1 "github.com/scopegate/scopegate/proto/scopegate/v1"
)

// codecToken stands in for a bearer token: the decoder never looks inside.
var codecToken = "eyJhbGciOiJSUzI1NiIsImtpZCI6ImRldi1yc2EtMSIsInR5cCI6ImF0K2p3dCJ9." + strings.Repeat("x", 700)

func peer(addr string, port uint32) *authv3.AttributeContext_Peer {
	return &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
		SocketAddress: &corev3.SocketAddress{Address: addr, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port}},
	}}}
}

// envoyCheckRequest is a CheckRequest as Envoy sends it for a GET with the
// usual headers.
func envoyCheckRequest() *authv3.CheckRequest {
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source:      peer("10.0.0.7", 51234),
		Destination: peer("10.0.0.2", 8080),
		Request: &authv3.AttributeContext_Request{
			Time: &timestamppb.Timestamp{Seconds: 1_790_000_000, Nanos: 123_000_000},
			Http: &authv3.AttributeContext_HttpRequest{
				Id: "6f1c2b9e-0a7d-4c1b-9a51-2f0f4a4d7c11", Method: "GET", Path: "/svc1/items/42?view=full",
				Host: "api.example.com", Scheme: "https", Protocol: "HTTP/1.1",
				Headers: map[string]string{
					":authority": "api.example.com", ":method": "GET", ":path": "/svc1/items/42?view=full", ":scheme": "https",
					"user-agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36", "accept": "application/json",
					"x-request-id": "6f1c2b9e-0a7d-4c1b-9a51-2f0f4a4d7c11", "x-forwarded-proto": "https",
					"x-envoy-expected-rq-timeout-ms": "15000", "authorization": "Bearer " + codecToken,
				},
			},
		},
		ContextExtensions: map[string]string{"environment": "prod"},
	}}
}

func marshal(t testing.TB, m proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// appendUnknown appends field 999 (a varint) to b.
func appendUnknown(b []byte) []byte {
	b = protowire.AppendTag(b, 999, protowire.VarintType)
	return protowire.AppendVarint(b, 1)
}

// nested wraps inner (the encoding of an HttpRequest) into a CheckRequest.
func wrapHTTP(inner []byte) []byte {
	req := protowire.AppendTag(nil, fRequestHTTP, protowire.BytesType)
	req = protowire.AppendBytes(req, inner)
	attrs := protowire.AppendTag(nil, fAttrRequest, protowire.BytesType)
	attrs = protowire.AppendBytes(attrs, req)
	out := protowire.AppendTag(nil, fCheckRequestAttributes, protowire.BytesType)
	return protowire.AppendBytes(out, attrs)
}

// codecCases are encoded CheckRequests and whether the fast path must take
// them (true) or hand them to proto.Unmarshal (false).
func codecCases(t testing.TB) map[string]struct {
	b    []byte
	fast bool
} {
	full := envoyCheckRequest()
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

	raw := envoyCheckRequest()
	raw.Attributes.Request.Http.Headers = nil
	raw.Attributes.Request.Http.HeaderMap = &corev3.HeaderMap{Headers: []*corev3.HeaderValue{
		{Key: ":method", RawValue: []byte("GET")},
		{Key: "Authorization", RawValue: []byte("Bearer " + codecToken)},
		{Key: "x-forwarded-for", Value: "203.0.113.7"},
		{Key: "x-forwarded-for", RawValue: []byte("10.0.0.1")},
	}}

	withMeta := envoyCheckRequest()
	withMeta.Attributes.MetadataContext = &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{"a": {}}}
	withTLS := envoyCheckRequest()
	withTLS.Attributes.TlsSession = &authv3.AttributeContext_TLSSession{Sni: "api.example.com"}
	withPipe := envoyCheckRequest()
	withPipe.Attributes.Source.Address = &corev3.Address{Address: &corev3.Address_Pipe{Pipe: &corev3.Pipe{Path: "/tmp/s"}}}

	usual := marshal(t, envoyCheckRequest())
	second := marshal(t, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source: peer("", 9),
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Path: "/other", Headers: map[string]string{"authorization": "Bearer second", "x-new": "1"},
		}},
	}})
	badUTF8 := wrapHTTP(protowire.AppendBytes(protowire.AppendTag(nil, fHTTPPath, protowire.BytesType), []byte{'/', 0xff}))
	badUTF8Header := func() []byte {
		e := protowire.AppendTag(nil, fMapKey, protowire.BytesType)
		e = protowire.AppendString(e, "x")
		e = protowire.AppendTag(e, fMapValue, protowire.BytesType)
		e = protowire.AppendBytes(e, []byte{0xc3})
		return wrapHTTP(protowire.AppendBytes(protowire.AppendTag(nil, fHTTPHeaders, protowire.BytesType), e))
	}()
	entryNoKey := func() []byte {
		e := protowire.AppendTag(nil, fMapValue, protowire.BytesType)
		e = protowire.AppendString(e, "v")
		return wrapHTTP(protowire.AppendBytes(protowire.AppendTag(nil, fHTTPHeaders, protowire.BytesType), e))
	}()

	return map[string]struct {
		b    []byte
		fast bool
	}{
		"envoy request":              {usual, true},
		"every fast field":           {marshal(t, full), true},
		"header_map":                 {marshal(t, raw), true},
		"empty":                      {nil, true},
		"empty attributes":           {marshal(t, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{}}), true},
		"empty request message":      {marshal(t, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{}}}), true},
		"two messages merge":         {append(append([]byte{}, usual...), second...), true},
		"map entry without a key":    {entryNoKey, true},
		"unknown top-level field":    {appendUnknown(append([]byte{}, usual...)), false},
		"unknown http field":         {wrapHTTP(appendUnknown(nil)), false},
		"metadata_context":           {marshal(t, withMeta), false},
		"tls_session":                {marshal(t, withTLS), false},
		"pipe address":               {marshal(t, withPipe), false},
		"invalid UTF-8 path":         {badUTF8, false},
		"invalid UTF-8 header value": {badUTF8Header, false},
		"truncated":                  {usual[:len(usual)-3], false},
		"length past the end":        {[]byte{0x0a, 0x7f, 0x00}, false},
		"wrong wire type":            {protowire.AppendVarint(protowire.AppendTag(nil, fCheckRequestAttributes, protowire.VarintType), 1), false},
	}
}

// TestDecodeCheckRequestMatchesProto checks that the codec decodes every
// case exactly as proto.Unmarshal does (same message, or an error for
// both), and that the fast path, not the fallback, handled the cases it is
// meant to.
func TestDecodeCheckRequestMatchesProto(t *testing.T) {
	for name, tc := range codecCases(t) {
		t.Run(name, func(t *testing.T) {
			var fast authv3.CheckRequest
			if got := decodeCheckRequest(tc.b, &fast); got != tc.fast {
				t.Fatalf("fast path taken = %v, want %v", got, tc.fast)
			}
			var want, got authv3.CheckRequest
			werr := proto.Unmarshal(tc.b, &want)
			gerr := Codec{}.Unmarshal(mem.BufferSlice{mem.SliceBuffer(tc.b)}, &got)
			if (werr == nil) != (gerr == nil) {
				t.Fatalf("codec error %v, proto.Unmarshal error %v", gerr, werr)
			}
			if werr == nil && !proto.Equal(&got, &want) {
				t.Fatalf("codec decoded\n%v\nproto.Unmarshal decoded\n%v", &got, &want)
			}
			if tc.fast && !proto.Equal(&fast, &want) {
				t.Fatalf("fast path decoded\n%v\nwant\n%v", &fast, &want)
			}
		})
	}
}

// TestDecodeCheckRequestOwnsItsStrings checks that the decoded message
// does not alias the gRPC buffer, which is reused once Unmarshal returns.
func TestDecodeCheckRequestOwnsItsStrings(t *testing.T) {
	b := marshal(t, envoyCheckRequest())
	var got authv3.CheckRequest
	if err := (Codec{}).Unmarshal(mem.BufferSlice{mem.SliceBuffer(b)}, &got); err != nil {
		t.Fatal(err)
	}
	for i := range b {
		b[i] = 'X'
	}
	if !proto.Equal(&got, envoyCheckRequest()) {
		t.Fatalf("decoded message changed with the buffer:\n%v", &got)
	}
}

// TestDecodeCheckRequestSplitBuffers decodes a message that arrives in
// several buffers, as a large message does.
func TestDecodeCheckRequestSplitBuffers(t *testing.T) {
	b := marshal(t, envoyCheckRequest())
	data := mem.BufferSlice{mem.SliceBuffer(b[:10]), mem.SliceBuffer(b[10:500]), mem.SliceBuffer(b[500:])}
	var got authv3.CheckRequest
	if err := (Codec{}).Unmarshal(data, &got); err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(&got, envoyCheckRequest()) {
		t.Fatalf("decoded\n%v", &got)
	}
}

// TestCodecRoundTrip marshals with the codec and decodes with
// proto.Unmarshal, and the reverse, for the responses scopegate sends and
// for messages without a fast path (our own API).
func TestCodecRoundTrip(t *testing.T) {
	pol := codecPolicy(t)
	r := envoy.NewResponder(envoy.ResponderOptions{})
	allow := r.Response(&decision.Decision{Allow: true, Policy: pol,
		Token: &decision.Token{Subject: "alice", ClientID: "app", Scopes: []string{"items:read"}}})
	deny := r.Response(&decision.Decision{Code: decision.TokenInvalid, Policy: pol})
	cases := map[string]struct {
		msg   proto.Message
		empty func() proto.Message
	}{
		"CheckRequest":        {envoyCheckRequest(), func() proto.Message { return &authv3.CheckRequest{} }},
		"allow CheckResponse": {allow, func() proto.Message { return &authv3.CheckResponse{} }},
		"deny CheckResponse":  {deny, func() proto.Message { return &authv3.CheckResponse{} }},
		"error CheckResponse": {&authv3.CheckResponse{Status: &rpcstatus.Status{Code: 13}}, func() proto.Message { return &authv3.CheckResponse{} }},
		"scopegate request": {&scopegatev1.CheckRequest{Method: "GET", Path: "/x", Token: "t", Headers: map[string]string{"a": "b"}},
			func() proto.Message { return &scopegatev1.CheckRequest{} }},
		"scopegate response": {&scopegatev1.CheckResponse{Allow: true, Reasons: []*scopegatev1.Reason{{Code: "ok"}}, HttpStatus: 200},
			func() proto.Message { return &scopegatev1.CheckResponse{} }},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			data, err := Codec{}.Marshal(tc.msg)
			if err != nil {
				t.Fatal(err)
			}
			b := data.Materialize()
			data.Free()
			got := tc.empty()
			if err := proto.Unmarshal(b, got); err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(got, tc.msg) {
				t.Fatalf("codec marshalled\n%v\nwant\n%v", got, tc.msg)
			}
			back := tc.empty()
			if err := (Codec{}).Unmarshal(mem.BufferSlice{mem.SliceBuffer(marshal(t, tc.msg))}, back); err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(back, tc.msg) {
				t.Fatalf("codec decoded\n%v\nwant\n%v", back, tc.msg)
			}
		})
	}
	if _, err := (Codec{}).Marshal(struct{}{}); err == nil {
		t.Error("Marshal of a non-message succeeded")
	}
	if err := (Codec{}).Unmarshal(nil, &struct{}{}); err == nil {
		t.Error("Unmarshal into a non-message succeeded")
	}
}

func codecPolicy(t testing.TB) *decision.Policy {
	t.Helper()
	pol, err := decision.LoadFile("testdata/policy.yaml", decision.CompileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return pol
}

// responseCases are CheckResponses and whether the fast encoder must take
// them (true) or leave them to proto.Marshal (false).
func responseCases(t testing.TB) map[string]struct {
	m    *authv3.CheckResponse
	fast bool
} {
	pol := codecPolicy(t)
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
	withUnknown.GetDeniedResponse().ProtoReflect().SetUnknown(appendUnknown(nil))
	badUTF8 := &authv3.CheckResponse{HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{Body: "\xff"}}}
	nilHeader := &authv3.CheckResponse{HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{Headers: []*corev3.HeaderValueOption{nil}}}}
	deep := structpb.NewStringValue("leaf")
	for range maxStructDepth + 2 {
		deep = structpb.NewStructValue(&structpb.Struct{Fields: map[string]*structpb.Value{"d": deep}})
	}
	return map[string]struct {
		m    *authv3.CheckResponse
		fast bool
	}{
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

// TestEncodeCheckResponseMatchesProto checks that what the codec sends
// decodes to the message handed to it, exactly as with proto.Marshal (or
// fails where proto.Marshal fails), and that the fast encoder handled the
// cases it is meant to.
func TestEncodeCheckResponseMatchesProto(t *testing.T) {
	for name, tc := range responseCases(t) {
		t.Run(name, func(t *testing.T) {
			if _, fast := appendCheckResponse(nil, tc.m); fast != tc.fast {
				t.Fatalf("fast path taken = %v, want %v", fast, tc.fast)
			}
			_, werr := proto.Marshal(tc.m)
			data, err := Codec{}.Marshal(tc.m)
			if (err == nil) != (werr == nil) {
				t.Fatalf("codec error %v, proto.Marshal error %v", err, werr)
			}
			if err != nil {
				return
			}
			b := data.Materialize()
			data.Free()
			var got authv3.CheckResponse
			if err := proto.Unmarshal(b, &got); err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(&got, tc.m) {
				t.Fatalf("sent\n%v\nwant\n%v", &got, tc.m)
			}
		})
	}
}

// TestCheckResponseFieldsCovered pins the fast encoder to the message
// definitions: a field it neither writes nor refuses would be dropped
// silently, so an upgrade that adds one must fail here.
func TestCheckResponseFieldsCovered(t *testing.T) {
	cases := map[string]struct {
		msg     proto.Message
		handled []protowire.Number
	}{
		"CheckResponse":      {&authv3.CheckResponse{}, []protowire.Number{fRespStatus, fRespDenied, fRespOK, fRespDynamicMetadata, fRespError}},
		"Status":             {&rpcstatus.Status{}, []protowire.Number{fStatusCode, fStatusMessage, 3 /* details: refused */}},
		"DeniedHttpResponse": {&authv3.DeniedHttpResponse{}, []protowire.Number{fDeniedStatus, fDeniedHeaders, fDeniedBody}},
		"HttpStatus":         {&typev3.HttpStatus{}, []protowire.Number{fHTTPStatus}},
		"OkHttpResponse": {&authv3.OkHttpResponse{}, []protowire.Number{fOKHeaders, fOKHeadersToRemove, fOKResponseHeadersToAdd, fOKQueryParametersToRemove,
			3 /* dynamic_metadata: refused */, 7 /* query_parameters_to_set: refused */}},
		"HeaderValueOption": {&corev3.HeaderValueOption{}, []protowire.Number{fHVOHeader, fHVOAppendAction, fHVOKeepEmptyValue, 2 /* append: refused */}},
		"HeaderValue":       {&corev3.HeaderValue{}, []protowire.Number{fHVKey, fHVValue, fHVRawValue}},
		"Struct":            {&structpb.Struct{}, []protowire.Number{fStructFields}},
		"Value":             {&structpb.Value{}, []protowire.Number{fValueNull, fValueNumber, fValueString, fValueBool, fValueStruct, fValueList}},
		"ListValue":         {&structpb.ListValue{}, []protowire.Number{fListValues}},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			fields := tc.msg.ProtoReflect().Descriptor().Fields()
			known := map[protowire.Number]bool{}
			for _, n := range tc.handled {
				known[n] = true
			}
			for i := range fields.Len() {
				if f := fields.Get(i); !known[f.Number()] {
					t.Errorf("field %s (%d) is neither encoded nor refused by the fast encoder", f.Name(), f.Number())
				}
			}
			if fields.Len() != len(tc.handled) {
				t.Errorf("%d fields in the descriptor, %d handled", fields.Len(), len(tc.handled))
			}
		})
	}
}

// FuzzDecodeCheckRequest checks the fast path against proto.Unmarshal on
// arbitrary input: whenever the fast path accepts, proto.Unmarshal must
// accept too and produce the same message.
func FuzzDecodeCheckRequest(f *testing.F) {
	for _, tc := range codecCases(f) {
		f.Add(tc.b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var fast authv3.CheckRequest
		if !decodeCheckRequest(b, &fast) {
			return
		}
		var want authv3.CheckRequest
		if err := proto.Unmarshal(b, &want); err != nil {
			t.Fatalf("fast path accepted what proto.Unmarshal rejects (%v)", err)
		}
		if !proto.Equal(&fast, &want) {
			t.Fatalf("fast path decoded\n%v\nproto.Unmarshal decoded\n%v", &fast, &want)
		}
	})
}

// BenchmarkDecodeCheckRequest compares the standard decoder with the
// codec's on the usual Envoy request (ten headers, an 800-byte token).
// Compare with: benchstat -col /decoder.
func BenchmarkDecodeCheckRequest(b *testing.B) {
	data := marshal(b, envoyCheckRequest())
	b.Run("decoder=proto.Unmarshal", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			var m authv3.CheckRequest
			if err := proto.Unmarshal(data, &m); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("decoder=codec", func(b *testing.B) {
		bs := mem.BufferSlice{mem.SliceBuffer(data)}
		b.ReportAllocs()
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			var m authv3.CheckRequest
			if err := (Codec{}).Unmarshal(bs, &m); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkMarshalCheckResponse compares the standard marshaller with the
// codec's on an allow (built per request) and a deny (shared). Compare
// with: benchstat -col /encoder.
func BenchmarkMarshalCheckResponse(b *testing.B) {
	pol := codecPolicy(b)
	r := envoy.NewResponder(envoy.ResponderOptions{})
	d := decision.Decision{Allow: true, Policy: pol, Token: &decision.Token{Subject: "alice", ClientID: "app", Scopes: []string{"items:read"}}}
	msgs := map[string]*authv3.CheckResponse{
		"allow": r.Response(&d),
		"deny":  r.Response(&decision.Decision{Code: decision.InsufficientScope, Policy: pol}),
	}
	for name, m := range msgs {
		b.Run("resp="+name+"/encoder=proto.Marshal", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := proto.Marshal(m); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("resp="+name+"/encoder=codec", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				data, err := Codec{}.Marshal(m)
				if err != nil {
					b.Fatal(err)
				}
				data.Free()
			}
		})
	}
}
