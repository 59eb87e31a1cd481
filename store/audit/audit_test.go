package audit_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/scopegate/scopegate/decision"
	"github.com/scopegate/scopegate/store/audit"
	"github.com/scopegate/scopegate/store/audit/audittest"
)

// memSink keeps a copy of every record written. When gate is non-nil,
// Write waits for it to be closed (or the context to end) first: a sink
// that is stuck.
type memSink struct {
	mu      sync.Mutex
	lines   [][]byte
	entries []audit.Entry
	gate    chan struct{}
	// deaf makes a gated Write ignore its context (a write blocked on a
	// full pipe).
	deaf   bool
	writes atomic.Int64
	fail   error
}

func (s *memSink) Name() string { return "mem" }

func (s *memSink) Write(ctx context.Context, entries []audit.Entry) error {
	s.writes.Add(1)
	if s.gate != nil && s.deaf {
		<-s.gate
	} else if s.gate != nil {
		select {
		case <-s.gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return s.fail
	}
	for _, e := range entries {
		s.lines = append(s.lines, bytes.Clone(e.JSON))
		e.JSON = nil
		s.entries = append(s.entries, e)
	}
	return nil
}

func (s *memSink) Flush(context.Context) error { return nil }
func (s *memSink) Close(context.Context) error { return nil }

func (s *memSink) records(t *testing.T) []map[string]any {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]map[string]any, 0, len(s.lines))
	for _, l := range s.lines {
		var m map[string]any
		if err := json.Unmarshal(l, &m); err != nil {
			t.Fatalf("record is not JSON: %v\n%s", err, l)
		}
		out = append(out, m)
	}
	return out
}

func (s *memSink) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.lines)
}

func newLogger(t *testing.T, opts audit.Options) *audit.Logger {
	t.Helper()
	l, err := audit.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = l.Close(ctx)
	})
	return l
}

func closeLogger(t *testing.T, l *audit.Logger) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := l.Close(ctx); err != nil {
		t.Fatal(err)
	}
}

