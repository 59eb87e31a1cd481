package harness

import (
	"context"
	"math"
	"math/rand/v2"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/scopegate/scopegate/decision"
	"github.com/valyala/fastjson"
)

func TestTargetEvaluate(t *testing.T) {
	for _, tc := range []struct {
		name string
		t    Target
		r    Ratios
		met  bool
	}{
		{"rps above", Target{"rps", ">=", 0.95}, Ratios{RPS: 0.96}, true},
		{"rps at", Target{"rps", ">=", 0.95}, Ratios{RPS: 0.95}, true},
		{"rps below", Target{"rps", ">=", 0.95}, Ratios{RPS: 0.94}, false},
		{"p99 under", Target{"p99", "<=", 1.1}, Ratios{RPS: 5, P99: 1.05}, true},
		{"p99 over", Target{"p99", "<=", 1.1}, Ratios{RPS: 0.5, P99: 1.11}, false},
		{"p99 reads p99, not rps", Target{"p99", "<=", 1.1}, Ratios{RPS: 1.0, P99: 2}, false},
		{"no figure", Target{"rps", ">=", 0.9}, Ratios{}, false},
		{"no p99", Target{"p99", "<=", 1.2}, Ratios{RPS: 1}, false},
		{"NaN", Target{"rps", ">=", 0.9}, Ratios{RPS: math.NaN()}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := tc.t.evaluate(&tc.r)
			if got.Met != tc.met {
				t.Errorf("%+v against %+v: met %v, want %v", tc.t, tc.r, got.Met, tc.met)
			}
			if !strings.Contains(got.String(), map[bool]string{true: ": met", false: "NOT met"}[tc.met]) {
				t.Errorf("String() = %q", got.String())
			}
		})
	}
}

func TestRatiosOf(t *testing.T) {
	s := &ServerResult{RPS: 900, Latency: Latency{P50: 10, P99: 33}}
	n := &ServerResult{RPS: 1000, Latency: Latency{P50: 20, P99: 30}}
	r := ratiosOf(s, n)
	if math.Abs(r.RPS-0.9) > 1e-9 || math.Abs(r.P50-0.5) > 1e-9 || math.Abs(r.P99-1.1) > 1e-9 {
		t.Errorf("ratios %+v, want rps 0.9, p50 0.5, p99 1.1", r)
	}
	if z := ratiosOf(s, &ServerResult{}); z.RPS != 0 {
		t.Errorf("ratio to a floor with no figure = %v, want 0", z.RPS)
	}
}

