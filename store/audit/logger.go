package audit

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
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
	// DefaultBufferSize is the number of allow events the buffer holds,
	// and by default of deny events (a lane of their own): at 50k decisions
	// a second it absorbs a sink stall of about 160 ms before dropping, and
	// costs about 3.3 MB per lane (an event is about 400 bytes).
	DefaultBufferSize = 8192
	// DefaultAdminBufferSize is the room kept for admin calls alone.
	DefaultAdminBufferSize = 256
	// DefaultMaxBatch bounds the records handed to the sinks in one write.
	DefaultMaxBatch = 1024
	// DefaultDrainInterval is how often the drain goroutine collects the
	// buffered events, encodes them and writes them, one write per sink
	// per batch. The decision path never wakes it (only a buffer filling
	// up does), so a record reaches the sinks within about this delay.
	DefaultDrainInterval = 20 * time.Millisecond
	// DefaultFlushInterval is how often buffering sinks (PostgreSQL) are
	// flushed when traffic is too light to fill a batch.
	DefaultFlushInterval = time.Second

	// MaxBufferSize bounds BufferSize: a larger buffer only delays the
	// moment a dead sink starts dropping, at the cost of memory.
	MaxBufferSize = 1 << 20
	// minLane is the smallest lane: below it the caller share would be
	// meaningless.
	minLane = 16
)

// RecordKind is the kind of a record, for drop accounting: allows may be
// dropped first, denies and admin calls have room of their own.
type RecordKind uint8

// The record kinds.
const (
	RecordAllow RecordKind = iota
	RecordDeny
	RecordAdmin
	NumRecordKinds
)

var kindNames = [NumRecordKinds]string{RecordAllow: "allow", RecordDeny: "deny", RecordAdmin: "admin"}

// String returns the kind as the metric label writes it: allow, deny or
// admin.
func (k RecordKind) String() string {
	if k >= NumRecordKinds {
		return "unknown"
	}
	return kindNames[k]
}

// DropReason says why a record never reached the buffer.
type DropReason uint8

// The drop reasons.
const (
	// DropBufferFull: the record's lane was full.
	DropBufferFull DropReason = iota
	// DropCallerShare: the record's caller already held as many events in
	// the lane as the lane had room left (Options.NoCallerShare).
	DropCallerShare
	// DropDeadline: the caller waited for room (Block, or an admin call)
	// until its context ended.
	DropDeadline
	// DropClosed: the Logger was closed.
	DropClosed
	// DropSinkFull: the record reached the buffer and a sink, but that
	// sink's own bounded buffer (the OTLP sink's, while its collector is
	// unreachable) had no room for it. Other sinks still wrote it.
	DropSinkFull
	NumDropReasons
)

var reasonNames = [NumDropReasons]string{DropBufferFull: "buffer_full", DropCallerShare: "caller_share", DropDeadline: "deadline", DropClosed: "closed", DropSinkFull: "sink_full"}

