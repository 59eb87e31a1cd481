package server

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/scopegate/scopegate/decision"
	"github.com/scopegate/scopegate/decision/decisiontest"
	scopegatev1 "github.com/scopegate/scopegate/proto/scopegate/v1"
)

// Each limit is tested at its edge: exactly at the limit is served as
// usual, one past it is refused in the documented way.

// slowKeys serves a fixed key set; a token naming an unknown kid blocks in
// RefreshUnknownKid until release is closed or the call's context ends,
// which is how a hung JWKS endpoint looks to a decision.
type slowKeys struct {
	keys     atomic.Pointer[[]decision.Key]
	release  chan struct{}
	inflight atomic.Int64
	peak     atomic.Int64
}

func (k *slowKeys) Keys() []decision.Key {
	if p := k.keys.Load(); p != nil {
		return *p
	}
	return nil
}
func (k *slowKeys) Epoch() uint64 { return 1 }
func (k *slowKeys) RefreshUnknownKid(ctx context.Context, _ string) ([]decision.Key, bool) {
	n := k.inflight.Add(1)
	defer k.inflight.Add(-1)
	for {
		p := k.peak.Load()
		if n <= p || k.peak.CompareAndSwap(p, n) {
			break
		}
	}
	select {
	case <-k.release:
	case <-ctx.Done():
	}
	return nil, false
}

func keyOf(s *decisiontest.Signer) decision.Key {
	return decision.Key{Kid: s.Kid, Alg: s.Alg, Public: s.Public()}
}

// checkWithHeaders is a GET /orders/1 whose merged headers are exactly h.
func checkWithHeaders(h map[string]string) *authv3.CheckRequest {
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
		Http: &authv3.AttributeContext_HttpRequest{Method: "GET", Path: "/orders/1", Headers: h},
	}}}
}

func TestLimitsHeaderCount(t *testing.T) {
	const limit = 10
	e := startAttackServer(t, "attack-policy.yaml", func(c *Config) { c.MaxRequestHeaders = limit })
	tok := e.mint(t, e.ec1, e.claims("orders:read"), nil)
	headers := func(n int) map[string]string {
		h := map[string]string{"authorization": "Bearer " + tok}
		for i := 1; len(h) < n; i++ {
			h["x-pad-"+strings.Repeat("a", i)] = "v"
		}
		return h
	}
	raw := func(n int) *authv3.CheckRequest {
		hm := &corev3.HeaderMap{Headers: []*corev3.HeaderValue{{Key: "authorization", RawValue: []byte("Bearer " + tok)}}}
		for len(hm.Headers) < n {
			// Repeating one name is how a client inflates the count cheaply.
			hm.Headers = append(hm.Headers, &corev3.HeaderValue{Key: "x-pad", RawValue: []byte("v")})
		}
		return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
			Http: &authv3.AttributeContext_HttpRequest{Method: "GET", Path: "/orders/1", HeaderMap: hm},
		}}}
	}
	tests := map[string]struct {
		req  *authv3.CheckRequest
		want atkWant
	}{
		"merged at the limit":     {req: checkWithHeaders(headers(limit)), want: atkWant{allow: true, code: decision.OK}},
		"merged one over":         {req: checkWithHeaders(headers(limit + 1)), want: atkWant{code: decision.RequestInvalid, message: "more than 10 headers"}},
		"header_map at the limit": {req: raw(limit), want: atkWant{allow: true, code: decision.OK}},
		"header_map one over":     {req: raw(limit + 1), want: atkWant{code: decision.RequestInvalid, message: "more than 10 headers"}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) { tc.want.assert(t, send(t, e.client, tc.req, tok)) })
	}
}

