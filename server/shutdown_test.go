package server

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/scopegate/scopegate/decision"
	"github.com/scopegate/scopegate/decision/decisiontest"
	"github.com/scopegate/scopegate/store/jwks"
)

// blockingKeys is a key source whose unknown-kid refresh blocks until
// released (or its context ends): a decision using it stays in flight as
// long as a test needs.
type blockingKeys struct {
	keys    []decision.Key
	entered chan struct{}
	once    sync.Once
	release chan struct{}
	// returned is set when a blocked refresh has returned.
	returned atomic.Bool
}

func (b *blockingKeys) Keys() []decision.Key { return b.keys }
func (b *blockingKeys) Epoch() uint64        { return 1 }
func (b *blockingKeys) RefreshUnknownKid(ctx context.Context, _ string) ([]decision.Key, bool) {
	b.once.Do(func() { close(b.entered) })
	select {
	case <-b.release:
	case <-ctx.Done():
	}
	b.returned.Store(true)
	return nil, false
}

// startBlocking starts a server whose issuer's key source blocks on an
// unknown kid, and returns a token naming one.
func startBlocking(t *testing.T, timeout time.Duration) (*e2e, *blockingKeys, string) {
	t.Helper()
	src := &blockingKeys{entered: make(chan struct{}), release: make(chan struct{})}
	e := startE2E(t, func(c *Config) {
		c.ShutdownTimeout = timeout
		c.Keys = decision.StaticKeyResolver(src)
	})
	keys, err := jwks.ParseSet(decisiontest.JWKS(e.signer))
	if err != nil {
		t.Fatal(err)
	}
	src.keys = keys
	e.srv.updateHealth()
	stranger, err := decisiontest.NewECSigner("unknown-kid")
	if err != nil {
		t.Fatal(err)
	}
	return e, src, mint(t, stranger, "alice", "app", "items:read", time.Now(), time.Hour)
}

// TestStopDrainsInFlight: Stop turns health NOT_SERVING at once, waits for
// the call in flight to finish (it gets its answer, not an error), then
// runs the shutdown hooks, then returns.
func TestStopDrainsInFlight(t *testing.T) {
	e, src, tok := startBlocking(t, 10*time.Second)
	hookSawDone := make(chan bool, 1)
	e.srv.OnShutdown(func(ctx context.Context) {
		if _, ok := ctx.Deadline(); !ok {
			t.Error("the shutdown hook's context has no deadline")
		}
		hookSawDone <- src.returned.Load()
	})

	type result struct {
		resp *authv3.CheckResponse
		err  error
	}
	inflight := make(chan result, 1)
	go func() {
		resp, err := e.extauthz.Check(context.Background(), extAuthzRequest("GET", "/api/items/1", "Bearer "+tok))
		inflight <- result{resp, err}
	}()
	<-src.entered

	stopped := make(chan struct{})
	go func() { e.srv.Stop(); close(stopped) }()
	waitFor(t, "NOT_SERVING", func() bool { return e.srv.servingStatus() == healthpb.HealthCheckResponse_NOT_SERVING })
	select {
	case <-stopped:
		t.Fatal("Stop returned while a call was in flight")
	case <-time.After(100 * time.Millisecond):
	}

	close(src.release)
	r := <-inflight
	if r.err != nil {
		t.Fatalf("the call in flight failed: %v", r.err)
	}
	if got := codes.Code(r.resp.GetStatus().GetCode()); got == codes.OK {
		t.Errorf("the call in flight was allowed with an unknown kid")
	}
	select {
	case <-stopped:
	case <-time.After(5 * time.Second):
		t.Fatal("Stop did not return after the call finished")
	}
	if !<-hookSawDone {
		t.Error("the shutdown hook ran before the call in flight finished")
	}
}

// TestStopBounded: a call that never finishes holds Stop no longer than
// ShutdownTimeout; the hooks still run.
func TestStopBounded(t *testing.T) {
	const timeout = 300 * time.Millisecond
	e, src, tok := startBlocking(t, timeout)
	hooked := make(chan struct{})
	e.srv.OnShutdown(func(context.Context) { close(hooked) })
	failed := make(chan error, 1)
	go func() {
		_, err := e.extauthz.Check(context.Background(), extAuthzRequest("GET", "/api/items/1", "Bearer "+tok))
		failed <- err
	}()
	<-src.entered

	start := time.Now()
	e.srv.Stop()
	if took := time.Since(start); took > timeout+2*time.Second {
		t.Errorf("Stop took %v with a %v bound", took, timeout)
	}
	select {
	case <-hooked:
	default:
		t.Error("the shutdown hook did not run")
	}
	if err := <-failed; err == nil {
		t.Error("the call cut off by the bound reported no error")
	}
}

// TestShutdownHooks: hooks run in order, once; a panicking hook does not
// keep the others from running.
func TestShutdownHooks(t *testing.T) {
	e := startE2E(t, nil)
	var got []int
	e.srv.OnShutdown(func(context.Context) { got = append(got, 1) })
	e.srv.OnShutdown(func(context.Context) { panic("hook failure") })
	e.srv.OnShutdown(func(context.Context) { got = append(got, 3) })
	// Let Serve start before stopping, or it reports ErrServerStopped.
	if _, err := healthpb.NewHealthClient(e.conn).Check(ctxT(t), &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatal(err)
	}
	e.srv.Stop()
	e.srv.Stop()
	if len(got) != 2 || got[0] != 1 || got[1] != 3 {
		t.Errorf("hooks ran %v, want [1 3]", got)
	}
}