// String returns the reason as the metric label writes it, e.g.
// "buffer_full".
func (r DropReason) String() string {
	if r >= NumDropReasons {
		return "unknown"
	}
	return reasonNames[r]
}

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
	// Block makes a decision wait for room when its lane is full (or its
	// caller is over its share), for as long as its request's context
	// allows, instead of dropping the event. It trades decision latency for
	// completeness: a stalled sink then stalls every decision.
	Block bool
	// BufferSize is the number of allow events buffered; default
	// DefaultBufferSize. Denies have a lane of their own of
	// DenyBufferSize, admin calls one of DefaultAdminBufferSize.
	BufferSize int
	// DenyBufferSize is the number of deny events buffered, apart from the
	// allows so that no flood of allows can take their room; default
	// BufferSize. Lanes hold at least 16 events.
	DenyBufferSize int
	// NoCallerShare turns the per-caller bound off, leaving each lane first
	// come, first served. With the bound (the default), a lane takes an
	// event only while its caller (the client id of its verified token, or
	// its source address without one) holds fewer events in the lane than
	// the lane has free slots: a caller alone can fill at most half of a
	// lane, however fast it sends, and the rest stays open to the others;
	// many callers together can still fill it to the last slot.
	NoCallerShare bool
	// MaxBatch bounds one write to the sinks; default DefaultMaxBatch.
	MaxBatch int
	// DrainInterval is how often buffered events are collected and written;
	// default DefaultDrainInterval.
	DrainInterval time.Duration
	// FlushInterval is how often sinks are flushed; default
	// DefaultFlushInterval.
	FlushInterval time.Duration
	// Observer, if set, sees every decision event (usage aggregation).
	Observer Observer
	// Logger receives sink errors (rate-limited); default slog.Default().
	Logger *slog.Logger
	// Mask drops or hashes record fields in every record, before any sink
	// sees it (see ParseMask). MaskKey is the HMAC key of MaskHash rules,
	// at least MinMaskKeyBytes.
	Mask    []MaskRule
	MaskKey []byte
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
	if o.DenyBufferSize < 0 || o.DenyBufferSize > MaxBufferSize {
		errs = append(errs, fmt.Errorf("audit: DenyBufferSize %d is out of range: use 1 to %d events, or 0 for BufferSize", o.DenyBufferSize, MaxBufferSize))
	}
	if o.MaxBatch < 0 {
		errs = append(errs, fmt.Errorf("audit: MaxBatch %d is negative: use 0 for the default (%d)", o.MaxBatch, DefaultMaxBatch))
	}
	if o.DrainInterval < 0 {
		errs = append(errs, fmt.Errorf("audit: DrainInterval %v is negative: use 0 for the default (%v)", o.DrainInterval, DefaultDrainInterval))
	}
	if o.FlushInterval < 0 {
		errs = append(errs, fmt.Errorf("audit: FlushInterval %v is negative: use 0 for the default (%v)", o.FlushInterval, DefaultFlushInterval))
	}
	if err := ValidateMask(o.Mask, o.MaskKey); err != nil {
		errs = append(errs, err)
	}
	for i, s := range o.Sinks {
		if s == nil {
			errs = append(errs, fmt.Errorf("audit: Sinks[%d] is nil: remove it", i))
		}
	}
	return errors.Join(errs...)
}

// callerBuckets is the width of each row of a lane's per-caller counts.
// Callers are counted in two rows indexed by independent bits of one hash
// (a count-min sketch): a caller is over its share only when both of its
// counters are, so an innocent caller is limited by a flooder only if it
// collides with it in both rows (about one in a million per flooder).
// Among many callers, one may share each of its buckets with a different
// caller and be counted above its own events; as a caller is refused only
// when its count reaches the room left, that costs it the lane's last
// slots at most.
const (
	callerBuckets = 1024
	callerMask    = callerBuckets - 1
)

// lane is one bounded buffer of events of one kind, drained by the drain
// goroutine.
type lane struct {
	kind RecordKind
	ch   chan Event
	size int
	// wakeAt is the length at which the decision path wakes the drain
	// goroutine instead of letting it wait for its tick.
	wakeAt int
	// share applies the per-caller bound (Options.NoCallerShare off);
	// floor is what a caller may always hold (a 64th of the lane).
	share bool
	floor int32
	// counts are the events each caller holds in the lane.
	counts [2][callerBuckets]atomic.Int32
}

func newLane(kind RecordKind, size int, share bool) *lane {
	return &lane{kind: kind, ch: make(chan Event, size), size: size, wakeAt: max(size/4, 1), share: share, floor: int32(max(size/64, 1))}
}