func TestWarnings(t *testing.T) {
	if w := loadWarning([]float64{2.5, 3, 4}, 2); !strings.Contains(w, "2.50") {
		t.Errorf("load 2.5 on 2 CPUs: warning %q, want one naming the load", w)
	}
	if w := loadWarning([]float64{0.4, 3, 4}, 2); w != "" {
		t.Errorf("load 0.4 on 2 CPUs: warning %q, want none", w)
	}
	if w := loadWarning(nil, 2); w != "" {
		t.Errorf("no load average: warning %q, want none", w)
	}
	if v := cv([]RoundResult{{RPS: 100}, {RPS: 100}}); v != 0 {
		t.Errorf("cv of equal rounds = %v, want 0", v)
	}
	// 100 and 130: sd 21.2, mean 115: 18%.
	if v := cv([]RoundResult{{RPS: 100}, {RPS: 130}}); math.Abs(v-0.1845) > 0.001 {
		t.Errorf("cv of 100, 130 = %v, want 0.1845", v)
	}
	steady := []RoundResult{{RPS: 1000}, {RPS: 1010}, {RPS: 990}}
	for _, tc := range []struct {
		name string
		a    APIResult
		want []string
	}{
		{"steady and under the floor", APIResult{Shape: ShapeForwardAuth, API: APIForwardAuth, Floor: floorNoop,
			Scopegate: ServerResult{Server: "scopegate", Rounds: steady}, Noop: &ServerResult{Server: "noop", Rounds: steady}, Ratio: &Ratios{RPS: 0.97}}, nil},
		{"spread rounds", APIResult{Shape: ShapeGRPC, API: APIEnvoy, Floor: floorNoop,
			Scopegate: ServerResult{Server: "scopegate", Rounds: []RoundResult{{RPS: 1000}, {RPS: 1500}}}, Noop: &ServerResult{Server: "noop", Rounds: steady}, Ratio: &Ratios{RPS: 1}}, []string{"scopegate's rounds spread"}},
		{"faster than doing nothing", APIResult{Shape: ShapeGRPC, API: APIEnvoy, Floor: floorNoop,
			Scopegate: ServerResult{Server: "scopegate", Rounds: steady}, Noop: &ServerResult{Server: "noop", Rounds: steady}, Ratio: &Ratios{RPS: 2.11}}, []string{"2.11x", "not possible"}},
		{"faster than cached is possible", APIResult{Shape: ShapeCold, API: APIEnvoy, Floor: floorCached,
			Scopegate: ServerResult{Server: "scopegate", Rounds: steady}, Noop: &ServerResult{Server: "cached", Rounds: steady}, Ratio: &Ratios{RPS: 1.2}}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ws := resultWarnings(&tc.a)
			if len(ws) != len(tc.want) && !(len(tc.want) > 0 && len(ws) == 1) {
				t.Fatalf("warnings %q, want %d matching %q", ws, len(tc.want), tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(strings.Join(ws, "\n"), w) {
					t.Errorf("warnings %q, want one with %q", ws, w)
				}
			}
		})
	}
}

func TestCheckHTTP(t *testing.T) {
	allow, scope, bad := []request{{kind: 0}}, []request{{kind: 1}}, []request{{kind: 2}}
	for _, tc := range []struct {
		name  string
		api   string
		rep   httpReply
		items []request
		want  int
	}{
		{"forward-auth allow", APIForwardAuth, httpReply{status: 200}, allow, outcomeRight},
		{"forward-auth scope deny", APIForwardAuth, httpReply{status: 403, reason: []byte("insufficient_scope")}, scope, outcomeRight},
		{"forward-auth deny, wrong reason", APIForwardAuth, httpReply{status: 403, reason: []byte("no_route")}, scope, outcomeWrong},
		{"forward-auth allow of a bad signature", APIForwardAuth, httpReply{status: 200}, bad, outcomeWrong},
		{"forward-auth deny of an allow", APIForwardAuth, httpReply{status: 401, reason: []byte("token_invalid")}, allow, outcomeWrong},
		{"forward-auth internal", APIForwardAuth, httpReply{status: 500, reason: []byte("internal")}, allow, outcomeInternal},
		{"nginx bad signature", APINginx, httpReply{status: 401, reason: []byte("token_invalid")}, bad, outcomeRight},
		{"nginx deny without scopegate's reason", APINginx, httpReply{status: 401}, bad, outcomeWrong},
		{"nginx 403 for a bad signature", APINginx, httpReply{status: 403, reason: []byte("insufficient_scope")}, bad, outcomeWrong},
		{"authzen allow", APIAuthZEN, httpReply{status: 200, body: []byte(`{"decision":true}`)}, allow, outcomeRight},
		{"authzen scope deny", APIAuthZEN, httpReply{status: 200, body: []byte(`{"decision":false,"context":{"id":"insufficient_scope"}}`)}, scope, outcomeRight},
		{"authzen deny for another reason", APIAuthZEN, httpReply{status: 200, body: []byte(`{"decision":false,"context":{"id":"request_invalid"}}`)}, scope, outcomeWrong},
		{"authzen allow of a bad signature", APIAuthZEN, httpReply{status: 200, body: []byte(`{"decision":true}`)}, bad, outcomeWrong},
		{"authzen decision as a string", APIAuthZEN, httpReply{status: 200, body: []byte(`{"decision":"true"}`)}, allow, outcomeWrong},
		{"authzen an array", APIAuthZEN, httpReply{status: 200, body: []byte(`[{"decision":true}]`)}, allow, outcomeWrong},
		{"authzen not JSON", APIAuthZEN, httpReply{status: 200, body: []byte(`ok`)}, allow, outcomeWrong},
		{"authzen 500", APIAuthZEN, httpReply{status: 500, body: []byte(`{}`)}, allow, outcomeInternal},
		{"batch right", APIAuthZENBatch, httpReply{status: 200, body: []byte(`{"evaluations":[{"decision":true},{"decision":false,"context":{"id":"token_invalid"}}]}`)}, []request{{kind: 0}, {kind: 2}}, outcomeRight},
		{"batch, one item wrong", APIAuthZENBatch, httpReply{status: 200, body: []byte(`{"evaluations":[{"decision":true},{"decision":true}]}`)}, []request{{kind: 0}, {kind: 2}}, outcomeWrong},
		{"batch, an item not an object", APIAuthZENBatch, httpReply{status: 200, body: []byte(`{"evaluations":[{"decision":true},true]}`)}, []request{{kind: 0}, {kind: 0}}, outcomeWrong},
		{"batch, an item missing", APIAuthZENBatch, httpReply{status: 200, body: []byte(`{"evaluations":[{"decision":true}]}`)}, []request{{kind: 0}, {kind: 0}}, outcomeWrong},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, msg := checkHTTP(new(fastjson.Parser), tc.api, &tc.rep, tc.items)
			if got != tc.want {
				t.Errorf("outcome %d (%s), want %d", got, msg, tc.want)
			}
			if (got == outcomeRight) != (msg == "") {
				t.Errorf("outcome %d with message %q", got, msg)
			}
		})
	}
}