func TestLimitsHeaderBytes(t *testing.T) {
	const limit = 4096
	e := startAttackServer(t, "attack-policy.yaml", func(c *Config) { c.MaxRequestHeaderBytes = limit })
	tok := e.mint(t, e.ec1, e.claims("orders:read"), nil)
	sized := func(total int) map[string]string {
		h := map[string]string{"authorization": "Bearer " + tok}
		used := len("authorization") + len("Bearer ") + len(tok) + len("x-pad")
		h["x-pad"] = strings.Repeat("p", total-used)
		return h
	}
	for name, tc := range map[string]struct {
		total int
		want  atkWant
	}{
		"at the limit": {total: limit, want: atkWant{allow: true, code: decision.OK}},
		"one over":     {total: limit + 1, want: atkWant{code: decision.RequestInvalid, message: "more than 4096 bytes"}},
	} {
		t.Run(name, func(t *testing.T) { tc.want.assert(t, send(t, e.client, checkWithHeaders(sized(tc.total)), tok)) })
	}

	// The Authorizer API counts its headers the same way.
	srvAuthz := scopegatev1.NewAuthorizerClient(e.conn)
	for name, tc := range map[string]struct {
		total int
		allow bool
		code  decision.Code
	}{
		"authorizer at the limit": {total: limit, allow: true, code: decision.OK},
		"authorizer one over":     {total: limit + 1, code: decision.RequestInvalid},
	} {
		t.Run(name, func(t *testing.T) {
			h := sized(tc.total)
			resp, err := srvAuthz.Check(atkCtx(t), &scopegatev1.CheckRequest{Method: "GET", Path: "/orders/1", Headers: h})
			if err != nil {
				t.Fatal(err)
			}
			if resp.GetAllow() != tc.allow || resp.GetReasons()[0].GetCode() != tc.code.String() {
				t.Fatalf("allow=%v reasons=%v, want %v %s", resp.GetAllow(), resp.GetReasons(), tc.allow, tc.code)
			}
		})
	}
}

func TestLimitsTokenSize(t *testing.T) {
	e := startAttackServer(t, "attack-policy.yaml", nil)
	// Tokens of this shape all have the same length (fixed-width claims,
	// fixed-size ES256 signatures), so the probe's length is every one's.
	probe := e.mint(t, e.ec1, withPadding(e.claims("orders:read"), 2000), nil)
	for name, tc := range map[string]struct {
		max  int
		want atkWant
	}{
		"at the limit": {max: len(probe), want: atkWant{allow: true, code: decision.OK}},
		"one over":     {max: len(probe) - 1, want: atkWant{code: decision.TokenInvalid, message: "longer than"}},
	} {
		t.Run(name, func(t *testing.T) {
			e := startAttackServer(t, "attack-policy.yaml", func(c *Config) { c.MaxTokenBytes = tc.max })
			tok := e.mint(t, e.ec1, withPadding(e.claims("orders:read"), 2000), nil)
			if len(tok) != len(probe) {
				t.Fatalf("token length %d, the probe's was %d: the limit would not sit at the edge", len(tok), len(probe))
			}
			tc.want.assert(t, send(t, e.client, checkWithHeaders(map[string]string{"authorization": "Bearer " + tok}), tok))
		})
	}
}

func TestLimitsPathLength(t *testing.T) {
	e := startAttackServer(t, "attack-policy.yaml", nil)
	tok := e.mint(t, e.ec1, e.claims("orders:read"), nil)
	const max = 8192
	for name, tc := range map[string]struct {
		path string
		want atkWant
	}{
		"at the limit":              {path: "/orders/" + strings.Repeat("a", max-len("/orders/")), want: atkWant{allow: true, code: decision.OK}},
		"at the limit with query":   {path: "/orders/" + strings.Repeat("a", max-len("/orders/")) + "?q=" + strings.Repeat("b", 100), want: atkWant{allow: true, code: decision.OK}},
		"one over":                  {path: "/orders/" + strings.Repeat("a", max+1-len("/orders/")), want: atkWant{code: decision.PathInvalid, message: "longer than 8192"}},
		"one over, needs slow path": {path: "/orders/./" + strings.Repeat("a", max+1-len("/orders/./")), want: atkWant{code: decision.PathInvalid, message: "longer than 8192"}},
	} {
		t.Run(name, func(t *testing.T) {
			req := checkWithHeaders(map[string]string{"authorization": "Bearer " + tok})
			req.Attributes.Request.Http.Path = tc.path
			tc.want.assert(t, send(t, e.client, req, tok))
		})
	}
}

