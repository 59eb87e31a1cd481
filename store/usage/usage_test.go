package usage_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/scopegate/scopegate/decision"
	"github.com/scopegate/scopegate/store/audit"
	"github.com/scopegate/scopegate/store/audit/audittest"
	"github.com/scopegate/scopegate/store/usage"
	"github.com/scopegate/scopegate/store/usage/usagetest"
)

// memStore is a usage.Store in memory; fail makes every call fail.
type memStore struct {
	mu   sync.Mutex
	rows map[[2]string]usage.Tally
	days []usage.Tally // every batch's Days, merged on read
	fail atomic.Bool
	adds atomic.Int64
}

func newMemStore() *memStore { return &memStore{rows: map[[2]string]usage.Tally{}} }

func (m *memStore) AddUsage(ctx context.Context, deltas []usage.Tally) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if m.fail.Load() {
		return errors.New("database down")
	}
	m.adds.Add(1)
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, d := range deltas {
		k := [2]string{d.ClientID, d.Scope}
		r := m.rows[k]
		r.ClientID, r.Scope = d.ClientID, d.Scope
		r.Count += d.Count
		if d.LastUsed.After(r.LastUsed) {
			r.LastUsed = d.LastUsed
		}
		if d.LastSeen.After(r.LastSeen) {
			r.LastSeen = d.LastSeen
		}
		m.rows[k] = r
	}
	m.days = append(m.days, deltas...)
	return nil
}