// TestCheckHTTPNamesTheBatchItem: a wrong batch item is named, though its
// prefix is built only on failure.
func TestCheckHTTPNamesTheBatchItem(t *testing.T) {
	rep := httpReply{status: 200, body: []byte(`{"evaluations":[{"decision":true},{"decision":true}]}`)}
	out, msg := checkHTTP(new(fastjson.Parser), APIAuthZENBatch, &rep, []request{{kind: 0}, {kind: 2}})
	if out != outcomeWrong || !strings.HasPrefix(msg, "evaluations[1]: ") {
		t.Errorf("outcome %d, message %q, want wrong naming evaluations[1]", out, msg)
	}
	// The floor's answers are read without a verdict; reading one of each
	// shape must not fail.
	for _, api := range []string{APIForwardAuth, APIAuthZEN, APIAuthZENBatch} {
		readAnswer(new(fastjson.Parser), api, &rep)
	}
}

// TestMissRatePicks: at --miss-rate, that fraction of picks carries a
// token never sent before, each a different one, none a reused token.
func TestMissRatePicks(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Routes, cfg.Clients, cfg.Tokens = 5, 0, 3
	cfg.Mix = Mix{Allow: 1}
	ss, _, err := signers()
	if err != nil {
		t.Fatal(err)
	}
	m, err := newMinter(ss["ed25519"], cfg.Routes, cfg.Clients, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	for _, rate := range []float64{0.01, 0.1} {
		cfg.MissRate = rate
		toks := &tokenSet{bearer: []string{"Bearer a", "Bearer b", "Bearer c"}, bad: []string{"Bearer x", "Bearer y", "Bearer z"}, routes: cfg.Routes, minter: m, inline: true}
		l := newLoad(cfg, toks, time.Now())
		w := newTestWorker(l)
		const n = 20000
		seen := map[string]bool{}
		fresh := 0
		for range n {
			rq := w.pick(true)
			if !rq.fresh {
				if !strings.HasPrefix(rq.bearer, "Bearer ") || len(rq.bearer) != len("Bearer a") {
					t.Fatalf("reused pick carries %q", rq.bearer)
				}
				continue
			}
			fresh++
			if seen[rq.bearer] {
				t.Fatalf("never-seen token sent twice")
			}
			seen[rq.bearer] = true
		}
		got := float64(fresh) / n
		if math.Abs(got-rate) > rate*0.3 {
			t.Errorf("miss rate %v: %d of %d picks fresh (%.4f)", rate, fresh, n, got)
		}
		// The floor of the cold shape sends none.
		for range 1000 {
			if w.pick(false).fresh {
				t.Fatalf("pick(false) sent a never-seen token")
			}
		}
	}
}

func TestShapeList(t *testing.T) {
	var l ShapeList
	if err := l.Set("cold, forward-auth,cold"); err != nil || l.String() != "cold,forward-auth" {
		t.Errorf("Set: %v, %q", err, l.String())
	}
	if err := l.Set("all"); err != nil || len(l) != len(shapeOrder) {
		t.Errorf("all: %v, %q", err, l.String())
	}
	if err := l.Set("grpc,nope"); err == nil || !strings.Contains(err.Error(), `"nope"`) {
		t.Errorf("unknown shape: %v", err)
	}
	cfg := DefaultConfig()
	cfg.Shapes = ShapeList{ShapeCold}
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "--miss-rate") {
		t.Errorf("cold without --miss-rate: %v", err)
	}
	cfg.Shapes, cfg.Target = ShapeList{ShapeReload}, "127.0.0.1:1"
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "drop --target") {
		t.Errorf("reload with --target: %v", err)
	}
}