func keys(m map[string]any) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func TestRecordFields(t *testing.T) {
	f := audittest.New(t)
	mobile := f.Token(t, "alice", "mobile-app", "orders:v1 admin:all")
	web := f.Token(t, "bob", "web-app", "orders:read")
	type want struct {
		keys   []string
		values map[string]any
	}
	common := []string{"api", "decision", "decision_id", "host", "latency_us", "message", "method", "path", "policy_version", "reasons", "request_id", "time", "type"}
	withToken := append(slices.Clone(common), "client_id", "iss", "jti", "scopes_granted", "scopes_used", "subject")
	cases := map[string]struct {
		method, path, token string
		want                want
	}{
		"allow with drift and a deprecated scope": {
			method: "GET", path: "/orders/42?secret=querytoken", token: mobile,
			want: want{
				keys: append(slices.Clone(withToken), "deprecated_scopes_used", "drift", "route"),
				values: map[string]any{
					"decision": "allow", "reasons": []any{"ok"}, "route": "read-order", "path": "/orders/42",
					"subject": "alice", "client_id": "mobile-app", "iss": audittest.Issuer,
					"scopes_granted": []any{"orders:v1", "admin:all"}, "scopes_used": []any{"orders:read"},
					"deprecated_scopes_used": []any{"orders:v1"},
					"drift":                  map[string]any{"mode": "monitor", "extra": []any{"admin:all"}},
					"method":                 "GET", "host": "shop.test", "request_id": "req-1", "api": "ext_authz",
					"policy_version": "audit-test+", "type": "decision",
				},
			},
		},
		"deny without a token": {
			method: "GET", path: "/orders/42",
			want: want{
				keys:   append(slices.Clone(common), "route"),
				values: map[string]any{"decision": "deny", "reasons": []any{"token_missing"}, "route": "read-order"},
			},
		},
		"deny for a missing scope": {
			method: "POST", path: "/orders", token: web,
			want: want{
				keys: append(slices.Clone(withToken), "route", "scopes_missing"),
				values: map[string]any{"decision": "deny", "reasons": []any{"insufficient_scope"}, "client_id": "web-app",
					"scopes_granted": []any{"orders:read"}, "scopes_used": []any{}, "scopes_missing": []any{"orders:write"},
					"message": "the token lacks scope orders:write, which route create-order requires"},
			},
		},
		"deny for a path that does not normalize keeps no query": {
			method: "GET", path: "/orders/a%2Fb?code=querytoken",
			want: want{
				keys:   common,
				values: map[string]any{"decision": "deny", "reasons": []any{"path_invalid"}, "path": "/orders/a%2Fb"},
			},
		},
		"public route": {
			method: "GET", path: "/healthz",
			want: want{
				keys:   append(slices.Clone(common), "route"),
				values: map[string]any{"decision": "allow", "route": "health"},
			},
		},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			sink := &memSink{}
			l := newLogger(t, audit.Options{Sinks: []audit.Sink{sink}})
			r, d := f.Decide(c.method, c.path, c.token)
			l.Record(context.Background(), audit.ExtAuthz, &r, &d, time.Now().Add(-3*time.Microsecond), "")
			closeLogger(t, l)
			recs := sink.records(t)
			if len(recs) != 1 {
				t.Fatalf("got %d records, want 1", len(recs))
			}
			rec := recs[0]
			want := slices.Clone(c.want.keys)
			slices.Sort(want)
			if got := keys(rec); !slices.Equal(got, want) {
				t.Errorf("keys\n got %v\nwant %v", got, want)
			}
			for k, v := range c.want.values {
				got := rec[k]
				if s, ok := v.(string); ok && strings.HasSuffix(s, "+") {
					if gs, _ := got.(string); !strings.HasPrefix(gs, s) {
						t.Errorf("%s = %v, want prefix %q", k, got, s)
					}
					continue
				}
				gj, _ := json.Marshal(got)
				wj, _ := json.Marshal(v)
				if !bytes.Equal(gj, wj) {
					t.Errorf("%s = %s, want %s", k, gj, wj)
				}
			}
			if ts, _ := rec["time"].(string); ts == "" {
				t.Error("no time")
			} else if _, err := time.Parse(time.RFC3339Nano, ts); err != nil {
				t.Errorf("time %q is not RFC 3339: %v", ts, err)
			}
			if lat, _ := rec["latency_us"].(float64); lat < 3 {
				t.Errorf("latency_us = %v, want at least 3", rec["latency_us"])
			}
			if id, _ := rec["decision_id"].(string); len(id) != 16 {
				t.Errorf("decision_id = %q, want 16 hex digits", id)
			}
			line := string(sink.lines[0])
			for _, secret := range []string{c.token, "querytoken", "Bearer", "secret="} {
				if secret != "" && strings.Contains(line, secret) {
					t.Errorf("record leaks %q:\n%s", secret, line)
				}
			}
			e := sink.entries[0]
			if e.Reason != rec["reasons"].([]any)[0] || e.Allow != (rec["decision"] == "allow") || e.Type != "decision" {
				t.Errorf("entry %+v does not match the record", e)
			}
		})
	}
}

func TestRecordKeepsDecisionID(t *testing.T) {
	f := audittest.New(t)
	sink := &memSink{}
	l := newLogger(t, audit.Options{Sinks: []audit.Sink{sink}})
	r, d := f.Decide("GET", "/orders/1", "")
	r.SourceIP = mustAddr(t, "203.0.113.7")
	l.Record(context.Background(), audit.Authorizer, &r, &d, time.Now(), "0123456789abcdef")
	closeLogger(t, l)
	rec := sink.records(t)[0]
	if rec["decision_id"] != "0123456789abcdef" || rec["api"] != "authorizer" || rec["source_ip"] != "203.0.113.7" {
		t.Errorf("record = %v", rec)
	}
}

