package harness

import (
	"errors"
	"fmt"
	"strconv"

	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/scopegate/scopegate/envoy/wire"
)

// The load generator encodes requests and decodes responses by hand. A
// generator built on proto.Marshal and proto.Unmarshal spends more CPU per
// call than the server it measures, and on a shared machine every cycle
// it spends is taken from the server. Both servers (scopegate and the
// no-op) receive exactly the same bytes, and harness_test.go checks the
// encoding against the generated types. The field numbers are package
// wire's, the table the server's codec uses too.

// Static headers of every request, as Envoy forwards a browser's or an
// SDK's request; the per-request ones (:path, :method, x-request-id,
// authorization) are added when the request is encoded.
var staticHeaders = [...][2]string{
	{":authority", benchHost},
	{":scheme", "https"},
	{"user-agent", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36"},
	{"accept", "application/json"},
	{"x-forwarded-proto", "https"},
	{"x-envoy-expected-rq-timeout-ms", "15000"},
}

// encoder builds requests into reused buffers. One per worker.
type encoder struct {
	prefix  []byte // source and destination peers, encoded once
	time    []byte // the request time field, encoded once
	http    []byte
	out     []byte
	reqID   []byte
	worker  uint64
	counter uint64
}

func newEncoder(worker int, seconds int64) *encoder {
	e := &encoder{worker: uint64(worker)}
	e.prefix = appendPeer(e.prefix, wire.AttrSource, benchSource, 51234)
	e.prefix = appendPeer(e.prefix, wire.AttrDestination, "10.0.0.2", 8080)
	var ts []byte
	ts = protowire.AppendTag(ts, wire.TimeSeconds, protowire.VarintType)
	ts = protowire.AppendVarint(ts, uint64(seconds))
	ts = protowire.AppendTag(ts, wire.TimeNanos, protowire.VarintType)
	ts = protowire.AppendVarint(ts, 123_000_000)
	e.time = protowire.AppendTag(e.time, wire.RequestTime, protowire.BytesType)
	e.time = protowire.AppendBytes(e.time, ts)
	return e
}

func appendPeer(b []byte, num protowire.Number, addr string, port uint32) []byte {
	var sa []byte
	sa = protowire.AppendTag(sa, wire.SockAddress, protowire.BytesType)
	sa = protowire.AppendString(sa, addr)
	sa = protowire.AppendTag(sa, wire.SockPortValue, protowire.VarintType)
	sa = protowire.AppendVarint(sa, uint64(port))
	var a []byte
	a = protowire.AppendTag(a, wire.AddressSocket, protowire.BytesType)
	a = protowire.AppendBytes(a, sa)
	var p []byte
	p = protowire.AppendTag(p, wire.PeerAddress, protowire.BytesType)
	p = protowire.AppendBytes(p, a)
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendBytes(b, p)
}

func appendString(b []byte, num protowire.Number, s string) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendString(b, s)
}

func appendBytes(b []byte, num protowire.Number, v []byte) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendBytes(b, v)
}

// appendEntry appends one map<string, string> entry.
func appendEntry(b []byte, num protowire.Number, k string, v []byte, vs string) []byte {
	n := protowire.SizeTag(wire.MapKey) + protowire.SizeBytes(len(k)) + protowire.SizeTag(wire.MapValue) + protowire.SizeBytes(len(v)+len(vs))
	b = protowire.AppendTag(b, num, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(n))
	b = appendString(b, wire.MapKey, k)
	b = protowire.AppendTag(b, wire.MapValue, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(len(v)+len(vs)))
	b = append(b, v...)
	return append(b, vs...)
}

// nextRequestID returns a request id unique to the run.
func (e *encoder) nextRequestID() []byte {
	e.counter++
	e.reqID = append(e.reqID[:0], "bench-"...)
	e.reqID = strconv.AppendUint(e.reqID, e.worker, 16)
	e.reqID = append(e.reqID, '-')
	e.reqID = strconv.AppendUint(e.reqID, e.counter, 16)
	return e.reqID
}

