package audit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/scopegate/scopegate/decision"
)

// Defaults of Options. A zero field means its default.
const (
	// DefaultBufferSize is the number of events the buffer holds: at 50k
	// decisions a second it absorbs a sink stall of about 160 ms before
	// dropping, and costs about 3.5 MB.
	DefaultBufferSize = 8192
	// DefaultMaxBatch bounds the records handed to the sinks in one write.
	DefaultMaxBatch = 512
	// DefaultFlushInterval is how often buffering sinks (PostgreSQL) are
	// flushed when traffic is too light to fill a batch.
	DefaultFlushInterval = time.Second

	// MaxBufferSize bounds BufferSize: a larger buffer only delays the
	// moment a dead sink starts dropping, at the cost of memory.
	MaxBufferSize = 1 << 20
)

// Options configure a Logger.
type Options struct {
	// Sinks receive the JSON records. None: only the Observer is fed
	// (usage aggregation without an audit log).
	Sinks []Sink
	// AllowSample is the fraction of allows written, in (0, 1]; zero means
	// 1, every allow. Denies are always written.
	AllowSample float64
	// DenyOnly writes no allow at all (AllowSample is then ignored).
	DenyOnly bool
	// Block makes a decision wait for room when the buffer is full, for as
	// long as its request's context allows, instead of dropping the event.
	// It trades decision latency for completeness: a stalled sink then
	// stalls every decision.
	Block bool
	// BufferSize is the number of events buffered; default
	// DefaultBufferSize.
	BufferSize int
	// MaxBatch bounds one write to the sinks; default DefaultMaxBatch.
	MaxBatch int
	// FlushInterval is how often sinks are flushed; default
	// DefaultFlushInterval.
	FlushInterval time.Duration
	// Observer, if set, sees every decision event (usage aggregation).
	Observer Observer
	// Logger receives sink errors (rate-limited); default slog.Default().
	Logger *slog.Logger
}

// Validate reports every invalid option, each with the fix.
func (o *Options) Validate() error {
	var errs []error
	if math.IsNaN(o.AllowSample) || o.AllowSample < 0 || o.AllowSample > 1 {
		errs = append(errs, fmt.Errorf("audit: AllowSample %v is not a fraction: use a number from 0 to 1 (0 with DenyOnly writes denies only)", o.AllowSample))
	}
	if o.BufferSize < 0 || o.BufferSize > MaxBufferSize {
		errs = append(errs, fmt.Errorf("audit: BufferSize %d is out of range: use 1 to %d events, or 0 for the default (%d)", o.BufferSize, MaxBufferSize, DefaultBufferSize))
	}
	if o.MaxBatch < 0 {
		errs = append(errs, fmt.Errorf("audit: MaxBatch %d is negative: use 0 for the default (%d)", o.MaxBatch, DefaultMaxBatch))
	}
	if o.FlushInterval < 0 {
		errs = append(errs, fmt.Errorf("audit: FlushInterval %v is negative: use 0 for the default (%v)", o.FlushInterval, DefaultFlushInterval))
	}
	for i, s := range o.Sinks {
		if s == nil {
			errs = append(errs, fmt.Errorf("audit: Sinks[%d] is nil: remove it", i))
		}
	}
	return errors.Join(errs...)
}

// Logger is the audit pipeline: a bounded buffer that the decision path
// writes events into, and one goroutine that drains it into the sinks and
// the observer. A nil *Logger records nothing, so handlers call Record
// unconditionally.
type Logger struct {
	ch       chan Event
	quit     chan struct{}
	done     chan struct{}
	closed   atomic.Bool
	block    bool
	sinks    []Sink
	observer Observer
	log      *slog.Logger
	// sampleAll writes every allow; otherwise an allow is written when a
	// random uint64 is below sampleBelow (0: none).
	sampleAll   bool
	sampleBelow uint64
	maxBatch    int
	flushEvery  time.Duration
	closeOnce   sync.Once
	closeErr    error
	// ctx is given to the sinks; Close cancels it when its own deadline
	// passes, so a stuck sink cannot hold the drain forever.
	ctx    context.Context
	cancel context.CancelFunc

	dropped    atomic.Uint64
	written    atomic.Uint64
	failed     atomic.Uint64
	sinkErrors atomic.Uint64

	// Owned by the drain goroutine.
	cur     Event
	buf     []byte
	metas   []entryMeta
	entries []Entry
	lastErr time.Time
	errs    int
}