// TestRunShapes runs every shape briefly: every answer checked, each
// series against its floor with its targets judged.
func TestRunShapes(t *testing.T) {
	cfg := smallConfig(t)
	cfg.Shapes = ShapeList{ShapeForwardAuth, ShapeAuthZEN, ShapeAuthZENBatch, ShapeCold, ShapeReload, ShapeAudit}
	if _, err := exec.LookPath("nginx"); err == nil {
		cfg.Shapes = append(cfg.Shapes, ShapeNginx)
	} else {
		t.Log("nginx not installed: the nginx shape is not run (apt-get install nginx)")
	}
	cfg.MissRate = 0.1
	cfg.Batch = 3
	cfg.SoakReload = 20 * time.Millisecond
	// Timed rounds, long enough for reloads at that interval.
	cfg.Requests, cfg.Duration = 0, 300*time.Millisecond
	cfg.Key = "ed25519"
	var out, progress strings.Builder
	cfg.Out, cfg.Progress = &out, &progress
	rep, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := rep.Failed(); err != nil {
		t.Fatalf("run failed: %v\n%s", err, out.String())
	}
	if len(rep.Results) != len(cfg.Shapes) {
		t.Fatalf("%d results for %d shapes", len(rep.Results), len(cfg.Shapes))
	}
	floors := map[string]string{ShapeCold: floorCached, ShapeReload: floorStill, ShapeAudit: floorAudit}
	for i, a := range rep.Results {
		want := floors[cfg.Shapes[i]]
		if want == "" {
			want = floorNoop
		}
		if a.Shape != cfg.Shapes[i] || a.Floor != want || a.Noop == nil || a.Noop.Server != want && !(want == floorNoop && a.Noop.Server == serverNoop) {
			t.Errorf("result %d: shape %q floor %q, want %q against %q", i, a.Shape, a.Floor, cfg.Shapes[i], want)
		}
		if a.Scopegate.Requests == 0 || a.Noop.Requests == 0 {
			t.Errorf("%s: %d and %d requests answered", a.Shape, a.Scopegate.Requests, a.Noop.Requests)
		}
		if len(a.Targets) != len(shapes[a.Shape].targets) {
			t.Errorf("%s: %d targets judged, want %d", a.Shape, len(a.Targets), len(shapes[a.Shape].targets))
		}
		if a.Shape == ShapeAudit && (a.Audit == nil || a.Audit.Written < a.Scopegate.Requests || a.Audit.Dropped != 0) {
			t.Errorf("audit: counters %+v after %d requests, want every one written, none dropped", a.Audit, a.Scopegate.Requests)
		}
		if a.Shape != ShapeAudit && a.Audit != nil {
			t.Errorf("%s: audit counters %+v on a shape that audits nothing", a.Shape, a.Audit)
		}
		if a.Shape == ShapeCold && (a.Scopegate.Misses == 0 || a.Noop.Misses != 0) {
			t.Errorf("cold: %d misses sent to scopegate, %d to the cached floor", a.Scopegate.Misses, a.Noop.Misses)
		}
	}
	if rep.Reloads == nil || rep.Reloads.Reloads == 0 || rep.Reloads.Failed != 0 {
		t.Errorf("reloads %+v, want some, none failed", rep.Reloads)
	}
	if !strings.Contains(progress.String(), "round 1/2") || strings.Contains(out.String(), "round 1/2") {
		t.Errorf("progress lines belong on Progress only:\nprogress:\n%s\nout:\n%s", progress.String(), out.String())
	}
	if !strings.Contains(out.String(), "target:") {
		t.Errorf("report names no target:\n%s", out.String())
	}
}

