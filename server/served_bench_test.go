package server

import (
	"context"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/tap"
	"google.golang.org/protobuf/proto"

	"github.com/scopegate/scopegate/envoy/wire/wiretest"
	"github.com/scopegate/scopegate/store/audit"
)

// chainUnary composes interceptors as grpc.ChainUnaryInterceptor does.
func chainUnary(ints []grpc.UnaryServerInterceptor) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		var next func(i int) grpc.UnaryHandler
		next = func(i int) grpc.UnaryHandler {
			if i == len(ints) {
				return h
			}
			return func(ctx context.Context, req any) (any, error) { return ints[i](ctx, req, info, next(i+1)) }
		}
		return next(0)(ctx, req)
	}
}

func benchChain(s *Server) grpc.UnaryServerInterceptor {
	unary, _ := s.interceptors()
	return chainUnary(unary) // the gate's interceptor is measured in BenchmarkGateTap
}

// BenchmarkServedCheck is the ext_authz Check as the gRPC server runs it,
// without the network: decode, the interceptor chain, decide (cached
// token), metrics and audit, and the codec's encoding of the reply.
func BenchmarkServedCheck(b *testing.B) {
	e := startE2E(b, func(c *Config) { c.Audit.Sinks = []audit.Sink{discardAuditSink{}} })
	good := mint(b, e.signer, "alice", "app", "items:read", time.Now(), time.Hour)
	srv := benchExtAuthz(e.srv)
	chain := benchChain(e.srv)
	for name, req := range map[string]*authv3.CheckRequest{
		"allow":       extAuthzRequest("GET", "/api/items/1", "Bearer "+good),
		"deny":        extAuthzRequest("GET", "/api/items/1", ""),
		"allow-envoy": envoyShapedRequest("/api/items/1", "Bearer "+good),
	} {
		raw, err := proto.Marshal(req)
		if err != nil {
			b.Fatal(err)
		}
		dec := func(v any) error { return Codec{}.Unmarshal(benchBuffers(raw), v) }
		b.Run(name, func(b *testing.B) {
			ctx := envoyDeadline{context.Background()}
			run := func() {
				out, err := extAuthzCheckHandler(srv, ctx, dec, chain)
				if err != nil {
					b.Fatal(err)
				}
				if _, allowed := out.(*allowReply); allowed != (name != "deny") {
					b.Fatalf("%s: answered %v", name, out)
				}
				data, err := Codec{}.Marshal(out)
				if err != nil {
					b.Fatal(err)
				}
				data.Free()
			}
			run()
			e.srv.engine.WaitTokenCache()
			b.ReportAllocs()
			for b.Loop() {
				run()
			}
		})
	}
}

// envoyShapedRequest is the request Envoy sends for a browser or SDK
// call (wiretest.EnvoyCheckRequest: peers, time, ten headers) for path,
// carrying authz.
func envoyShapedRequest(path, authz string) *authv3.CheckRequest {
	req := wiretest.EnvoyCheckRequest()
	h := req.Attributes.Request.Http
	h.Path, h.Headers[":path"], h.Headers["authorization"] = path, path, authz
	return req
}

func benchBuffers(raw []byte) mem.BufferSlice { return mem.BufferSlice{mem.SliceBuffer(raw)} }

func benchExtAuthz(s *Server) any {
	return &ExtAuthz{funnel: s.funnel, responder: s.responder}
}

// BenchmarkGateTap is what admitting one gRPC call costs the transport:
// the stream's context (made by grpc in any case, the "stream" baseline),
// then the gate's admission and the slot's release when the stream ends,
// for a caller that sent a deadline (Envoy) and one that did not.
func BenchmarkGateTap(b *testing.B) {
	g := &gate{max: DefaultMaxInflight, timeout: DefaultCheckTimeout}
	info := &tap.Info{FullMethodName: authv3.Authorization_Check_FullMethodName}
	for _, bc := range []struct {
		name     string
		deadline bool
		gate     bool
	}{{"stream", true, false}, {"envoy-deadline", true, true}, {"no-deadline", false, true}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				var ctx context.Context
				var cancel context.CancelFunc
				if bc.deadline {
					ctx, cancel = context.WithTimeout(context.Background(), 200*time.Millisecond)
				} else {
					ctx, cancel = context.WithCancel(context.Background())
				}
				if bc.gate {
					sctx, err := g.tap(ctx, info)
					if err != nil {
						b.Fatal(err)
					}
					// The handler answers, then the stream ends.
					_, _ = g.unary(sctx, nil, nil, func(context.Context, any) (any, error) { return nil, nil })
				}
				cancel()
			}
		})
	}
}

// BenchmarkServedCheckTracing is BenchmarkServedCheck's allow with
// tracing off and on: at 1% with no caller trace (the common case: most
// checks are not sampled), under a caller's trace that is not sampled,
// and at 100% (every check a span, exported to a no-op exporter).
func BenchmarkServedCheckTracing(b *testing.B) {
	for _, bc := range []struct {
		name   string
		tr     Tracing
		parent string
	}{
		{"off", Tracing{}, ""},
		{"on-1pct-no-parent", Tracing{Sampler: "parentbased_traceidratio", SamplerArg: "0.01"}, ""},
		// The same request as on-unsampled-parent (its traceparent
		// header included), with tracing off: the pair isolates
		// tracing's cost from the longer request's.
		{"off-unsampled-parent", Tracing{}, droppedParent},
		{"on-unsampled-parent", Tracing{Sampler: "parentbased_traceidratio", SamplerArg: "0.01"}, droppedParent},
		{"on-100pct", Tracing{Sampler: "parentbased_always_on"}, sampledParent},
	} {
		b.Run(bc.name, func(b *testing.B) {
			tr := bc.tr
			if bc.name != "off" {
				tr.Exporter = tracetest.NewNoopExporter()
			}
			e := startE2E(b, func(c *Config) { c.Audit.Sinks = []audit.Sink{discardAuditSink{}}; c.Tracing = tr })
			good := mint(b, e.signer, "alice", "app", "items:read", time.Now(), time.Hour)
			req := extAuthzRequest("GET", "/api/items/1", "Bearer "+good)
			if bc.parent != "" {
				req.Attributes.Request.Http.Headers["traceparent"] = bc.parent
			}
			raw, err := proto.Marshal(req)
			if err != nil {
				b.Fatal(err)
			}
			dec := func(v any) error { return Codec{}.Unmarshal(benchBuffers(raw), v) }
			srv, chain := benchExtAuthz(e.srv), benchChain(e.srv)
			ctx := envoyDeadline{context.Background()}
			run := func() {
				out, err := extAuthzCheckHandler(srv, ctx, dec, chain)
				if err != nil {
					b.Fatal(err)
				}
				data, err := Codec{}.Marshal(out)
				if err != nil {
					b.Fatal(err)
				}
				data.Free()
			}
			run()
			e.srv.engine.WaitTokenCache()
			b.ReportAllocs()
			for b.Loop() {
				run()
			}
		})
	}
}
