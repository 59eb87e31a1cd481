package harness

import (
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jws"
	"google.golang.org/protobuf/proto"

	"github.com/scopegate/scopegate/decision"
	"github.com/scopegate/scopegate/decision/decisiontest"
	"github.com/scopegate/scopegate/envoy"
	scopegatev1 "github.com/scopegate/scopegate/proto/scopegate/v1"
	"github.com/scopegate/scopegate/store/jwks"
)

// smallConfig is a run short enough for every `go test`.
func smallConfig(t *testing.T) Config {
	cfg := DefaultConfig()
	cfg.Requests = 300
	cfg.Concurrency = 4
	cfg.Conns = 2
	cfg.Rounds = 2
	cfg.Warmup = 0
	cfg.Tokens = 8
	cfg.Routes = 20
	cfg.Clients = 3
	cfg.Mix = Mix{Allow: 60, Scope: 20, BadSig: 20}
	cfg.JSON = filepath.Join(t.TempDir(), "bench.json")
	return cfg
}

func TestRunInProcess(t *testing.T) {
	cfg := smallConfig(t)
	cfg.API = APIBoth
	cfg.MissRate = 0.05
	cfg.Revocations = 5
	rep, out := runClean(t, cfg)
	if len(rep.Results) != 2 || rep.Results[0].API != APIEnvoy || rep.Results[1].API != APIScopegate {
		t.Fatalf("results for %+v, want envoy then scopegate", rep.Results)
	}
	for _, a := range rep.Results {
		for _, s := range []*ServerResult{&a.Scopegate, a.Noop} {
			if s == nil {
				t.Fatalf("%s: no no-op result", a.API)
			}
			if s.Requests != uint64(cfg.Requests) || len(s.Rounds) != cfg.Rounds || s.RPS <= 0 || s.Latency.P99 <= 0 {
				t.Errorf("%s %s: %d requests in %d rounds at %.0f rps, p99 %vµs; want %d in %d", a.API, s.Server,
					s.Requests, len(s.Rounds), s.RPS, s.Latency.P99, cfg.Requests, cfg.Rounds)
			}
			var sum uint64
			for _, k := range s.Kinds {
				sum += k.Requests
			}
			if sum != s.Requests {
				t.Errorf("%s %s: kinds add up to %d, want %d", a.API, s.Server, sum, s.Requests)
			}
		}
		if a.Scopegate.Kinds[KindScope].Requests == 0 || a.Scopegate.Kinds[KindBadSig].Requests == 0 {
			t.Errorf("%s: the mix sent no denies: %+v", a.API, a.Scopegate.Kinds)
		}
		if a.Scopegate.Misses == 0 {
			t.Errorf("%s: no never-seen token was sent at miss rate %v", a.API, cfg.MissRate)
		}
		if a.Scopegate.Prime == nil || a.Scopegate.Prime.Requests != uint64(2*cfg.Tokens) {
			t.Errorf("%s: priming %+v, want %d requests", a.API, a.Scopegate.Prime, 2*cfg.Tokens)
		}
		if a.Ratio == nil || a.Ratio.RPS <= 0 {
			t.Errorf("%s: ratio %+v", a.API, a.Ratio)
		}
	}
	// Every token was verified from scratch at least once (priming), and
	// every never-seen one when sent.
	if c := rep.TokenCache; c == nil || c.Misses < uint64(2*cfg.Tokens) || c.Hits == 0 {
		t.Errorf("token cache stats %+v", rep.TokenCache)
	}
	if rep.TokenBytes < 700 || rep.TokenBytes > 900 {
		t.Errorf("RS256 tokens are %d bytes, want 700-900 like an identity provider's", rep.TokenBytes)
	}
	if !strings.Contains(out, "ratio") {
		t.Errorf("printed report has no ratio line:\n%s", out)
	}

	// The JSON file holds the same figures under stable names.
	b, err := os.ReadFile(cfg.JSON)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{
		"config.mix", "config.concurrency", "load_avg", "token_bytes", "token_cache.misses",
		"results.0.api", "results.0.scopegate.rps", "results.0.scopegate.latency_us.p99", "results.0.scopegate.latency_us.p99_9",
		"results.0.scopegate.wrong", "results.0.scopegate.errors", "results.0.scopegate.kinds.badsig.requests",
		"results.0.noop.rps", "results.0.ratio.rps", "results.0.ratio.p99", "results.1.scopegate.rounds.1.rps",
	} {
		if _, ok := lookupJSON(doc, path); !ok {
			t.Errorf("JSON report has no %s", path)
		}
	}
	if v, _ := lookupJSON(doc, "results.0.scopegate.requests"); v != float64(cfg.Requests) {
		t.Errorf("JSON results.0.scopegate.requests = %v, want %d", v, cfg.Requests)
	}
}

