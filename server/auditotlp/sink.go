package auditotlp

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	logspb "go.opentelemetry.io/proto/otlp/logs/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/scopegate/scopegate/store/audit"
)

// Defaults of Options. A zero field means its default.
const (
	// DefaultBufferSize is the allows held while the collector is slow or
	// down, and as many denies and admin records besides.
	DefaultBufferSize = audit.DefaultBufferSize
	// DefaultMaxBufferBytes bounds the JSON the buffer holds, whatever
	// the record count: about 50,000 typical records.
	DefaultMaxBufferBytes = 32 << 20
	// DefaultMaxBatch bounds the records of one export call.
	DefaultMaxBatch = 512
	// DefaultTimeout bounds one export call.
	DefaultTimeout = 10 * time.Second
	// DefaultMinRetry and DefaultMaxRetry bound the backoff between
	// attempts while the collector does not take the records.
	DefaultMinRetry = 100 * time.Millisecond
	DefaultMaxRetry = 30 * time.Second
	// DefaultCloseRetry bounds how long Close keeps retrying a collector
	// that does not take records: the rest of the shutdown (usage counts)
	// shares the same deadline.
	DefaultCloseRetry = 2 * time.Second
	// DefaultServiceName is the resource's service.name.
	DefaultServiceName = "scopegate"
	// MaxBufferSize bounds BufferSize.
	MaxBufferSize = audit.MaxBufferSize
)

// Attribute keys of each log record: a contract with the queries and
// routing rules written against them.
const (
	AttrRecordType = "scopegate.record.type" // decision or admin
	AttrAPI        = "scopegate.api"         // ext_authz, authorizer, http, authzen, admin
	AttrDecision   = "scopegate.decision"    // allow or deny (decisions only)
	AttrReason     = "scopegate.reason"      // the reason code; an admin call's status
	AttrRoute      = "scopegate.route"       // the matched route, when any
	AttrClientID   = "scopegate.client_id"   // the token's client, when verified (as masked)
	AttrDecisionID = "scopegate.decision_id"
	// ScopeName is the instrumentation scope of the records.
	ScopeName = "github.com/scopegate/scopegate/audit"
)

// Options configure a Sink.
type Options struct {
	// Endpoint is the collector's OTLP/gRPC address, host:port (the
	// collector's default port is 4317).
	Endpoint string
	// Insecure sends in plaintext (a collector on loopback or in the same
	// pod). Otherwise the connection uses TLS with TLS (nil: the system
	// roots).
	Insecure bool
	TLS      *tls.Config
	// Headers are sent with every export (a collector's bearer token, a
	// tenant id). They are never logged.
	Headers map[string]string
	// ServiceName is the resource's service.name, default "scopegate";
	// Resource adds attributes to the resource (service.version,
	// deployment.environment.name, ...).
	ServiceName string
	Resource    map[string]string
	// BufferSize is the allows held (sent or waiting for the collector);
	// as many denies and admin records are held besides, so a flood of
	// allows cannot take their room. Default DefaultBufferSize.
	BufferSize int
	// MaxBufferBytes bounds the records' JSON held; default
	// DefaultMaxBufferBytes.
	MaxBufferBytes int
	// MaxBatch bounds the records of one export; default DefaultMaxBatch.
	MaxBatch int
	// Timeout bounds one export call; default DefaultTimeout.
	Timeout time.Duration
	// MinRetry and MaxRetry bound the backoff between failed exports (and
	// the gRPC reconnection backoff); defaults DefaultMinRetry and
	// DefaultMaxRetry.
	MinRetry, MaxRetry time.Duration
	// CloseRetry bounds how long Close retries while the collector does
	// not take records (a collector that does is given until Close's
	// context ends); default DefaultCloseRetry.
	CloseRetry time.Duration
	// Logger receives the sink's own messages (the collector unreachable,
	// then reachable again), at most one every 10 seconds; default
	// slog.Default().
	Logger *slog.Logger
	// DialOptions are added to the connection's (tests).
	DialOptions []grpc.DialOption
}

