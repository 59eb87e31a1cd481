package wire

import (
	"math"
	"unicode/utf8"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/structpb"
)

// The CheckResponse fast path. proto.Marshal walks a CheckResponse by
// reflection and allocates while doing it (about a dozen allocations for
// an allow, most of them in the dynamic metadata's map); AppendCheckResponse
// writes the same message straight into the caller's buffer, allocating
// nothing when the buffer is large enough.
//
// It covers every field a CheckResponse has in go-control-plane v1.40
// except the deprecated or unused ones scopegate never sets
// (status.details, HeaderValueOption.append, OkHttpResponse's own
// dynamic_metadata and query_parameters_to_set); on those, on unknown
// fields, on invalid UTF-8 and on nil list or map elements it gives up and
// the caller runs proto.Marshal, so the bytes always decode to the message
// proto.Marshal would have sent. A test pins the field lists to the
// descriptors, so a go-control-plane upgrade that adds a field fails the
// build's tests instead of dropping the field.

// MaxStructDepth bounds the recursion into nested Structs and lists;
// deeper metadata goes to proto.Marshal (which has its own limit).
const MaxStructDepth = 32

// respEncoder appends one CheckResponse. ok turns false at the first thing
// outside the fast path; the bytes are then discarded.
type respEncoder struct {
	b  []byte
	ok bool
}

// AppendCheckResponse appends m's encoding to b. It reports false when m
// needs proto.Marshal; the returned slice is then b unchanged.
func AppendCheckResponse(b []byte, m *authv3.CheckResponse) ([]byte, bool) {
	e := respEncoder{b: b, ok: true}
	e.known(m)
	if s := m.GetStatus(); s != nil {
		e.known(s)
		if len(s.GetDetails()) > 0 {
			return b, false
		}
		at := e.open(CheckResponseStatus)
		e.varint(StatusCode, uint64(int64(s.GetCode())))
		e.str(StatusMessage, s.GetMessage())
		e.close(at)
	}
	switch r := m.GetHttpResponse().(type) {
	case nil:
	case *authv3.CheckResponse_DeniedResponse:
		e.denied(CheckResponseDenied, r.DeniedResponse)
	case *authv3.CheckResponse_ErrorResponse:
		e.denied(CheckResponseError, r.ErrorResponse)
	case *authv3.CheckResponse_OkResponse:
		e.okResponse(r.OkResponse)
	default:
		return b, false
	}
	if md := m.GetDynamicMetadata(); md != nil {
		at := e.open(CheckResponseDynamicMetadata)
		e.structFields(md, 0)
		e.close(at)
	}
	if !e.ok {
		return b, false
	}
	return e.b, true
}

// known checks that m carries no unknown fields, which only
// proto.Marshal writes back.
func (e *respEncoder) known(m interface{ ProtoReflect() protoreflect.Message }) {
	if len(m.ProtoReflect().GetUnknown()) > 0 {
		e.ok = false
	}
}

// open starts a length-delimited field, reserving one byte for a length
// below 128 (the usual case); close fills it in, moving the content when
// the length needs more bytes.
func (e *respEncoder) open(num protowire.Number) int {
	e.b = protowire.AppendTag(e.b, num, protowire.BytesType)
	e.b = append(e.b, 0)
	return len(e.b)
}

func (e *respEncoder) close(start int) {
	n := len(e.b) - start
	if n < 0x80 {
		e.b[start-1] = byte(n)
		return
	}
	extra := protowire.SizeVarint(uint64(n)) - 1
	e.b = append(e.b, make([]byte, extra)...)
	copy(e.b[start+extra:], e.b[start:start+n])
	protowire.AppendVarint(e.b[:start-1], uint64(n))
}

func (e *respEncoder) varint(num protowire.Number, v uint64) {
	if v == 0 {
		return
	}
	e.b = protowire.AppendTag(e.b, num, protowire.VarintType)
	e.b = protowire.AppendVarint(e.b, v)
}

// str appends a proto3 string field (nothing when empty).
func (e *respEncoder) str(num protowire.Number, s string) {
	if s == "" {
		return
	}
	e.strAlways(num, s)
}

// strAlways appends a string even when empty (repeated fields, map keys).
func (e *respEncoder) strAlways(num protowire.Number, s string) {
	if !utf8.ValidString(s) {
		e.ok = false
		return
	}
	e.b = protowire.AppendTag(e.b, num, protowire.BytesType)
	e.b = protowire.AppendString(e.b, s)
}

