package server

import (
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/scopegate/scopegate/envoy"
	"github.com/scopegate/scopegate/envoy/wire"
	"github.com/scopegate/scopegate/envoy/wire/wiretest"
)

// The lazy decoder (wire.ScanCheckRequest, envoy.RequestFromOffsets)
// against the full one: proto.Unmarshal, then envoy.RequestFromCheck and
// extAuthzHeaderSize.

// lazyResult is what the served Check gets from b through the lazy path,
// and whether that path took it.
func lazyResult(b []byte) (extAuthzInput, bool) {
	var o envoy.CheckOffsets
	var in extAuthzInput
	if !wire.ScanCheckRequest(b, &o) {
		return in, false
	}
	invalid, ok := envoy.RequestFromOffsets(string(b), &o, &in.req)
	in.invalid = invalid
	in.hs.count, in.hs.bytes = o.HeaderSize()
	envoy.TraceFromOffsets(string(b), &o, &in.trace)
	return in, ok
}

// traceView is what the funnel's trace-context look-ups find in in, for
// each of envoy.TraceHeaders; a value that is not valid UTF-8 counts as
// absent (the lazy path leaves it out).
func traceView(in *extAuthzInput) (v [envoy.NumTraceHeaders]string) {
	c := in.carrier()
	for i, name := range envoy.TraceHeaders {
		if s := c.lookup(name, http.CanonicalHeaderKey(name)); utf8.ValidString(s) {
			v[i] = s
		}
	}
	return v
}

// fullResult is the same through proto.Unmarshal and the translation of
// the decoded message.
func fullResult(b []byte) (extAuthzInput, error) {
	var m authv3.CheckRequest
	var in extAuthzInput
	if err := proto.Unmarshal(b, &m); err != nil {
		return in, err
	}
	in.fromMessage(&m)
	return in, nil
}

// compareLazy checks the lazy decoder against the full one on b: where
// proto.Unmarshal accepts b, the lazy path yields the same request (but
// for Attributes, which it leaves unread), the same request_invalid
// message and the same header sizes, or leaves b to the full decoder;
// where proto.Unmarshal rejects b, the lazy path rejects it too, unless
// the only fault is invalid UTF-8 in a string the translation does not
// read. It reports whether the lazy path took b.
func compareLazy(t *testing.T, b []byte) bool {
	t.Helper()
	lazy, took := lazyResult(b)
	full, err := fullResult(b)
	if err != nil {
		if took && !strings.Contains(err.Error(), "invalid UTF-8") {
			t.Fatalf("the lazy path accepted what proto.Unmarshal rejects (%v)", err)
		}
		return took
	}
	if !took {
		return false
	}
	full.req.Attributes = nil
	if ft, lt := traceView(&full), traceView(&lazy); ft != lt {
		t.Fatalf("trace context: lazy path %q, proto.Unmarshal %q", lt, ft)
	}
	full.msg, full.trace, lazy.msg, lazy.trace = carrier{}, [envoy.NumTraceHeaders]string{}, carrier{}, [envoy.NumTraceHeaders]string{}
	if !reflect.DeepEqual(full, lazy) {
		t.Fatalf("lazy path\n%+v\nproto.Unmarshal\n%+v", lazy, full)
	}
	return true
}

// TestLazyDecodeMatchesProto runs compareLazy on every request case, and
// checks that the lazy path takes the ones it is for.
func TestLazyDecodeMatchesProto(t *testing.T) {
	for name, tc := range wiretest.RequestCases(t) {
		t.Run(name, func(t *testing.T) {
			took := compareLazy(t, tc.B)
			// The lazy path takes what the fast decoder takes, and an
			// unread header that is not valid UTF-8.
			want := tc.Fast || name == "invalid UTF-8 header value"
			if took != want {
				t.Fatalf("lazy path taken = %v, want %v", took, want)
			}
		})
	}
}

