package auditotlp_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	collogspb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	logspb "go.opentelemetry.io/proto/otlp/logs/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/scopegate/scopegate/server/auditotlp"
	"github.com/scopegate/scopegate/store/audit"
	"github.com/scopegate/scopegate/store/audit/audittest"
)

// fakeCollector is an in-process OTLP/gRPC logs endpoint. fail, when set,
// answers the call numbered n (from 1) with an error instead of taking it.
type fakeCollector struct {
	collogspb.UnimplementedLogsServiceServer
	mu    sync.Mutex
	calls int
	reqs  []*collogspb.ExportLogsServiceRequest
	mds   []metadata.MD
	fail  func(n int) error
	got   chan struct{}
	// reject is the partial success answered to every call.
	reject *collogspb.ExportLogsPartialSuccess
}

func (f *fakeCollector) Export(ctx context.Context, req *collogspb.ExportLogsServiceRequest) (*collogspb.ExportLogsServiceResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.fail != nil {
		if err := f.fail(f.calls); err != nil {
			return nil, err
		}
	}
	md, _ := metadata.FromIncomingContext(ctx)
	f.reqs = append(f.reqs, req)
	f.mds = append(f.mds, md)
	select {
	case f.got <- struct{}{}:
	default:
	}
	return &collogspb.ExportLogsServiceResponse{PartialSuccess: f.reject}, nil
}

// records returns the log records taken so far, in order.
func (f *fakeCollector) records() []*logspb.LogRecord {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []*logspb.LogRecord
	for _, r := range f.reqs {
		for _, rl := range r.ResourceLogs {
			for _, sl := range rl.ScopeLogs {
				out = append(out, sl.LogRecords...)
			}
		}
	}
	return out
}

