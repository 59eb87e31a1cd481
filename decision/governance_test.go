package decision_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/scopegate/scopegate/decision"
	"github.com/scopegate/scopegate/decision/decisiontest"
)

// govFixture is an engine over a testdata/governance policy whose clock the
// test can move.
type govFixture struct {
	engine *decision.Engine
	signer *decisiontest.Signer
	aud    string
	clock  atomic.Pointer[time.Time]
}

var govNow = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

func compileGov(t testing.TB, text string, signers ...*decisiontest.Signer) (*decision.Policy, error) {
	t.Helper()
	_ = signers // the engine's resolver serves their keys (newGovFixture)
	return decision.Compile([]byte(text), "policy.yaml", decision.CompileOptions{})
}

func readGovFile(t testing.TB, name string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "governance", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

func newGovFixture(t testing.TB, text, aud string, opts decision.Options) *govFixture {
	t.Helper()
	s, err := decisiontest.NewRSASigner("k1")
	if err != nil {
		t.Fatal(err)
	}
	pol, err := compileGov(t, text, s)
	if err != nil {
		t.Fatal(err)
	}
	f := &govFixture{signer: s, aud: aud}
	now := govNow
	f.clock.Store(&now)
	opts.Clock = func() time.Time { return *f.clock.Load() }
	opts.Keys = decision.StaticKeyResolver(staticKeys(t, s))
	eng, err := decision.NewEngine(pol, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(eng.Close)
	f.engine = eng
	return f
}

func (f *govFixture) setNow(t time.Time) { f.clock.Store(&t) }

// token mints a token for client (none when ""), valid for a day from the
// fixture's current time.
func (f *govFixture) token(t testing.TB, client, scope string, extra map[string]any) string {
	t.Helper()
	c := decisiontest.StandardClaims(testIssuer, f.aud, "alice", client, scope, 24*time.Hour, *f.clock.Load())
	for k, v := range extra {
		c[k] = v
	}
	tok, err := f.signer.Mint(c, nil)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func (f *govFixture) decide(method, path, tok string) decision.Decision {
	return f.engine.Decide(context.Background(), &decision.Request{Method: method, Path: path, Authorization: "Bearer " + tok, AuthorizationCount: 1})
}

func TestGovernanceDecisions(t *testing.T) {
	day := func(y int, m time.Month, d int) time.Time { return time.Date(y, m, d, 12, 0, 0, 0, time.UTC) }
	cases := []struct {
		name          string
		at            time.Time // zero: govNow
		client, scope string
		method, path  string
		want          decision.Code
		drift         []string // the drifting scopes (nil: no drift)
		monitored     bool
		segments      []string
		expired       []string
		// extra and straddled are the report's two kinds of drift; when
		// the case names no segments, extra is drift and straddled none.
		extra, straddled []string
		unregistered     bool
		deprecated       []string
		detail           []string
	}{
		{name: "implied scope satisfies the route", client: "web-app", scope: "orders:write", method: "GET", path: "/orders/1", want: decision.OK},
		{name: "transitive implication", client: "reporting", scope: "orders:admin", method: "GET", path: "/orders/1", want: decision.OK,
			drift: []string{"orders:admin"}, monitored: true},
		{name: "scope covered by an implying grant", client: "web-app", scope: "orders:read", method: "GET", path: "/orders/1", want: decision.OK},
		{name: "enforce: ungranted scope", client: "web-app", scope: "orders:admin", method: "GET", path: "/orders/1", want: decision.ScopeDrift,
			drift: []string{"orders:admin"}, detail: []string{`"web-app"`, `"orders:admin"`}},
		{name: "enforce: unknown scope", client: "web-app", scope: "orders:read x:unknown", method: "GET", path: "/orders/1", want: decision.ScopeDrift,
			drift: []string{"x:unknown"}},
		{name: "enforce: segments not approved together", client: "web-app", scope: "orders:read billing:read", method: "GET", path: "/orders/1", want: decision.ScopeDrift,
			drift: []string{"orders:read", "billing:read"}, segments: []string{"orders", "billing"}, detail: []string{"segments_together"},
			straddled: []string{"orders:read", "billing:read"}},
		{name: "segments approved together", client: "web-app", scope: "billing:read profile:read", method: "GET", path: "/invoices/7/customer", want: decision.OK},
		{name: "grant expired", at: day(2026, 12, 2), client: "web-app", scope: "billing:read", method: "GET", path: "/invoices/7", want: decision.ScopeDrift,
			drift: []string{"billing:read"}, expired: []string{"billing:read"}, detail: []string{"expired"}},
		{name: "grant valid the day before expiry", at: day(2026, 11, 30), client: "web-app", scope: "billing:read", method: "GET", path: "/invoices/7", want: decision.OK},
		{name: "second expiry phase", at: day(2027, 1, 10), client: "web-app", scope: "orders:read", method: "GET", path: "/orders/1", want: decision.ScopeDrift,
			drift: []string{"orders:read"}, expired: []string{"orders:read"}},
		{name: "monitor: allowed and recorded", client: "mobile-app", scope: "orders:read orders:write", method: "POST", path: "/orders", want: decision.OK,
			drift: []string{"orders:write"}, monitored: true},
		{name: "monitor: unknown scope", client: "mobile-app", scope: "orders:read foo:bar", method: "GET", path: "/orders/1", want: decision.OK,
			drift: []string{"foo:bar"}, monitored: true},
		{name: "monitor: straddle", client: "mobile-app", scope: "orders:read reports:read", method: "GET", path: "/reports", want: decision.OK,
			drift: []string{"orders:read", "reports:read"}, monitored: true, segments: []string{"orders", "analytics-read"},
			straddled: []string{"orders:read", "reports:read"}},
		{name: "monitor: straddle and an ungranted scope", client: "mobile-app", scope: "orders:read reports:read orders:write", method: "GET", path: "/reports", want: decision.OK,
			drift: []string{"orders:read", "reports:read", "orders:write"}, monitored: true, segments: []string{"orders", "analytics-read"},
			extra: []string{"orders:write"}, straddled: []string{"orders:read", "reports:read", "orders:write"}},
		{name: "segment mode raises monitor to enforce", client: "mobile-app", scope: "billing:read billing:write", method: "GET", path: "/invoices/7", want: decision.ScopeDrift,
			drift: []string{"billing:write"}},
		{name: "segment mode raises a straddle", client: "mobile-app", scope: "orders:read billing:read", method: "GET", path: "/orders/1", want: decision.ScopeDrift,
			drift: []string{"orders:read", "billing:read"}, segments: []string{"orders", "billing"},
			straddled: []string{"orders:read", "billing:read"}},
		{name: "deprecated scope still grants", client: "mobile-app", scope: "orders:v1", method: "GET", path: "/orders/1", want: decision.OK,
			deprecated: []string{"orders:v1"}},
		{name: "default mode client", client: "reporting", scope: "reports:read", method: "GET", path: "/reports", want: decision.OK},
		{name: "unregistered client denied", client: "stranger", scope: "orders:read", method: "GET", path: "/orders/1", want: decision.ScopeDrift,
			drift: []string{"orders:read"}, unregistered: true, detail: []string{`"stranger"`, "not registered"}},
		{name: "token without client denied", scope: "orders:read", method: "GET", path: "/orders/1", want: decision.ScopeDrift,
			drift: []string{"orders:read"}, unregistered: true, detail: []string{"no client"}},
		{name: "retired scope explains the deny", client: "web-app", scope: "orders:legacy", method: "GET", path: "/orders", want: decision.ScopeRetired,
			detail: []string{"orders:legacy", "replaced by orders:read"}},
		{name: "retired scope the route does not accept", client: "web-app", scope: "orders:legacy", method: "GET", path: "/orders/1", want: decision.InsufficientScope},
		{name: "insufficient scope stays insufficient", client: "web-app", scope: "profile:read", method: "GET", path: "/orders", want: decision.InsufficientScope},
	}
	f := newGovFixture(t, readGovFile(t, "policy.yaml"), "orders-api", decision.Options{})
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			at := tc.at
			if at.IsZero() {
				at = govNow
			}
			f.setNow(at)
			d := f.decide(tc.method, tc.path, f.token(t, tc.client, tc.scope, nil))
			if d.Code != tc.want || d.Allow != (tc.want == decision.OK) {
				t.Fatalf("code = %s (allow %v, %s), want %s", d.Code, d.Allow, d.Message(), tc.want)
			}
			for _, w := range tc.detail {
				if !strings.Contains(d.Message(), w) {
					t.Errorf("message %q does not mention %s", d.Message(), w)
				}
			}
			extra, monitored := d.Drift()
			if !slices.Equal(extra, tc.drift) || tc.drift != nil && monitored != tc.monitored {
				t.Fatalf("Drift() = %v, monitored %v; want %v, %v", extra, monitored, tc.drift, tc.monitored)
			}
			rep, ok := d.DriftReport()
			if ok != (tc.drift != nil) {
				t.Fatalf("DriftReport ok = %v", ok)
			}
			if ok {
				if !slices.Equal(rep.Segments, tc.segments) || !slices.Equal(rep.Expired, tc.expired) || rep.Unregistered != tc.unregistered || rep.Enforced == tc.monitored {
					t.Errorf("report = %+v", rep)
				}
				wantExtra, wantStraddled := tc.extra, tc.straddled
				if tc.segments == nil {
					wantExtra, wantStraddled = tc.drift, nil
				}
				if !slices.Equal(rep.Extra, wantExtra) || !slices.Equal(rep.Straddled, wantStraddled) {
					t.Errorf("report extra %q, straddled %q; want %q, %q", rep.Extra, rep.Straddled, wantExtra, wantStraddled)
				}
				if rep.Client != tc.client {
					t.Errorf("report client = %q, want %q", rep.Client, tc.client)
				}
			}
			if got := d.DeprecatedScopesUsed(); !slices.Equal(got, tc.deprecated) {
				t.Errorf("DeprecatedScopesUsed = %v, want %v", got, tc.deprecated)
			}
		})
	}
}

