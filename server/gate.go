package server

import (
	"context"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/tap"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	scopegatev1 "github.com/scopegate/scopegate/proto/scopegate/v1"
)

// The gRPC gate bounds every call from the moment its stream opens, before
// any byte of its message is read. grpc-go reads a unary call's message
// before the interceptors run, so a bound set there never covers a client
// that opens a stream (HEADERS) and never sends the message (DATA): each
// such call holds a goroutine until the connection closes. The gate runs
// as the transport's tap (grpc.InTapHandle), on the connection's reader
// goroutine, before a stream goroutine exists:
//
//   - it admits the call against a global cap on calls in flight
//     (Config.MaxInflight) and refuses it with RESOURCE_EXHAUSTED over the
//     cap, at the cost of one frame and no goroutine. Envoy then applies
//     its failure_mode_allow setting, as for any gRPC error; the cap is a
//     memory bound far above a healthy server's concurrency;
//   - for the unary calls (the two Checks, health Check) it arms the check
//     timeout from stream start, unless the caller's own deadline
//     (grpc-timeout, which Envoy always sends) is sooner: reading the
//     message counts toward the bound, and a stalled call ends with
//     DEADLINE_EXCEEDED after at most the check timeout.
//
// The slot is released when the stream ends (grpc cancels the stream's
// context on every way out), not when the deadline fires.

// DefaultMaxInflight bounds the gRPC calls in flight on one server, across
// connections. A decision takes microseconds, so a healthy server holds a
// handful; the cap bounds what stalled calls can hold (about 12 KiB each,
// a goroutine and its stream) to some 50 MiB.
const DefaultMaxInflight = 4096

// gate is the admission state of the gRPC listener.
type gate struct {
	max      int64
	timeout  time.Duration
	inflight atomic.Int64
	refused  atomic.Uint64
}

// errInflightFull is the status of a call refused over the cap.
var errInflightFull = status.Error(codes.ResourceExhausted, "scopegate: too many calls in flight (the server's --max-inflight limit); retry with backoff")

// boundedMethods are the unary methods whose whole call, reading the
// message included, the check timeout bounds. Streams (health Watch,
// reflection) are long-lived by design and only count toward the cap.
var boundedMethods = map[string]bool{
	authv3.Authorization_Check_FullMethodName:   true,
	scopegatev1.Authorizer_Check_FullMethodName: true,
	healthpb.Health_Check_FullMethodName:        true,
}

// tap implements tap.ServerInHandle.
func (g *gate) tap(ctx context.Context, info *tap.Info) (context.Context, error) {
	if g.inflight.Add(1) > g.max {
		g.inflight.Add(-1)
		g.refused.Add(1)
		return nil, errInflightFull
	}
	// ctx is the stream's: grpc cancels it when the stream ends, however
	// it ends, which gives the slot back. A unary call that reaches its
	// handler gives it back there instead (unary), sparing the goroutine
	// AfterFunc would start.
	t := &gateTicket{g: g}
	t.stop = context.AfterFunc(ctx, g.release)
	ctx = context.WithValue(ctx, gateTicketKey{}, t)
	if !boundedMethods[info.FullMethodName] {
		return ctx, nil
	}
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) <= g.timeout {
		return ctx, nil
	}
	// The derived context ends with the stream's (its parent), so the
	// timer never outlives the call; there is nothing to cancel here.
	bounded, cancel := context.WithTimeoutCause(ctx, g.timeout, errCheckTimeout)
	_ = cancel // the stream's context ending cancels bounded too
	return bounded, nil
}

func (g *gate) release() { g.inflight.Add(-1) }

// gateTicket is an admitted call's slot.
type gateTicket struct {
	g    *gate
	stop func() bool // stops the release at stream end
}

type gateTicketKey struct{}

// unary is the first unary interceptor: once the handler has answered, it
// gives the call's slot back itself, unless the stream already ended and
// did.
func (g *gate) unary(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	resp, err := handler(ctx, req)
	if t, ok := ctx.Value(gateTicketKey{}).(*gateTicket); ok && t.stop() {
		t.g.release()
	}
	return resp, err
}

// stats returns the gRPC calls in flight now and the calls refused over
// the cap since start.
func (g *gate) stats() (inflight int64, refused uint64) {
	return g.inflight.Load(), g.refused.Load()
}