func TestLimitsRecvMsgSize(t *testing.T) {
	const limit = 64 << 10
	e := startAttackServer(t, "attack-policy.yaml", func(c *Config) {
		c.MaxRecvMsgSize = limit
		c.MaxRequestHeaderBytes = 1 << 20 // let the gRPC limit be the one that bites
	})
	tok := e.mint(t, e.ec1, e.claims("orders:read"), nil)
	sized := func(size int) *authv3.CheckRequest {
		req := checkWithHeaders(map[string]string{"authorization": "Bearer " + tok, "x-pad": ""})
		base := proto.Size(req)
		// The pad's length prefix grows by a byte or two with the pad;
		// adjust until the message is exactly size bytes.
		for pad := size - base; pad > 0; pad-- {
			req.Attributes.Request.Http.Headers["x-pad"] = strings.Repeat("p", pad)
			if proto.Size(req) <= size {
				break
			}
		}
		if got := proto.Size(req); got != size {
			t.Fatalf("could not build a %d-byte request (got %d)", size, got)
		}
		return req
	}
	t.Run("at the limit", func(t *testing.T) {
		atkWant{allow: true, code: decision.OK}.assert(t, send(t, e.client, sized(limit), tok))
	})
	t.Run("one over", func(t *testing.T) {
		_, err := e.client.Check(atkCtx(t), sized(limit+1))
		if status.Code(err) != codes.ResourceExhausted {
			t.Fatalf("a message over MaxRecvMsgSize = %v, want ResourceExhausted (Envoy fails closed on it)", err)
		}
	})
}

// TestLimitsCheckTimeout hangs a decision in a key refetch that never
// answers: the server answers an internal error once CheckTimeout passes,
// and a client deadline shorter than it ends the call first.
func TestLimitsCheckTimeout(t *testing.T) {
	const timeout = 300 * time.Millisecond
	keys := &slowKeys{release: make(chan struct{})}
	t.Cleanup(func() { close(keys.release) })
	e := startAttackServer(t, "attack-policy.yaml", func(c *Config) {
		c.CheckTimeout = timeout
		c.Keys = decision.StaticKeyResolver(keys)
	})
	// The key source needs the signers startAttackServer made; it is read
	// only when a decision runs, so fill it in now.
	keys.keys.Store(&[]decision.Key{keyOf(e.ec1)})
	good := e.mint(t, e.ec1, e.claims("orders:read"), nil)
	hang := e.mint(t, e.attacker, e.claims("orders:read"), map[string]any{"kid": "new-key"})

	t.Run("a fast decision is untouched", func(t *testing.T) {
		atkWant{allow: true, code: decision.OK}.assert(t, send(t, e.client, checkWithHeaders(map[string]string{"authorization": "Bearer " + good}), good))
	})
	t.Run("a hung decision is an internal error at the timeout", func(t *testing.T) {
		start := time.Now()
		resp, err := e.client.Check(atkCtx(t), checkWithHeaders(map[string]string{"authorization": "Bearer " + hang}))
		took := time.Since(start)
		if err != nil {
			t.Fatalf("Check = %v, want an in-band answer", err)
		}
		if resp.GetErrorResponse() == nil || resp.GetStatus().GetMessage() != decision.Internal.String() {
			t.Fatalf("response %v, want an error_response with reason internal", resp)
		}
		if !strings.Contains(resp.GetErrorResponse().GetBody(), "check timeout") {
			t.Errorf("body %q does not name the check timeout", resp.GetErrorResponse().GetBody())
		}
		if took < timeout || took > timeout+2*time.Second {
			t.Errorf("answered after %v, want about %v", took, timeout)
		}
	})
	t.Run("a shorter client deadline wins", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, err := e.client.Check(ctx, checkWithHeaders(map[string]string{"authorization": "Bearer " + hang}))
		if status.Code(err) != codes.DeadlineExceeded {
			t.Fatalf("Check = %v, want DeadlineExceeded", err)
		}
		if took := time.Since(start); took > timeout {
			t.Errorf("took %v; the client's 50ms deadline should end it", took)
		}
	})
}