func TestSampling(t *testing.T) {
	f := audittest.New(t)
	tok := f.Token(t, "alice", "web-app", "orders:read")
	rAllow, dAllow := f.Decide("GET", "/orders/1", tok)
	rDeny, dDeny := f.Decide("GET", "/orders/1", "")
	if !dAllow.Allow || dDeny.Allow {
		t.Fatal("fixture decisions are not an allow and a deny")
	}
	const n = 20000
	cases := map[string]struct {
		opts             audit.Options
		minAllow, maxAll int
	}{
		"every allow by default": {audit.Options{}, n, n},
		"a quarter":              {audit.Options{AllowSample: 0.25}, n/4 - 600, n/4 + 600},
		"denies only":            {audit.Options{DenyOnly: true, AllowSample: 0.5}, 0, 0},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			sink := &memSink{}
			var seen atomic.Int64
			c.opts.Sinks = []audit.Sink{sink}
			c.opts.BufferSize = 2 * n
			c.opts.Observer = observerFunc(func(*audit.Event) { seen.Add(1) })
			l := newLogger(t, c.opts)
			for range n {
				l.Record(context.Background(), audit.ExtAuthz, &rAllow, &dAllow, time.Now(), "")
			}
			for range 100 {
				l.Record(context.Background(), audit.ExtAuthz, &rDeny, &dDeny, time.Now(), "")
			}
			closeLogger(t, l)
			allows, denies := 0, 0
			for _, rec := range sink.records(t) {
				if rec["decision"] == "allow" {
					allows++
				} else {
					denies++
				}
			}
			if denies != 100 {
				t.Errorf("denies written = %d, want every one (100)", denies)
			}
			if allows < c.minAllow || allows > c.maxAll {
				t.Errorf("allows written = %d, want %d..%d", allows, c.minAllow, c.maxAll)
			}
			if seen.Load() != n+100 {
				t.Errorf("observer saw %d events, want every one (%d)", seen.Load(), n+100)
			}
			if st := l.Stats(); st.Dropped != 0 || st.Written != uint64(allows+denies) {
				t.Errorf("stats %+v, want 0 dropped and %d written", st, allows+denies)
			}
		})
	}
}

type observerFunc func(*audit.Event)

func (f observerFunc) Observe(e *audit.Event) { f(e) }

// TestDropWhenFull: with a sink stuck forever, decisions keep their speed
// and the overflow is dropped and counted.
func TestDropWhenFull(t *testing.T) {
	f := audittest.New(t)
	r, d := f.Decide("GET", "/orders/1", "")
	sink := &memSink{gate: make(chan struct{})}
	const buffer, n = 64, 20000
	l := newLogger(t, audit.Options{Sinks: []audit.Sink{sink}, BufferSize: buffer, MaxBatch: 8, NoCallerShare: true})
	ctx := context.Background()
	// First fill the buffer and get the drain goroutine stuck in the sink.
	for range 2 * buffer {
		l.Record(ctx, audit.ExtAuthz, &r, &d, time.Now(), "")
	}
	var worst time.Duration
	start := time.Now()
	for range n {
		t0 := time.Now()
		l.Record(ctx, audit.ExtAuthz, &r, &d, t0, "")
		worst = max(worst, time.Since(t0))
	}
	elapsed := time.Since(start)
	st := l.Stats()
	if st.Dropped < n {
		t.Errorf("dropped = %d, want at least %d (the sink is stuck and the buffer full)", st.Dropped, n)
	}
	if total := st.Dropped + uint64(st.Buffered); total > 2*buffer+n {
		t.Errorf("dropped %d + buffered %d exceeds the %d recorded", st.Dropped, st.Buffered, 2*buffer+n)
	}
	// A drop is a failed channel send and an atomic add: well under a
	// microsecond. The bound is loose for a loaded machine, but a Record
	// that waited for the sink would take the whole test timeout.
	if per := elapsed / n; per > 20*time.Microsecond {
		t.Errorf("Record took %v per call with the buffer full, want it to stay constant (µs)", per)
	}
	t.Logf("with a stuck sink: %v per Record, worst %v, %d dropped", elapsed/n, worst, st.Dropped)
	close(sink.gate)
	closeLogger(t, l)
	if got := sink.count(); got < buffer || got > 2*buffer+8 {
		t.Errorf("written after the sink recovered = %d, want about the buffer (%d)", got, buffer)
	}
}