func (e *respEncoder) denied(num protowire.Number, d *authv3.DeniedHttpResponse) {
	if d == nil {
		e.ok = false
		return
	}
	e.known(d)
	at := e.open(num)
	if st := d.GetStatus(); st != nil {
		e.known(st)
		s := e.open(DeniedStatus)
		e.varint(HTTPStatusCode, uint64(int64(st.GetCode())))
		e.close(s)
	}
	e.headers(DeniedHeaders, d.GetHeaders())
	e.str(DeniedBody, d.GetBody())
	e.close(at)
}

func (e *respEncoder) okResponse(o *authv3.OkHttpResponse) {
	if o == nil {
		e.ok = false
		return
	}
	e.known(o)
	//lint:ignore SA1019 the deprecated field must be recognized to be refused
	if o.GetDynamicMetadata() != nil || len(o.GetQueryParametersToSet()) > 0 {
		e.ok = false
		return
	}
	at := e.open(CheckResponseOK)
	e.headers(OKHeaders, o.GetHeaders())
	for _, h := range o.GetHeadersToRemove() {
		e.strAlways(OKHeadersToRemove, h)
	}
	e.headers(OKResponseHeadersToAdd, o.GetResponseHeadersToAdd())
	for _, q := range o.GetQueryParametersToRemove() {
		e.strAlways(OKQueryParametersToRemove, q)
	}
	e.close(at)
}

func (e *respEncoder) headers(num protowire.Number, hs []*corev3.HeaderValueOption) {
	for _, h := range hs {
		//lint:ignore SA1019 the deprecated field must be recognized to be refused
		if h == nil || h.GetAppend() != nil {
			e.ok = false
			return
		}
		e.known(h)
		at := e.open(num)
		if hv := h.GetHeader(); hv != nil {
			e.known(hv)
			v := e.open(HeaderValueOptionHeader)
			e.str(HeaderValueKey, hv.GetKey())
			e.str(HeaderValueValue, hv.GetValue())
			if raw := hv.GetRawValue(); len(raw) > 0 {
				e.b = protowire.AppendTag(e.b, HeaderValueRawValue, protowire.BytesType)
				e.b = protowire.AppendBytes(e.b, raw)
			}
			e.close(v)
		}
		e.varint(HeaderValueOptionAppendAction, uint64(int64(h.GetAppendAction())))
		if h.GetKeepEmptyValue() {
			e.varint(HeaderValueOptionKeepEmptyValue, 1)
		}
		e.close(at)
	}
}

// structFields appends the fields of a Struct (the caller opened it).
func (e *respEncoder) structFields(s *structpb.Struct, depth int) {
	if depth > MaxStructDepth {
		e.ok = false
		return
	}
	e.known(s)
	for k, v := range s.GetFields() {
		if v == nil {
			e.ok = false
			return
		}
		at := e.open(StructFields)
		e.strAlways(MapKey, k)
		vat := e.open(MapValue)
		e.value(v, depth)
		e.close(vat)
		e.close(at)
	}
}

// value appends the content of a Value.
func (e *respEncoder) value(v *structpb.Value, depth int) {
	e.known(v)
	switch k := v.GetKind().(type) {
	case nil:
	case *structpb.Value_NullValue:
		e.b = protowire.AppendTag(e.b, ValueNull, protowire.VarintType)
		e.b = protowire.AppendVarint(e.b, uint64(int64(k.NullValue)))
	case *structpb.Value_NumberValue:
		e.b = protowire.AppendTag(e.b, ValueNumber, protowire.Fixed64Type)
		e.b = protowire.AppendFixed64(e.b, math.Float64bits(k.NumberValue))
	case *structpb.Value_StringValue:
		e.strAlways(ValueString, k.StringValue)
	case *structpb.Value_BoolValue:
		e.b = protowire.AppendTag(e.b, ValueBool, protowire.VarintType)
		e.b = protowire.AppendVarint(e.b, protowire.EncodeBool(k.BoolValue))
	case *structpb.Value_StructValue:
		if k.StructValue == nil {
			e.ok = false
			return
		}
		at := e.open(ValueStruct)
		e.structFields(k.StructValue, depth+1)
		e.close(at)
	case *structpb.Value_ListValue:
		if k.ListValue == nil || depth > MaxStructDepth {
			e.ok = false
			return
		}
		e.known(k.ListValue)
		at := e.open(ValueList)
		for _, item := range k.ListValue.GetValues() {
			if item == nil {
				e.ok = false
				return
			}
			iat := e.open(ListValues)
			e.value(item, depth+1)
			e.close(iat)
		}
		e.close(at)
	default:
		e.ok = false
	}
}