// lookupJSON follows a dotted path (object keys, array indexes).
func lookupJSON(v any, path string) (any, bool) {
	for part := range strings.SplitSeq(path, ".") {
		switch x := v.(type) {
		case map[string]any:
			var ok bool
			if v, ok = x[part]; !ok {
				return nil, false
			}
		case []any:
			i, err := strconv.Atoi(part)
			if err != nil || i >= len(x) {
				return nil, false
			}
			v = x[i]
		default:
			return nil, false
		}
	}
	return v, true
}

// TestRunOpaque: --opaque issues the tokens at the stub authorization
// server, the in-process scopegate introspects each once and then answers
// from its cache, and every verdict (allow, insufficient scope, and a
// token the stub never issued) is the expected one.
func TestRunOpaque(t *testing.T) {
	cfg := smallConfig(t)
	cfg.API = APIEnvoy
	cfg.Opaque = true
	cfg.MissRate = 0.05
	var out strings.Builder
	cfg.Out = &out
	rep, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := rep.Failed(); err != nil {
		t.Fatalf("run failed: %v\n%s", err, out.String())
	}
	in := rep.Introspection
	if in == nil || in.Hits == 0 || in.Misses < uint64(cfg.Tokens) || in.Calls == 0 || in.Calls > in.Misses {
		t.Fatalf("introspection stats %+v, want hits, at least %d misses and at most one call per miss\n%s", in, cfg.Tokens, out.String())
	}
	if rep.TokenBytes != 43 {
		t.Errorf("opaque tokens of %d bytes, want 43", rep.TokenBytes)
	}
	if !strings.Contains(out.String(), "introspected") {
		t.Errorf("the report does not show the introspection figures:\n%s", out.String())
	}
	cfg.Target = "127.0.0.1:1"
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "--opaque") {
		t.Errorf("--opaque with --target: %v", err)
	}
}

// TestRunDPoP: the dpop shape sends DPoP-bound tokens, each request with a
// proof of its own (a reused one would be dpop_proof_replayed, a wrong
// verdict), against the same tokens as cached Bearer; every verdict is the
// expected one, and every proof was signed before the rounds.
func TestRunDPoP(t *testing.T) {
	cfg := smallConfig(t)
	cfg.API = APIEnvoy
	cfg.DPoP = true
	rep, out := runClean(t, cfg)
	if len(rep.Results) != 2 || rep.Results[1].Shape != ShapeDPoP {
		t.Fatalf("results %+v, want grpc then dpop", rep.Results)
	}
	d := rep.Results[1]
	if d.Noop == nil || d.Noop.Server != floorBearer || d.Scopegate.Requests != uint64(cfg.Requests) || d.Noop.Requests != uint64(cfg.Requests) {
		t.Fatalf("dpop result %+v / %+v, want %d requests each against the bearer floor", d.Scopegate, d.Noop, cfg.Requests)
	}
	if rep.DPoP == nil || rep.DPoP.Ahead < cfg.Requests || rep.DPoP.Inline != 0 {
		t.Fatalf("dpop stats %+v, want every proof signed ahead", rep.DPoP)
	}
	if !strings.Contains(out, "DPoP proofs:") {
		t.Errorf("the report does not show the proofs:\n%s", out)
	}
	cfg.API = APIScopegate
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "--dpop") {
		t.Errorf("--dpop with --api scopegate: %v", err)
	}
}

