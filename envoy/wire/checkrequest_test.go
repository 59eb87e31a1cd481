package wire_test

import (
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/proto"

	"github.com/scopegate/scopegate/envoy/wire"
	"github.com/scopegate/scopegate/envoy/wire/wiretest"
)

// TestDecodeCheckRequestMatchesProto checks that the fast decoder takes
// exactly the cases it is meant to, and that what it decodes is what
// proto.Unmarshal decodes.
func TestDecodeCheckRequestMatchesProto(t *testing.T) {
	for name, tc := range wiretest.RequestCases(t) {
		t.Run(name, func(t *testing.T) {
			var fast authv3.CheckRequest
			if got := wire.DecodeCheckRequest(tc.B, &fast); got != tc.Fast {
				t.Fatalf("fast path taken = %v, want %v", got, tc.Fast)
			}
			if !tc.Fast {
				return
			}
			var want authv3.CheckRequest
			if err := proto.Unmarshal(tc.B, &want); err != nil {
				t.Fatalf("fast path accepted what proto.Unmarshal rejects (%v)", err)
			}
			if !proto.Equal(&fast, &want) {
				t.Fatalf("fast path decoded\n%v\nproto.Unmarshal decoded\n%v", &fast, &want)
			}
		})
	}
}

// TestDecodeCheckRequestOwnsItsStrings checks that the decoded message
// does not alias its input, which gRPC reuses once the codec returns.
func TestDecodeCheckRequestOwnsItsStrings(t *testing.T) {
	b := wiretest.Marshal(t, wiretest.EnvoyCheckRequest())
	var got authv3.CheckRequest
	if !wire.DecodeCheckRequest(b, &got) {
		t.Fatal("the usual request left the fast path")
	}
	for i := range b {
		b[i] = 'X'
	}
	if !proto.Equal(&got, wiretest.EnvoyCheckRequest()) {
		t.Fatalf("decoded message changed with its input:\n%v", &got)
	}
}

// FuzzDecodeCheckRequest checks the fast path against proto.Unmarshal on
// arbitrary input: whenever the fast path accepts, proto.Unmarshal must
// accept too and produce the same message.
func FuzzDecodeCheckRequest(f *testing.F) {
	for _, tc := range wiretest.RequestCases(f) {
		f.Add(tc.B)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var fast authv3.CheckRequest
		if !wire.DecodeCheckRequest(b, &fast) {
			return
		}
		var want authv3.CheckRequest
		if err := proto.Unmarshal(b, &want); err != nil {
			t.Fatalf("fast path accepted what proto.Unmarshal rejects (%v)", err)
		}
		if !proto.Equal(&fast, &want) {
			t.Fatalf("fast path decoded\n%v\nproto.Unmarshal decoded\n%v", &fast, &want)
		}
	})
}
