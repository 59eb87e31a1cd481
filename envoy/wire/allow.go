package wire

import (
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/scopegate/scopegate/decision"
	"github.com/scopegate/scopegate/envoy"
)

// The allow fast path. The Responder builds an allow as a CheckResponse:
// a structpb map and half a dozen small objects per call, which
// AppendCheckResponse then walks again. AppendAllow writes the same bytes
// straight from the decision (allow_test.go decodes every kind of allow and
// compares it with the Responder's message).

// AppendAllow appends the CheckResponse the Responder builds for the allow
// d (envoy.Responder.Response), field for field. It reports false when a
// value is not valid UTF-8, which only proto.Marshal reports properly.
func AppendAllow(b []byte, d *decision.Decision) ([]byte, bool) {
	e := respEncoder{b: b, ok: true}
	// status: an OK google.rpc.Status, all fields default.
	e.b = protowire.AppendTag(e.b, CheckResponseStatus, protowire.BytesType)
	e.b = append(e.b, 0)

	at := e.open(CheckResponseOK)
	up := envoy.UpstreamHeaders(d)
	for i := range up {
		e.header(OKHeaders, up[i].Name, up[i].Value)
	}
	for _, h := range envoy.HintHeaders(d) {
		e.header(OKHeaders, h.Name, h.Value)
	}
	if d.Policy != nil && d.Policy.Upstream.StripAuthorization {
		e.strAlways(OKHeadersToRemove, "authorization")
	}
	for _, h := range envoy.HintHeadersToRemove(d) {
		e.strAlways(OKHeadersToRemove, h)
	}
	e.close(at)

	var route, subject, client string
	if d.Route != nil {
		route = d.Route.Name
	}
	if d.Token != nil {
		subject, client = d.Token.Subject, d.Token.ClientID
	}
	md := e.open(CheckResponseDynamicMetadata)
	e.stringField(envoy.MetaRoute, route)
	e.stringField(envoy.MetaPolicyVersion, d.PolicyVersion())
	e.stringField(envoy.MetaSubject, subject)
	e.stringField(envoy.MetaClientID, client)
	e.stringField(envoy.MetaReason, decision.OK.String())
	f := e.open(StructFields)
	e.strAlways(MapKey, envoy.MetaScopesUsed)
	v := e.open(MapValue)
	l := e.open(ValueList)
	for s := range d.ScopesUsedSeq() {
		item := e.open(ListValues)
		e.strAlways(ValueString, s)
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
	hv := e.open(HeaderValueOptionHeader)
	e.str(HeaderValueKey, name)
	e.str(HeaderValueValue, value)
	e.close(hv)
	e.varint(HeaderValueOptionAppendAction, uint64(corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD))
	e.close(at)
}

// stringField appends one Struct field holding a string Value.
func (e *respEncoder) stringField(key, value string) {
	at := e.open(StructFields)
	e.strAlways(MapKey, key)
	v := e.open(MapValue)
	e.strAlways(ValueString, value)
	e.close(v)
	e.close(at)
}