// Validate reports every invalid option, each with the fix.
func (o *Options) Validate() error {
	var errs []error
	if o.Endpoint == "" {
		errs = append(errs, errors.New("otlp audit sink: no endpoint: give the collector's OTLP/gRPC address, e.g. otel-collector:4317"))
	} else if _, port, err := net.SplitHostPort(o.Endpoint); err != nil || !validPort(port) {
		errs = append(errs, fmt.Errorf("otlp audit sink: endpoint %q is not host:port (e.g. otel-collector:4317)", o.Endpoint))
	}
	if o.Insecure && o.TLS != nil {
		errs = append(errs, errors.New("otlp audit sink: both insecure and a TLS configuration: choose one"))
	}
	if o.BufferSize < 0 || o.BufferSize > MaxBufferSize {
		errs = append(errs, fmt.Errorf("otlp audit sink: buffer %d is out of range: use 1 to %d records, or 0 for the default (%d)", o.BufferSize, MaxBufferSize, DefaultBufferSize))
	}
	if o.MaxBufferBytes < 0 || o.MaxBatch < 0 || o.Timeout < 0 || o.MinRetry < 0 || o.MaxRetry < 0 || o.CloseRetry < 0 {
		errs = append(errs, errors.New("otlp audit sink: MaxBufferBytes, MaxBatch, Timeout, MinRetry, MaxRetry and CloseRetry must not be negative (0 means the default)"))
	}
	for k := range o.Headers {
		if k == "" || k != strings.ToLower(k) || strings.ContainsAny(k, " \t\r\n:") {
			errs = append(errs, fmt.Errorf("otlp audit sink: header name %q is not a lower-case gRPC metadata key: write it in lower case without spaces or colons", k))
		}
	}
	return errors.Join(errs...)
}

func validPort(p string) bool {
	n, err := strconv.Atoi(p)
	return err == nil && n > 0 && n < 1<<16
}

// record is one held record: the Entry fields the log record names and
// its JSON, copied.
type record struct {
	time       time.Time
	observed   time.Time
	kind       audit.RecordKind
	typ        string
	api        string
	reason     string
	route      string
	clientID   string
	decisionID string
	traceID    [16]byte
	spanID     [8]byte
	json       string
}

// Sink is the otlp audit sink. Write is called from the audit goroutine;
// one goroutine of the sink's own exports.
type Sink struct {
	opts     Options
	conn     *grpc.ClientConn
	md       metadata.MD
	resource *resourcepb.Resource
	log      *slog.Logger

	// mu guards the buffer: a ring of held records, oldest at head; the
	// exporter reads the first records outside the lock (Write only ever
	// fills free slots) and removes them once the collector took them.
	mu       sync.Mutex
	ring     []record
	head, n  int
	nAllow   int
	bytes    int
	allowCap int
	// dropped and lost are reported (and reset) by the next Write or
	// Flush, as an audit.WriteError.
	dropped [audit.NumRecordKinds]int
	lost    int
	lastErr error

	wake    chan struct{}
	quit    chan struct{}
	done    chan struct{}
	ctx     context.Context // ends when Close gives up
	cancel  context.CancelFunc
	closing sync.Once

	delivered    atomic.Uint64
	droppedTotal atomic.Uint64
	lostTotal    atomic.Uint64
	failures     atomic.Uint64
}

// New validates opts and starts the sink. It does not wait for the
// collector: records are held until it answers.
func New(opts Options) (*Sink, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	if opts.BufferSize == 0 {
		opts.BufferSize = DefaultBufferSize
	}
	if opts.MaxBufferBytes == 0 {
		opts.MaxBufferBytes = DefaultMaxBufferBytes
	}
	if opts.MaxBatch == 0 {
		opts.MaxBatch = DefaultMaxBatch
	}
	if opts.Timeout == 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.MinRetry == 0 {
		opts.MinRetry = DefaultMinRetry
	}
	if opts.MaxRetry == 0 {
		opts.MaxRetry = DefaultMaxRetry
	}
	opts.MaxRetry = max(opts.MaxRetry, opts.MinRetry)
	if opts.CloseRetry == 0 {
		opts.CloseRetry = DefaultCloseRetry
	}
	if opts.ServiceName == "" {
		opts.ServiceName = DefaultServiceName
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	creds := insecure.NewCredentials()
	if !opts.Insecure {
		tc := opts.TLS
		if tc == nil {
			tc = &tls.Config{MinVersion: tls.VersionTLS12}
		}
		creds = credentials.NewTLS(tc)
	}
	dial := append([]grpc.DialOption{
		grpc.WithTransportCredentials(creds),
		// Reconnect on the sink's own backoff, not gRPC's default that
		// grows to two minutes: a restarted collector is used again
		// within MaxRetry.
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: opts.MinRetry, Multiplier: 1.6, Jitter: 0.2, MaxDelay: opts.MaxRetry},
			MinConnectTimeout: min(opts.Timeout, 20*time.Second),
		}),
	}, opts.DialOptions...)
	conn, err := grpc.NewClient(opts.Endpoint, dial...)
	if err != nil {
		return nil, fmt.Errorf("otlp audit sink: endpoint %s: %w", opts.Endpoint, err)
	}
	s := &Sink{
		opts:     opts,
		conn:     conn,
		md:       metadata.New(opts.Headers),
		resource: newResource(opts.ServiceName, opts.Resource),
		log:      opts.Logger,
		ring:     make([]record, 2*opts.BufferSize),
		allowCap: opts.BufferSize,
		wake:     make(chan struct{}, 1),
		quit:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	go s.run()
	return s, nil
}