func (m *memStore) LoadDaily(ctx context.Context, client string, since time.Time) ([]usage.Daily, error) {
	if m.fail.Load() {
		return nil, errors.New("database down")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []usage.Daily
	for _, d := range usage.MergeDays(m.days, since) {
		if d.Day.Before(usage.DayOf(time.Now().Add(-usage.DailyRetention))) {
			continue
		}
		if client == "" || d.ClientID == client {
			out = append(out, d)
		}
	}
	return out, nil
}

func (m *memStore) LoadUsage(ctx context.Context, client string) ([]usage.Tally, error) {
	if m.fail.Load() {
		return nil, errors.New("database down")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []usage.Tally
	for _, r := range m.rows {
		if client == "" || r.ClientID == client {
			out = append(out, r)
		}
	}
	return out, nil
}

func TestMemStoreConformance(t *testing.T) {
	usagetest.TestStore(t, func(*testing.T) usage.Store { return newMemStore() })
}

// clock is a settable clock.
type clock struct{ now atomic.Pointer[time.Time] }

func newClock(t time.Time) *clock {
	c := &clock{}
	c.set(t)
	return c
}
func (c *clock) set(t time.Time) { c.now.Store(&t) }
func (c *clock) Now() time.Time  { return *c.now.Load() }

type env struct {
	f   *audittest.Fixture
	clk *clock
}

func newEnv(t *testing.T) *env {
	return &env{f: audittest.New(t), clk: newClock(audittest.Now)}
}

func (e *env) aggregator(t *testing.T, store usage.Store) *usage.Aggregator {
	t.Helper()
	a, err := usage.New(usage.Options{Store: store, Policy: e.f.Engine.Policy, Clock: e.clk.Now, FlushInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Close(context.Background()) })
	return a
}

// observe decides a request with a token of client carrying scope and
// feeds the decision to a as seen at time at.
func (e *env) observe(t *testing.T, a *usage.Aggregator, client, scope, method, path string, at time.Time) decision.Decision {
	t.Helper()
	tok := e.f.Token(t, "alice", client, scope)
	_, d := e.f.Decide(method, path, tok)
	a.Observe(&audit.Event{Decision: d, Time: at})
	return d
}

// row renders one scope's usage compactly for comparisons.
func row(s usage.ScopeUsage) string {
	var b strings.Builder
	b.WriteString(s.Scope)
	if s.Granted {
		b.WriteString(" granted")
	}
	if s.Used {
		b.WriteString(" used")
	}
	if s.Count > 0 {
		b.WriteString(" x" + itoa(s.Count))
	}
	if !s.LastUsed.IsZero() {
		b.WriteString(" @" + s.LastUsed.UTC().Format(time.RFC3339))
	}
	return b.String()
}

func itoa(n uint64) string {
	if n == 0 {
		return "0"
	}
	var b []byte
	for ; n > 0; n /= 10 {
		b = append([]byte{byte('0' + n%10)}, b...)
	}
	return string(b)
}

func render(report []usage.ClientUsage) map[string][]string {
	out := map[string][]string{}
	for _, c := range report {
		for _, s := range c.Scopes {
			out[c.ClientID] = append(out[c.ClientID], row(s))
		}
	}
	return out
}

func equalReports(got, want map[string][]string) bool {
	if len(got) != len(want) {
		return false
	}
	for k, v := range want {
		if !slices.Equal(got[k], v) {
			return false
		}
	}
	return true
}

const t0s = "2026-11-22T12:00:00Z"

func TestReport(t *testing.T) {
	e := newEnv(t)
	a := e.aggregator(t, nil)
	t0 := audittest.Now
	// mobile-app: an allow through the deprecated orders:v1 (which implies
	// the route's orders:read), carrying admin:all beyond its grants.
	if d := e.observe(t, a, "mobile-app", "orders:v1 admin:all", "GET", "/orders/1", t0); !d.Allow {
		t.Fatalf("fixture request denied: %v", d.Code)
	}
	// web-app: a deny (insufficient scope) still shows what the token carried.
	if d := e.observe(t, a, "web-app", "orders:read", "POST", "/orders", t0); d.Allow {
		t.Fatal("fixture request allowed")
	}
	// An unregistered client, allowed twice.
	e.observe(t, a, "cli", "orders:read billing:read", "GET", "/orders/2", t0.Add(-time.Hour))
	e.observe(t, a, "cli", "orders:read billing:read", "GET", "/orders/3", t0)
	// A token without a client id is not tracked.
	e.observe(t, a, "", "orders:read", "GET", "/orders/4", t0)

	cases := map[string]struct {
		q    usage.Query
		now  time.Time
		want map[string][]string
	}{
		"everything": {
			want: map[string][]string{
				"cli":        {"billing:read granted", "orders:read granted used x2 @" + t0s},
				"mobile-app": {"admin:all granted", "orders:read granted used x1 @" + t0s, "orders:v1 granted used x1 @" + t0s},
				// billing:read's grant expired; orders:write is granted by
				// the policy and never used.
				"web-app": {"billing:read granted", "orders:read granted", "orders:write granted"},
			},
		},
		"one client": {
			q:    usage.Query{ClientID: "cli"},
			want: map[string][]string{"cli": {"billing:read granted", "orders:read granted used x2 @" + t0s}},
		},
		"unused for a day, the next day": {
			q:   usage.Query{UnusedFor: 24 * time.Hour},
			now: t0.Add(time.Hour),
			want: map[string][]string{
				"cli":        {"billing:read granted"},
				"mobile-app": {"admin:all granted"},
				"web-app":    {"billing:read granted", "orders:read granted", "orders:write granted"},
			},
		},
		"unused for a day, two days later": {
			q:   usage.Query{UnusedFor: 24 * time.Hour, ClientID: "mobile-app"},
			now: t0.Add(48 * time.Hour),
			want: map[string][]string{
				"mobile-app": {"admin:all granted", "orders:read granted used x1 @" + t0s, "orders:v1 granted used x1 @" + t0s},
			},
		},
		"unknown client": {q: usage.Query{ClientID: "nobody"}, want: map[string][]string{}},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			now := c.now
			if now.IsZero() {
				now = t0
			}
			e.clk.set(now)
			got, err := a.Report(context.Background(), c.q)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.IsSortedFunc(got, func(x, y usage.ClientUsage) int { return strings.Compare(x.ClientID, y.ClientID) }) {
				t.Error("clients are not ordered by client id")
			}
			if r := render(got); !equalReports(r, c.want) {
				t.Errorf("report\n got %v\nwant %v", r, c.want)
			}
		})
	}
}