// TestLazyDecodeUsedFieldsFailClosed: a field the translation reads that
// is not valid UTF-8 fails the call as proto.Unmarshal fails it, whichever
// field it is; one it does not read (an unlisted header, a peer label, the
// body) is never checked, and the request is decided.
func TestLazyDecodeUsedFieldsFailClosed(t *testing.T) {
	const bad = "\xc3("
	usual := func(edit func(*authv3.CheckRequest)) *authv3.CheckRequest {
		m := wiretest.EnvoyCheckRequest()
		edit(m)
		return m
	}
	http := func(m *authv3.CheckRequest) *authv3.AttributeContext_HttpRequest { return m.Attributes.Request.Http }
	used := map[string]*authv3.CheckRequest{
		"http.path":     usual(func(m *authv3.CheckRequest) { http(m).Path = "/a" + bad }),
		"http.method":   usual(func(m *authv3.CheckRequest) { http(m).Method = bad }),
		"http.host":     usual(func(m *authv3.CheckRequest) { http(m).Host = bad }),
		"http.id":       usual(func(m *authv3.CheckRequest) { http(m).Id = bad }),
		"http.scheme":   usual(func(m *authv3.CheckRequest) { http(m).Scheme = bad }),
		"authorization": usual(func(m *authv3.CheckRequest) { http(m).Headers["authorization"] = "Bearer " + bad }),
		":path when http.path is empty": usual(func(m *authv3.CheckRequest) {
			http(m).Path, http(m).Headers[":path"] = "", "/a"+bad
		}),
		"dpop":               usual(func(m *authv3.CheckRequest) { http(m).Headers["dpop"] = bad }),
		"x-forwarded-for":    usual(func(m *authv3.CheckRequest) { http(m).Headers["x-forwarded-for"] = bad }),
		"x-http-method":      usual(func(m *authv3.CheckRequest) { http(m).Headers["x-http-method"] = bad }),
		"source address":     usual(func(m *authv3.CheckRequest) { m.Attributes.Source.Address.GetSocketAddress().Address = bad }),
		"source certificate": usual(func(m *authv3.CheckRequest) { m.Attributes.Source.Certificate = bad }),
		"environment":        usual(func(m *authv3.CheckRequest) { m.Attributes.ContextExtensions["environment"] = bad }),
		"header_map value": usual(func(m *authv3.CheckRequest) {
			http(m).Headers = nil
			http(m).HeaderMap = &corev3.HeaderMap{Headers: []*corev3.HeaderValue{{Key: "Authorization", Value: "Bearer " + bad}}}
		}),
	}
	unused := map[string]*authv3.CheckRequest{
		"user-agent": usual(func(m *authv3.CheckRequest) { http(m).Headers["user-agent"] = bad }),
		"a header name": usual(func(m *authv3.CheckRequest) {
			http(m).Headers["x-"+bad] = "1"
		}),
		":path when http.path is set": usual(func(m *authv3.CheckRequest) { http(m).Headers[":path"] = "/a" + bad }),
		"peer label":                  usual(func(m *authv3.CheckRequest) { m.Attributes.Source.Labels = map[string]string{"app": bad} }),
		"destination address": usual(func(m *authv3.CheckRequest) {
			m.Attributes.Destination.Address.GetSocketAddress().Address = bad
		}),
		"http.body":             usual(func(m *authv3.CheckRequest) { http(m).Body = bad }),
		"another context value": usual(func(m *authv3.CheckRequest) { m.Attributes.ContextExtensions["zone"] = bad }),
		"an unread header_map value": usual(func(m *authv3.CheckRequest) {
			http(m).Headers = nil
			http(m).HeaderMap = &corev3.HeaderMap{Headers: []*corev3.HeaderValue{
				{Key: "accept", Value: bad}, {Key: "Authorization", RawValue: []byte("Bearer " + wiretest.Token)},
			}}
		}),
	}
	for name, m := range used {
		t.Run("used/"+name, func(t *testing.T) {
			b := marshalInvalidUTF8(t, m)
			if _, err := fullResult(b); err == nil {
				t.Fatal("proto.Unmarshal accepted the request: the case is wrong")
			}
			var in extAuthzInput
			if err := (Codec{}).Unmarshal(mem.BufferSlice{mem.SliceBuffer(b)}, &in); err == nil {
				t.Fatalf("the codec accepted invalid UTF-8 in %s: %+v", name, in.req)
			}
		})
	}
	for name, m := range unused {
		t.Run("unused/"+name, func(t *testing.T) {
			b := marshalInvalidUTF8(t, m)
			if !compareLazy(t, b) {
				t.Fatal("the lazy path left the request to the full decoder")
			}
			var in extAuthzInput
			if err := (Codec{}).Unmarshal(mem.BufferSlice{mem.SliceBuffer(b)}, &in); err != nil {
				t.Fatalf("the codec refused an unread field: %v", err)
			}
			if in.req.Authorization != "Bearer "+wiretest.Token || in.req.Path == "" {
				t.Fatalf("decoded %+v", in.req)
			}
		})
	}
}

// TestLazyDecodeManyHeaders: a request with more headers than the scan
// counts goes to the full decoder, which counts them all for the limits;
// a repeated key counts once, with its last value, as in the decoded map.
func TestLazyDecodeManyHeaders(t *testing.T) {
	m := wiretest.EnvoyCheckRequest()
	for i := range 70 {
		m.Attributes.Request.Http.Headers["x-h"+strconv.Itoa(i)] = "v"
	}
	b := wiretest.Marshal(t, m)
	if compareLazy(t, b) {
		t.Fatal("the lazy path took 80 headers")
	}
	var in extAuthzInput
	if err := (Codec{}).Unmarshal(mem.BufferSlice{mem.SliceBuffer(b)}, &in); err != nil || in.hs.count != 80 {
		t.Fatalf("decoded %d headers (%v), want 80", in.hs.count, err)
	}

	var h []byte
	for _, v := range []string{"xyz", "x"} {
		e := protowire.AppendTag(nil, wire.MapKey, protowire.BytesType)
		e = protowire.AppendString(e, "accept")
		e = protowire.AppendTag(e, wire.MapValue, protowire.BytesType)
		e = protowire.AppendString(e, v)
		h = protowire.AppendBytes(protowire.AppendTag(h, wire.HTTPHeaders, protowire.BytesType), e)
	}
	if !compareLazy(t, wiretest.WrapHTTP(h)) {
		t.Fatal("the lazy path left a repeated key to the full decoder")
	}
	if lazy, _ := lazyResult(wiretest.WrapHTTP(h)); lazy.hs != (headerSize{count: 1, bytes: len("accept") + 1}) {
		t.Fatalf("header size %+v, want one header of 7 bytes", lazy.hs)
	}
}