func newResource(service string, attrs map[string]string) *resourcepb.Resource {
	r := &resourcepb.Resource{Attributes: []*commonpb.KeyValue{str("service.name", service)}}
	for k, v := range attrs {
		if k != "service.name" {
			r.Attributes = append(r.Attributes, str(k, v))
		}
	}
	return r
}

// Name implements audit.Sink.
func (s *Sink) Name() string { return "otlp:" + s.opts.Endpoint }

// Write implements audit.Sink: it copies the records into the buffer and
// wakes the exporter. A record with no room is dropped and reported, by
// kind, in the returned *audit.WriteError; so are records the collector
// refused since the last call.
func (s *Sink) Write(_ context.Context, entries []audit.Entry) error {
	now := time.Now()
	s.mu.Lock()
	for i := range entries {
		e := &entries[i]
		k := audit.KindOf(e)
		if s.n == len(s.ring) || (k == audit.RecordAllow && s.nAllow >= s.allowCap) ||
			(k != audit.RecordAllow && s.n-s.nAllow >= len(s.ring)-s.allowCap) || s.bytes+len(e.JSON) > s.opts.MaxBufferBytes {
			s.dropped[k]++
			continue
		}
		s.ring[(s.head+s.n)%len(s.ring)] = record{
			time: e.Time, observed: now, kind: k, typ: e.Type, api: e.API, reason: e.Reason,
			route: e.Route, clientID: e.ClientID, decisionID: e.DecisionID, traceID: e.TraceID, spanID: e.SpanID, json: string(e.JSON),
		}
		s.n++
		s.bytes += len(e.JSON)
		if k == audit.RecordAllow {
			s.nAllow++
		}
	}
	err := s.reportLocked()
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
	return err
}

// reportLocked returns the drops and losses since the last report, and
// resets them.
func (s *Sink) reportLocked() error {
	var we audit.WriteError
	total := 0
	for k, n := range s.dropped {
		we.Dropped[k] = n
		total += n
	}
	we.Lost = s.lost
	if total == 0 && we.Lost == 0 {
		return nil
	}
	s.dropped = [audit.NumRecordKinds]int{}
	s.lost = 0
	s.droppedTotal.Add(uint64(total))
	s.lostTotal.Add(uint64(we.Lost))
	cause := "the collector takes records more slowly than they arrive"
	if s.lastErr != nil {
		cause = "the collector does not take records: " + s.lastErr.Error()
	}
	switch {
	case total > 0 && we.Lost > 0:
		we.Err = fmt.Errorf("otlp %s: %d records dropped (buffer full: %d held) and %d refused by the collector; %s", s.opts.Endpoint, total, s.n, we.Lost, cause)
	case total > 0:
		we.Err = fmt.Errorf("otlp %s: %d records dropped, the buffer is full (%d held); %s", s.opts.Endpoint, total, s.n, cause)
	default:
		we.Err = fmt.Errorf("otlp %s: %d records refused by the collector", s.opts.Endpoint, we.Lost)
	}
	return &we
}

// Flush implements audit.Sink. It does not wait for the collector (the
// exporter sends as records arrive); it reports what was dropped or
// refused since the last call.
func (s *Sink) Flush(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reportLocked()
}