func TestPersistence(t *testing.T) {
	e := newEnv(t)
	store := newMemStore()
	a := e.aggregator(t, store)
	ctx := context.Background()
	t0 := audittest.Now
	e.observe(t, a, "cli", "orders:read", "GET", "/orders/1", t0)
	e.observe(t, a, "cli", "orders:read", "GET", "/orders/1", t0)
	want := map[string][]string{"cli": {"orders:read granted used x2 @" + t0s}}
	check := func(step string) {
		t.Helper()
		got, err := a.Report(ctx, usage.Query{ClientID: "cli"})
		if err != nil {
			t.Fatalf("%s: %v", step, err)
		}
		if r := render(got); !equalReports(r, want) {
			t.Errorf("%s: report\n got %v\nwant %v", step, r, want)
		}
	}
	check("before a flush (memory only)")
	if err := a.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	check("after a flush (store, nothing pending): no double count")
	if err := a.Flush(ctx); err != nil || store.adds.Load() != 1 {
		t.Errorf("a flush with nothing new wrote to the store (%d writes, %v)", store.adds.Load(), err)
	}

	store.fail.Store(true)
	e.observe(t, a, "cli", "orders:read", "GET", "/orders/1", t0.Add(time.Minute))
	if err := a.Flush(ctx); err == nil || !strings.Contains(err.Error(), "database down") {
		t.Fatalf("flush to a failing store = %v", err)
	}
	if _, err := a.Report(ctx, usage.Query{}); err == nil {
		t.Error("a report with the store down succeeded: it would silently cover this replica only")
	}
	store.fail.Store(false)
	want = map[string][]string{"cli": {"orders:read granted used x3 @2026-11-22T12:01:00Z"}}
	check("failed flush kept the counts")
	if err := a.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	check("retried flush")

	// A restart: a new aggregator on the same store reports the history.
	b := e.aggregator(t, store)
	got, err := b.Report(ctx, usage.Query{ClientID: "cli"})
	if err != nil {
		t.Fatal(err)
	}
	if r := render(got); !equalReports(r, want) {
		t.Errorf("after a restart\n got %v\nwant %v", r, want)
	}
}

// TestTwoReplicas: two aggregators persisting into one store; either one's
// report covers both.
func TestTwoReplicas(t *testing.T) {
	e := newEnv(t)
	store := newMemStore()
	r1, r2 := e.aggregator(t, store), e.aggregator(t, store)
	t0 := audittest.Now
	e.observe(t, r1, "cli", "orders:read billing:read", "GET", "/orders/1", t0)
	e.observe(t, r2, "cli", "orders:read billing:read", "GET", "/invoices/1", t0.Add(time.Second))
	e.observe(t, r2, "cli", "orders:read billing:read", "GET", "/orders/1", t0.Add(2*time.Second))
	ctx := context.Background()
	for _, a := range []*usage.Aggregator{r1, r2} {
		if err := a.Close(ctx); err != nil {
			t.Fatal(err)
		}
	}
	want := map[string][]string{"cli": {"billing:read granted used x1 @2026-11-22T12:00:01Z", "orders:read granted used x2 @2026-11-22T12:00:02Z"}}
	for i, a := range []*usage.Aggregator{r1, r2} {
		got, err := a.Report(ctx, usage.Query{ClientID: "cli"})
		if err != nil {
			t.Fatal(err)
		}
		if r := render(got); !equalReports(r, want) {
			t.Errorf("replica %d's report\n got %v\nwant %v", i+1, r, want)
		}
	}
}

// TestPeriodicFlush runs in a synctest bubble, where the flush ticker
// runs on the bubble's clock: nothing is written before the interval, and
// the flush is there as soon as it has passed.
func TestPeriodicFlush(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t)
		store := newMemStore()
		a, err := usage.New(usage.Options{Store: store, Clock: e.clk.Now, FlushInterval: 100 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		defer a.Close(context.Background())
		e.observe(t, a, "cli", "orders:read", "GET", "/orders/1", audittest.Now)
		time.Sleep(99 * time.Millisecond)
		synctest.Wait()
		if n := store.adds.Load(); n != 0 {
			t.Fatalf("%d writes before the flush interval", n)
		}
		time.Sleep(time.Millisecond)
		synctest.Wait()
		if store.adds.Load() == 0 {
			t.Fatal("no write once the flush interval passed")
		}
	})
}

func TestBounds(t *testing.T) {
	e := newEnv(t)
	a, err := usage.New(usage.Options{MaxClients: 1, MaxScopesPerClient: 2, Clock: e.clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	e.observe(t, a, "one", "orders:read billing:read admin:all", "GET", "/orders/1", audittest.Now)
	e.observe(t, a, "two", "orders:read", "GET", "/orders/1", audittest.Now)
	got, _ := a.Report(context.Background(), usage.Query{})
	if len(got) != 1 || len(got[0].Scopes) != 2 {
		t.Errorf("report %+v, want one client with two scopes", got)
	}
	if a.Overflow() != 2 {
		t.Errorf("overflow = %d, want 2 (one scope, one client)", a.Overflow())
	}
}

func TestParseWindow(t *testing.T) {
	cases := map[string]struct {
		in   string
		want time.Duration
		err  bool
	}{
		"days":        {in: "30d", want: 30 * 24 * time.Hour},
		"zero days":   {in: "0d", want: 0},
		"go duration": {in: "12h30m", want: 12*time.Hour + 30*time.Minute},
		"empty":       {in: "", err: true},
		"bad days":    {in: "1.5d", err: true},
		"negative":    {in: "-1h", err: true},
		"words":       {in: "a month", err: true},
		"too long":    {in: "99999d", err: true},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			got, err := usage.ParseWindow(c.in)
			if (err != nil) != c.err || got != c.want {
				t.Errorf("ParseWindow(%q) = %v, %v; want %v, error %v", c.in, got, err, c.want, c.err)
			}
		})
	}
}

