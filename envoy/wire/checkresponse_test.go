package wire_test

import (
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/scopegate/scopegate/decision"
	"github.com/scopegate/scopegate/envoy/wire"
	"github.com/scopegate/scopegate/envoy/wire/wiretest"
)

// responsePolicy is the policy the Responder's messages in the response
// corpus are built under.
func responsePolicy(t testing.TB) *decision.Policy {
	t.Helper()
	pol, err := decision.Compile([]byte(fastAllowPolicy), "policy.yaml", decision.CompileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return pol
}

// TestAppendCheckResponseMatchesProto checks that the fast encoder takes
// exactly the cases it is meant to, that what it writes decodes to the
// message it was given, and that it leaves b as it was when it refuses.
func TestAppendCheckResponseMatchesProto(t *testing.T) {
	for name, tc := range wiretest.ResponseCases(responsePolicy(t)) {
		t.Run(name, func(t *testing.T) {
			prefix := []byte{0xde, 0xad}
			b, fast := wire.AppendCheckResponse(prefix, tc.M)
			if fast != tc.Fast {
				t.Fatalf("fast path taken = %v, want %v", fast, tc.Fast)
			}
			if !fast {
				if len(b) != len(prefix) {
					t.Fatalf("a refused message left %d bytes behind", len(b)-len(prefix))
				}
				return
			}
			var got authv3.CheckResponse
			if err := proto.Unmarshal(b[len(prefix):], &got); err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(&got, tc.M) {
				t.Fatalf("encoded\n%v\nwant\n%v", &got, tc.M)
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
		"CheckResponse": {&authv3.CheckResponse{}, []protowire.Number{wire.CheckResponseStatus, wire.CheckResponseDenied,
			wire.CheckResponseOK, wire.CheckResponseDynamicMetadata, wire.CheckResponseError}},
		"Status":             {&rpcstatus.Status{}, []protowire.Number{wire.StatusCode, wire.StatusMessage, wire.StatusDetails /* refused */}},
		"DeniedHttpResponse": {&authv3.DeniedHttpResponse{}, []protowire.Number{wire.DeniedStatus, wire.DeniedHeaders, wire.DeniedBody}},
		"HttpStatus":         {&typev3.HttpStatus{}, []protowire.Number{wire.HTTPStatusCode}},
		"OkHttpResponse": {&authv3.OkHttpResponse{}, []protowire.Number{wire.OKHeaders, wire.OKHeadersToRemove, wire.OKResponseHeadersToAdd,
			wire.OKQueryParametersToRemove, wire.OKDynamicMetadata /* refused */, wire.OKQueryParametersToSet /* refused */}},
		"HeaderValueOption": {&corev3.HeaderValueOption{}, []protowire.Number{wire.HeaderValueOptionHeader, wire.HeaderValueOptionAppendAction,
			wire.HeaderValueOptionKeepEmptyValue, wire.HeaderValueOptionAppend /* refused */}},
		"HeaderValue": {&corev3.HeaderValue{}, []protowire.Number{wire.HeaderValueKey, wire.HeaderValueValue, wire.HeaderValueRawValue}},
		"Struct":      {&structpb.Struct{}, []protowire.Number{wire.StructFields}},
		"Value": {&structpb.Value{}, []protowire.Number{wire.ValueNull, wire.ValueNumber, wire.ValueString, wire.ValueBool,
			wire.ValueStruct, wire.ValueList}},
		"ListValue": {&structpb.ListValue{}, []protowire.Number{wire.ListValues}},
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
