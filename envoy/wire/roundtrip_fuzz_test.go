package wire_test

import (
	"strings"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/proto"

	"github.com/scopegate/scopegate/decision"
	"github.com/scopegate/scopegate/envoy"
	"github.com/scopegate/scopegate/envoy/wire"
	"github.com/scopegate/scopegate/envoy/wire/wiretest"
)

// FuzzEncodeRoundTrip runs the hand-written coders against the protobuf
// runtime in both directions, on every message the runtime decodes from
// the input:
//
//   - ours, then the runtime: a CheckResponse encoded by
//     AppendCheckResponse decodes with proto.Unmarshal to an equal message
//     (proto.Equal), unless the encoder refused it;
//   - the runtime, then ours: a CheckRequest encoded by proto.Marshal
//     decodes with DecodeCheckRequest to an equal message, unless the
//     decoder refused it;
//   - ours for an allow: AppendAllow of an allow whose subject, client and
//     scopes come from the input decodes to the Responder's message.
//
// FuzzDecodeCheckRequest covers the decoder on bytes the runtime would not
// have written.
func FuzzEncodeRoundTrip(f *testing.F) {
	pol := responsePolicy(f)
	responder := envoy.NewResponder(envoy.ResponderOptions{})
	f.Add([]byte("alice\x00app items:read profile"))
	for _, tc := range wiretest.ResponseCases(pol) {
		if b, err := proto.Marshal(tc.M); err == nil {
			f.Add(b)
		}
	}
	for _, tc := range wiretest.RequestCases(f) {
		f.Add(tc.B)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var resp authv3.CheckResponse
		if proto.Unmarshal(b, &resp) == nil {
			if enc, ok := wire.AppendCheckResponse(nil, &resp); ok {
				var back authv3.CheckResponse
				if err := proto.Unmarshal(enc, &back); err != nil {
					t.Fatalf("AppendCheckResponse wrote what proto.Unmarshal rejects (%v):\n%v", err, &resp)
				}
				if !proto.Equal(&back, &resp) {
					t.Fatalf("AppendCheckResponse encoded\n%v\nproto.Unmarshal read it back as\n%v", &resp, &back)
				}
			}
		}
		var req authv3.CheckRequest
		if proto.Unmarshal(b, &req) == nil {
			enc, err := proto.Marshal(&req)
			if err != nil {
				t.Fatalf("proto.Marshal of a decoded request: %v", err)
			}
			var got authv3.CheckRequest
			if wire.DecodeCheckRequest(enc, &got) && !proto.Equal(&got, &req) {
				t.Fatalf("proto.Marshal encoded\n%v\nDecodeCheckRequest read it back as\n%v", &req, &got)
			}
		}
		subject, client, _ := strings.Cut(string(b), "\x00")
		d := decision.Decision{Allow: true, Policy: pol, Token: &decision.Token{Subject: subject, ClientID: client, Scopes: strings.Fields(client)}}
		if enc, ok := wire.AppendAllow(nil, &d); ok {
			var got authv3.CheckResponse
			if err := proto.Unmarshal(enc, &got); err != nil {
				t.Fatalf("AppendAllow wrote what proto.Unmarshal rejects (%v)", err)
			}
			if want := responder.Response(&d); !proto.Equal(&got, want) {
				t.Fatalf("AppendAllow encoded\n%v\nthe Responder builds\n%v", &got, want)
			}
		}
	})
}