// envoy encodes an ext_authz CheckRequest as Envoy sends it: source and
// destination addresses, the request time, the HTTP request's id, method,
// path, host, scheme and protocol, and ten headers in the merged map.
// bearer is the whole Authorization value ("Bearer ..."); dpop, when not
// "", the DPoP proof header.
func (e *encoder) envoy(method, path, bearer, dpop string) []byte {
	id := e.nextRequestID()
	h := e.http[:0]
	h = appendBytes(h, wire.HTTPID, id)
	h = appendString(h, wire.HTTPMethod, method)
	for _, kv := range staticHeaders {
		h = appendEntry(h, wire.HTTPHeaders, kv[0], nil, kv[1])
	}
	h = appendEntry(h, wire.HTTPHeaders, ":method", nil, method)
	h = appendEntry(h, wire.HTTPHeaders, ":path", nil, path)
	h = appendEntry(h, wire.HTTPHeaders, "x-request-id", id, "")
	h = appendEntry(h, wire.HTTPHeaders, "authorization", nil, bearer)
	if dpop != "" {
		h = appendEntry(h, wire.HTTPHeaders, "dpop", nil, dpop)
	}
	h = appendString(h, wire.HTTPPath, path)
	h = appendString(h, wire.HTTPHost, benchHost)
	h = appendString(h, wire.HTTPScheme, "https")
	h = appendString(h, wire.HTTPProtocol, "HTTP/1.1")
	e.http = h

	reqLen := len(e.time) + protowire.SizeTag(wire.RequestHTTP) + protowire.SizeBytes(len(h))
	attrsLen := len(e.prefix) + protowire.SizeTag(wire.AttrRequest) + protowire.SizeBytes(reqLen)
	o := e.out[:0]
	o = protowire.AppendTag(o, wire.CheckRequestAttributes, protowire.BytesType)
	o = protowire.AppendVarint(o, uint64(attrsLen))
	o = append(o, e.prefix...)
	o = protowire.AppendTag(o, wire.AttrRequest, protowire.BytesType)
	o = protowire.AppendVarint(o, uint64(reqLen))
	o = append(o, e.time...)
	o = appendBytes(o, wire.RequestHTTP, h)
	e.out = o
	return o
}

// scopegate encodes a scopegate.v1 CheckRequest as a service calling the
// API would: method, path, token, source address, request id, host and
// two headers.
func (e *encoder) scopegate(method, path, token string) []byte {
	o := e.out[:0]
	o = appendString(o, wire.SGRequestMethod, method)
	o = appendString(o, wire.SGRequestPath, path)
	o = appendEntry(o, wire.SGRequestHeaders, "user-agent", nil, staticHeaders[2][1])
	o = appendEntry(o, wire.SGRequestHeaders, "accept", nil, "application/json")
	o = appendString(o, wire.SGRequestToken, token)
	o = appendString(o, wire.SGRequestSourceAddress, benchSource)
	o = appendBytes(o, wire.SGRequestRequestID, e.nextRequestID())
	o = appendString(o, wire.SGRequestHost, benchHost)
	e.out = o
	return o
}

// rawMessage is an encoded request.
type rawMessage struct{ b []byte }

// Response kinds of an ext_authz CheckResponse (its http_response oneof).
const (
	respNone = iota
	respOK
	respDenied
	respError
)

// Reason codes the verdict decoder recognizes.
const (
	reasonOther = iota
	reasonOK
	reasonInsufficientScope
	reasonTokenInvalid
)

// verdict is what the harness checks in a response.
type verdict struct {
	// ext_authz: the gRPC status code in CheckResponse.status, which
	// http_response member is set, and the denied HTTP status.
	grpcCode   int32
	kind       int
	httpStatus int32
	// Check: allow, http_status and the first reason's code.
	allow  bool
	reason int
	// message is the status message of a non-OK ext_authz response, or
	// the first reason's code of a Check deny, for the report.
	message string
	// detail is the body of an error_response.
	detail string
	// api is the API of the response (decides the decoder).
	api string
}

// wireCodec is the load generator's gRPC codec: it sends rawMessages
// (copied into a pooled buffer, as gRPC may hold the bytes until they are
// written) and decodes responses into verdicts.
type wireCodec struct{}

func (wireCodec) Name() string { return "proto" }

func (wireCodec) Marshal(v any) (mem.BufferSlice, error) {
	m, ok := v.(*rawMessage)
	if !ok {
		return nil, fmt.Errorf("bench codec: cannot marshal %T", v)
	}
	return mem.BufferSlice{mem.Copy(m.b, mem.DefaultBufferPool())}, nil
}

func (wireCodec) Unmarshal(data mem.BufferSlice, v any) error {
	out, ok := v.(*verdict)
	if !ok {
		return fmt.Errorf("bench codec: cannot unmarshal into %T", v)
	}
	var b []byte
	if len(data) == 1 {
		b = data[0].ReadOnlyData()
	} else {
		buf := data.MaterializeToBuffer(mem.DefaultBufferPool())
		defer buf.Free()
		b = buf.ReadOnlyData()
	}
	if out.api == APIScopegate {
		return decodeCheckReply(b, out)
	}
	return decodeCheckResponse(b, out)
}

var errMalformed = errors.New("malformed response")

// walk calls fn for every field of the message b; for a varint field, v is
// its value, for a length-delimited one, sub its content.
func walk(b []byte, fn func(num protowire.Number, v uint64, sub []byte) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return errMalformed
		}
		b = b[n:]
		switch typ {
		case protowire.VarintType:
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return errMalformed
			}
			b = b[n:]
			if err := fn(num, v, nil); err != nil {
				return err
			}
		case protowire.BytesType:
			sub, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return errMalformed
			}
			b = b[n:]
			if err := fn(num, 0, sub); err != nil {
				return err
			}
		default:
			n := protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return errMalformed
			}
			b = b[n:]
		}
	}
	return nil
}