// A policy without any governance section decides as before: routes may
// name any scope, and no token drifts.
func TestGovernanceAbsentKeepsBehaviour(t *testing.T) {
	f := newGovFixture(t, decidePolicy, "orders-api", decision.Options{})
	d := f.decide("GET", "/orders/1", f.token(t, "anything", "orders:read other:scope", nil))
	if !d.Allow {
		t.Fatalf("code = %s", d.Code)
	}
	if extra, _ := d.Drift(); extra != nil {
		t.Fatalf("drift without clients: %v", extra)
	}
	if d.Policy.HasScopeCatalog() {
		t.Fatal("HasScopeCatalog without scopes")
	}
	if d.DeprecatedScopesUsed() != nil || d.UpstreamHints() != nil {
		t.Fatal("governance output without governance")
	}
}

// The drift settings alone (no clients) make every client unregistered.
func TestGovernanceUnregisteredModes(t *testing.T) {
	base := strings.Replace(decidePolicy, "default: deny", "", 1)
	cases := map[string]struct {
		drift     string
		want      decision.Code
		drifts    bool
		monitored bool
	}{
		"deny":                    {drift: "drift: {unregistered_clients: deny}", want: decision.ScopeDrift, drifts: true},
		"monitor":                 {drift: "drift: {unregistered_clients: monitor}", want: decision.OK, drifts: true, monitored: true},
		"allow":                   {drift: "drift: {unregistered_clients: allow}", want: decision.OK},
		"default follows enforce": {drift: "drift: {default_mode: enforce}", want: decision.ScopeDrift, drifts: true},
		"default follows monitor": {drift: "drift: {default_mode: monitor}", want: decision.OK, drifts: true, monitored: true},
		"default follows off":     {drift: "drift: {default_mode: off}", want: decision.OK},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			f := newGovFixture(t, base+tc.drift+"\n", "orders-api", decision.Options{})
			d := f.decide("GET", "/orders/1", f.token(t, "someone", "orders:read", nil))
			if d.Code != tc.want {
				t.Fatalf("code = %s (%s), want %s", d.Code, d.Message(), tc.want)
			}
			extra, monitored := d.Drift()
			if (extra != nil) != tc.drifts || monitored != tc.monitored {
				t.Fatalf("Drift() = %v, %v", extra, monitored)
			}
		})
	}
}

