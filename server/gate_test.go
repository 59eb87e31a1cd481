package server

import (
	"bytes"
	"context"
	"io"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// stallConn is an HTTP/2 connection that opens gRPC streams with a
// HEADERS frame and never sends their DATA: calls whose message never
// arrives. It answers the server's SETTINGS and PINGs and counts the
// streams the server ends (RST_STREAM, or trailers ending the stream).
type stallConn struct {
	conn   net.Conn
	fr     *http2.Framer
	wmu    sync.Mutex
	nextID uint32
	ended  *atomic.Int64
	done   chan struct{}
}

func dialStall(t *testing.T, addr string, ended *atomic.Int64) *stallConn {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c := &stallConn{conn: conn, fr: http2.NewFramer(conn, conn), nextID: 1, ended: ended, done: make(chan struct{})}
	if _, err := io.WriteString(conn, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	if err := c.fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	go c.read()
	t.Cleanup(func() { conn.Close(); <-c.done })
	return c
}

func (c *stallConn) read() {
	defer close(c.done)
	for {
		f, err := c.fr.ReadFrame()
		if err != nil {
			return
		}
		c.wmu.Lock()
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				_ = c.fr.WriteSettingsAck()
			}
		case *http2.PingFrame:
			if !f.IsAck() {
				_ = c.fr.WritePing(true, f.Data)
			}
		case *http2.RSTStreamFrame:
			c.ended.Add(1)
		case *http2.HeadersFrame:
			if f.StreamEnded() {
				c.ended.Add(1)
			}
		}
		c.wmu.Unlock()
	}
}

// open opens n streams of the ext_authz Check, without a grpc-timeout,
// and sends nothing more on them.
func (c *stallConn) open(t *testing.T, n int) {
	t.Helper()
	var buf bytes.Buffer
	enc := hpack.NewEncoder(&buf)
	for _, f := range []hpack.HeaderField{
		{Name: ":method", Value: "POST"}, {Name: ":scheme", Value: "http"},
		{Name: ":path", Value: authv3.Authorization_Check_FullMethodName}, {Name: ":authority", Value: "scopegate"},
		{Name: "content-type", Value: "application/grpc"}, {Name: "te", Value: "trailers"},
	} {
		if err := enc.WriteField(f); err != nil {
			t.Fatal(err)
		}
	}
	block := buf.Bytes()
	c.wmu.Lock()
	defer c.wmu.Unlock()
	for range n {
		if err := c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: c.nextID, BlockFragment: block, EndHeaders: true}); err != nil {
			t.Fatal(err)
		}
		c.nextID += 2
	}
}

// heapInUse returns the heap in use after a collection.
func heapInUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