// decodeCheckResponse reads an ext_authz CheckResponse's verdict.
func decodeCheckResponse(b []byte, out *verdict) error {
	out.grpcCode, out.kind, out.httpStatus, out.message, out.detail = -1, respNone, 0, "", ""
	return walk(b, func(num protowire.Number, _ uint64, sub []byte) error {
		switch num {
		case wire.CheckResponseStatus:
			out.grpcCode = 0 // a status without a code is OK
			return walk(sub, func(num protowire.Number, v uint64, msg []byte) error {
				switch num {
				case wire.StatusCode:
					out.grpcCode = int32(v)
				case wire.StatusMessage:
					out.message = cachedString(msg)
				}
				return nil
			})
		case wire.CheckResponseOK:
			out.kind = respOK
		case wire.CheckResponseDenied, wire.CheckResponseError:
			out.kind = respDenied
			if num == wire.CheckResponseError {
				out.kind = respError
			}
			return walk(sub, func(num protowire.Number, _ uint64, st []byte) error {
				if num == wire.DeniedBody && out.kind == respError {
					// An internal error is rare and worth its detail.
					out.detail = string(st)
				}
				if num != wire.DeniedStatus {
					return nil
				}
				return walk(st, func(num protowire.Number, v uint64, _ []byte) error {
					if num == wire.HTTPStatusCode {
						out.httpStatus = int32(v)
					}
					return nil
				})
			})
		}
		return nil
	})
}

// decodeCheckReply reads a scopegate.v1 CheckResponse's verdict.
func decodeCheckReply(b []byte, out *verdict) error {
	out.allow, out.httpStatus, out.reason, out.message = false, 0, reasonOther, ""
	first := true
	return walk(b, func(num protowire.Number, v uint64, sub []byte) error {
		switch num {
		case wire.SGResponseAllow:
			out.allow = protowire.DecodeBool(v)
		case wire.SGResponseHTTPStatus:
			out.httpStatus = int32(v)
		case wire.SGResponseReasons:
			if !first {
				return nil
			}
			first = false
			return walk(sub, func(num protowire.Number, _ uint64, code []byte) error {
				if num == wire.SGReasonCode {
					out.message = cachedString(code)
					switch string(code) {
					case "ok":
						out.reason = reasonOK
					case "insufficient_scope":
						out.reason = reasonInsufficientScope
					case "token_invalid":
						out.reason = reasonTokenInvalid
					}
				}
				return nil
			})
		}
		return nil
	})
}

// knownMessages are the reason codes a run normally sees, interned so that
// decoding a deny allocates nothing.
var knownMessages = map[string]string{"ok": "ok", "insufficient_scope": "insufficient_scope", "token_invalid": "token_invalid"}

// cachedString returns b as a string, without allocating for the usual
// reason codes.
func cachedString(b []byte) string {
	if s, ok := knownMessages[string(b)]; ok {
		return s
	}
	return string(b)
}

// Outcomes of checking a response.
const (
	// outcomeRight is the expected verdict.
	outcomeRight = iota
	// outcomeWrong is another verdict: an allow for a deny, a deny for an
	// allow, or a deny with another reason.
	outcomeWrong
	// outcomeInternal is an in-band internal error (an ext_authz
	// error_response, a Check reply with reason internal), such as a check
	// that ran past the server's timeout: the server failed closed and
	// said so, which is not a wrong decision.
	outcomeInternal
)

// check compares a verdict with what a request of kind must get, and
// returns the outcome with a description when it is not outcomeRight.
func (v *verdict) check(kind int) (int, string) {
	if v.api == APIScopegate {
		want := [...]struct {
			allow  bool
			status int32
			reason int
		}{{true, 200, reasonOK}, {false, 403, reasonInsufficientScope}, {false, 401, reasonTokenInvalid}}[kind]
		if v.allow != want.allow || v.httpStatus != want.status || v.reason != want.reason {
			out := outcomeWrong
			if !v.allow && (v.httpStatus >= 500 || v.message == "internal") {
				out = outcomeInternal
			}
			return out, fmt.Sprintf("%s request: got allow=%v http_status=%d reason %q, want allow=%v http_status=%d",
				kinds[kind], v.allow, v.httpStatus, v.message, want.allow, want.status)
		}
		return outcomeRight, ""
	}
	want := [...]struct {
		code   int32
		kind   int
		status int32
	}{{0, respOK, 0}, {7, respDenied, 403}, {16, respDenied, 401}}[kind]
	if v.grpcCode != want.code || v.kind != want.kind || v.httpStatus != want.status {
		out := outcomeWrong
		if v.kind == respError {
			out = outcomeInternal
		}
		return out, fmt.Sprintf("%s request: got status %d %q, response kind %d, HTTP %d %s; want status %d, kind %d, HTTP %d",
			kinds[kind], v.grpcCode, v.message, v.kind, v.httpStatus, v.detail, want.code, want.kind, want.status)
	}
	return outcomeRight, ""
}