func TestScopeInfo(t *testing.T) {
	pol, err := compileGov(t, readGovFile(t, "policy.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	info, ok := pol.ScopeInfo("orders:admin")
	if !ok || info.Segment != "orders" || info.Risk != "high" || info.Status != "active" || !slices.Equal(info.Implies, []string{"orders:read", "orders:write"}) {
		t.Fatalf("ScopeInfo(orders:admin) = %+v, %v", info, ok)
	}
	info, ok = pol.ScopeInfo("orders:v1")
	if !ok || info.Status != "deprecated" || info.Replacement != "orders:read" || !info.Sunset.Equal(time.Date(2027, 6, 30, 0, 0, 0, 0, time.UTC)) {
		t.Fatalf("ScopeInfo(orders:v1) = %+v", info)
	}
	if info, ok := pol.ScopeInfo("billing:write"); !ok || info.Segment != "billing" {
		t.Fatalf("segment from the segments list: %+v", info)
	}
	if _, ok := pol.ScopeInfo("nope"); ok {
		t.Fatal("ScopeInfo of an unknown scope")
	}
}

// govBase is the start of every policy of the validation table.
const govBase = `
issuers:
  - issuer: https://id.example.com/
    audiences: [orders-api]
    jwks_file: keys.json
    algorithms: [RS256]
`

const govRoutes = `
routes:
  - name: read
    match: {methods: [GET], path: "/orders/{id}"}
    require: {all_of: [orders:read]}
`

const govCatalog = `
scopes:
  - {name: orders:read, description: d, owner: o}
  - {name: orders:write, description: d, owner: o}
  - {name: billing:read, description: d, owner: o}
  - {name: profile:read, description: d, owner: o}
`

func TestGovernanceValidation(t *testing.T) {
	cases := map[string]struct {
		policy string
		want   []string // substrings of the error; none: must compile
	}{
		"valid catalog": {policy: govCatalog + govRoutes},
		"implies cycle": {policy: `
scopes:
  - {name: orders:read, implies: [orders:write]}
  - {name: orders:write, implies: [orders:read]}
` + govRoutes, want: []string{"cycle: orders:read → orders:write → orders:read"}},
		"implies cycle of three": {policy: `
scopes:
  - {name: orders:read}
  - {name: a, implies: [b]}
  - {name: b, implies: [c]}
  - {name: c, implies: [a]}
` + govRoutes, want: []string{"cycle: a → b → c → a"}},
		"implies itself": {policy: "scopes:\n  - {name: orders:read, implies: [orders:read]}\n" + govRoutes, want: []string{"implies itself"}},
		"implies unknown": {policy: "scopes:\n  - {name: orders:read}\n  - {name: orders:write, implies: [orders:raed]}\n" + govRoutes,
			want: []string{`implies "orders:raed", which is not in the scope catalog; did you mean "orders:read"?`}},
		"route requires unknown scope": {policy: govCatalog + strings.Replace(govRoutes, "[orders:read]", "[orders:reed]", 1),
			want: []string{`requires "orders:reed", which is not in the scope catalog; did you mean "orders:read"?`, "routes[0].require.all_of[0]"}},
		"duplicate scope": {policy: govCatalog + "  - {name: orders:read}\n" + govRoutes, want: []string{`scope "orders:read" is already declared`}},
		"bad status and risk": {policy: "scopes:\n  - {name: orders:read, status: gone, risk: extreme}\n" + govRoutes,
			want: []string{`unknown status "gone"`, `unknown risk "extreme"`}},
		"replacement on an active scope": {policy: "scopes:\n  - {name: orders:read}\n  - {name: x, replacement: orders:read}\n" + govRoutes,
			want: []string{"only a deprecated or retired scope has a replacement"}},
		"unknown replacement": {policy: "scopes:\n  - {name: orders:read}\n  - {name: x, status: deprecated, replacement: orders:red, sunset: 2027-01-01}\n" + govRoutes,
			want: []string{`replacement "orders:red" is not in the scope catalog; did you mean "orders:read"?`}},
		"bad sunset": {policy: "scopes:\n  - {name: orders:read}\n  - {name: x, status: deprecated, replacement: orders:read, sunset: next year}\n" + govRoutes,
			want: []string{`invalid date "next year"`}},
		"retired scope in all_of": {policy: "scopes:\n  - {name: orders:read, status: retired}\n" + govRoutes,
			want: []string{`requires retired scope "orders:read" in all_of`}},
		"scope in two segments": {policy: govCatalog + `
segments:
  - {name: a, owner: o, scopes: [orders:read]}
  - {name: b, owner: o, scopes: [orders:read]}
` + govRoutes, want: []string{`scope "orders:read" is in segments "a" and "b"`}},
		"segment contradiction": {policy: `
scopes:
  - {name: orders:read, segment: b}
segments:
  - {name: a, owner: o, scopes: [orders:read]}
  - {name: b, owner: o}
` + govRoutes, want: []string{`scope "orders:read" says segment "b" but segment "a" lists it`}},
		"segment lists unknown scope": {policy: govCatalog + "segments:\n  - {name: a, owner: o, scopes: [orders:raed]}\n" + govRoutes,
			want: []string{`segment "a" lists "orders:raed", which is not in the scope catalog; did you mean "orders:read"?`}},
		"duplicate segment": {policy: govCatalog + "segments:\n  - {name: a, owner: o}\n  - {name: a, owner: o}\n" + govRoutes,
			want: []string{`segment "a" is declared twice`}},
		"cross-segment route": {policy: govCatalog + `
segments:
  - {name: billing, owner: o, scopes: [billing:read]}
  - {name: profile, owner: o, scopes: [profile:read]}
routes:
  - name: customer
    match: {methods: [GET], path: "/invoices/{id}/customer"}
    require: {all_of: [billing:read, profile:read]}
`, want: []string{`route "customer" requires scopes of segments billing (billing:read) and profile (profile:read)`, "cross_segment"}},
		"cross-segment route with a reason": {policy: govCatalog + `
segments:
  - {name: billing, owner: o, scopes: [billing:read]}
  - {name: profile, owner: o, scopes: [profile:read]}
routes:
  - name: customer
    match: {methods: [GET], path: "/invoices/{id}/customer"}
    require: {all_of: [billing:read, profile:read]}
    cross_segment: the invoice shows the billing address
`},
		"all_of plus any_of across segments": {policy: govCatalog + `
segments:
  - {name: billing, owner: o, scopes: [billing:read]}
  - {name: profile, owner: o, scopes: [profile:read]}
routes:
  - name: customer
    match: {methods: [GET], path: "/invoices/{id}"}
    require: {all_of: [billing:read], any_of: [profile:read, orders:read]}
`, want: []string{"requires scopes of segments billing (billing:read) and profile (profile:read)"}},
		"any_of alternatives across segments are fine": {policy: govCatalog + `
segments:
  - {name: billing, owner: o, scopes: [billing:read]}
  - {name: profile, owner: o, scopes: [profile:read]}
routes:
  - name: either
    match: {methods: [GET], path: "/x"}
    require: {any_of: [billing:read, profile:read]}
`},
		"grant of an unknown scope": {policy: govCatalog + govRoutes + `
clients:
  - client_id: web
    grants: [{scope: orders:wrte, approved_by: a, justification: j}]
`, want: []string{`client "web" is granted "orders:wrte", which is not in the scope catalog; did you mean "orders:write"?`}},
		"grant of an unknown segment": {policy: govCatalog + govRoutes + `
segments:
  - {name: billing, owner: o, scopes: [billing:read]}
clients:
  - client_id: web
    grants: [{segment: biling, approved_by: a, justification: j}]
`, want: []string{`segment "biling", which is not declared; did you mean "billing"?`}},
		"grant of scope and segment": {policy: govCatalog + govRoutes + `
clients:
  - client_id: web
    grants: [{scope: orders:read, segment: x}, {approved_by: a}]
`, want: []string{"not both", "a grant needs a scope"}},
		"grant dates": {policy: govCatalog + govRoutes + `
clients:
  - client_id: web
    grants:
      - {scope: orders:read, approved_at: 2026-13-01}
      - {scope: orders:write, approved_at: 2026-05-01, expires_at: 2026-04-01}
      - {scope: billing:read, approved_at: 2026-05-01T10:00:00Z, expires_at: "2026-05-01T11:00:00+02:00"}
`, want: []string{`invalid date "2026-13-01"`, "the grant expires (2026-04-01) before it was approved", "the grant expires (2026-05-01T11:00:00+02:00) before"}},
		"duplicate client": {policy: govCatalog + govRoutes + "clients:\n  - {client_id: web}\n  - {client_id: web}\n",
			want: []string{`client "web" is already registered`}},
		"client without id": {policy: govCatalog + govRoutes + "clients:\n  - {name: web}\n", want: []string{"every client needs a client_id"}},
		"bad modes": {policy: govCatalog + govRoutes + `
segments:
  - {name: billing, owner: o, scopes: [billing:read]}
clients:
  - {client_id: web, drift: loud}
drift:
  default_mode: strict
  unregistered_clients: maybe
  segment_modes: {biling: enforce, billing: sometimes}
`, want: []string{`unknown mode "loud"`, `unknown mode "strict"`, `unknown value "maybe"`, `"biling" is not a segment; did you mean "billing"?`, `unknown mode "sometimes"`}},
		"segments_together": {policy: govCatalog + govRoutes + `
segments:
  - {name: billing, owner: o, scopes: [billing:read]}
clients:
  - {client_id: web, segments_together: [[billing], [billing, profil]]}
`, want: []string{"needs at least two segments", `"profil" is not a segment`}},
		"unknown field in a grant": {policy: govCatalog + govRoutes + "clients:\n  - {client_id: web, grants: [{scope: orders:read, expires: 2027-01-01}]}\n",
			want: []string{`unknown field "expires"`}},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := compileGov(t, govBase+tc.policy)
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("want no error, got %v", err)
				}
				return
			}
			var le *decision.LoadError
			if !errors.As(err, &le) {
				t.Fatalf("err = %v, want a *LoadError", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not mention %q:\n%s", w, err)
				}
			}
			for _, p := range le.Problems {
				if p.Line == 0 {
					t.Errorf("problem without a line: %s", p)
				}
			}
		})
	}
}