func TestOptionsValidate(t *testing.T) {
	for name, o := range map[string]usage.Options{
		"negative interval": {FlushInterval: -time.Second},
		"tiny interval":     {FlushInterval: time.Millisecond},
		"negative clients":  {MaxClients: -1},
		"negative scopes":   {MaxScopesPerClient: -1},
	} {
		if _, err := usage.New(o); err == nil {
			t.Errorf("%s: New accepted %+v", name, o)
		}
	}
}

// TestThroughAuditLogger wires the aggregator as the audit Logger's
// observer, as the server does: sampled-out allows still count.
func TestThroughAuditLogger(t *testing.T) {
	e := newEnv(t)
	a := e.aggregator(t, nil)
	l, err := audit.New(audit.Options{Observer: a, DenyOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	tok := e.f.Token(t, "alice", "cli", "orders:read")
	for range 10 {
		r, d := e.f.Decide("GET", "/orders/1", tok)
		l.Record(context.Background(), audit.ExtAuthz, &r, &d, audittest.Now, "")
	}
	if err := l.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	got, _ := a.Report(context.Background(), usage.Query{ClientID: "cli"})
	if r := render(got); !equalReports(r, map[string][]string{"cli": {"orders:read granted used x10 @" + t0s}}) {
		t.Errorf("report %v", r)
	}
}

// TestDailyCounts: uses are split by UTC day on their way to the store,
// including across a failed flush.
func TestDailyCounts(t *testing.T) {
	e := newEnv(t)
	store := newMemStore()
	a := e.aggregator(t, store)
	ctx := context.Background()
	day := usage.DayOf(time.Now()).AddDate(0, 0, -3)
	e.observe(t, a, "cli", "orders:read", "GET", "/orders/1", day.Add(23*time.Hour+59*time.Minute))
	e.observe(t, a, "cli", "orders:read", "GET", "/orders/1", day.Add(24*time.Hour+time.Minute))
	e.observe(t, a, "cli", "orders:read", "GET", "/orders/1", day.Add(25*time.Hour))
	store.fail.Store(true)
	if err := a.Flush(ctx); err == nil {
		t.Fatal("flush to a failing store succeeded")
	}
	store.fail.Store(false)
	e.observe(t, a, "cli", "orders:read", "GET", "/orders/1", day.Add(50*time.Hour))
	if err := a.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	got, err := store.LoadDaily(ctx, "cli", time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, d := range got {
		lines = append(lines, d.Scope+" "+d.Day.Format(time.DateOnly)+" x"+itoa(d.Count))
	}
	want := []string{
		"orders:read " + day.Format(time.DateOnly) + " x1",
		"orders:read " + day.AddDate(0, 0, 1).Format(time.DateOnly) + " x2",
		"orders:read " + day.AddDate(0, 0, 2).Format(time.DateOnly) + " x1",
	}
	if !slices.Equal(lines, want) {
		t.Errorf("day counts\n got %v\nwant %v", lines, want)
	}
}

// BenchmarkObserve is the audit goroutine's cost of counting one allowed
// decision, with a store (so uses are also split by day).
func BenchmarkObserve(b *testing.B) {
	f := audittest.New(b)
	a, err := usage.New(usage.Options{Store: newMemStore(), FlushInterval: time.Hour, Clock: func() time.Time { return audittest.Now }})
	if err != nil {
		b.Fatal(err)
	}
	defer a.Close(context.Background())
	_, d := f.Decide("GET", "/orders/1", f.Token(b, "alice", "web-app", "orders:write"))
	ev := &audit.Event{Decision: d, Time: audittest.Now}
	b.ReportAllocs()
	for b.Loop() {
		a.Observe(ev)
	}
}
