package server

import (
	"maps"
	"slices"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/scopegate/scopegate/decision"
	"github.com/scopegate/scopegate/envoy"
	"github.com/scopegate/scopegate/envoy/wire"
	"github.com/scopegate/scopegate/envoy/wire/wiretest"
)

// codecEntry says how the codec handles one RPC's messages: through a
// hand-written coder of package wire (fastRequest, fastResponse report
// whether it takes the usual message), or through the protobuf runtime
// (nil).
type codecEntry struct {
	request, response         protoreflect.FullName
	fastRequest, fastResponse func(t *testing.T) bool
}

// codecMethods is the codec's table of the main listener's RPCs.
// TestCodecMethodsMatchServices holds it to the services the server
// registers and to their generated descriptors, so a new RPC, ours or a
// library's, cannot reach the codec without an entry here saying how its
// messages are coded.
var codecMethods = map[string]codecEntry{
	"/envoy.service.auth.v3.Authorization/Check": {
		request: "envoy.service.auth.v3.CheckRequest", response: "envoy.service.auth.v3.CheckResponse",
		fastRequest: func(t *testing.T) bool {
			return wire.DecodeCheckRequest(wiretest.Marshal(t, wiretest.EnvoyCheckRequest()), &authv3.CheckRequest{})
		},
		fastResponse: func(t *testing.T) bool {
			d := decision.Decision{Allow: true, Token: &decision.Token{Subject: "alice", Scopes: []string{"a"}}}
			_, allow := wire.AppendAllow(nil, &d)
			deny := envoy.NewResponder(envoy.ResponderOptions{}).Response(&decision.Decision{Code: decision.TokenInvalid, Policy: codecPolicy(t)})
			_, denied := wire.AppendCheckResponse(nil, deny)
			return allow && denied
		},
	},
	"/scopegate.v1.Authorizer/Check":                            {request: "scopegate.v1.CheckRequest", response: "scopegate.v1.CheckResponse"},
	"/grpc.health.v1.Health/Check":                              {request: "grpc.health.v1.HealthCheckRequest", response: "grpc.health.v1.HealthCheckResponse"},
	"/grpc.health.v1.Health/List":                               {request: "grpc.health.v1.HealthListRequest", response: "grpc.health.v1.HealthListResponse"},
	"/grpc.health.v1.Health/Watch":                              {request: "grpc.health.v1.HealthCheckRequest", response: "grpc.health.v1.HealthCheckResponse"},
	"/grpc.reflection.v1.ServerReflection/ServerReflectionInfo": {request: "grpc.reflection.v1.ServerReflectionRequest", response: "grpc.reflection.v1.ServerReflectionResponse"},
	"/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo": {
		request: "grpc.reflection.v1alpha.ServerReflectionRequest", response: "grpc.reflection.v1alpha.ServerReflectionResponse"},
}

// TestCodecMethodsMatchServices checks the codec's method table against
// the listener: every method the server registers, and every method the
// generated descriptors declare for the services it registers, has an
// entry with the descriptor's request and response types, and there is no
// entry for anything else. Each entry's messages then go through the
// codec: the hand-written coders must take the usual message, and the
// others must round-trip through the runtime.
func TestCodecMethodsMatchServices(t *testing.T) {
	e := startE2E(t, nil)
	served := map[string]bool{}
	for svc, info := range e.srv.grpc.GetServiceInfo() {
		d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(svc))
		if err != nil {
			t.Errorf("service %s has no generated descriptor: %v", svc, err)
			continue
		}
		sd := d.(protoreflect.ServiceDescriptor)
		var registered []string
		for _, m := range info.Methods {
			registered = append(registered, m.Name)
		}
		var declared []string
		for i := range sd.Methods().Len() {
			m := sd.Methods().Get(i)
			declared = append(declared, string(m.Name()))
			full := "/" + svc + "/" + string(m.Name())
			served[full] = true
			entry, ok := codecMethods[full]
			if !ok {
				t.Errorf("%s is served but has no codec entry", full)
				continue
			}
			if entry.request != m.Input().FullName() || entry.response != m.Output().FullName() {
				t.Errorf("%s: codec entry says %s → %s, the descriptor %s → %s", full,
					entry.request, entry.response, m.Input().FullName(), m.Output().FullName())
			}
		}
		slices.Sort(registered)
		slices.Sort(declared)
		if !slices.Equal(registered, declared) {
			t.Errorf("%s: the server registers methods %v, the descriptor declares %v", svc, registered, declared)
		}
	}
	for _, full := range slices.Sorted(maps.Keys(codecMethods)) {
		if !served[full] {
			t.Errorf("codec entry %s is for a method the server does not serve", full)
		}
	}
	for full, entry := range codecMethods {
		t.Run(full, func(t *testing.T) {
			for _, side := range []struct {
				name protoreflect.FullName
				fast func(*testing.T) bool
			}{{entry.request, entry.fastRequest}, {entry.response, entry.fastResponse}} {
				if side.fast != nil {
					if !side.fast(t) {
						t.Errorf("%s: the hand-written coder refused the usual message", side.name)
					}
					continue
				}
				codecRoundTrip(t, side.name)
			}
		})
	}
}

// codecRoundTrip sends an empty message of type name through the codec
// both ways.
func codecRoundTrip(t *testing.T, name protoreflect.FullName) {
	t.Helper()
	mt, err := protoregistry.GlobalTypes.FindMessageByName(name)
	if err != nil {
		t.Errorf("%s: %v", name, err)
		return
	}
	data, err := Codec{}.Marshal(mt.New().Interface())
	if err != nil {
		t.Errorf("%s: Marshal: %v", name, err)
		return
	}
	got := mt.New().Interface()
	err = Codec{}.Unmarshal(mem.BufferSlice{mem.SliceBuffer(data.Materialize())}, got)
	data.Free()
	if err != nil || !proto.Equal(got, mt.New().Interface()) {
		t.Errorf("%s: Unmarshal: %v, got %v", name, err, got)
	}
}