// Logger is the audit pipeline: bounded lanes (allows, denies, admin calls)
// that the decision path copies events into, and one goroutine that drains
// them into the sinks and the observer. A nil *Logger records nothing, so
// handlers call Record unconditionally.
type Logger struct {
	allow, deny *lane
	admin       chan Event
	quit        chan struct{}
	done        chan struct{}
	closed      atomic.Bool
	block       bool
	sinks       []Sink
	observer    Observer
	mask        *masker
	log         *slog.Logger
	seed        maphash.Seed
	// sampleAll writes every allow; otherwise an allow is written when a
	// random uint64 is below sampleBelow (0: none).
	sampleAll   bool
	sampleBelow uint64
	maxBatch    int
	drainEvery  time.Duration
	flushEvery  time.Duration
	closeOnce   sync.Once
	closeErr    error
	// ctx is given to the sinks; Close cancels it when its own deadline
	// passes, so a stuck sink cannot hold the drain forever.
	ctx    context.Context
	cancel context.CancelFunc

	// wake asks the drain goroutine to run now; wakePending keeps the
	// decision path to one send per drain.
	wake        chan struct{}
	wakePending atomic.Bool
	// drained is closed (and replaced) after each drain while waiters
	// (Block, admin calls) wait for room.
	drained atomic.Pointer[chan struct{}]
	waiters atomic.Int32

	drops      [NumRecordKinds][NumDropReasons]atomic.Uint64
	written    atomic.Uint64
	failed     atomic.Uint64
	sinkErrors atomic.Uint64

	// Owned by the drain goroutine.
	cur       Event
	buf       []byte
	metas     []entryMeta
	entries   []Entry
	lastErr   time.Time
	errs      int
	lastFlush time.Time
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
	opts.BufferSize = max(opts.BufferSize, minLane)
	if opts.DenyBufferSize == 0 {
		opts.DenyBufferSize = opts.BufferSize
	}
	opts.DenyBufferSize = max(opts.DenyBufferSize, minLane)
	if opts.MaxBatch == 0 {
		opts.MaxBatch = DefaultMaxBatch
	}
	if opts.DrainInterval == 0 {
		opts.DrainInterval = DefaultDrainInterval
	}
	if opts.FlushInterval == 0 {
		opts.FlushInterval = DefaultFlushInterval
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	mask, err := newMasker(opts.Mask, opts.MaskKey)
	if err != nil {
		return nil, err
	}
	l := &Logger{
		mask:       mask,
		allow:      newLane(RecordAllow, opts.BufferSize, !opts.NoCallerShare),
		deny:       newLane(RecordDeny, opts.DenyBufferSize, !opts.NoCallerShare),
		admin:      make(chan Event, DefaultAdminBufferSize),
		quit:       make(chan struct{}),
		done:       make(chan struct{}),
		wake:       make(chan struct{}, 1),
		block:      opts.Block,
		sinks:      opts.Sinks,
		observer:   opts.Observer,
		log:        opts.Logger,
		seed:       maphash.MakeSeed(),
		maxBatch:   opts.MaxBatch,
		drainEvery: opts.DrainInterval,
		flushEvery: opts.FlushInterval,
	}
	ch := make(chan struct{})
	l.drained.Store(&ch)
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
// copies the decision and a few request fields into a preallocated slot of
// its lane (allows and denies apart) and returns. It encodes nothing,
// allocates nothing, does not wake the drain goroutine (unless the lane is
// filling up) and never waits, unless Options.Block is set and there is no
// room, in which case it waits at most until ctx is done. start is when the
// request arrived (the latency is measured up to now); decisionID is the id
// the reply carried, or "".
func (l *Logger) Record(ctx context.Context, api API, r *decision.Request, d *decision.Decision, start time.Time, decisionID string) {
	if l == nil {
		return
	}
	write := !d.Allow || l.sampleAll || (l.sampleBelow != 0 && rand.Uint64() < l.sampleBelow)
	if !write && l.observer == nil {
		return
	}
	ln := l.allow
	if !d.Allow {
		ln = l.deny
	}
	if l.closed.Load() {
		l.drops[ln.kind][DropClosed].Add(1)
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
		TraceID:    r.TraceID,
		SpanID:     r.SpanID,
		write:      write,
	}
	if d.Path == "" {
		ev.RawPath = rawPathOf(r.Path)
	}
	l.offer(ctx, ln, &ev, l.callerHash(d, r))
}

// callerHash identifies the caller a decision is counted against: the
// client id of its verified token, else its source address.
func (l *Logger) callerHash(d *decision.Decision, r *decision.Request) uint64 {
	if t := d.Token; t != nil && t.ClientID != "" {
		return maphash.String(l.seed, t.ClientID)
	}
	if r.SourceIP.IsValid() {
		a := r.SourceIP.As16()
		return maphash.Bytes(l.seed, a[:]) ^ 1 // apart from a client id of the same bytes
	}
	return 0
}

// offer puts ev into ln, or drops it (counted) when ln has no room for its
// caller, or waits for room when the Logger blocks.
func (l *Logger) offer(ctx context.Context, ln *lane, ev *Event, h uint64) {
	i0, i1 := uint16(h&callerMask), uint16((h>>32)&callerMask)
	c0, c1 := &ln.counts[0][i0], &ln.counts[1][i1]
	for {
		n := len(ln.ch)
		if c := min(c0.Load(), c1.Load()); ln.share && n < ln.size && c >= ln.floor && int(c) >= ln.size-n {
			// The caller holds as many events as the lane has room left: a
			// flooder waits (Block) for the next drain, or loses its own
			// record, and the room stays for the others.
			l.wakeDrain()
			if !l.block {
				l.drops[ln.kind][DropCallerShare].Add(1)
				return
			}
			if r, ok := l.waitDrained(ctx); !ok {
				l.drops[ln.kind][r].Add(1)
				return
			}
			continue
		}
		// Count before the send, so that the drain's decrement (after its
		// receive) never sees the counter below zero.
		c0.Add(1)
		c1.Add(1)
		ev.bucket = [2]uint16{i0, i1}
		select {
		case ln.ch <- *ev:
			if n+1 >= ln.wakeAt {
				l.wakeDrain()
			}
			return
		default:
		}
		l.wakeDrain()
		reason := DropBufferFull
		if l.block {
			select {
			case ln.ch <- *ev:
				return
			case <-ctx.Done():
				reason = DropDeadline
			case <-l.quit:
				reason = DropClosed
			}
		}
		c0.Add(-1)
		c1.Add(-1)
		l.drops[ln.kind][reason].Add(1)
		return
	}
}

// wakeDrain asks the drain goroutine to run now rather than at its next
// tick; one request per drain.
func (l *Logger) wakeDrain() {
	if !l.wakePending.Load() && l.wakePending.CompareAndSwap(false, true) {
		select {
		case l.wake <- struct{}{}:
		default:
		}
	}
}

// waitDrained waits until the drain goroutine has run once more. It
// returns false, with the reason to count, when ctx ended or the Logger
// closed first.
func (l *Logger) waitDrained(ctx context.Context) (DropReason, bool) {
	l.waiters.Add(1)
	defer l.waiters.Add(-1)
	ch := *l.drained.Load()
	l.wakeDrain()
	select {
	case <-ch:
		return 0, true
	case <-ctx.Done():
		return DropDeadline, false
	case <-l.quit:
		return DropClosed, false
	}
}

// Stats are the Logger's counters since it started.
type Stats struct {
	// Dropped events never reached the buffer, or a sink's own buffer
	// (the sum of Drops). Written
	// records were accepted by every sink; Failed records a sink failed to
	// write (and lost); SinkErrors counts failed sink calls.
	Dropped, Written, Failed, SinkErrors uint64
	// Drops are the dropped events by kind and reason.
	Drops [NumRecordKinds][NumDropReasons]uint64
	// Buffered is the number of events waiting now.
	Buffered int
}

// Stats returns the Logger's counters.
func (l *Logger) Stats() Stats {
	if l == nil {
		return Stats{}
	}
	st := Stats{
		Written:    l.written.Load(),
		Failed:     l.failed.Load(),
		SinkErrors: l.sinkErrors.Load(),
		Buffered:   len(l.allow.ch) + len(l.deny.ch) + len(l.admin),
	}
	for k := range st.Drops {
		for r := range st.Drops[k] {
			st.Drops[k][r] = l.drops[k][r].Load()
			st.Dropped += st.Drops[k][r]
		}
	}
	return st
}

// Dropped returns the number of events dropped, as a float for the
// scopegate_audit_dropped_total metric.
func (l *Logger) Dropped() float64 {
	return float64(l.Stats().Dropped)
}

// EachDrop calls f with every kind and reason and its count of dropped
// events, for the labelled scopegate_audit_dropped_total metric.
func (l *Logger) EachDrop(f func(kind RecordKind, reason DropReason, n uint64)) {
	if l == nil {
		return
	}
	for k := range RecordKind(NumRecordKinds) {
		for r := range DropReason(NumDropReasons) {
			f(k, r, l.drops[k][r].Load())
		}
	}
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
			n := len(l.allow.ch) + len(l.deny.ch) + len(l.admin)
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

// run is the drain goroutine: every DrainInterval (or when a lane fills
// up, or an admin call waits) it collects what the lanes hold.
func (l *Logger) run() {
	defer close(l.done)
	tick := time.NewTicker(l.drainEvery)
	defer tick.Stop()
	l.lastFlush = time.Now()
	for {
		select {
		case <-tick.C:
		case <-l.wake:
		case <-l.quit:
			l.drainAll()
			return
		}
		l.wakePending.Store(false)
		l.drain()
		if time.Since(l.lastFlush) >= l.flushEvery {
			l.flushSinks()
			l.lastFlush = time.Now()
		}
	}
}

// drain collects what the lanes held when it started (admin calls first,
// then denies, then allows) in batches of at most maxBatch, one write per
// sink per batch, then releases the waiters.
func (l *Logger) drain() {
	nAdmin, nDeny, nAllow := len(l.admin), len(l.deny.ch), len(l.allow.ch)
	for range nAdmin {
		l.cur = <-l.admin
		l.handle()
	}
	l.drainLane(l.deny, nDeny)
	l.drainLane(l.allow, nAllow)
	l.writeBatch()
	if l.waiters.Load() > 0 {
		ch := make(chan struct{})
		close(*l.drained.Swap(&ch))
	}
}

func (l *Logger) drainLane(ln *lane, n int) {
	for range n {
		l.cur = <-ln.ch
		b := l.cur.bucket
		ln.counts[0][b[0]].Add(-1)
		ln.counts[1][b[1]].Add(-1)
		l.handle()
		if len(l.metas) >= l.maxBatch {
			l.writeBatch()
		}
	}
}

// drainAll writes whatever is buffered, then flushes and closes the
// sinks. Events enqueued by a decision still in flight after Close
// started are written too if they arrive before the lanes are seen empty.
func (l *Logger) drainAll() {
	for l.ctx.Err() == nil && len(l.admin)+len(l.deny.ch)+len(l.allow.ch) > 0 {
		l.drain()
	}
	l.writeBatch()
	if l.waiters.Load() > 0 {
		ch := make(chan struct{})
		close(*l.drained.Swap(&ch))
	}
	l.flushSinks()
	for _, s := range l.sinks {
		if err := s.Close(l.ctx); err != nil {
			l.sinkError(s, "close", err, lostIn(err, 0))
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
			l.buf, m.Entry = appendAdmin(l.buf, ev.admin, l.mask)
		} else {
			l.buf, m.Entry = appendDecision(l.buf, ev, l.mask)
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
			l.sinkError(s, "write", err, lostIn(err, n))
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

// WriteError is a sink error that lost only some records of a batch, or
// none (the sink holds them for a retry): Lost says how many were lost.
// A plain error loses the whole batch. Dropped are records, by kind, that
// the sink's own bounded buffer had no room for (counted as drops with
// reason sink_full, apart from Lost); a sink may report them from any
// call, Flush included.
type WriteError struct {
	Err     error
	Lost    int
	Dropped [NumRecordKinds]int
}

// KindOf returns the kind of an encoded record, for a sink's drop
// accounting.
func KindOf(e *Entry) RecordKind {
	switch {
	case e.Type == "admin":
		return RecordAdmin
	case e.Allow:
		return RecordAllow
	}
	return RecordDeny
}

func (e *WriteError) Error() string { return e.Err.Error() }
func (e *WriteError) Unwrap() error { return e.Err }

// lostIn returns the records lost by a sink call that failed with err on a
// batch of n.
func lostIn(err error, n uint64) uint64 {
	if we, ok := errors.AsType[*WriteError](err); ok {
		return uint64(max(we.Lost, 0))
	}
	return n
}

func (l *Logger) flushSinks() {
	for _, s := range l.sinks {
		if err := s.Flush(l.ctx); err != nil {
			l.sinkError(s, "flush", err, lostIn(err, 0))
		}
	}
}

// sinkError counts a failed sink call and logs it, at most once per
// errLogEvery (with the number of errors since the last log).
func (l *Logger) sinkError(s Sink, op string, err error, records uint64) {
	l.sinkErrors.Add(1)
	l.failed.Add(records)
	if we, ok := errors.AsType[*WriteError](err); ok {
		for k, n := range we.Dropped {
			if n > 0 {
				l.drops[k][DropSinkFull].Add(uint64(n))
			}
		}
	}
	l.errs++
	now := time.Now()
	if now.Sub(l.lastErr) < errLogEvery {
		return
	}
	l.log.Error("audit sink failed", "sink", s.Name(), "op", op, "error", err, "errors_since_last_log", l.errs)
	l.lastErr, l.errs = now, 0
}
