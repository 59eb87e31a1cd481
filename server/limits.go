package server

import (
	"errors"
	"strconv"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	scopegatev1 "github.com/scopegate/scopegate/proto/scopegate/v1"
)

// Request limits. A hostile client controls every header a proxy forwards
// and how long it keeps a call open; these bounds keep one such client from
// making a decision arbitrarily expensive. They hold for every protocol
// (the funnel applies them, funnel.go): the gRPC calls, forward-auth and
// AuthZEN. The gRPC message size and the streams per connection are
// bounded by grpc itself (MaxRecvMsgSize, MaxConcurrentStreams), calls in
// flight and their time from stream start by the gate (gate.go); the
// token, path and policy sizes by the engine.
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
			" headers (the server's --max-request-headers limit): send fewer headers",
		msgHeaderBytes: "the request's headers total more than " + strconv.Itoa(c.MaxRequestHeaderBytes) +
			" bytes (the server's --max-request-header-bytes limit): send smaller headers",
		msgTimeout: "the decision took longer than the server's check timeout of " + c.CheckTimeout.String() +
			"; denied to fail closed",
	}
}

// over returns the message of the request_invalid deny of headers of size
// hs, or "" when they are within the limits.
func (l *limits) over(hs headerSize) string {
	switch {
	case hs.count > l.maxHeaders:
		return l.msgHeaders
	case hs.bytes > l.maxHeaderBytes:
		return l.msgHeaderBytes
	}
	return ""
}

// extAuthzHeaderSize is the size of a CheckRequest's headers: both forms
// Envoy may send count (merged map, raw header_map).
func extAuthzHeaderSize(req *authv3.CheckRequest) headerSize {
	h := req.GetAttributes().GetRequest().GetHttp()
	raw := h.GetHeaderMap().GetHeaders()
	hs := headerSize{count: len(raw)}
	for _, hv := range raw {
		hs.bytes += len(hv.GetKey()) + len(hv.GetValue()) + len(hv.GetRawValue())
	}
	merged := h.GetHeaders()
	hs.count += len(merged)
	for k, v := range merged {
		hs.bytes += len(k) + len(v)
	}
	return hs
}

// authorizerHeaderSize is the size of a Check RPC request's headers; its
// token field counts toward the bytes, as it would in a header.
func authorizerHeaderSize(req *scopegatev1.CheckRequest) headerSize {
	headers := req.GetHeaders()
	hs := headerSize{count: len(headers), bytes: len(req.GetToken())}
	for k, v := range headers {
		hs.bytes += len(k) + len(v)
	}
	return hs
}