// marshalInvalidUTF8 marshals m, whose strings need not be valid UTF-8:
// proto.Marshal refuses such a proto3 string, so every string is
// marshalled as a placeholder of its length, then put back.
func marshalInvalidUTF8(t *testing.T, m *authv3.CheckRequest) []byte {
	t.Helper()
	var bads []string
	swap := func(s *string) {
		if !strings.Contains(*s, "\xc3(") {
			return
		}
		bads = append(bads, *s)
		*s = strings.Repeat("\x01", len(*s)-1) + string(rune('A'+len(bads)-1))
	}
	c := proto.Clone(m).(*authv3.CheckRequest)
	a := c.Attributes
	h := a.Request.Http
	for _, s := range []*string{&h.Path, &h.Method, &h.Host, &h.Id, &h.Scheme, &h.Body, &a.Source.Certificate,
		&a.Source.Address.GetSocketAddress().Address, &a.Destination.Address.GetSocketAddress().Address} {
		swap(s)
	}
	for _, mp := range []map[string]string{h.Headers, a.ContextExtensions, a.Source.Labels} {
		for k, v := range mp {
			swap(&v)
			if nk := k; strings.Contains(k, "\xc3(") {
				swap(&nk)
				delete(mp, k)
				mp[nk] = v
				continue
			}
			mp[k] = v
		}
	}
	for _, hv := range h.GetHeaderMap().GetHeaders() {
		swap(&hv.Value)
	}
	b, err := proto.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	out := string(b)
	for i, s := range bads {
		placeholder := strings.Repeat("\x01", len(s)-1) + string(rune('A'+i))
		if strings.Count(out, placeholder) != 1 {
			t.Fatalf("placeholder %d not found once", i)
		}
		out = strings.Replace(out, placeholder, s, 1)
	}
	return []byte(out)
}

// FuzzLazyDecode holds the lazy decoder to the full one (compareLazy) on
// arbitrary input, seeded with every request case, Envoy's raw header_map
// form and a merged map with repeated keys.
func FuzzLazyDecode(f *testing.F) {
	for _, tc := range wiretest.RequestCases(f) {
		f.Add(tc.B)
	}
	entry := func(k, v string) []byte {
		e := protowire.AppendTag(nil, wire.MapKey, protowire.BytesType)
		e = protowire.AppendString(e, k)
		e = protowire.AppendTag(e, wire.MapValue, protowire.BytesType)
		e = protowire.AppendString(e, v)
		return protowire.AppendBytes(protowire.AppendTag(nil, wire.HTTPHeaders, protowire.BytesType), e)
	}
	var dup []byte
	for _, kv := range [][2]string{{"authorization", "Bearer a"}, {"accept", "x"}, {"authorization", "Bearer b"}, {"accept", "yy"},
		{"traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}, {"traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"}, {"x-b3-traceid", "80f198ee56343ba864fe8b2a57d3eff7"}} {
		dup = append(dup, entry(kv[0], kv[1])...)
	}
	f.Add(wiretest.WrapHTTP(dup))
	raw := wiretest.EnvoyCheckRequest()
	raw.Attributes.Request.Http.Headers = nil
	raw.Attributes.Request.Http.HeaderMap = &corev3.HeaderMap{Headers: []*corev3.HeaderValue{
		{Key: "Authorization", RawValue: []byte("Bearer a")}, {Key: "authorization", Value: "Bearer b"},
		{Key: "X-Forwarded-For", Value: "10.0.0.1"}, {Key: "x-forwarded-for", RawValue: []byte{0xff}},
		{Key: "X-HTTP-Method-Override", Value: "DELETE"}, {Key: ":method", Value: "GET"},
		{Key: "traceparent", RawValue: []byte("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")}, {Key: "traceparent", Value: "00-second"},
		{Key: "b3", RawValue: []byte{0xff, '-', '1'}}, {Key: "tracestate", Value: "vendor=1"},
	}}
	raw.Attributes.Request.Http.Method = ""
	f.Add(wiretest.Marshal(f, raw))
	f.Fuzz(func(t *testing.T, b []byte) {
		compareLazy(t, b)
	})
}