func TestRunDecideAndReload(t *testing.T) {
	cfg := smallConfig(t)
	cfg.API = APIDecide
	cfg.Requests = 0
	cfg.Duration = 300 * time.Millisecond
	cfg.Rounds = 1
	cfg.SoakReload = 40 * time.Millisecond
	cfg.RSS = true
	rep, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := rep.Failed(); err != nil {
		t.Fatal(err)
	}
	r := rep.Results[0]
	if r.Noop != nil || r.Scopegate.Requests == 0 {
		t.Errorf("decide result %+v", r)
	}
	if rep.Reloads == nil || rep.Reloads.Reloads == 0 || rep.Reloads.Failed != 0 {
		t.Errorf("reloads %+v, want some, none failed", rep.Reloads)
	}
	if m := rep.Memory; m == nil || m.HeapInuseBytes == 0 || m.ClientTokenBytes == 0 ||
		m.CacheEntries == 0 || m.CacheBytes <= 0 || m.CacheMaxBytes != decision.DefaultTokenCacheBytes || m.HeapPerEntryBytes == 0 {
		t.Errorf("memory %+v", rep.Memory)
	}
}

// TestWrongDecisionsAreCounted loads the no-op server as if it were
// scopegate: it allows the requests that must be denied, and the harness
// must count each of them as wrong, not as errors.
func TestWrongDecisionsAreCounted(t *testing.T) {
	cfg := smallConfig(t)
	ns, err := startNoop()
	if err != nil {
		t.Fatal(err)
	}
	defer ns.stop()
	conns, err := dial(ns.addr, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer closeAll(conns)
	toks := &tokenSet{bearer: []string{"Bearer a", "Bearer b"}, bad: []string{"Bearer a!", "Bearer b!"}, routes: cfg.Routes}
	l := newLoad(cfg, toks, time.Now())
	for _, api := range []string{APIEnvoy, APIScopegate} {
		res := l.phase(context.Background(), &endpoint{name: "noop", conns: conns, verify: true}, api, 200, 0, 1)
		denies := res.kinds[1].Requests + res.kinds[2].Requests
		if res.errors != 0 || res.wrong != denies || res.kinds[0].Wrong != 0 || denies == 0 {
			t.Errorf("%s: %d errors, %d wrong of %d denies (allow wrong %d); want every deny wrong",
				api, res.errors, res.wrong, denies, res.kinds[0].Wrong)
		}
		if res.firstWrong == "" {
			t.Errorf("%s: no description of the first wrong decision", api)
		}
	}
}

// TestEncodersMatchTheTypes decodes the hand-encoded requests with the
// generated types.
func TestEncodersMatchTheTypes(t *testing.T) {
	e := newEncoder(3, 1_790_000_000)
	var got authv3.CheckRequest
	if err := proto.Unmarshal(e.envoy("GET", "/svc1/items/7", "Bearer tok", ""), &got); err != nil {
		t.Fatal(err)
	}
	a := got.GetAttributes()
	h := a.GetRequest().GetHttp()
	checks := map[string][2]any{
		"source":        {a.GetSource().GetAddress().GetSocketAddress().GetAddress(), benchSource},
		"source port":   {a.GetSource().GetAddress().GetSocketAddress().GetPortValue(), uint32(51234)},
		"destination":   {a.GetDestination().GetAddress().GetSocketAddress().GetAddress(), "10.0.0.2"},
		"time":          {a.GetRequest().GetTime().GetSeconds(), int64(1_790_000_000)},
		"method":        {h.GetMethod(), "GET"},
		"path":          {h.GetPath(), "/svc1/items/7"},
		"host":          {h.GetHost(), benchHost},
		"id":            {h.GetId(), "bench-3-1"},
		"headers":       {len(h.GetHeaders()), 10},
		":path":         {h.GetHeaders()[":path"], "/svc1/items/7"},
		"authorization": {h.GetHeaders()["authorization"], "Bearer tok"},
		"x-request-id":  {h.GetHeaders()["x-request-id"], "bench-3-1"},
	}
	for name, c := range checks {
		if c[0] != c[1] {
			t.Errorf("envoy request %s = %v, want %v", name, c[0], c[1])
		}
	}
	var sg scopegatev1.CheckRequest
	if err := proto.Unmarshal(e.scopegate("POST", "/orders", "tok"), &sg); err != nil {
		t.Fatal(err)
	}
	if sg.GetMethod() != "POST" || sg.GetPath() != "/orders" || sg.GetToken() != "tok" || sg.GetSourceAddress() != benchSource ||
		sg.GetRequestId() != "bench-3-2" || sg.GetHost() != benchHost || len(sg.GetHeaders()) != 2 {
		t.Errorf("scopegate request %v", &sg)
	}
}

// TestVerdicts decodes real responses and checks them against every kind:
// each matches its own kind only.
func TestVerdicts(t *testing.T) {
	pol, err := decision.Compile(generatePolicy(3, 0, 0, "v", ""), "policy.yaml", decision.CompileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	r := envoy.NewResponder(envoy.ResponderOptions{})
	decisions := [len(kinds)]decision.Decision{
		{Allow: true, Policy: pol, Token: &decision.Token{Subject: "u", ClientID: "c", Scopes: []string{"s0:read"}}},
		{Code: decision.InsufficientScope, Policy: pol},
		{Code: decision.TokenInvalid, Policy: pol},
	}
	reasons := [len(kinds)]string{"ok", "insufficient_scope", "token_invalid"}
	statuses := [len(kinds)]int32{200, 403, 401}
	for got := range kinds {
		b, err := proto.Marshal(r.Response(&decisions[got]))
		if err != nil {
			t.Fatal(err)
		}
		reply, err := proto.Marshal(&scopegatev1.CheckResponse{Allow: got == 0, HttpStatus: statuses[got],
			Reasons: []*scopegatev1.Reason{{Code: reasons[got]}, {Code: "ok"}}})
		if err != nil {
			t.Fatal(err)
		}
		ve, vs := verdict{api: APIEnvoy}, verdict{api: APIScopegate}
		if err := decodeCheckResponse(b, &ve); err != nil {
			t.Fatal(err)
		}
		if err := decodeCheckReply(reply, &vs); err != nil {
			t.Fatal(err)
		}
		for want := range kinds {
			for _, v := range []*verdict{&ve, &vs} {
				if out, msg := v.check(want); (out == outcomeRight) != (got == want) || (msg == "") != (got == want) {
					t.Errorf("%s response to a %s request, checked as %s: %q", v.api, kinds[got], kinds[want], msg)
				}
			}
		}
	}
	// A fail-closed internal error is counted apart from wrong decisions.
	b, err := proto.Marshal(r.Response(&decision.Decision{Code: decision.Internal, Detail: "timeout", Policy: pol}))
	if err != nil {
		t.Fatal(err)
	}
	vi := verdict{api: APIEnvoy}
	if err := decodeCheckResponse(b, &vi); err != nil {
		t.Fatal(err)
	}
	if out, msg := vi.check(0); out != outcomeInternal || !strings.Contains(msg, "timeout") {
		t.Errorf("internal error checked as outcome %d: %q", out, msg)
	}
	reply, _ := proto.Marshal(&scopegatev1.CheckResponse{HttpStatus: 500, Reasons: []*scopegatev1.Reason{{Code: "internal"}}})
	vs := verdict{api: APIScopegate}
	if err := decodeCheckReply(reply, &vs); err != nil {
		t.Fatal(err)
	}
	if out, _ := vs.check(0); out != outcomeInternal {
		t.Errorf("Check internal error checked as outcome %d", out)
	}
	if err := decodeCheckResponse([]byte{0x0a, 0x05}, &verdict{}); err == nil {
		t.Error("truncated response decoded")
	}
}

func TestGeneratedPolicyLoads(t *testing.T) {
	ss, _, err := signers()
	if err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct{ routes, clients int }{
		"one route":         {1, 0},
		"routes, clients":   {50, 7},
		"more clients":      {3, 10},
		"catalog, 1 client": {10, 1},
	} {
		t.Run(name, func(t *testing.T) {
			p, err := writePolicy(t.TempDir(), tc.routes, tc.clients, 0, "v1", "", ss)
			if err != nil {
				t.Fatal(err)
			}
			pol, err := loadPolicy(t, p)
			if err != nil {
				t.Fatal(err)
			}
			if got, want := len(pol.Routes), tc.routes+5; got != want {
				t.Errorf("%d routes, want %d", got, want)
			}
		})
	}
}

// loadPolicy loads a written policy with its JWKS file; the registry
// serves its keys.
func loadPolicy(t testing.TB, path string) (*decision.Policy, error) {
	reg := jwks.NewRegistry(context.Background())
	t.Cleanup(reg.Close)
	pol, err := reg.Load(context.Background(), path, decision.CompileOptions{})
	if err == nil {
		registries.Store(pol, reg)
	}
	return pol, err
}

// registries maps a policy loadPolicy returned to the registry serving
// its keys.
var registries sync.Map

func keysOf(pol *decision.Policy) decision.KeyResolver {
	r, _ := registries.Load(pol)
	return r.(*jwks.Registry)
}

func TestMint(t *testing.T) {
	s, err := decisiontest.NewEd25519Signer("k")
	if err != nil {
		t.Fatal(err)
	}
	m, err := newMinter(s, 5, 2, time.Unix(1_790_000_000, 0))
	if err != nil {
		t.Fatal(err)
	}
	toks, err := m.mintMany(0, 7, 2)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for i, tok := range toks {
		if seen[tok] {
			t.Errorf("token %d repeats", i)
		}
		seen[tok] = true
		if _, err := jws.Verify([]byte(tok), jws.WithKey(jwa.EdDSA(), s.Public())); err != nil {
			t.Errorf("token %d: %v", i, err)
		}
		if bad := badSignature(tok); bad == tok || len(bad) != len(tok) {
			t.Errorf("badSignature did not alter token %d in place", i)
		} else if _, err := jws.Verify([]byte(bad), jws.WithKey(jwa.EdDSA(), s.Public())); err == nil {
			t.Errorf("token %d with a bad signature verifies", i)
		}
	}
}

func TestMix(t *testing.T) {
	for in, want := range map[string]Mix{
		"allow=90,scope=5,badsig=5": {90, 5, 5},
		"badsig=1":                  {0, 0, 1},
		" allow = 3 , scope=0 ":     {3, 0, 0},
	} {
		got, err := ParseMix(in)
		if err != nil || got != want {
			t.Errorf("ParseMix(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "allow", "allow=-1", "allow=x", "deny=3", "allow=0,scope=0"} {
		if _, err := ParseMix(in); err == nil {
			t.Errorf("ParseMix(%q) succeeded", in)
		}
	}
}

func TestValidate(t *testing.T) {
	for name, tc := range map[string]struct {
		edit func(*Config)
		want string
	}{
		"defaults":          {func(*Config) {}, ""},
		"bad api":           {func(c *Config) { c.API = "http" }, "--api"},
		"decide and target": {func(c *Config) { c.API, c.Target = APIDecide, "127.0.0.1:1" }, "drop --target"},
		"no concurrency":    {func(c *Config) { c.Concurrency = 0 }, "--concurrency"},
		"no duration":       {func(c *Config) { c.Duration = 0 }, "--duration"},
		"miss rate":         {func(c *Config) { c.MissRate = 1.5 }, "--miss-rate"},
		"bad key":           {func(c *Config) { c.Key = "dsa" }, "--key"},
		"bad mint":          {func(c *Config) { c.Mint = "later" }, "--mint"},
		"few requests":      {func(c *Config) { c.Requests = 2 }, "fewer than --rounds"},
		"remote memprofile": {func(c *Config) { c.Target, c.MemProfile = "127.0.0.1:1", "m" }, "--memprofile"},
	} {
		t.Run(name, func(t *testing.T) {
			cfg := DefaultConfig()
			tc.edit(&cfg)
			err := cfg.Validate()
			if (err == nil) != (tc.want == "") || (err != nil && !strings.Contains(err.Error(), tc.want)) {
				t.Fatalf("Validate = %v, want an error naming %q", err, tc.want)
			}
		})
	}
}

func TestHistogram(t *testing.T) {
	h := NewHistogram()
	for v := 1; v <= 100_000; v++ {
		h.Record(time.Duration(v) * time.Microsecond)
	}
	for _, q := range []float64{0.5, 0.9, 0.99, 0.999} {
		want := q * 100_000 * float64(time.Microsecond)
		got := float64(h.Quantile(q))
		if got < want || got > want*(1+1.0/(1<<histSubBits))+1 {
			t.Errorf("Quantile(%v) = %v, want within %.1f%% above %v", q, time.Duration(got), 100.0/(1<<histSubBits), time.Duration(want))
		}
	}
	if h.Count() != 100_000 || h.Max() != 100*time.Millisecond {
		t.Errorf("count %d, max %v", h.Count(), h.Max())
	}
	o := NewHistogram()
	o.Record(time.Second)
	h.Merge(o)
	if h.Quantile(1) != time.Second || h.Count() != 100_001 {
		t.Errorf("after merge: max quantile %v, count %d", h.Quantile(1), h.Count())
	}
	// Every value lies in its bucket, and buckets tile the line.
	for _, v := range []int64{0, 1, 127, 128, 129, 255, 256, 1000, 1 << 20, 1<<40 + 12345, math.MaxInt64} {
		i := bucketOf(v)
		if v > bucketHigh(i) || (i > 0 && v <= bucketHigh(i-1)) {
			t.Errorf("value %d in bucket %d of high %d (previous high %d)", v, i, bucketHigh(i), bucketHigh(i-1))
		}
	}
	if NewHistogram().Quantile(0.5) != 0 {
		t.Error("empty histogram has a quantile")
	}
}

// BenchmarkDecideGenerated is the in-process decision on the generated
// policy at three sizes: a cached allow must cost the same on 10 and
// 10,000 routes.
func BenchmarkDecideGenerated(b *testing.B) {
	ss, _, err := signers()
	if err != nil {
		b.Fatal(err)
	}
	for _, clients := range []int{0, 10} {
		for _, routes := range []int{10, 1000, 10000} {
			b.Run("clients="+strconv.Itoa(clients)+"/routes="+strconv.Itoa(routes), func(b *testing.B) {
				benchDecide(b, ss, routes, clients)
			})
		}
	}
}

func benchDecide(b *testing.B, ss map[string]*decisiontest.Signer, routes, clients int) {
	p, err := writePolicy(b.TempDir(), routes, clients, 0, "v", "", ss)
	if err != nil {
		b.Fatal(err)
	}
	pol, err := loadPolicy(b, p)
	if err != nil {
		b.Fatal(err)
	}
	eng, err := decision.NewEngine(pol, decision.Options{Keys: keysOf(pol)})
	if err != nil {
		b.Fatal(err)
	}
	defer eng.Close()
	m, err := newMinter(ss[decisiontest.KindRSA], routes, clients, time.Now())
	if err != nil {
		b.Fatal(err)
	}
	t := routes / 2
	tok, err := m.mint(t)
	if err != nil {
		b.Fatal(err)
	}
	l := newLoad(DefaultConfig(), &tokenSet{routes: routes}, time.Now())
	req := decision.Request{Method: "GET", Path: routePath(routeOf(t, routes), 42), Authorization: "Bearer " + tok,
		AuthorizationCount: 1, SourceIP: l.sourceIP, Host: benchHost}
	ctx := context.Background()
	for range 100 {
		eng.Decide(ctx, &req)
		eng.WaitTokenCache()
	}
	b.ReportAllocs()
	for b.Loop() {
		if d := eng.Decide(ctx, &req); !d.Allow {
			b.Fatal(d.Code)
		}
	}
}