// serve serves f on addr ("127.0.0.1:0" for a free port) until the test
// ends or stop is called; it returns the address bound.
func serve(t *testing.T, f *fakeCollector, addr string) (bound string, stop func()) {
	t.Helper()
	var lis net.Listener
	var err error
	for range 50 { // the port of a stopped server may take a moment to free
		if lis, err = net.Listen("tcp", addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	collogspb.RegisterLogsServiceServer(srv, f)
	go srv.Serve(lis)
	var once sync.Once
	stop = func() { once.Do(srv.Stop) }
	t.Cleanup(stop)
	return lis.Addr().String(), stop
}

func newSink(t *testing.T, opts auditotlp.Options) *auditotlp.Sink {
	t.Helper()
	opts.Insecure = true
	if opts.MinRetry == 0 {
		opts.MinRetry = 10 * time.Millisecond
	}
	if opts.MaxRetry == 0 {
		opts.MaxRetry = 50 * time.Millisecond
	}
	opts.Logger = slog.New(slog.NewTextHandler(t.Output(), nil))
	s, err := auditotlp.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// entries are n records of kind k, their decision ids prefix-0, prefix-1, ...
func entries(n int, k audit.RecordKind, prefix string) []audit.Entry {
	out := make([]audit.Entry, n)
	for i := range out {
		id := fmt.Sprintf("%s-%d", prefix, i)
		e := audit.Entry{Time: time.Now(), Type: "decision", DecisionID: id, API: "ext_authz", Allow: k == audit.RecordAllow, Reason: "ok", Route: "read-order", ClientID: "web-app"}
		if k == audit.RecordDeny {
			e.Reason = "token_missing"
		}
		if k == audit.RecordAdmin {
			e.Type, e.API, e.Allow = "admin", "admin", true
		}
		e.JSON = fmt.Appendf(nil, `{"decision_id":%q}`, id)
		out[i] = e
	}
	return out
}

// waitFor polls cond until it holds or five seconds pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func attrs(r *logspb.LogRecord) map[string]string {
	m := map[string]string{}
	for _, kv := range r.Attributes {
		m[kv.Key] = kv.Value.GetStringValue()
	}
	return m
}

// TestDeliversRecords sends an allow and a deny through the audit
// pipeline and checks the log records, their resource and the headers.
func TestDeliversRecords(t *testing.T) {
	fc := &fakeCollector{got: make(chan struct{}, 1)}
	addr, _ := serve(t, fc, "127.0.0.1:0")
	sink := newSink(t, auditotlp.Options{Endpoint: addr, Headers: map[string]string{"authorization": "Bearer collector-secret"}, Resource: map[string]string{"deployment.environment.name": "test"}})
	f := audittest.New(t)
	tok := f.Token(t, "alice", "mobile-app", "orders:read")
	ra, allow := f.Decide("GET", "/orders/1", tok)
	rd, deny := f.Decide("GET", "/orders/1", "")
	// The allow was traced, the deny not: only the allow's log record
	// joins a trace.
	ra.TraceID = [16]byte{0x4b, 0xf9, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14}
	ra.SpanID = [8]byte{0x00, 0xf0, 1, 2, 3, 4, 5, 6}
	l, err := audit.New(audit.Options{Sinks: []audit.Sink{sink}})
	if err != nil {
		t.Fatal(err)
	}
	l.Record(context.Background(), audit.ExtAuthz, &ra, &allow, time.Now(), "")
	l.Record(context.Background(), audit.HTTP, &rd, &deny, time.Now(), "")
	if err := l.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	recs := fc.records()
	if len(recs) != 2 {
		t.Fatalf("%d records arrived, want 2", len(recs))
	}
	if st := sink.Stats(); st.Delivered != 2 || st.Held != 0 || st.Dropped != 0 {
		t.Errorf("stats %+v, want 2 delivered", st)
	}
	fc.mu.Lock()
	res := fc.reqs[0].ResourceLogs[0].Resource
	md := fc.mds[0]
	fc.mu.Unlock()
	resAttrs := map[string]string{}
	for _, kv := range res.Attributes {
		resAttrs[kv.Key] = kv.Value.GetStringValue()
	}
	if resAttrs["service.name"] != "scopegate" || resAttrs["deployment.environment.name"] != "test" {
		t.Errorf("resource %v, want service.name scopegate and the added attribute", resAttrs)
	}
	if got := md.Get("authorization"); len(got) != 1 || got[0] != "Bearer collector-secret" {
		t.Errorf("authorization header %v, want the configured one", got)
	}
	for _, r := range recs {
		a := attrs(r)
		var body map[string]any
		if err := json.Unmarshal([]byte(r.Body.GetStringValue()), &body); err != nil {
			t.Fatalf("body is not the JSON record: %v", err)
		}
		if a[auditotlp.AttrDecisionID] != body["decision_id"] || a[auditotlp.AttrAPI] != body["api"] || a[auditotlp.AttrDecision] != body["decision"] || a[auditotlp.AttrRoute] != "read-order" || a[auditotlp.AttrRecordType] != "decision" {
			t.Errorf("attributes %v do not match the record %v", a, body)
		}
		if r.EventName != "scopegate.decision" || r.TimeUnixNano == 0 || r.ObservedTimeUnixNano < r.TimeUnixNano {
			t.Errorf("event %q time %d observed %d", r.EventName, r.TimeUnixNano, r.ObservedTimeUnixNano)
		}
		switch body["decision"] {
		case "allow":
			if r.SeverityNumber != logspb.SeverityNumber_SEVERITY_NUMBER_INFO || a[auditotlp.AttrClientID] != "mobile-app" || a[auditotlp.AttrReason] != "ok" {
				t.Errorf("allow: severity %v attributes %v", r.SeverityNumber, a)
			}
			if !bytes.Equal(r.TraceId, ra.TraceID[:]) || !bytes.Equal(r.SpanId, ra.SpanID[:]) || r.Flags&1 == 0 {
				t.Errorf("allow: trace %x span %x flags %d, want the check's span %x %x, sampled", r.TraceId, r.SpanId, r.Flags, ra.TraceID, ra.SpanID)
			}
			if body["trace_id"] != hex.EncodeToString(ra.TraceID[:]) {
				t.Errorf("allow: record's trace_id %v", body["trace_id"])
			}
		case "deny":
			if r.SeverityNumber != logspb.SeverityNumber_SEVERITY_NUMBER_WARN || r.SeverityText != "WARN" || a[auditotlp.AttrReason] != "token_missing" {
				t.Errorf("deny: severity %v %q attributes %v", r.SeverityNumber, r.SeverityText, a)
			}
			if len(r.TraceId) != 0 || len(r.SpanId) != 0 {
				t.Errorf("deny: untraced check's record names trace %x span %x", r.TraceId, r.SpanId)
			}
		}
		if b, _ := protojson.Marshal(r); strings.Contains(string(b), tok) {
			t.Errorf("a log record holds the token: %s", b)
		}
	}
}

// TestBufferBound holds records while the collector refuses them, up to
// the buffer (allows apart from denies), and reports the rest by kind.
func TestBufferBound(t *testing.T) {
	fc := &fakeCollector{fail: func(int) error { return status.Error(codes.Unavailable, "down") }}
	addr, _ := serve(t, fc, "127.0.0.1:0")
	sink := newSink(t, auditotlp.Options{Endpoint: addr, BufferSize: 16})
	ctx := context.Background()
	var we *audit.WriteError
	if err := sink.Write(ctx, entries(16, audit.RecordAllow, "a")); err != nil {
		t.Fatalf("16 allows into 16 slots: %v", err)
	}
	waitFor(t, "a failed export", func() bool { return sink.Stats().Failures > 0 })
	if err := sink.Write(ctx, entries(4, audit.RecordAllow, "b")); !errors.As(err, &we) || we.Dropped[audit.RecordAllow] != 4 || we.Lost != 0 {
		t.Fatalf("4 allows more: %v (%+v), want 4 allows dropped", err, we)
	}
	// Denies have room of their own: the allows took none of it.
	if err := sink.Write(ctx, entries(10, audit.RecordDeny, "d")); err != nil {
		t.Fatalf("10 denies with the allows' room full: %v", err)
	}
	err := sink.Write(ctx, append(entries(10, audit.RecordDeny, "e"), entries(1, audit.RecordAdmin, "m")...))
	if !errors.As(err, &we) || we.Dropped[audit.RecordDeny] != 4 || we.Dropped[audit.RecordAdmin] != 1 || we.Dropped[audit.RecordAllow] != 0 {
		t.Fatalf("11 more into 6 slots: %v (%+v), want 4 denies and 1 admin dropped", err, we)
	}
	if !strings.Contains(err.Error(), "buffer is full") || !strings.Contains(err.Error(), "down") {
		t.Errorf("error %q does not say why", err)
	}
	if err := sink.Flush(ctx); err != nil {
		t.Errorf("Flush reports drops twice: %v", err)
	}
	if st := sink.Stats(); st.Held != 32 || st.Dropped != 9 || st.Failures == 0 {
		t.Errorf("stats %+v, want 32 held, 9 dropped, failed exports", st)
	}
	cctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	err = sink.Close(cctx)
	if !errors.As(err, &we) || we.Lost != 32 {
		t.Fatalf("Close with the collector down: %v, want 32 lost", err)
	}
	if len(fc.records()) != 0 {
		t.Fatal("records arrived at a collector that refused them")
	}
}

// TestRetryKeepsOrder has the collector fail its first calls: every
// record arrives once, in order.
func TestRetryKeepsOrder(t *testing.T) {
	fc := &fakeCollector{fail: func(n int) error {
		if n <= 3 {
			return status.Error(codes.Unavailable, "starting")
		}
		return nil
	}}
	addr, _ := serve(t, fc, "127.0.0.1:0")
	sink := newSink(t, auditotlp.Options{Endpoint: addr, MaxBatch: 4})
	ctx := context.Background()
	want := append(entries(5, audit.RecordAllow, "x"), entries(6, audit.RecordDeny, "y")...)
	if err := sink.Write(ctx, want[:5]); err != nil {
		t.Fatal(err)
	}
	if err := sink.Write(ctx, want[5:]); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "11 records", func() bool { return len(fc.records()) >= len(want) })
	if err := sink.Close(ctx); err != nil {
		t.Fatal(err)
	}
	got := fc.records()
	if len(got) != len(want) {
		t.Fatalf("%d records, want %d", len(got), len(want))
	}
	for i, r := range got {
		if id := attrs(r)[auditotlp.AttrDecisionID]; id != want[i].DecisionID {
			t.Fatalf("record %d is %s, want %s", i, id, want[i].DecisionID)
		}
	}
	if st := sink.Stats(); st.Failures < 3 || st.Delivered != uint64(len(want)) {
		t.Errorf("stats %+v, want at least 3 failures and every record delivered", st)
	}
}

// TestCollectorRestart stops the collector, writes, and starts it again
// on the same port: nothing within the buffer is lost.
func TestCollectorRestart(t *testing.T) {
	fc := &fakeCollector{}
	addr, stop := serve(t, fc, "127.0.0.1:0")
	sink := newSink(t, auditotlp.Options{Endpoint: addr, BufferSize: 100})
	ctx := context.Background()
	if err := sink.Write(ctx, entries(3, audit.RecordAllow, "before")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the first records", func() bool { return len(fc.records()) == 3 })
	stop()
	if err := sink.Write(ctx, entries(50, audit.RecordDeny, "during")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a failed export", func() bool { return sink.Stats().Failures > 0 })
	fc2 := &fakeCollector{}
	serve(t, fc2, addr)
	waitFor(t, "the held records", func() bool { return len(fc2.records()) == 50 })
	if err := sink.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if st := sink.Stats(); st.Delivered != 53 || st.Dropped != 0 || st.Lost != 0 {
		t.Errorf("stats %+v, want 53 delivered and nothing lost", st)
	}
}

// TestInvalidArgumentLoses: a batch the collector calls invalid is not
// retried, and its records are reported lost.
func TestInvalidArgumentLoses(t *testing.T) {
	fc := &fakeCollector{fail: func(n int) error {
		if n == 1 {
			return status.Error(codes.InvalidArgument, "bad batch")
		}
		return nil
	}}
	addr, _ := serve(t, fc, "127.0.0.1:0")
	sink := newSink(t, auditotlp.Options{Endpoint: addr})
	ctx := context.Background()
	if err := sink.Write(ctx, entries(3, audit.RecordDeny, "z")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the refusal", func() bool { fc.mu.Lock(); defer fc.mu.Unlock(); return fc.calls >= 1 })
	var we *audit.WriteError
	waitFor(t, "the loss reported", func() bool {
		err := sink.Flush(ctx)
		return errors.As(err, &we) && we.Lost == 3
	})
	if err := sink.Write(ctx, entries(1, audit.RecordDeny, "after")); err != nil {
		t.Fatal(err)
	}
	if err := sink.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if got := fc.records(); len(got) != 1 {
		t.Fatalf("%d records arrived, want the one after the refused batch", len(got))
	}
}

// TestPartialSuccess: records the collector takes but rejects are
// reported lost, the others delivered.
func TestPartialSuccess(t *testing.T) {
	fc := &fakeCollector{reject: &collogspb.ExportLogsPartialSuccess{RejectedLogRecords: 2, ErrorMessage: "too old"}}
	addr, _ := serve(t, fc, "127.0.0.1:0")
	sink := newSink(t, auditotlp.Options{Endpoint: addr})
	ctx := context.Background()
	if err := sink.Write(ctx, entries(5, audit.RecordAllow, "p")); err != nil {
		t.Fatal(err)
	}
	var we *audit.WriteError
	if err := sink.Close(ctx); !errors.As(err, &we) || we.Lost != 2 {
		t.Fatalf("Close: %v, want 2 records reported lost", err)
	}
	if st := sink.Stats(); st.Delivered != 3 || st.Lost != 2 {
		t.Errorf("stats %+v, want 3 delivered and 2 lost", st)
	}
}

// TestCloseGivesUp: with the collector down, Close retries for
// CloseRetry, not until its context ends, and counts what it held.
func TestCloseGivesUp(t *testing.T) {
	fc := &fakeCollector{fail: func(int) error { return status.Error(codes.Unavailable, "down") }}
	addr, _ := serve(t, fc, "127.0.0.1:0")
	sink := newSink(t, auditotlp.Options{Endpoint: addr, CloseRetry: 200 * time.Millisecond, MaxRetry: time.Minute})
	ctx := context.Background()
	if err := sink.Write(ctx, entries(7, audit.RecordDeny, "g")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a failed export", func() bool { return sink.Stats().Failures > 0 })
	start := time.Now()
	var we *audit.WriteError
	if err := sink.Close(ctx); !errors.As(err, &we) || we.Lost != 7 {
		t.Fatalf("Close: %v, want 7 lost", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("Close took %v with CloseRetry 200ms", d)
	}
	fc.mu.Lock()
	calls := fc.calls
	fc.mu.Unlock()
	if calls < 2 {
		t.Errorf("%d export calls: Close did not try again", calls)
	}
}

// TestCloseDelivers: records written just before Close still arrive.
func TestCloseDelivers(t *testing.T) {
	fc := &fakeCollector{}
	addr, _ := serve(t, fc, "127.0.0.1:0")
	sink := newSink(t, auditotlp.Options{Endpoint: addr, MaxBatch: 7})
	ctx := context.Background()
	if err := sink.Write(ctx, entries(100, audit.RecordAllow, "c")); err != nil {
		t.Fatal(err)
	}
	if err := sink.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if got := len(fc.records()); got != 100 {
		t.Fatalf("%d records arrived before Close returned, want 100", got)
	}
}

func TestValidate(t *testing.T) {
	for name, c := range map[string]struct {
		opts auditotlp.Options
		want string
	}{
		"no endpoint":   {auditotlp.Options{}, "no endpoint"},
		"not host:port": {auditotlp.Options{Endpoint: "http://collector"}, "is not host:port"},
		"buffer":        {auditotlp.Options{Endpoint: "c:4317", BufferSize: -1}, "buffer -1 is out of range"},
		"header":        {auditotlp.Options{Endpoint: "c:4317", Headers: map[string]string{"Authorization": "x"}}, "not a lower-case gRPC metadata key"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := auditotlp.New(c.opts)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("New(%+v) = %v, want an error containing %q", c.opts, err, c.want)
			}
		})
	}
}

// BenchmarkOTLPWrite is the otlp sink's cost per record on the audit
// goroutine. "held": the collector is unreachable, so Write only copies
// the encoded record into the buffer (the exporter sleeps in its
// backoff); the loop stays within the buffer up to -benchtime 100000x.
// "delivered": a collector takes everything, and the figures include the
// exporter's own work (building and sending the log records) on the
// other goroutine, amortized per record.
func BenchmarkOTLPWrite(b *testing.B) {
	f := audittest.New(b)
	tok := f.Token(b, "alice", "mobile-app", "orders:read")
	r, d := f.Decide("GET", "/orders/1", tok)
	ms := &memSink{}
	l, err := audit.New(audit.Options{Sinks: []audit.Sink{ms}})
	if err != nil {
		b.Fatal(err)
	}
	l.Record(context.Background(), audit.ExtAuthz, &r, &d, time.Now(), "")
	if err := l.Close(context.Background()); err != nil || len(ms.entries) != 1 {
		b.Fatalf("no record to write: %v", err)
	}
	batch := ms.entries
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	run := func(b *testing.B, endpoint string) {
		s, err := auditotlp.New(auditotlp.Options{Endpoint: endpoint, Insecure: true, BufferSize: 1 << 17, MaxBufferBytes: 1 << 30, MinRetry: time.Minute, Logger: quiet})
		if err != nil {
			b.Fatal(err)
		}
		ctx := context.Background()
		b.ReportAllocs()
		b.SetBytes(int64(len(batch[0].JSON)))
		for b.Loop() {
			_ = s.Write(ctx, batch) // a drop (the buffer full) is counted below
		}
		b.StopTimer()
		b.ReportMetric(float64(s.Stats().Dropped)/float64(b.N), "dropped/op")
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		_ = s.Close(cctx)
	}
	b.Run("held", func(b *testing.B) {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		addr := lis.Addr().String()
		lis.Close() // nothing listens: every export fails
		run(b, addr)
	})
	b.Run("delivered", func(b *testing.B) {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		srv := grpc.NewServer()
		collogspb.RegisterLogsServiceServer(srv, &fakeCollector{})
		go srv.Serve(lis)
		defer srv.Stop()
		run(b, lis.Addr().String())
	})
}

// memSink keeps copies of the entries written.
type memSink struct{ entries []audit.Entry }

func (*memSink) Name() string { return "mem" }
func (m *memSink) Write(_ context.Context, es []audit.Entry) error {
	for _, e := range es {
		e.JSON = append([]byte(nil), e.JSON...)
		m.entries = append(m.entries, e)
	}
	return nil
}
func (*memSink) Flush(context.Context) error { return nil }
func (*memSink) Close(context.Context) error { return nil }