// waitUntil polls cond until it holds or d passes.
func waitUntil(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if cond() {
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return cond()
}

// TestGateStalledStreams holds thousands of calls whose message never
// arrives: each holds at most its stream's goroutine, only up to
// MaxInflight are admitted (the rest are refused before any goroutine is
// spent), every one ends at the check timeout counted from stream start,
// and ordinary checks are answered within their deadline meanwhile.
func TestGateStalledStreams(t *testing.T) {
	if testing.Short() {
		t.Skip("opens thousands of streams")
	}
	const (
		timeout  = 3 * time.Second
		maxCalls = 2500
		conns    = 30
		perConn  = 100 // 3000 stalled streams in all, 500 over the cap
	)
	e := startE2E(t, func(c *Config) {
		c.CheckTimeout = timeout
		c.MaxInflight = maxCalls
	})
	good := mint(t, e.signer, "alice", "app", "items:read", time.Now(), time.Hour)
	ordinary := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		defer cancel()
		resp, err := e.extauthz.Check(ctx, extAuthzRequest("GET", "/api/items/1", "Bearer "+good))
		if err == nil && resp.GetStatus().GetCode() != 0 {
			t.Errorf("ordinary check denied: %v", resp.GetStatus())
		}
		return err
	}
	if err := ordinary(); err != nil { // the client connection is up
		t.Fatal(err)
	}
	addr := e.conn.Target()
	g0, h0 := runtime.NumGoroutine(), heapInUse()

	var ended atomic.Int64
	start := time.Now()
	sc := make([]*stallConn, 0, conns)
	for i := range conns {
		c := dialStall(t, addr, &ended)
		sc = append(sc, c)
		if i < conns*(maxCalls-200)/(conns*perConn) {
			c.open(t, perConn)
		}
	}
	// Below the cap: every stalled call is admitted and ordinary checks
	// are still answered.
	admittedFirst := int64(conns*(maxCalls-200)/(conns*perConn)) * perConn
	if !waitUntil(5*time.Second, func() bool { n, _ := e.srv.gate.stats(); return n >= admittedFirst }) {
		n, _ := e.srv.gate.stats()
		t.Fatalf("%d calls in flight, want the %d stalled ones", n, admittedFirst)
	}
	for i := range 20 {
		callStart := time.Now()
		if err := ordinary(); err != nil {
			t.Fatalf("ordinary check %d beside %d stalled calls: %v", i, admittedFirst, err)
		}
		if took := time.Since(callStart); took > 500*time.Millisecond {
			t.Errorf("ordinary check took %v", took)
		}
	}
	// Over the cap: the rest of the connections open their streams too.
	for _, c := range sc[admittedFirst/perConn:] {
		c.open(t, perConn)
	}
	total := int64(conns * perConn)
	if !waitUntil(5*time.Second, func() bool { _, r := e.srv.gate.stats(); return int64(r) >= total-maxCalls-40 }) {
		n, r := e.srv.gate.stats()
		t.Fatalf("%d in flight, %d refused; want about %d refused over the cap of %d", n, r, total-maxCalls, maxCalls)
	}
	inflight, refused := e.srv.gate.stats()
	gA, hA := runtime.NumGoroutine(), heapInUse()
	t.Logf("%d stalled streams over %d connections: %d in flight, %d refused; goroutines %d -> %d (+%d), heap in use %.1f -> %.1f MiB (+%.1f)",
		total, conns, inflight, refused, g0, gA, gA-g0, float64(h0)/(1<<20), float64(hA)/(1<<20), float64(hA-h0)/(1<<20))
	if inflight > maxCalls {
		t.Errorf("%d calls in flight, over the cap of %d", inflight, maxCalls)
	}
	// One goroutine per admitted call, and the connections' own (reader,
	// writer, and the test's reader): nothing per refused stream.
	if limit := maxCalls + 4*conns + 50; gA-g0 > limit {
		t.Errorf("goroutines grew by %d, want at most %d (the cap plus the connections)", gA-g0, limit)
	}
	if grew := int64(hA) - int64(h0); grew > 64<<20 {
		t.Errorf("heap in use grew by %.1f MiB under %d stalled streams, want under 64 MiB", float64(grew)/(1<<20), total)
	}
	// At the cap, a new call is refused in-band of gRPC, at once.
	if err := ordinary(); status.Code(err) != codes.ResourceExhausted && err != nil {
		t.Errorf("a call over the cap = %v, want ResourceExhausted", err)
	}

	// Every stalled call ends at the check timeout from its stream start,
	// and gives its slot back.
	if !waitUntil(timeout+5*time.Second, func() bool { n, _ := e.srv.gate.stats(); return n == 0 }) {
		n, _ := e.srv.gate.stats()
		t.Fatalf("%d calls still in flight %v after the stall began; the check timeout is %v", n, time.Since(start), timeout)
	}
	if took := time.Since(start); took < timeout {
		t.Errorf("stalled calls ended after %v, before the check timeout %v", took, timeout)
	}
	if got := ended.Load(); got < total {
		t.Errorf("the server ended %d of %d stalled streams", got, total)
	}
	if err := ordinary(); err != nil {
		t.Fatalf("ordinary check after the stall: %v", err)
	}
	if !waitUntil(5*time.Second, func() bool { return runtime.NumGoroutine()-g0 < 4*conns+50 }) {
		t.Errorf("goroutines %d after the stall ended, baseline %d", runtime.NumGoroutine(), g0)
	}
}