// TestBlockMode: with Block, a full buffer makes Record wait until its
// context ends, then drop; once the sink recovers nothing is lost.
func TestBlockMode(t *testing.T) {
	f := audittest.New(t)
	r, d := f.Decide("GET", "/orders/1", "")
	sink := &memSink{gate: make(chan struct{})}
	const buffer = 16
	l := newLogger(t, audit.Options{Sinks: []audit.Sink{sink}, BufferSize: buffer, MaxBatch: 1, Block: true, NoCallerShare: true})
	bg := context.Background()
	// One event is taken by the drain goroutine (stuck in Write), then
	// the buffer fills.
	for range buffer + 1 {
		l.Record(bg, audit.ExtAuthz, &r, &d, time.Now(), "")
	}
	waitFor(t, func() bool { return sink.writes.Load() == 1 && l.Stats().Buffered == buffer })
	ctx, cancel := context.WithTimeout(bg, 50*time.Millisecond)
	defer cancel()
	t0 := time.Now()
	l.Record(ctx, audit.ExtAuthz, &r, &d, t0, "")
	if waited := time.Since(t0); waited < 40*time.Millisecond {
		t.Errorf("Record returned after %v with the buffer full, want it to wait for its context (50ms)", waited)
	}
	if got := l.Stats().Dropped; got != 1 {
		t.Errorf("dropped = %d after the context ended, want 1", got)
	}
	// A blocked Record proceeds as soon as the sink drains.
	done := make(chan struct{})
	go func() {
		l.Record(bg, audit.ExtAuthz, &r, &d, time.Now(), "")
		close(done)
	}()
	select {
	case <-done:
		t.Fatal("Record did not wait for room")
	case <-time.After(20 * time.Millisecond):
	}
	close(sink.gate)
	<-done
	closeLogger(t, l)
	if got := sink.count(); got != buffer+2 {
		t.Errorf("written = %d, want %d", got, buffer+2)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached in 5s")
		}
		time.Sleep(time.Millisecond)
	}
}

func TestCloseDrains(t *testing.T) {
	f := audittest.New(t)
	r, d := f.Decide("GET", "/orders/1", "")
	sink := &memSink{}
	l := newLogger(t, audit.Options{Sinks: []audit.Sink{sink}, BufferSize: 5000, NoCallerShare: true})
	for range 3000 {
		l.Record(context.Background(), audit.ExtAuthz, &r, &d, time.Now(), "")
	}
	closeLogger(t, l)
	if got := sink.count(); got != 3000 {
		t.Errorf("written = %d, want 3000", got)
	}
	// After Close, records are dropped, not written, and do not panic.
	l.Record(context.Background(), audit.ExtAuthz, &r, &d, time.Now(), "")
	if l.Stats().Dropped != 1 || sink.count() != 3000 {
		t.Errorf("a record after Close: stats %+v, %d written", l.Stats(), sink.count())
	}
}

func TestCloseTimeout(t *testing.T) {
	f := audittest.New(t)
	r, d := f.Decide("GET", "/orders/1", "")
	for name, deaf := range map[string]bool{"sink honours its context": false, "sink ignores its context": true} {
		t.Run(name, func(t *testing.T) {
			sink := &memSink{gate: make(chan struct{}), deaf: deaf}
			defer close(sink.gate)
			l, err := audit.New(audit.Options{Sinks: []audit.Sink{sink}, BufferSize: 100, MaxBatch: 1, Logger: slogTo(io.Discard)})
			if err != nil {
				t.Fatal(err)
			}
			for range 10 {
				l.Record(context.Background(), audit.ExtAuthz, &r, &d, time.Now(), "")
			}
			ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
			defer cancel()
			t0 := time.Now()
			err = l.Close(ctx)
			if err == nil || !strings.Contains(err.Error(), "lost") {
				t.Errorf("Close with a stuck sink = %v, want an error saying records are lost", err)
			}
			if waited := time.Since(t0); waited > 2*time.Second {
				t.Errorf("Close took %v, want about its deadline", waited)
			}
			if l.Close(context.Background()) == nil {
				t.Error("a second Close forgot the first result")
			}
		})
	}
}