// Close implements audit.Sink: it waits, until ctx ends, for the
// exporter to deliver every held record, retrying a collector that does
// not take them for at most Options.CloseRetry, then closes the
// connection. Records still held then are lost, and the error says how
// many.
func (s *Sink) Close(ctx context.Context) error {
	s.closing.Do(func() { close(s.quit) })
	select {
	case <-s.done:
	case <-ctx.Done():
		s.cancel()
		<-s.done
	}
	s.cancel()
	s.mu.Lock()
	s.lost += s.n
	s.n, s.nAllow, s.bytes = 0, 0, 0
	clear(s.ring)
	err := s.reportLocked()
	s.mu.Unlock()
	if cerr := s.conn.Close(); cerr != nil && err == nil && status.Code(cerr) != codes.Canceled {
		err = fmt.Errorf("otlp %s: close: %w", s.opts.Endpoint, cerr)
	}
	return err
}

// Stats are the sink's counters since it started.
type Stats struct {
	// Held is the number of records waiting for the collector.
	Held int
	// Delivered records were taken by the collector; Dropped found no
	// room in the buffer; Lost were refused by the collector, or still
	// held when Close gave up. Failures counts failed export calls.
	Delivered, Dropped, Lost, Failures uint64
}

// Stats returns the sink's counters. Dropped and Lost count what was
// reported to the audit pipeline by Write, Flush or Close.
func (s *Sink) Stats() Stats {
	s.mu.Lock()
	held := s.n
	s.mu.Unlock()
	return Stats{Held: held, Delivered: s.delivered.Load(), Dropped: s.droppedTotal.Load(), Lost: s.lostTotal.Load(), Failures: s.failures.Load()}
}

// logEvery rate-limits the sink's messages.
const logEvery = 10 * time.Second

// run is the exporter: it sends held records, oldest first, one batch at
// a time, and backs off while the collector does not take them. After
// Close it keeps going until nothing is held or Close gives up.
func (s *Sink) run() {
	defer close(s.done)
	var (
		wait      time.Duration
		quitting  bool
		failingAt time.Time
		lastLog   time.Time
		failed    int
		quitAt    time.Time
		// timeout bounds one export: Options.Timeout, and at Close no
		// more than CloseRetry.
		timeout = s.opts.Timeout
	)
	startQuit := func() {
		quitting, quitAt = true, time.Now()
		timeout = min(timeout, s.opts.CloseRetry)
	}
	for {
		s.mu.Lock()
		n := s.n
		s.mu.Unlock()
		if n == 0 {
			if quitting {
				return
			}
			select {
			case <-s.wake:
				continue
			case <-s.quit:
				startQuit()
				continue
			case <-s.ctx.Done():
				return
			}
		}
		err := s.export(timeout, min(n, s.opts.MaxBatch))
		if s.ctx.Err() != nil {
			return
		}
		if err == nil {
			if !failingAt.IsZero() {
				s.log.Info("otlp audit sink: the collector takes records again", "endpoint", s.opts.Endpoint, "down_for", time.Since(failingAt).Round(time.Millisecond).String(), "failed_exports", failed)
			}
			wait, failingAt, failed = 0, time.Time{}, 0
			continue
		}
		s.failures.Add(1)
		failed++
		now := time.Now()
		if quitting && now.Sub(quitAt) >= s.opts.CloseRetry {
			return // Close counts what is still held as lost
		}
		if failingAt.IsZero() {
			failingAt = now
		}
		if now.Sub(lastLog) >= logEvery {
			s.mu.Lock()
			held := s.n
			s.mu.Unlock()
			s.log.Warn("otlp audit sink: the collector does not take records; holding them and retrying", "endpoint", s.opts.Endpoint, "error", err, "held", held, "failed_exports", failed)
			lastLog = now
		}
		wait = min(max(2*wait, s.opts.MinRetry), s.opts.MaxRetry)
		if quitting {
			wait = min(wait, s.opts.CloseRetry-now.Sub(quitAt))
		}
		t := time.NewTimer(wait/2 + rand.N(wait/2+1))
		quit := s.quit
		if quitting {
			quit = nil
		}
		select {
		case <-t.C:
		case <-quit:
			// Shutting down: try again at once, then from the shortest
			// backoff.
			startQuit()
			wait = 0
		case <-s.ctx.Done():
			t.Stop()
			return
		}
		t.Stop()
	}
}