// entryMeta is one encoded record of the batch being built; JSON is
// buf[start:end] (buf may move while the batch grows).
type entryMeta struct {
	Entry
	start, end int
}

// New validates opts and starts the Logger's goroutine. Close stops it.
func New(opts Options) (*Logger, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	if opts.BufferSize == 0 {
		opts.BufferSize = DefaultBufferSize
	}
	if opts.MaxBatch == 0 {
		opts.MaxBatch = DefaultMaxBatch
	}
	if opts.FlushInterval == 0 {
		opts.FlushInterval = DefaultFlushInterval
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	l := &Logger{
		ch:         make(chan Event, opts.BufferSize),
		quit:       make(chan struct{}),
		done:       make(chan struct{}),
		block:      opts.Block,
		sinks:      opts.Sinks,
		observer:   opts.Observer,
		log:        opts.Logger,
		maxBatch:   opts.MaxBatch,
		flushEvery: opts.FlushInterval,
	}
	switch {
	case opts.DenyOnly:
	case opts.AllowSample == 0 || opts.AllowSample == 1:
		l.sampleAll = true
	default:
		// The threshold of a uniform uint64 that passes with probability
		// AllowSample (float64 cannot hold 2^64 exactly; the error is
		// below one part in 2^53).
		l.sampleBelow = uint64(opts.AllowSample * (1 << 64))
	}
	l.ctx, l.cancel = context.WithCancel(context.Background())
	go l.run()
	return l, nil
}

// Record hands one decision to the Logger. It is on the decision path: it
// copies the decision and a few request fields into the buffer and
// returns; it allocates nothing and never waits, unless Options.Block is
// set and the buffer is full, in which case it waits at most until ctx is
// done. start is when the request arrived (the latency is measured up to
// now); decisionID is the id the reply carried, or "".
func (l *Logger) Record(ctx context.Context, api API, r *decision.Request, d *decision.Decision, start time.Time, decisionID string) {
	if l == nil {
		return
	}
	write := !d.Allow || l.sampleAll || (l.sampleBelow != 0 && rand.Uint64() < l.sampleBelow)
	if !write && l.observer == nil {
		return
	}
	if l.closed.Load() {
		l.dropped.Add(1)
		return
	}
	ev := Event{
		Decision:   *d,
		Time:       start,
		Latency:    time.Since(start),
		Method:     r.Method,
		Host:       r.Host,
		RequestID:  r.RequestID,
		DecisionID: decisionID,
		SourceIP:   r.SourceIP,
		API:        api,
		write:      write,
	}
	if d.Path == "" {
		ev.RawPath = rawPathOf(r.Path)
	}
	l.enqueue(ctx, &ev)
}

func (l *Logger) enqueue(ctx context.Context, ev *Event) {
	select {
	case l.ch <- *ev:
		return
	default:
	}
	if !l.block {
		l.dropped.Add(1)
		return
	}
	select {
	case l.ch <- *ev:
	case <-ctx.Done():
		l.dropped.Add(1)
	case <-l.quit:
		l.dropped.Add(1)
	}
}

// Stats are the Logger's counters since it started.
type Stats struct {
	// Dropped events never reached the buffer: it was full (or the Logger
	// closed). Written records were accepted by every sink; Failed records
	// a sink failed to write; SinkErrors counts failed sink calls.
	Dropped, Written, Failed, SinkErrors uint64
	// Buffered is the number of events waiting now.
	Buffered int
}

// Stats returns the Logger's counters.
func (l *Logger) Stats() Stats {
	if l == nil {
		return Stats{}
	}
	return Stats{
		Dropped:    l.dropped.Load(),
		Written:    l.written.Load(),
		Failed:     l.failed.Load(),
		SinkErrors: l.sinkErrors.Load(),
		Buffered:   len(l.ch),
	}
}

// Dropped returns the number of events dropped because the buffer was
// full, as a float for the scopegate_audit_dropped_total metric.
func (l *Logger) Dropped() float64 {
	if l == nil {
		return 0
	}
	return float64(l.dropped.Load())
}

// Close stops accepting events, writes every buffered event to the sinks,
// flushes and closes them. It returns when that is done or when ctx ends,
// whichever comes first; in the second case the events still buffered are
// lost and the error says how many. Calling it again returns the first
// result.
func (l *Logger) Close(ctx context.Context) error {
	if l == nil {
		return nil
	}
	l.closeOnce.Do(func() {
		l.closed.Store(true)
		close(l.quit)
		select {
		case <-l.done:
		case <-ctx.Done():
			n := len(l.ch)
			// Cancel the sinks' context and give the drain a moment to
			// notice; a sink that ignores its context (a write blocked on
			// a full pipe) is left behind rather than holding shutdown.
			l.cancel()
			t := time.NewTimer(closeGrace)
			select {
			case <-l.done:
			case <-t.C:
			}
			t.Stop()
			l.closeErr = fmt.Errorf("audit: closing timed out (%v) with %d events still buffered: they are lost", ctx.Err(), n)
		}
		l.cancel()
	})
	return l.closeErr
}

// closeGrace is how long Close waits, after its deadline, for the drain
// goroutine to stop.
const closeGrace = 100 * time.Millisecond

// errLogEvery rate-limits sink error logs.
const errLogEvery = 10 * time.Second

// run is the drain goroutine.
func (l *Logger) run() {
	defer close(l.done)
	tick := time.NewTicker(l.flushEvery)
	defer tick.Stop()
	for {
		select {
		case l.cur = <-l.ch:
			l.handle()
			for n := 1; n < l.maxBatch; n++ {
				select {
				case l.cur = <-l.ch:
					l.handle()
					continue
				default:
				}
				break
			}
			l.writeBatch()
		case <-tick.C:
			l.flushSinks()
		case <-l.quit:
			l.drainAll()
			return
		}
	}
}

// drainAll writes whatever is buffered, then flushes and closes the
// sinks. Events enqueued by a decision still in flight after Close
// started are written too if they arrive before the buffer is seen empty.
func (l *Logger) drainAll() {
	for done := false; !done; {
		select {
		case l.cur = <-l.ch:
			l.handle()
			if len(l.metas) >= l.maxBatch {
				l.writeBatch()
			}
		default:
			done = true
		}
		if l.ctx.Err() != nil {
			break
		}
	}
	l.writeBatch()
	l.flushSinks()
	for _, s := range l.sinks {
		if err := s.Close(l.ctx); err != nil {
			l.sinkError(s, "close", err, 0)
		}
	}
}

// handle encodes l.cur (if written) and feeds the observer.
func (l *Logger) handle() {
	ev := &l.cur
	if ev.write && len(l.sinks) > 0 {
		start := len(l.buf)
		var m entryMeta
		if ev.admin != nil {
			l.buf, m.Entry = appendAdmin(l.buf, ev.admin)
		} else {
			l.buf, m.Entry = appendDecision(l.buf, ev)
		}
		m.start, m.end = start, len(l.buf)
		l.metas = append(l.metas, m)
	}
	if ev.admin == nil && l.observer != nil {
		l.observer.Observe(ev)
	}
	*ev = Event{} // drop references to the decision's data
}

// maxKeptBuf is the largest encoding buffer kept between batches.
const maxKeptBuf = 1 << 20

// writeBatch hands the encoded batch to every sink.
func (l *Logger) writeBatch() {
	if len(l.metas) == 0 {
		return
	}
	l.entries = l.entries[:0]
	for i := range l.metas {
		m := &l.metas[i]
		e := m.Entry
		e.JSON = l.buf[m.start:m.end]
		l.entries = append(l.entries, e)
	}
	n := uint64(len(l.entries))
	ok := true
	for _, s := range l.sinks {
		if err := s.Write(l.ctx, l.entries); err != nil {
			ok = false
			l.sinkError(s, "write", err, n)
		}
	}
	if ok {
		l.written.Add(n)
	}
	clear(l.entries) // drop references for the GC
	clear(l.metas)
	l.metas = l.metas[:0]
	l.entries = l.entries[:0]
	if cap(l.buf) > maxKeptBuf {
		l.buf = nil
	} else {
		l.buf = l.buf[:0]
	}
}

func (l *Logger) flushSinks() {
	for _, s := range l.sinks {
		if err := s.Flush(l.ctx); err != nil {
			l.sinkError(s, "flush", err, 0)
		}
	}
}

// sinkError counts a failed sink call and logs it, at most once per
// errLogEvery (with the number of errors since the last log).
func (l *Logger) sinkError(s Sink, op string, err error, records uint64) {
	l.sinkErrors.Add(1)
	l.failed.Add(records)
	l.errs++
	now := time.Now()
	if now.Sub(l.lastErr) < errLogEvery {
		return
	}
	l.log.Error("audit sink failed", "sink", s.Name(), "op", op, "error", err, "errors_since_last_log", l.errs)
	l.lastErr, l.errs = now, 0
}