// TestLimitsCallerGoneIsNotAnswered drives the ext_authz handler
// directly: a decision that returns after the caller's own deadline passed
// (its key lookup cut short) is not sent as an answer, while one cut short
// by the server's check timeout is an in-band internal error. Either way
// exactly one decision is counted, as what was answered. Deterministic,
// unlike racing a client timer over loopback.
func TestLimitsCallerGoneIsNotAnswered(t *testing.T) {
	// The key set holds another key than the token's, so the decision
	// looks for the token's kid (an empty set is key_set_unavailable).
	known, err := decisiontest.NewECSigner("known-kid")
	if err != nil {
		t.Fatal(err)
	}
	keys := &slowKeys{}
	keys.keys.Store(&[]decision.Key{keyOf(known)})
	e, err := NewServer(Config{PolicyPath: "testdata/attack-policy.yaml", Logger: atkLogger(), CheckTimeout: 50 * time.Millisecond,
		Keys: decision.StaticKeyResolver(keys)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Stop)
	signer, err := decisiontest.NewECSigner("unknown-kid")
	if err != nil {
		t.Fatal(err)
	}
	tok, err := signer.Mint(decisiontest.StandardClaims("https://issuer.test/", "orders-api", "alice", "app", "orders:read", time.Hour, time.Now()), nil)
	if err != nil {
		t.Fatal(err)
	}
	// An unknown kid makes the decision wait in RefreshUnknownKid until
	// its context ends.
	var req extAuthzInput
	req.fromMessage(checkWithHeaders(map[string]string{"authorization": "Bearer " + tok}))
	x := &ExtAuthz{funnel: e.funnel, responder: e.responder}
	internal := func() float64 {
		v, _ := gather(t, e.metrics.Registry()).value(metricDecisions, "api", "envoy", "reason", "internal")
		return v
	}

	t.Run("the caller's deadline passed", func(t *testing.T) {
		before := internal()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
		defer cancel()
		resp, err := x.check(ctx, &req)
		if status.Code(err) != codes.DeadlineExceeded || resp != nil {
			t.Fatalf("check = %v, %v; want no response and DeadlineExceeded", resp, err)
		}
		if got := internal() - before; got != 1 {
			t.Errorf("%v internal decisions counted, want 1", got)
		}
	})
	t.Run("the caller cancelled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		resp, err := x.check(ctx, &req)
		if status.Code(err) != codes.Canceled || resp != nil {
			t.Fatalf("check = %v, %v; want no response and Canceled", resp, err)
		}
	})
	t.Run("the server's check timeout passed", func(t *testing.T) {
		before := internal()
		resp, err := x.check(context.Background(), &req)
		if err != nil {
			t.Fatalf("check error %v, want an in-band answer", err)
		}
		r, _ := resp.(*authv3.CheckResponse)
		if r.GetStatus().GetMessage() != decision.Internal.String() || !strings.Contains(r.GetErrorResponse().GetBody(), "check timeout") {
			t.Fatalf("response %v, want an internal error naming the check timeout", resp)
		}
		if got := internal() - before; got != 1 {
			t.Errorf("%v internal decisions counted, want 1", got)
		}
	})
}