// export sends the n oldest records. They leave the buffer when the
// collector took them, or refused them for good (InvalidArgument: the
// same batch would never pass); on any other error they stay for a retry.
func (s *Sink) export(timeout time.Duration, n int) error {
	s.mu.Lock()
	head, size := s.head, len(s.ring)
	s.mu.Unlock()
	recs := make([]*logspb.LogRecord, n)
	for i := range n {
		recs[i] = logRecord(&s.ring[(head+i)%size])
	}
	req := &logspb.LogsData{ResourceLogs: []*logspb.ResourceLogs{{
		Resource:  s.resource,
		ScopeLogs: []*logspb.ScopeLogs{{Scope: &commonpb.InstrumentationScope{Name: ScopeName}, LogRecords: recs}},
	}}}
	ctx, cancel := context.WithTimeout(s.ctx, timeout)
	defer cancel()
	if len(s.md) > 0 {
		ctx = metadata.NewOutgoingContext(ctx, s.md)
	}
	var resp emptypb.Empty
	err := s.conn.Invoke(ctx, exportMethod, req, &resp)
	refused := 0
	switch {
	case err == nil:
		if rejected, msg := partialSuccess(resp.ProtoReflect().GetUnknown()); rejected > 0 {
			refused = int(min(rejected, int64(n)))
			s.log.Warn("otlp audit sink: the collector refused records", "endpoint", s.opts.Endpoint, "refused", refused, "message", msg)
		}
	case status.Code(err) == codes.InvalidArgument:
		refused = n
		s.log.Error("otlp audit sink: the collector refused a batch as invalid; its records are lost", "endpoint", s.opts.Endpoint, "records", n, "error", err)
	default:
		s.mu.Lock()
		s.lastErr = err
		s.mu.Unlock()
		return err
	}
	s.mu.Lock()
	for i := range n {
		j := (s.head + i) % size
		if s.ring[j].kind == audit.RecordAllow {
			s.nAllow--
		}
		s.bytes -= len(s.ring[j].json)
		s.ring[j] = record{}
	}
	s.head = (s.head + n) % size
	s.n -= n
	s.lost += refused
	s.lastErr = nil
	s.mu.Unlock()
	s.delivered.Add(uint64(n - refused))
	return nil
}

// exportMethod is the OTLP logs service's one call. Its request,
// ExportLogsServiceRequest, has the wire form of LogsData (both are
// "repeated ResourceLogs resource_logs = 1", LogsData being defined for
// carrying logs outside the service), so the sink sends a LogsData and
// reads the response's partial success itself. The generated service
// package would bring grpc-gateway's HTTP runtime (and the flag package)
// into the server for one method name.
const exportMethod = "/opentelemetry.proto.collector.logs.v1.LogsService/Export"

// partialSuccess decodes ExportLogsServiceResponse.partial_success (field
// 1: rejected_log_records = 1, error_message = 2) from the response's
// fields, which the empty message kept as unknown.
func partialSuccess(b []byte) (rejected int64, msg string) {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return 0, ""
		}
		b = b[n:]
		if num != 1 || typ != protowire.BytesType {
			if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
				return 0, ""
			}
			b = b[n:]
			continue
		}
		ps, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return 0, ""
		}
		b = b[n:]
		for len(ps) > 0 {
			num, typ, n := protowire.ConsumeTag(ps)
			if n < 0 {
				return rejected, msg
			}
			ps = ps[n:]
			switch {
			case num == 1 && typ == protowire.VarintType:
				v, n := protowire.ConsumeVarint(ps)
				if n < 0 {
					return rejected, msg
				}
				rejected, ps = int64(v), ps[n:]
			case num == 2 && typ == protowire.BytesType:
				v, n := protowire.ConsumeBytes(ps)
				if n < 0 {
					return rejected, msg
				}
				msg, ps = string(v), ps[n:]
			default:
				n := protowire.ConsumeFieldValue(num, typ, ps)
				if n < 0 {
					return rejected, msg
				}
				ps = ps[n:]
			}
		}
	}
	return rejected, msg
}

