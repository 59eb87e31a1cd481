package usage

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/scopegate/scopegate/decision"
	"github.com/scopegate/scopegate/store/audit"
)

// Defaults of Options. A zero field means its default.
const (
	// DefaultFlushInterval is how often counts are persisted: a crash
	// loses at most this much usage, and the store sees one batched write
	// per replica per interval.
	DefaultFlushInterval = 30 * time.Second
	// DefaultMaxClients bounds the clients tracked in memory. Clients come
	// from verified tokens of trusted issuers, so the bound is a backstop.
	DefaultMaxClients = 100_000
	// DefaultMaxScopesPerClient bounds the scopes tracked per client.
	DefaultMaxScopesPerClient = 1024
	// flushTimeout bounds one periodic write to the store.
	flushTimeout = 10 * time.Second
	// seenEvery is how often the same token refreshes its client's
	// last-seen times: a client sending one token thousands of times a
	// second costs one map walk a second, not thousands.
	seenEvery = time.Second
)

// Options configure an Aggregator.
type Options struct {
	// Store persists the counts; nil keeps them in memory only (lost on
	// restart, this replica only).
	Store Store
	// FlushInterval is how often counts go to the Store; default
	// DefaultFlushInterval.
	FlushInterval time.Duration
	// Policy returns the policy in force; its clients' grants count as
	// granted scopes in reports. nil: only the scopes seen in tokens do.
	Policy func() *decision.Policy
	// Clock is the time reports are made at; default time.Now.
	Clock func() time.Time
	// MaxClients and MaxScopesPerClient bound memory; defaults
	// DefaultMaxClients and DefaultMaxScopesPerClient.
	MaxClients         int
	MaxScopesPerClient int
	// Logger receives persistence errors; default slog.Default().
	Logger *slog.Logger
}

// Validate reports every invalid option, each with the fix.
func (o *Options) Validate() error {
	var errs []error
	if o.FlushInterval < 0 {
		errs = append(errs, fmt.Errorf("usage: FlushInterval %v is negative: use 0 for the default (%v)", o.FlushInterval, DefaultFlushInterval))
	} else if o.FlushInterval > 0 && o.FlushInterval < 100*time.Millisecond {
		errs = append(errs, fmt.Errorf("usage: FlushInterval %v is too short: use at least 100ms (default %v)", o.FlushInterval, DefaultFlushInterval))
	}
	if o.MaxClients < 0 {
		errs = append(errs, fmt.Errorf("usage: MaxClients %d is negative: use 0 for the default (%d)", o.MaxClients, DefaultMaxClients))
	}
	if o.MaxScopesPerClient < 0 {
		errs = append(errs, fmt.Errorf("usage: MaxScopesPerClient %d is negative: use 0 for the default (%d)", o.MaxScopesPerClient, DefaultMaxScopesPerClient))
	}
	return errors.Join(errs...)
}

// Aggregator counts scope usage per client. Observe is called by the
// audit Logger's goroutine; reports and flushes may run concurrently.
type Aggregator struct {
	opts Options

	// mu guards clients and every stat in it.
	mu      sync.Mutex
	clients map[string]*clientStat
	// implied caches, for the policy last seen, which token scopes imply
	// a scope (catalog implies), so a use is credited to the scope the
	// token actually carried.
	impliedPol *decision.Policy
	implied    map[string][]string

	// flushMu serializes flushes with each other and with reports that
	// read the store, so a report never sees a delta both in the store
	// and in memory.
	flushMu sync.Mutex

	overflow  atomic.Uint64
	flushErrs atomic.Uint64

	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
	closeErr  error
}

type clientStat struct {
	scopes map[string]*scopeStat
	// lastTok and lastTokAt skip refreshing last-seen times for the same
	// token within seenEvery.
	lastTok   *decision.Token
	lastTokAt int64
}

type scopeStat struct {
	count    uint64 // since start, this replica
	pending  uint64 // not yet persisted
	lastUsed int64  // unix nanoseconds; 0 never
	lastSeen int64
	dirty    bool // a time changed since the last flush
	// days splits pending by UTC day (unix day number), kept only with a
	// Store: flushed with pending, so it holds a day or two.
	days map[int64]uint64
}

var _ audit.Observer = (*Aggregator)(nil)

