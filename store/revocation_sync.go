package store

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/scopegate/scopegate/decision"
	"github.com/scopegate/scopegate/store/internal/backoff"
)

// RevocationSink receives the revocations a RevocationSyncer maintains;
// *decision.Engine is one.
type RevocationSink interface {
	SetRevocations(*decision.RevocationSet)
	MarkRevocationsSynced(time.Time)
}

// Defaults of SyncOptions.
const (
	// DefaultRevocationResync is how often the full list is reloaded, which
	// heals notifications lost on the way and drops lapsed revocations.
	DefaultRevocationResync = 30 * time.Second
	// minSyncRetry is the first retry delay after a failed resync; it
	// doubles up to the resync interval.
	minSyncRetry = time.Second
	// resyncJitter spreads the periodic resync by up to a tenth either way.
	resyncJitter = 0.1
	// eventQueue bounds the notifications waiting to be applied; when it is
	// full, a resync replaces them.
	eventQueue = 1024
	// fetchTimeout bounds the fetch of one notified revocation.
	fetchTimeout = 5 * time.Second
)

// SyncOptions configures a RevocationSyncer.
type SyncOptions struct {
	// Resync is the full-reload interval; default DefaultRevocationResync.
	Resync time.Duration
	// Logger receives sync failures and recoveries; default slog.Default().
	Logger *slog.Logger
	// Clock is the current time; default time.Now.
	Clock func() time.Time
	// OnPut, when set, is called with each revocation learned from the
	// store's notifications once it is in force here (not one this process
	// had already put in force: a store also notifies its own writes),
	// so a replica can measure how long an event took to reach it
	// (Revocation.SourceEventTime). It runs on the syncer's goroutine and
	// must not block; it is not called for Put, nor for what a resync
	// loads.
	OnPut func(decision.Revocation)
}

// Validate reports an unusable option, naming the field.
func (o SyncOptions) Validate() error {
	if o.Resync < 0 {
		return errors.New("store: SyncOptions.Resync is negative: use a positive interval, or 0 for the default 30s")
	}
	return nil
}

// revChange is one change applied to the set: a revocation put, or an id
// removed.
type revChange struct {
	put *decision.Revocation
	del string
}

func (c revChange) applyTo(s *decision.RevocationSet) *decision.RevocationSet {
	if c.put != nil {
		return s.Apply([]decision.Revocation{*c.put}, nil)
	}
	return s.Apply(nil, []string{c.del})
}

// RevocationSyncer keeps an engine's revocations in step with a
// RevocationStore: a full load at start, every change the store notifies
// (applied one by one, in well under a second), a periodic full resync
// that heals lost notifications and drops lapsed revocations, and the
// changes this process makes itself, applied at once (Put, Remove) before
// the store's notification comes back.
//
// When the store cannot be reached the engine keeps the last list; the age
// of the last successful sync (SyncAge) feeds the staleness bound and the
// scopegate_revocation_sync_age_seconds metric.
type RevocationSyncer struct {
	src      RevocationStore
	sink     RevocationSink
	interval time.Duration
	log      *slog.Logger
	clock    func() time.Time
	onPut    func(decision.Revocation)
	started  time.Time

	resyncMu sync.Mutex // one resync at a time

	mu  sync.Mutex // guards cur, logging, pending
	cur *decision.RevocationSet
	// While a resync is between its List and its swap, the changes applied
	// meanwhile are logged and replayed on the reloaded set.
	logging bool
	pending []revChange

	synced  atomic.Int64 // Unix ns of the last successful resync, 0 for never
	healthy atomic.Bool  // the last resync succeeded
	events  chan RevocationChange
	kick    chan struct{}
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

// NewRevocationSyncer returns a syncer from src to sink. It gives sink an
// empty, never-synced set at once, so that until the first load succeeds
// high-risk routes fail closed (revocation_stale) instead of trusting an
// empty list. Call Start to load and follow the store.
func NewRevocationSyncer(src RevocationStore, sink RevocationSink, opts SyncOptions) (*RevocationSyncer, error) {
	if src == nil || sink == nil {
		return nil, errors.New("store: NewRevocationSyncer needs a revocation store and a sink (the engine)")
	}
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	if opts.Resync == 0 {
		opts.Resync = DefaultRevocationResync
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Clock == nil {
		opts.Clock = time.Now
	}
	s := &RevocationSyncer{
		src: src, sink: sink, interval: opts.Resync, log: opts.Logger, clock: opts.Clock, onPut: opts.OnPut,
		started: opts.Clock(),
		cur:     decision.NewRevocationSet(nil),
		events:  make(chan RevocationChange, eventQueue),
		kick:    make(chan struct{}, 1),
	}
	sink.SetRevocations(s.cur)
	return s, nil
}

// Start loads the full list once and then follows the store in the
// background until ctx ends or Stop. The error is the first load's: the
// syncer keeps retrying it, and meanwhile the engine has an empty,
// never-synced list.
func (s *RevocationSyncer) Start(ctx context.Context) error {
	ctx, s.cancel = context.WithCancel(ctx)
	err := s.Resync(ctx)
	if err != nil {
		s.log.Error("revocations: initial load failed; retrying (high-risk routes deny with revocation_stale meanwhile)", "error", err)
	}
	s.wg.Add(3)
	go s.watch(ctx)
	go s.handle(ctx)
	go s.periodic(ctx, err != nil)
	return err
}

// Stop ends the background work and waits for it.
func (s *RevocationSyncer) Stop() {
	if s.cancel != nil {
		s.cancel()
	}
	s.wg.Wait()
}

// Set returns the revocations in force.
func (s *RevocationSyncer) Set() *decision.RevocationSet {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cur
}

// SyncedAt returns when the list was last loaded in full from the store
// (zero if never).
func (s *RevocationSyncer) SyncedAt() time.Time {
	n := s.synced.Load()
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n)
}

// SyncAge returns how long ago the list was last loaded in full; before
// the first load, how long the syncer has existed.
func (s *RevocationSyncer) SyncAge() time.Duration {
	t := s.SyncedAt()
	if t.IsZero() {
		t = s.started
	}
	return max(s.clock().Sub(t), 0)
}

// Put applies a revocation this process has just stored, at once.
func (s *RevocationSyncer) Put(r decision.Revocation) { s.apply(revChange{put: &r}) }

// Remove applies a removal this process has just made, at once.
func (s *RevocationSyncer) Remove(id string) { s.apply(revChange{del: id}) }

func (s *RevocationSyncer) apply(c revChange) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cur = c.applyTo(s.cur)
	s.sink.SetRevocations(s.cur)
	if s.logging {
		s.pending = append(s.pending, c)
	}
}

