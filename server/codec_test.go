package server

import (
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"

	"github.com/scopegate/scopegate/decision"
	"github.com/scopegate/scopegate/envoy"
	"github.com/scopegate/scopegate/envoy/wire/wiretest"
	scopegatev1 "github.com/scopegate/scopegate/proto/scopegate/v1"
)

// TestCodecDecodeMatchesProto checks that the codec decodes every case
// exactly as proto.Unmarshal does (same message, or an error for both),
// whether the fast decoder takes it or the codec falls back.
func TestCodecDecodeMatchesProto(t *testing.T) {
	for name, tc := range wiretest.RequestCases(t) {
		t.Run(name, func(t *testing.T) {
			var want, got authv3.CheckRequest
			werr := proto.Unmarshal(tc.B, &want)
			gerr := Codec{}.Unmarshal(mem.BufferSlice{mem.SliceBuffer(tc.B)}, &got)
			if (werr == nil) != (gerr == nil) {
				t.Fatalf("codec error %v, proto.Unmarshal error %v", gerr, werr)
			}
			if werr == nil && !proto.Equal(&got, &want) {
				t.Fatalf("codec decoded\n%v\nproto.Unmarshal decoded\n%v", &got, &want)
			}
		})
	}
}

// TestCodecDecodeOwnsItsStrings checks that the decoded message
// does not alias the gRPC buffer, which is reused once Unmarshal returns.
func TestCodecDecodeOwnsItsStrings(t *testing.T) {
	b := wiretest.Marshal(t, wiretest.EnvoyCheckRequest())
	var got authv3.CheckRequest
	if err := (Codec{}).Unmarshal(mem.BufferSlice{mem.SliceBuffer(b)}, &got); err != nil {
		t.Fatal(err)
	}
	for i := range b {
		b[i] = 'X'
	}
	if !proto.Equal(&got, wiretest.EnvoyCheckRequest()) {
		t.Fatalf("decoded message changed with the buffer:\n%v", &got)
	}
}

// TestCodecDecodeSplitBuffers decodes a message that arrives in
// several buffers, as a large message does.
func TestCodecDecodeSplitBuffers(t *testing.T) {
	b := wiretest.Marshal(t, wiretest.EnvoyCheckRequest())
	data := mem.BufferSlice{mem.SliceBuffer(b[:10]), mem.SliceBuffer(b[10:500]), mem.SliceBuffer(b[500:])}
	var got authv3.CheckRequest
	if err := (Codec{}).Unmarshal(data, &got); err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(&got, wiretest.EnvoyCheckRequest()) {
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
		"CheckRequest":        {wiretest.EnvoyCheckRequest(), func() proto.Message { return &authv3.CheckRequest{} }},
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
			if err := (Codec{}).Unmarshal(mem.BufferSlice{mem.SliceBuffer(wiretest.Marshal(t, tc.msg))}, back); err != nil {
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

// TestCodecEncodeMatchesProto checks that what the codec sends decodes to
// the message handed to it, exactly as with proto.Marshal (or fails where
// proto.Marshal fails), whether the fast encoder takes it or the codec
// falls back.
func TestCodecEncodeMatchesProto(t *testing.T) {
	for name, tc := range wiretest.ResponseCases(codecPolicy(t)) {
		t.Run(name, func(t *testing.T) {
			_, werr := proto.Marshal(tc.M)
			data, err := Codec{}.Marshal(tc.M)
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
			if !proto.Equal(&got, tc.M) {
				t.Fatalf("sent\n%v\nwant\n%v", &got, tc.M)
			}
		})
	}
}

// BenchmarkDecodeCheckRequest compares the standard decoder with the
// codec's on the usual Envoy request (ten headers, an 800-byte token).
// Compare with: benchstat -col /decoder.
func BenchmarkDecodeCheckRequest(b *testing.B) {
	data := wiretest.Marshal(b, wiretest.EnvoyCheckRequest())
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

// TestCodecAllowReply: what the codec sends for an allowReply is the
// Responder's message for the same decision, and an allow the fast encoder
// refuses (a value proto3 cannot carry) fails as proto.Marshal fails.
func TestCodecAllowReply(t *testing.T) {
	r := envoy.NewResponder(envoy.ResponderOptions{})
	d := decision.Decision{Allow: true, Policy: codecPolicy(t),
		Token: &decision.Token{Subject: "alice", ClientID: "app", Scopes: []string{"items:read"}}}
	data, err := Codec{}.Marshal(&allowReply{d: d, responder: r})
	if err != nil {
		t.Fatal(err)
	}
	var sent authv3.CheckResponse
	if err := proto.Unmarshal(data.Materialize(), &sent); err != nil || !proto.Equal(&sent, r.Response(&d)) {
		t.Errorf("Codec.Marshal sent %v (%v), want %v", &sent, err, r.Response(&d))
	}
	data.Free()
	bad := decision.Decision{Allow: true, Token: &decision.Token{Subject: "bad\xff", Scopes: []string{"a"}}}
	if _, err := (Codec{}).Marshal(&allowReply{d: bad, responder: r}); err == nil {
		t.Fatal("Codec.Marshal sent an invalid UTF-8 subject")
	}
}

// BenchmarkDecodeExtAuthz is what the served ext_authz path spends turning
// the bytes of Envoy's usual request into the decision's input: the
// codec's decode, the translation to a decision.Request and the header
// sizes the limits check.
func BenchmarkDecodeExtAuthz(b *testing.B) {
	data := wiretest.Marshal(b, wiretest.EnvoyCheckRequest())
	bs := mem.BufferSlice{mem.SliceBuffer(data)}
	b.ReportAllocs()
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		var in extAuthzInput
		if err := (Codec{}).Unmarshal(bs, &in); err != nil || in.invalid != "" || in.hs.count != 10 {
			b.Fatal(err, in.invalid)
		}
	}
}