// TestLimitsConcurrentStreams holds decisions open and checks that no
// more than MaxConcurrentStreams run at once on one connection.
func TestLimitsConcurrentStreams(t *testing.T) {
	const streams = 2
	keys := &slowKeys{release: make(chan struct{})}
	e := startAttackServer(t, "attack-policy.yaml", func(c *Config) {
		c.MaxConcurrentStreams = streams
		c.CheckTimeout = 30 * time.Second
		c.Keys = decision.StaticKeyResolver(keys)
	})
	keys.keys.Store(&[]decision.Key{keyOf(e.ec1)})
	var wg sync.WaitGroup
	for i := range 6 {
		tok := e.mint(t, e.attacker, e.claims("orders:read"), map[string]any{"kid": "new-" + strings.Repeat("k", i+1)})
		wg.Go(func() {
			_, _ = e.client.Check(atkCtx(t), checkWithHeaders(map[string]string{"authorization": "Bearer " + tok}))
		})
	}
	deadline := time.Now().Add(5 * time.Second)
	for keys.inflight.Load() < streams && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond) // give a third stream the chance to slip in
	if got := keys.inflight.Load(); got != streams {
		t.Errorf("%d decisions in flight on one connection, want exactly %d", got, streams)
	}
	close(keys.release)
	wg.Wait()
	if p := keys.peak.Load(); p > streams {
		t.Errorf("peak %d decisions in flight, limit %d", p, streams)
	}
}

func TestLimitsConfigValidate(t *testing.T) {
	for name, c := range map[string]Config{
		"negative header count": {PolicyPath: "p", MaxRequestHeaders: -1},
		"negative header bytes": {PolicyPath: "p", MaxRequestHeaderBytes: -1},
		"negative timeout":      {PolicyPath: "p", CheckTimeout: -time.Second},
	} {
		t.Run(name, func(t *testing.T) {
			err := c.Validate()
			if err == nil {
				t.Fatal("Validate accepted it")
			}
			field := map[string]string{"negative header count": "MaxRequestHeaders", "negative header bytes": "MaxRequestHeaderBytes", "negative timeout": "CheckTimeout"}[name]
			if !strings.Contains(err.Error(), field) {
				t.Errorf("error %q does not name %s", err, field)
			}
		})
	}
	d := (Config{PolicyPath: "p"}).withDefaults()
	if d.MaxRequestHeaders != DefaultMaxRequestHeaders || d.MaxRequestHeaderBytes != DefaultMaxRequestHeaderBytes || d.CheckTimeout != DefaultCheckTimeout {
		t.Errorf("defaults not applied: %+v", d)
	}
}

// BenchmarkFunnelLimits measures what the limits add to a Check: the
// header scan, and the deadline check for a caller that sent one (Envoy
// always does).
func BenchmarkFunnelLimits(b *testing.B) {
	f := &funnel{limits: newLimits(Config{MaxRequestHeaders: DefaultMaxRequestHeaders, MaxRequestHeaderBytes: DefaultMaxRequestHeaderBytes, CheckTimeout: DefaultCheckTimeout})}
	req := checkWithHeaders(map[string]string{
		":method": "GET", ":path": "/orders/1", ":authority": "api.test", ":scheme": "https",
		"authorization": "Bearer " + strings.Repeat("t", 700), "user-agent": "bench/1.0", "accept": "*/*",
		"x-request-id": "0123456789abcdef", "x-forwarded-for": "203.0.113.7", "x-forwarded-proto": "https",
	})
	ctx := envoyDeadline{context.Background()}
	b.ReportAllocs()
	for b.Loop() {
		bounded, stop := f.bound(ctx, time.Now())
		if stop != nil || bounded != ctx || f.limits.over(extAuthzHeaderSize(req)) != "" {
			b.Fatal("limits changed an ordinary request")
		}
	}
}

// envoyDeadline is a context whose deadline is always 200 ms away, as
// Envoy's ext_authz timeout sets on every call.
type envoyDeadline struct{ context.Context }

func (envoyDeadline) Deadline() (time.Time, bool) {
	return time.Now().Add(200 * time.Millisecond), true
}