// logRecord is the OpenTelemetry log record of r: the JSON record as its
// body, severity INFO for an allow (or a successful admin call) and WARN
// otherwise, and the attributes a collector routes on.
func logRecord(r *record) *logspb.LogRecord {
	sev, text := logspb.SeverityNumber_SEVERITY_NUMBER_INFO, "INFO"
	if r.kind == audit.RecordDeny || (r.kind == audit.RecordAdmin && r.reason != "ok") {
		sev, text = logspb.SeverityNumber_SEVERITY_NUMBER_WARN, "WARN"
	}
	attrs := make([]*commonpb.KeyValue, 0, 7)
	attrs = append(attrs, str(AttrRecordType, r.typ), str(AttrAPI, r.api))
	if r.kind != audit.RecordAdmin {
		d := "deny"
		if r.kind == audit.RecordAllow {
			d = "allow"
		}
		attrs = append(attrs, str(AttrDecision, d))
	}
	attrs = append(attrs, str(AttrReason, r.reason))
	if r.route != "" {
		attrs = append(attrs, str(AttrRoute, r.route))
	}
	if r.clientID != "" {
		attrs = append(attrs, str(AttrClientID, r.clientID))
	}
	attrs = append(attrs, str(AttrDecisionID, r.decisionID))
	lr := &logspb.LogRecord{
		TimeUnixNano:         uint64(r.time.UnixNano()),
		ObservedTimeUnixNano: uint64(r.observed.UnixNano()),
		SeverityNumber:       sev,
		SeverityText:         text,
		EventName:            "scopegate." + r.typ,
		Body:                 &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: r.json}},
		Attributes:           attrs,
	}
	if r.traceID != ([16]byte{}) {
		// The log record joins the check's trace (OTLP's LogRecord
		// trace_id, span_id and the sampled flag).
		lr.TraceId, lr.SpanId, lr.Flags = append([]byte(nil), r.traceID[:]...), append([]byte(nil), r.spanID[:]...), 1
	}
	return lr
}

func str(k, v string) *commonpb.KeyValue {
	return &commonpb.KeyValue{Key: k, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: v}}}
}

// ParseEndpoint reads an OTLP/gRPC endpoint as the OTEL_EXPORTER_OTLP_*
// variables write it: host:port, or a URL whose scheme says whether to
// use TLS (http: plaintext, https: TLS). plaintext reports the scheme's
// choice; set is false for a bare host:port, which leaves it to the
// caller.
func ParseEndpoint(s string) (hostport string, plaintext, set bool, err error) {
	s = strings.TrimSpace(s)
	if rest, ok := strings.CutPrefix(s, "http://"); ok {
		s, plaintext, set = rest, true, true
	} else if rest, ok := strings.CutPrefix(s, "https://"); ok {
		s, set = rest, true
	} else if strings.Contains(s, "://") {
		return "", false, false, fmt.Errorf("endpoint %q: use host:port, http://host:port (plaintext) or https://host:port (TLS)", s)
	}
	s = strings.TrimSuffix(s, "/")
	if set && !strings.Contains(s, ":") {
		s += ":4317"
	}
	if _, port, err := net.SplitHostPort(s); err != nil || !validPort(port) || strings.Contains(s, "/") {
		return "", false, false, fmt.Errorf("endpoint %q is not host:port (e.g. otel-collector:4317): an OTLP/gRPC endpoint has no path", s)
	}
	return s, plaintext, set, nil
}

// ParseHeaders reads headers in the form of OTEL_EXPORTER_OTLP_HEADERS:
// key=value pairs separated by commas (or new lines, in a file), values
// percent-encoded. Keys are lower-cased, as gRPC metadata keys are. An
// error names the entry by position and never shows a value.
func ParseHeaders(s string) (map[string]string, error) {
	out := map[string]string{}
	i := 0
	for part := range strings.FieldsFuncSeq(s, func(r rune) bool { return r == ',' || r == '\n' || r == '\r' }) {
		part = strings.TrimSpace(part)
		if part == "" || strings.HasPrefix(part, "#") {
			continue
		}
		i++
		k, v, ok := strings.Cut(part, "=")
		k = strings.ToLower(strings.TrimSpace(k))
		if !ok || k == "" || strings.ContainsAny(k, " \t:") {
			return nil, fmt.Errorf("headers: entry %d is not key=value (e.g. authorization=Bearer%%20...)", i)
		}
		dv, err := url.PathUnescape(strings.TrimSpace(v))
		if err != nil {
			return nil, fmt.Errorf("headers: the value of %s is not percent-encoded correctly", k)
		}
		out[k] = dv
	}
	return out, nil
}
