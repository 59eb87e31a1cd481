package wire

import "google.golang.org/protobuf/encoding/protowire"

// The field numbers of every message this package, the server's codec and
// the load generator encode or decode by hand, in one table. Each is the
// number the generated descriptor gives the field it is named after
// (fields_test.go checks every one by name), so a typo or an upstream
// renumbering fails a test instead of corrupting a message.

// envoy.service.auth.v3.CheckRequest and what it holds
// (envoy/service/auth/v3/{external_auth,attribute_context}.proto,
// envoy/config/core/v3/{address,base}.proto, google/protobuf/timestamp.proto).
const (
	CheckRequestAttributes protowire.Number = 1

	// AttributeContext.
	AttrSource            protowire.Number = 1
	AttrDestination       protowire.Number = 2
	AttrRequest           protowire.Number = 4
	AttrContextExtensions protowire.Number = 10

	// AttributeContext.Peer.
	PeerAddress     protowire.Number = 1
	PeerService     protowire.Number = 2
	PeerLabels      protowire.Number = 3
	PeerPrincipal   protowire.Number = 4
	PeerCertificate protowire.Number = 5

	// config.core.v3.Address: the socket_address member of its oneof.
	AddressSocket protowire.Number = 1

	// config.core.v3.SocketAddress.
	SockProtocol     protowire.Number = 1
	SockAddress      protowire.Number = 2
	SockPortValue    protowire.Number = 3
	SockNamedPort    protowire.Number = 4
	SockResolverName protowire.Number = 5
	SockIPv4Compat   protowire.Number = 6
	SockNetnsPath    protowire.Number = 7

	// AttributeContext.Request.
	RequestTime protowire.Number = 1
	RequestHTTP protowire.Number = 2

	// google.protobuf.Timestamp.
	TimeSeconds protowire.Number = 1
	TimeNanos   protowire.Number = 2

	// AttributeContext.HttpRequest.
	HTTPID        protowire.Number = 1
	HTTPMethod    protowire.Number = 2
	HTTPHeaders   protowire.Number = 3
	HTTPPath      protowire.Number = 4
	HTTPHost      protowire.Number = 5
	HTTPScheme    protowire.Number = 6
	HTTPQuery     protowire.Number = 7
	HTTPFragment  protowire.Number = 8
	HTTPSize      protowire.Number = 9
	HTTPProtocol  protowire.Number = 10
	HTTPBody      protowire.Number = 11
	HTTPRawBody   protowire.Number = 12
	HTTPHeaderMap protowire.Number = 13

	// config.core.v3.HeaderMap.
	HeaderMapHeaders protowire.Number = 1

	// config.core.v3.HeaderValue (in a request's header_map and in a
	// response's HeaderValueOption).
	HeaderValueKey      protowire.Number = 1
	HeaderValueValue    protowire.Number = 2
	HeaderValueRawValue protowire.Number = 3

	// The key and value of every map entry (map<K, V> is a repeated
	// message with these two fields).
	MapKey   protowire.Number = 1
	MapValue protowire.Number = 2
)

// envoy.service.auth.v3.CheckResponse and what it holds
// (envoy/service/auth/v3/external_auth.proto, envoy/config/core/v3/base.proto,
// envoy/type/v3/http_status.proto, google/rpc/status.proto,
// google/protobuf/struct.proto).
const (
	CheckResponseStatus          protowire.Number = 1
	CheckResponseDenied          protowire.Number = 2
	CheckResponseOK              protowire.Number = 3
	CheckResponseDynamicMetadata protowire.Number = 4
	CheckResponseError           protowire.Number = 5

	// google.rpc.Status.
	StatusCode    protowire.Number = 1
	StatusMessage protowire.Number = 2
	StatusDetails protowire.Number = 3

	// DeniedHttpResponse (also the error_response).
	DeniedStatus  protowire.Number = 1
	DeniedHeaders protowire.Number = 2
	DeniedBody    protowire.Number = 3

	// type.v3.HttpStatus.
	HTTPStatusCode protowire.Number = 1

	// OkHttpResponse.
	OKHeaders                 protowire.Number = 2
	OKDynamicMetadata         protowire.Number = 3 // deprecated upstream; never encoded here
	OKHeadersToRemove         protowire.Number = 5
	OKResponseHeadersToAdd    protowire.Number = 6
	OKQueryParametersToSet    protowire.Number = 7 // never encoded here
	OKQueryParametersToRemove protowire.Number = 8

	// config.core.v3.HeaderValueOption.
	HeaderValueOptionHeader         protowire.Number = 1
	HeaderValueOptionAppend         protowire.Number = 2 // deprecated upstream; never encoded here
	HeaderValueOptionAppendAction   protowire.Number = 3
	HeaderValueOptionKeepEmptyValue protowire.Number = 4

	// google.protobuf.Struct, Value and ListValue.
	StructFields protowire.Number = 1
	ValueNull    protowire.Number = 1
	ValueNumber  protowire.Number = 2
	ValueString  protowire.Number = 3
	ValueBool    protowire.Number = 4
	ValueStruct  protowire.Number = 5
	ValueList    protowire.Number = 6
	ListValues   protowire.Number = 1
)

// scopegate.v1.CheckRequest, CheckResponse and Reason
// (proto/scopegate/v1/authorizer.proto): the fields the load generator
// writes and reads.
const (
	SGRequestMethod        protowire.Number = 1
	SGRequestPath          protowire.Number = 2
	SGRequestHeaders       protowire.Number = 3
	SGRequestToken         protowire.Number = 4
	SGRequestSourceAddress protowire.Number = 5
	SGRequestRequestID     protowire.Number = 9
	SGRequestHost          protowire.Number = 11
	SGRequestScheme        protowire.Number = 12

	SGResponseAllow      protowire.Number = 1
	SGResponseReasons    protowire.Number = 2
	SGResponseHTTPStatus protowire.Number = 9

	SGReasonCode protowire.Number = 1
)