// --explain shows the governance checks.
func TestGovernanceTrace(t *testing.T) {
	cases := map[string]struct {
		file, aud, client, scope, method, path string
		claims                                 map[string]any
		want                                   string
	}{
		"monitored drift": {file: "policy.yaml", aud: "orders-api", client: "mobile-app", scope: "orders:read orders:write", method: "GET", path: "/orders/1", want: "drift=pass"},
		"enforced drift":  {file: "policy.yaml", aud: "orders-api", client: "web-app", scope: "orders:admin", method: "GET", path: "/orders/1", want: "drift=fail"},
		"smart grant":     {file: "smart.yaml", aud: "fhir-api", scope: "user/*.s", method: "GET", path: "/fhir/_history", want: "smart=pass"},
		"smart deny":      {file: "smart.yaml", aud: "fhir-api", scope: "user/Observation.r", method: "GET", path: "/fhir/Observation", want: "smart=fail"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			f := newGovFixture(t, readGovFile(t, tc.file), tc.aud, decision.Options{})
			tr := &decision.Trace{}
			f.engine.Decide(context.Background(), &decision.Request{Method: tc.method, Path: tc.path, Authorization: "Bearer " + f.token(t, tc.client, tc.scope, tc.claims), AuthorizationCount: 1, Trace: tr})
			var steps []string
			for _, s := range tr.Steps {
				steps = append(steps, s.Check+"="+s.Result)
			}
			if !slices.Contains(steps, tc.want) {
				t.Fatalf("trace %v has no %s", steps, tc.want)
			}
		})
	}
}

// TestDriftOfACachedTokenFollowsGrantExpiry: the drift of a cached token is
// remembered per policy and grant phase; when its client's grant expires
// the same token, still cached and still valid, drifts on its next use.
func TestDriftOfACachedTokenFollowsGrantExpiry(t *testing.T) {
	f := newGovFixture(t, readGovFile(t, "policy.yaml"), "orders-api", decision.Options{})
	f.setNow(time.Date(2026, 11, 30, 18, 0, 0, 0, time.UTC))
	tok := f.token(t, "web-app", "billing:read", nil) // valid for a day; the billing grant ends 2026-12-01
	for i := range 2 {
		if d := f.decide("GET", "/invoices/7", tok); !d.Allow {
			t.Fatalf("use %d before expiry: %s (%s)", i, d.Code, d.Message())
		}
		f.engine.WaitTokenCache()
	}
	f.setNow(time.Date(2026, 12, 1, 6, 0, 0, 0, time.UTC))
	if d := f.decide("GET", "/invoices/7", tok); d.Code != decision.ScopeDrift {
		t.Fatalf("after the grant expired: %s (%s), want scope_drift", d.Code, d.Message())
	}
}