func TestSinkErrorsCounted(t *testing.T) {
	f := audittest.New(t)
	r, d := f.Decide("GET", "/orders/1", "")
	sink := &memSink{fail: errors.New("disk full")}
	var logs bytes.Buffer
	l := newLogger(t, audit.Options{Sinks: []audit.Sink{sink}, Logger: slogTo(&logs)})
	for range 5 {
		l.Record(context.Background(), audit.ExtAuthz, &r, &d, time.Now(), "")
	}
	closeLogger(t, l)
	st := l.Stats()
	if st.Failed != 5 || st.Written != 0 || st.SinkErrors == 0 {
		t.Errorf("stats %+v, want 5 failed and 0 written", st)
	}
	if !strings.Contains(logs.String(), "disk full") {
		t.Errorf("sink error not logged: %s", logs.String())
	}
}

func TestNilLogger(t *testing.T) {
	var l *audit.Logger
	var r decision.Request
	var d decision.Decision
	l.Record(context.Background(), audit.ExtAuthz, &r, &d, time.Now(), "")
	if !l.RecordAdmin(context.Background(), audit.AdminEvent{}) || l.Close(context.Background()) != nil || l.Stats() != (audit.Stats{}) || l.Dropped() != 0 {
		t.Error("a nil Logger must record nothing and report nothing")
	}
}

func TestRecordAdmin(t *testing.T) {
	sink := &memSink{}
	l := newLogger(t, audit.Options{Sinks: []audit.Sink{sink}, DenyOnly: true})
	ok := l.RecordAdmin(context.Background(), audit.AdminEvent{
		Time: audittest.Now, Method: "Revoke", Principal: "ops@example.com", Peer: "127.0.0.1:5555",
		Details: map[string]string{"client_id": "web-app", "reason": "INC-7"}, Latency: time.Millisecond,
	})
	if !ok {
		t.Fatal("RecordAdmin = false")
	}
	closeLogger(t, l)
	recs := sink.records(t)
	if len(recs) != 1 {
		t.Fatalf("got %d records", len(recs))
	}
	want := `{"details":{"client_id":"web-app","reason":"INC-7"},"latency_us":1000,"method":"Revoke","peer":"127.0.0.1:5555","principal":"ops@example.com","status":"ok","time":"2026-11-22T12:00:00Z","type":"admin"}`
	delete(recs[0], "decision_id")
	got, _ := json.Marshal(recs[0])
	if string(got) != want {
		t.Errorf("admin record\n got %s\nwant %s", got, want)
	}
	if e := sink.entries[0]; e.Type != "admin" || e.API != "admin" || e.Reason != "ok" {
		t.Errorf("entry %+v", e)
	}
	if l.RecordAdmin(context.Background(), audit.AdminEvent{Method: "Revoke"}) {
		t.Error("RecordAdmin after Close = true, want false")
	}
}

func TestWriterSink(t *testing.T) {
	f := audittest.New(t)
	var out bytes.Buffer
	l := newLogger(t, audit.Options{Sinks: []audit.Sink{audit.NewWriterSink("stdout", &out)}})
	for _, p := range []string{"/orders/1", "/orders/2", "/nope"} {
		r, d := f.Decide("GET", p, "")
		l.Record(context.Background(), audit.HTTP, &r, &d, time.Now(), "")
	}
	closeLogger(t, l)
	sc := bufio.NewScanner(&out)
	n := 0
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("line %d: %v", n, err)
		}
		n++
	}
	if n != 3 {
		t.Errorf("%d lines, want 3", n)
	}
}