func newTestWorker(l *load) *worker {
	return &worker{l: l, rng: rand.New(rand.NewPCG(7, 9)), enc: newEncoder(0, l.seconds), res: newPhaseResult()}
}

// BenchmarkCompileGenerated compiles the generated policy: routes, a
// scope catalog filed under segments, and clients with grants (the
// reload shape's big policy is routes=10000/clients=1000/segments=10;
// the target is under 1 s).
func BenchmarkCompileGenerated(b *testing.B) {
	for _, sz := range []struct{ routes, clients, segments int }{{100, 10, 0}, {10000, 1000, 10}} {
		name := "routes=" + strconv.Itoa(sz.routes) + "/clients=" + strconv.Itoa(sz.clients) + "/segments=" + strconv.Itoa(sz.segments)
		b.Run(name, func(b *testing.B) {
			data := generatePolicy(sz.routes, sz.clients, sz.segments, "v", "")
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := decision.Compile(data, PolicyFile, decision.CompileOptions{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestBigPolicyCompiles: the reload shape's big policy is valid, with
// every scope in a segment and every client registered.
func TestBigPolicyCompiles(t *testing.T) {
	data := generatePolicy(10000, 1000, 10, "v", "")
	pol, err := decision.Compile(data, PolicyFile, decision.CompileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if pol == nil {
		t.Fatal("no policy")
	}
	if n := strings.Count(string(data), ", segment: seg"); n != 10000 {
		t.Errorf("%d scopes in a segment, want 10000", n)
	}
	if n := strings.Count(string(data), "client_id: bench-client-"); n != 1000 {
		t.Errorf("%d clients, want 1000", n)
	}
}

// TestRunFull runs the full shape briefly: every allowed request passes
// the owner rule through the ownership store, so an owner table that
// named other subjects would turn the allows into wrong decisions.
func TestRunFull(t *testing.T) {
	cfg := smallConfig(t)
	cfg.Shapes = ShapeList{ShapeFull}
	rep, _ := runClean(t, cfg)
	a := rep.Results[0]
	if a.Shape != ShapeFull || a.Noop == nil || len(a.Targets) != 1 || a.Scopegate.Kinds[KindAllow].Requests == 0 {
		t.Fatalf("result %+v", a)
	}
	owners := newBenchOwners(cfg.Routes, cfg.Tokens)
	got, ok, _ := owners.Owners(context.Background(), fullLookup, strconv.Itoa(routeItem(routeOf(5, cfg.Routes))))
	if !ok || !strings.Contains(strings.Join(got, ","), subjectOf(5)) {
		t.Errorf("owners of token 5's item: %v, want %s among them", got, subjectOf(5))
	}
	if _, ok, _ := owners.Owners(context.Background(), "other", "1"); ok {
		t.Error("another lookup answered")
	}
}

// runClean runs cfg, failing t on an error, a wrong decision or a failed
// call; it returns the report and what was printed.
func runClean(t *testing.T, cfg Config) (*Report, string) {
	t.Helper()
	var out strings.Builder
	cfg.Out = &out
	rep, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := rep.Failed(); err != nil {
		t.Fatalf("run failed: %v\n%s", err, out.String())
	}
	return rep, out.String()
}