// Resync reloads the full list from the store and puts it in force (the
// set in force is kept when nothing changed), then marks the engine
// synced. Changes applied while it runs are replayed on the new list.
func (s *RevocationSyncer) Resync(ctx context.Context) error {
	s.resyncMu.Lock()
	defer s.resyncMu.Unlock()
	s.mu.Lock()
	s.logging, s.pending = true, nil
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.logging, s.pending = false, nil
		s.mu.Unlock()
	}()

	start := s.clock()
	list, err := s.src.ListRevocations(ctx)
	if err != nil {
		if s.healthy.Swap(false) || s.synced.Load() == 0 {
			s.log.Warn("revocations: resync failed; deciding with the last list", "error", err, "age", s.SyncAge().Round(time.Second).String())
		}
		return err
	}
	valid := list[:0:0]
	for _, r := range list {
		if err := r.Validate(); err != nil {
			s.log.Error("revocations: stored revocation ignored", "id", r.ID, "error", err)
			continue
		}
		valid = append(valid, r)
	}

	s.mu.Lock()
	cur, replay := s.cur, len(s.pending) > 0
	s.mu.Unlock()
	if replay || !cur.Flat() || !cur.Equal(valid) {
		next := decision.NewRevocationSet(valid) // off the lock: O(all)
		s.mu.Lock()
		for _, c := range s.pending {
			next = c.applyTo(next)
		}
		s.cur = next
		s.sink.SetRevocations(next)
		s.mu.Unlock()
	}
	s.synced.Store(start.UnixNano())
	s.sink.MarkRevocationsSynced(start)
	if !s.healthy.Swap(true) {
		s.log.Info("revocations: synced", "revocations", len(valid))
	}
	return nil
}

// requestResync asks the periodic loop for a resync now.
func (s *RevocationSyncer) requestResync() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// watch follows the store's notifications; a watcher that fails is
// restarted after a pause, and a resync covers what it missed.
func (s *RevocationSyncer) watch(ctx context.Context) {
	defer s.wg.Done()
	for {
		err := s.src.WatchRevocations(ctx, func(c RevocationChange) {
			select {
			case s.events <- c:
			default:
				s.requestResync() // queue full: reload everything instead
			}
		})
		if ctx.Err() != nil {
			return
		}
		s.log.Warn("revocations: watch stopped; restarting", "error", err)
		s.requestResync()
		select {
		case <-ctx.Done():
			return
		case <-time.After(minSyncRetry):
		}
	}
}

// handle applies notified changes: the notified revocation is fetched (it
// may have changed again since) and put, or removed when it is gone.
func (s *RevocationSyncer) handle(ctx context.Context) {
	defer s.wg.Done()
	for {
		var c RevocationChange
		select {
		case <-ctx.Done():
			return
		case c = <-s.events:
		}
		if c.Resync {
			s.requestResync()
			continue
		}
		if c.Deleted {
			s.Remove(c.ID)
			continue
		}
		fctx, cancel := context.WithTimeout(ctx, fetchTimeout)
		r, found, err := s.src.GetRevocation(fctx, c.ID)
		cancel()
		switch {
		case err != nil:
			if ctx.Err() != nil {
				return
			}
			s.log.Warn("revocations: fetch of a notified revocation failed; resyncing", "id", c.ID, "error", err)
			s.requestResync()
		case !found:
			s.Remove(c.ID)
		default:
			if err := r.Validate(); err != nil {
				s.log.Error("revocations: stored revocation ignored", "id", r.ID, "error", err)
				continue
			}
			s.mu.Lock()
			_, had := s.cur.Get(r.ID)
			s.mu.Unlock()
			s.Put(r)
			if s.onPut != nil && !had {
				s.onPut(r)
			}
		}
	}
}

// periodic resyncs every interval (give or take a tenth, so replicas
// started together do not all reload at the same instant), and at once
// when asked; after a failure it retries sooner, backing off (jittered) up
// to the interval.
func (s *RevocationSyncer) periodic(ctx context.Context, failed bool) {
	defer s.wg.Done()
	retry := backoff.Policy{Min: minSyncRetry, Max: s.interval}
	failures := 0
	next := backoff.Jitter(s.interval, resyncJitter)
	if failed {
		failures = 1
		next = retry.Delay(failures)
	}
	t := time.NewTimer(next)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-s.kick:
			if !t.Stop() {
				select {
				case <-t.C:
				default:
				}
			}
		}
		if err := s.Resync(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			failures++
			t.Reset(retry.Delay(failures))
			continue
		}
		failures = 0
		t.Reset(backoff.Jitter(s.interval, resyncJitter))
	}
}