func TestFileSink(t *testing.T) {
	f := audittest.New(t)
	r, d := f.Decide("GET", "/orders/1", "")
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.log")
	fs, err := audit.NewFileSink(path, audit.FileOptions{MaxBytes: 2000, MaxBackups: 2})
	if err != nil {
		t.Fatal(err)
	}
	l := newLogger(t, audit.Options{Sinks: []audit.Sink{fs}, MaxBatch: 1})
	for range 40 {
		l.Record(context.Background(), audit.ExtAuthz, &r, &d, time.Now(), "")
	}
	waitFor(t, func() bool { return l.Stats().Written == 40 })
	// An external rotation: move the file away, ask for a reopen.
	if err := os.Rename(path, path+".moved"); err != nil {
		t.Fatal(err)
	}
	fs.Reopen()
	l.Record(context.Background(), audit.ExtAuthz, &r, &d, time.Now(), "")
	closeLogger(t, l)

	lines := func(p string) int {
		b, err := os.ReadFile(p)
		if err != nil {
			return -1
		}
		for i, line := range bytes.Split(bytes.TrimSuffix(b, []byte("\n")), []byte("\n")) {
			if !json.Valid(line) {
				t.Errorf("%s line %d is not JSON: %q", p, i, line)
			}
		}
		return bytes.Count(b, []byte("\n"))
	}
	if n := lines(path); n != 1 {
		t.Errorf("the reopened file has %d lines, want 1", n)
	}
	moved, b1, b2, b3 := lines(path+".moved"), lines(path+".1"), lines(path+".2"), lines(path+".3")
	if b1 <= 0 || b2 <= 0 || b3 != -1 {
		t.Errorf("rotated files: .1 %d lines, .2 %d lines, .3 %d (want two backups kept, no third)", b1, b2, b3)
	}
	if moved <= 0 || moved+b1+b2 > 40 {
		t.Errorf("lines: moved %d + backups %d, %d; want at most 40 (older backups dropped)", moved, b1, b2)
	}
	for _, p := range []string{path, path + ".1"} {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v, want 0600", p, st.Mode().Perm())
		}
		if p != path && st.Size() > 2000 {
			t.Errorf("%s is %d bytes, want at most MaxBytes (2000)", p, st.Size())
		}
	}
	if _, err := audit.NewFileSink(filepath.Join(dir, "missing", "audit.log"), audit.FileOptions{}); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("file sink in a missing directory: %v", err)
	}
}

func TestParseDestinations(t *testing.T) {
	cases := map[string]struct {
		spec string
		want []audit.Destination
		err  string
	}{
		"off":             {spec: "off"},
		"empty":           {spec: ""},
		"stdout":          {spec: "stdout", want: []audit.Destination{{Kind: "stdout"}}},
		"file":            {spec: "file:/var/log/a.log", want: []audit.Destination{{Kind: "file", Path: "/var/log/a.log"}}},
		"several":         {spec: "stdout, postgres", want: []audit.Destination{{Kind: "stdout"}, {Kind: "postgres"}}},
		"unknown":         {spec: "syslog", err: "unknown"},
		"file no path":    {spec: "file:", err: "names no file"},
		"twice":           {spec: "stdout,stdout", err: "twice"},
		"off and another": {spec: "stdout,off", err: "cannot be combined"},
		"empty entry":     {spec: "stdout,,postgres", err: "empty entry"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			got, err := audit.ParseDestinations(c.spec)
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("error %v, want one containing %q", err, c.err)
				}
				return
			}
			if err != nil || !slices.Equal(got, c.want) {
				t.Errorf("got %v, %v; want %v", got, err, c.want)
			}
		})
	}
}

func TestOptionsValidate(t *testing.T) {
	cases := map[string]struct {
		opts audit.Options
		err  string
	}{
		"zero":              {opts: audit.Options{}},
		"sample above one":  {opts: audit.Options{AllowSample: 1.5}, err: "AllowSample"},
		"negative sample":   {opts: audit.Options{AllowSample: -0.1}, err: "AllowSample"},
		"negative buffer":   {opts: audit.Options{BufferSize: -1}, err: "BufferSize"},
		"huge buffer":       {opts: audit.Options{BufferSize: audit.MaxBufferSize + 1}, err: "BufferSize"},
		"nil sink":          {opts: audit.Options{Sinks: []audit.Sink{nil}}, err: "Sinks[0]"},
		"negative interval": {opts: audit.Options{FlushInterval: -time.Second}, err: "FlushInterval"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			err := c.opts.Validate()
			if c.err == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("error %v, want one naming %s", err, c.err)
			}
		})
	}
}
