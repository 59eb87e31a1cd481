package wire_test

import (
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/scopegate/scopegate/envoy/wire"
	scopegatev1 "github.com/scopegate/scopegate/proto/scopegate/v1"
)

// TestFieldNumbersMatchDescriptors checks every field number of the table
// against the generated descriptor of the field it is named after: the
// field must exist, carry that number, and have the wire type the encoders
// and decoders give it.
func TestFieldNumbersMatchDescriptors(t *testing.T) {
	mapEntry := (&authv3.AttributeContext_HttpRequest{}).ProtoReflect().Descriptor().Fields().ByName("headers").Message()
	cases := []struct {
		num   protowire.Number
		msg   protoreflect.MessageDescriptor
		field protoreflect.Name
		typ   protowire.Type
	}{
		{wire.CheckRequestAttributes, desc(&authv3.CheckRequest{}), "attributes", protowire.BytesType},
		{wire.AttrSource, desc(&authv3.AttributeContext{}), "source", protowire.BytesType},
		{wire.AttrDestination, desc(&authv3.AttributeContext{}), "destination", protowire.BytesType},
		{wire.AttrRequest, desc(&authv3.AttributeContext{}), "request", protowire.BytesType},
		{wire.AttrContextExtensions, desc(&authv3.AttributeContext{}), "context_extensions", protowire.BytesType},
		{wire.PeerAddress, desc(&authv3.AttributeContext_Peer{}), "address", protowire.BytesType},
		{wire.PeerService, desc(&authv3.AttributeContext_Peer{}), "service", protowire.BytesType},
		{wire.PeerLabels, desc(&authv3.AttributeContext_Peer{}), "labels", protowire.BytesType},
		{wire.PeerPrincipal, desc(&authv3.AttributeContext_Peer{}), "principal", protowire.BytesType},
		{wire.PeerCertificate, desc(&authv3.AttributeContext_Peer{}), "certificate", protowire.BytesType},
		{wire.AddressSocket, desc(&corev3.Address{}), "socket_address", protowire.BytesType},
		{wire.SockProtocol, desc(&corev3.SocketAddress{}), "protocol", protowire.VarintType},
		{wire.SockAddress, desc(&corev3.SocketAddress{}), "address", protowire.BytesType},
		{wire.SockPortValue, desc(&corev3.SocketAddress{}), "port_value", protowire.VarintType},
		{wire.SockNamedPort, desc(&corev3.SocketAddress{}), "named_port", protowire.BytesType},
		{wire.SockResolverName, desc(&corev3.SocketAddress{}), "resolver_name", protowire.BytesType},
		{wire.SockIPv4Compat, desc(&corev3.SocketAddress{}), "ipv4_compat", protowire.VarintType},
		{wire.SockNetnsPath, desc(&corev3.SocketAddress{}), "network_namespace_filepath", protowire.BytesType},
		{wire.RequestTime, desc(&authv3.AttributeContext_Request{}), "time", protowire.BytesType},
		{wire.RequestHTTP, desc(&authv3.AttributeContext_Request{}), "http", protowire.BytesType},
		{wire.TimeSeconds, desc(&timestamppb.Timestamp{}), "seconds", protowire.VarintType},
		{wire.TimeNanos, desc(&timestamppb.Timestamp{}), "nanos", protowire.VarintType},
		{wire.HTTPID, desc(&authv3.AttributeContext_HttpRequest{}), "id", protowire.BytesType},
		{wire.HTTPMethod, desc(&authv3.AttributeContext_HttpRequest{}), "method", protowire.BytesType},
		{wire.HTTPHeaders, desc(&authv3.AttributeContext_HttpRequest{}), "headers", protowire.BytesType},
		{wire.HTTPPath, desc(&authv3.AttributeContext_HttpRequest{}), "path", protowire.BytesType},
		{wire.HTTPHost, desc(&authv3.AttributeContext_HttpRequest{}), "host", protowire.BytesType},
		{wire.HTTPScheme, desc(&authv3.AttributeContext_HttpRequest{}), "scheme", protowire.BytesType},
		{wire.HTTPQuery, desc(&authv3.AttributeContext_HttpRequest{}), "query", protowire.BytesType},
		{wire.HTTPFragment, desc(&authv3.AttributeContext_HttpRequest{}), "fragment", protowire.BytesType},
		{wire.HTTPSize, desc(&authv3.AttributeContext_HttpRequest{}), "size", protowire.VarintType},
		{wire.HTTPProtocol, desc(&authv3.AttributeContext_HttpRequest{}), "protocol", protowire.BytesType},
		{wire.HTTPBody, desc(&authv3.AttributeContext_HttpRequest{}), "body", protowire.BytesType},
		{wire.HTTPRawBody, desc(&authv3.AttributeContext_HttpRequest{}), "raw_body", protowire.BytesType},
		{wire.HTTPHeaderMap, desc(&authv3.AttributeContext_HttpRequest{}), "header_map", protowire.BytesType},
		{wire.HeaderMapHeaders, desc(&corev3.HeaderMap{}), "headers", protowire.BytesType},
		{wire.HeaderValueKey, desc(&corev3.HeaderValue{}), "key", protowire.BytesType},
		{wire.HeaderValueValue, desc(&corev3.HeaderValue{}), "value", protowire.BytesType},
		{wire.HeaderValueRawValue, desc(&corev3.HeaderValue{}), "raw_value", protowire.BytesType},
		{wire.MapKey, mapEntry, "key", protowire.BytesType},
		{wire.MapValue, mapEntry, "value", protowire.BytesType},

		{wire.CheckResponseStatus, desc(&authv3.CheckResponse{}), "status", protowire.BytesType},
		{wire.CheckResponseDenied, desc(&authv3.CheckResponse{}), "denied_response", protowire.BytesType},
		{wire.CheckResponseOK, desc(&authv3.CheckResponse{}), "ok_response", protowire.BytesType},
		{wire.CheckResponseDynamicMetadata, desc(&authv3.CheckResponse{}), "dynamic_metadata", protowire.BytesType},
		{wire.CheckResponseError, desc(&authv3.CheckResponse{}), "error_response", protowire.BytesType},
		{wire.StatusCode, desc(&rpcstatus.Status{}), "code", protowire.VarintType},
		{wire.StatusMessage, desc(&rpcstatus.Status{}), "message", protowire.BytesType},
		{wire.StatusDetails, desc(&rpcstatus.Status{}), "details", protowire.BytesType},
		{wire.DeniedStatus, desc(&authv3.DeniedHttpResponse{}), "status", protowire.BytesType},
		{wire.DeniedHeaders, desc(&authv3.DeniedHttpResponse{}), "headers", protowire.BytesType},
		{wire.DeniedBody, desc(&authv3.DeniedHttpResponse{}), "body", protowire.BytesType},
		{wire.HTTPStatusCode, desc(&typev3.HttpStatus{}), "code", protowire.VarintType},
		{wire.OKHeaders, desc(&authv3.OkHttpResponse{}), "headers", protowire.BytesType},
		{wire.OKDynamicMetadata, desc(&authv3.OkHttpResponse{}), "dynamic_metadata", protowire.BytesType},
		{wire.OKHeadersToRemove, desc(&authv3.OkHttpResponse{}), "headers_to_remove", protowire.BytesType},
		{wire.OKResponseHeadersToAdd, desc(&authv3.OkHttpResponse{}), "response_headers_to_add", protowire.BytesType},
		{wire.OKQueryParametersToSet, desc(&authv3.OkHttpResponse{}), "query_parameters_to_set", protowire.BytesType},
		{wire.OKQueryParametersToRemove, desc(&authv3.OkHttpResponse{}), "query_parameters_to_remove", protowire.BytesType},
		{wire.HeaderValueOptionHeader, desc(&corev3.HeaderValueOption{}), "header", protowire.BytesType},
		{wire.HeaderValueOptionAppend, desc(&corev3.HeaderValueOption{}), "append", protowire.BytesType},
		{wire.HeaderValueOptionAppendAction, desc(&corev3.HeaderValueOption{}), "append_action", protowire.VarintType},
		{wire.HeaderValueOptionKeepEmptyValue, desc(&corev3.HeaderValueOption{}), "keep_empty_value", protowire.VarintType},
		{wire.StructFields, desc(&structpb.Struct{}), "fields", protowire.BytesType},
		{wire.ValueNull, desc(&structpb.Value{}), "null_value", protowire.VarintType},
		{wire.ValueNumber, desc(&structpb.Value{}), "number_value", protowire.Fixed64Type},
		{wire.ValueString, desc(&structpb.Value{}), "string_value", protowire.BytesType},
		{wire.ValueBool, desc(&structpb.Value{}), "bool_value", protowire.VarintType},
		{wire.ValueStruct, desc(&structpb.Value{}), "struct_value", protowire.BytesType},
		{wire.ValueList, desc(&structpb.Value{}), "list_value", protowire.BytesType},
		{wire.ListValues, desc(&structpb.ListValue{}), "values", protowire.BytesType},

		{wire.SGRequestMethod, desc(&scopegatev1.CheckRequest{}), "method", protowire.BytesType},
		{wire.SGRequestPath, desc(&scopegatev1.CheckRequest{}), "path", protowire.BytesType},
		{wire.SGRequestHeaders, desc(&scopegatev1.CheckRequest{}), "headers", protowire.BytesType},
		{wire.SGRequestToken, desc(&scopegatev1.CheckRequest{}), "token", protowire.BytesType},
		{wire.SGRequestSourceAddress, desc(&scopegatev1.CheckRequest{}), "source_address", protowire.BytesType},
		{wire.SGRequestRequestID, desc(&scopegatev1.CheckRequest{}), "request_id", protowire.BytesType},
		{wire.SGRequestHost, desc(&scopegatev1.CheckRequest{}), "host", protowire.BytesType},
		{wire.SGRequestScheme, desc(&scopegatev1.CheckRequest{}), "scheme", protowire.BytesType},
		{wire.SGResponseAllow, desc(&scopegatev1.CheckResponse{}), "allow", protowire.VarintType},
		{wire.SGResponseReasons, desc(&scopegatev1.CheckResponse{}), "reasons", protowire.BytesType},
		{wire.SGResponseHTTPStatus, desc(&scopegatev1.CheckResponse{}), "http_status", protowire.VarintType},
		{wire.SGReasonCode, desc(&scopegatev1.Reason{}), "code", protowire.BytesType},
	}
	for _, tc := range cases {
		t.Run(string(tc.msg.Name())+"."+string(tc.field), func(t *testing.T) {
			f := tc.msg.Fields().ByName(tc.field)
			if f == nil {
				t.Fatalf("%s has no field %s", tc.msg.FullName(), tc.field)
			}
			if f.Number() != tc.num {
				t.Errorf("%s is field %d, the table says %d", f.FullName(), f.Number(), tc.num)
			}
			if got := wireType(f); got != tc.typ {
				t.Errorf("%s has wire type %d, the codec uses %d", f.FullName(), got, tc.typ)
			}
		})
	}
}

func desc(m proto.Message) protoreflect.MessageDescriptor { return m.ProtoReflect().Descriptor() }

// wireType is the wire type of one element of f (packed repeated scalars
// do not occur in the table).
func wireType(f protoreflect.FieldDescriptor) protowire.Type {
	switch f.Kind() {
	case protoreflect.StringKind, protoreflect.BytesKind, protoreflect.MessageKind:
		return protowire.BytesType
	case protoreflect.DoubleKind, protoreflect.Fixed64Kind, protoreflect.Sfixed64Kind:
		return protowire.Fixed64Type
	case protoreflect.FloatKind, protoreflect.Fixed32Kind, protoreflect.Sfixed32Kind:
		return protowire.Fixed32Type
	}
	return protowire.VarintType
}