// New validates opts and returns an Aggregator; with a Store it persists
// every FlushInterval until Close.
func New(opts Options) (*Aggregator, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	if opts.FlushInterval == 0 {
		opts.FlushInterval = DefaultFlushInterval
	}
	if opts.MaxClients == 0 {
		opts.MaxClients = DefaultMaxClients
	}
	if opts.MaxScopesPerClient == 0 {
		opts.MaxScopesPerClient = DefaultMaxScopesPerClient
	}
	if opts.Clock == nil {
		opts.Clock = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	a := &Aggregator{opts: opts, clients: map[string]*clientStat{}, stop: make(chan struct{}), done: make(chan struct{})}
	if opts.Store != nil {
		go a.run()
	} else {
		close(a.done)
	}
	return a, nil
}

// Observe records one decision: the scopes its token carried (granted)
// and, for an allow, the scopes that satisfied the route (used). It
// implements audit.Observer; tokens without a client id are not tracked.
func (a *Aggregator) Observe(e *audit.Event) {
	d := &e.Decision
	tok := d.Token
	if tok == nil || tok.ClientID == "" {
		return
	}
	at := e.Time.UnixNano()
	var used []string
	if d.Allow {
		used = d.ScopesUsed()
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	c := a.clients[tok.ClientID]
	if c == nil {
		if len(a.clients) >= a.opts.MaxClients {
			a.overflow.Add(1)
			return
		}
		c = &clientStat{scopes: map[string]*scopeStat{}}
		a.clients[tok.ClientID] = c
	}
	if c.lastTok != tok || at-c.lastTokAt >= int64(seenEvery) || at < c.lastTokAt {
		c.lastTok, c.lastTokAt = tok, at
		for _, s := range tok.Scopes {
			if st := a.stat(c, s); st != nil && at > st.lastSeen {
				st.lastSeen, st.dirty = at, true
			}
		}
	}
	for _, s := range used {
		a.use(c, s, at)
		if slices.Contains(tok.Scopes, s) {
			continue
		}
		// Satisfied through implies: credit the token's scope(s) that
		// imply s as well.
		for _, t := range a.impliers(d.Policy, tok, s) {
			a.use(c, t, at)
		}
	}
}

func (a *Aggregator) use(c *clientStat, s string, at int64) {
	st := a.stat(c, s)
	if st == nil {
		return
	}
	st.count++
	st.pending++
	if a.opts.Store != nil {
		if st.days == nil {
			st.days = make(map[int64]uint64, 1)
		}
		st.days[floorDiv(at, int64(24*time.Hour))]++
	}
	if at > st.lastUsed {
		st.lastUsed, st.dirty = at, true
	}
}

// stat returns the stat of scope s of c, creating it within the bound.
func (a *Aggregator) stat(c *clientStat, s string) *scopeStat {
	st := c.scopes[s]
	if st == nil {
		if len(c.scopes) >= a.opts.MaxScopesPerClient {
			a.overflow.Add(1)
			return nil
		}
		st = &scopeStat{}
		c.scopes[s] = st
	}
	return st
}

// impliers returns the scopes of tok that imply s under pol's catalog.
func (a *Aggregator) impliers(pol *decision.Policy, tok *decision.Token, s string) []string {
	if pol == nil || !pol.HasScopeCatalog() {
		return nil
	}
	if a.impliedPol != pol {
		a.impliedPol, a.implied = pol, map[string][]string{}
	}
	var out []string
	for _, t := range tok.Scopes {
		imp, ok := a.implied[t]
		if !ok {
			if info, found := pol.ScopeInfo(t); found {
				imp = info.Implies
			}
			a.implied[t] = imp
		}
		if slices.Contains(imp, s) {
			out = append(out, t)
		}
	}
	return out
}

// Overflow returns the number of observations not tracked because a
// memory bound (clients, scopes per client) was reached.
func (a *Aggregator) Overflow() uint64 { return a.overflow.Load() }

func (a *Aggregator) run() {
	defer close(a.done)
	t := time.NewTicker(a.opts.FlushInterval)
	defer t.Stop()
	for {
		select {
		case <-a.stop:
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(context.Background(), flushTimeout)
			if err := a.Flush(ctx); err != nil {
				a.opts.Logger.Warn("usage counts not persisted; they are kept and retried", "error", err)
			}
			cancel()
		}
	}
}

// Flush persists the counts gathered since the last successful flush. On
// error they stay in memory and the next flush retries them. Without a
// Store it does nothing.
func (a *Aggregator) Flush(ctx context.Context) error {
	if a.opts.Store == nil {
		return nil
	}
	a.flushMu.Lock()
	defer a.flushMu.Unlock()
	a.mu.Lock()
	var deltas []Tally
	for client, c := range a.clients {
		for scope, st := range c.scopes {
			if st.pending == 0 && !st.dirty {
				continue
			}
			deltas = append(deltas, Tally{ClientID: client, Scope: scope, Count: st.pending,
				LastUsed: unixTime(st.lastUsed), LastSeen: unixTime(st.lastSeen), Days: dayCounts(st.days)})
			st.pending, st.dirty = 0, false
			clear(st.days)
		}
	}
	a.mu.Unlock()
	if len(deltas) == 0 {
		return nil
	}
	err := a.opts.Store.AddUsage(ctx, deltas)
	if err == nil {
		return nil
	}
	a.flushErrs.Add(1)
	a.mu.Lock()
	for _, t := range deltas {
		if st := a.clients[t.ClientID].scopes[t.Scope]; st != nil {
			st.pending += t.Count
			st.dirty = true
			for _, d := range t.Days {
				if st.days == nil {
					st.days = map[int64]uint64{}
				}
				st.days[floorDiv(d.Day.Unix(), 24*3600)] += d.Count
			}
		}
	}
	a.mu.Unlock()
	return fmt.Errorf("usage: persist %d tallies: %w", len(deltas), err)
}

// Close stops the periodic flush and persists what is left, within ctx.
func (a *Aggregator) Close(ctx context.Context) error {
	a.closeOnce.Do(func() {
		close(a.stop)
		<-a.done
		a.closeErr = a.Flush(ctx)
	})
	return a.closeErr
}

// dayCounts returns days (unix day number → count) ordered by day.
func dayCounts(days map[int64]uint64) []DayCount {
	if len(days) == 0 {
		return nil
	}
	out := make([]DayCount, 0, len(days))
	for d, n := range days {
		out = append(out, DayCount{Day: time.Unix(d*24*3600, 0).UTC(), Count: n})
	}
	slices.SortFunc(out, func(x, y DayCount) int { return x.Day.Compare(y.Day) })
	return out
}

// floorDiv is a/b rounded down, so that days before 1970 stay whole.
func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

func unixTime(ns int64) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns).UTC()
}
