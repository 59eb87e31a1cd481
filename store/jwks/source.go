package jwks

import (
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/scopegate/scopegate/decision"
)

// Status describes a key source for health checks and metrics.
type Status struct {
	// Kind is "file" or "url"; Location the file path or URL.
	Kind     string
	Location string
	// Keys is the number of keys serving now; Epoch counts key set changes.
	Keys  int
	Epoch uint64
	// Age is the time since the key set was last loaded successfully.
	Age time.Duration
	// LastError is the error of the last load, nil if it succeeded.
	LastError error
	// Refreshes and Failures count successful and failed loads.
	Refreshes uint64
	Failures  uint64
}

// snapshot is one published key set. Keys and epoch are published together
// so that a reader who reads Epoch and then Keys never pairs an epoch with
// older keys than it stands for.
type snapshot struct {
	keys  []decision.Key
	epoch uint64
	fp    uint64
}

// keyState is what the file and URL sources share: the published set, its
// epoch and the load bookkeeping.
type keyState struct {
	snap atomic.Pointer[snapshot]

	mu          sync.Mutex // guards lastErr and lastSuccess
	lastErr     error
	lastSuccess time.Time

	refreshes atomic.Uint64
	failures  atomic.Uint64

	onChange func() // set before the source starts; may be nil
	// log receives a line per failed reload (and one when loads succeed
	// again); nil logs nothing. kind and location name the source in it.
	log            *slog.Logger
	kind, location string
	raw            string // location as configured, when it differs (a URL with a password)
}

// setLog names the source in its log lines; call it before the first load.
// location is raw with any password redacted.
func (s *keyState) setLog(log *slog.Logger, kind, raw, location string) {
	s.log, s.kind, s.location = log, kind, location
	if raw != location {
		s.raw = raw
	}
}

// Keys implements decision.KeySource. The slice is shared: callers must not
// modify it.
func (s *keyState) Keys() []decision.Key {
	if p := s.snap.Load(); p != nil {
		return p.keys
	}
	return nil
}

// Epoch implements decision.KeySource: it increments whenever the key set's
// content changes (not on a refetch that returns the same keys).
func (s *keyState) Epoch() uint64 {
	if p := s.snap.Load(); p != nil {
		return p.epoch
	}
	return 0
}

// Age is the time since the last successful load.
func (s *keyState) Age() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.lastSuccess.IsZero() {
		return 0
	}
	return time.Since(s.lastSuccess)
}

// LastError returns the error of the last load, or nil if it succeeded.
func (s *keyState) LastError() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastErr
}

// Refreshes counts successful loads, the first one included.
func (s *keyState) Refreshes() uint64 { return s.refreshes.Load() }

// Failures counts failed loads.
func (s *keyState) Failures() uint64 { return s.failures.Load() }

// publish makes keys the serving set, bumping the epoch if they differ from
// the current ones, and records the success.
func (s *keyState) publish(keys []decision.Key) {
	fp := fingerprint(keys)
	changed := false
	s.mu.Lock()
	cur := s.snap.Load()
	switch {
	case cur == nil:
		s.snap.Store(&snapshot{keys: keys, epoch: 1, fp: fp})
		changed = true
	case cur.fp != fp:
		s.snap.Store(&snapshot{keys: keys, epoch: cur.epoch + 1, fp: fp})
		changed = true
	}
	recovered := s.lastErr != nil && cur != nil
	s.lastErr = nil
	s.lastSuccess = time.Now()
	s.mu.Unlock()
	s.refreshes.Add(1)
	if changed && s.onChange != nil {
		s.onChange()
	}
	if recovered && s.log != nil {
		s.log.Info("JWKS loaded again after a failure", "source", s.kind, "location", s.location, "keys", len(keys))
	}
}

// fail records a failed load; the last good keys keep serving. Every
// failure is logged (the error names the source and what was wrong, never
// key material: ParseSet's errors name keys by kid or index only).
func (s *keyState) fail(err error) {
	s.mu.Lock()
	s.lastErr = err
	s.mu.Unlock()
	s.failures.Add(1)
	if s.log == nil {
		return
	}
	msg := err.Error()
	if s.raw != "" {
		msg = strings.ReplaceAll(msg, s.raw, s.location)
	}
	// The record's location names the URL: the error need not again.
	msg = strings.TrimPrefix(msg, "GET "+s.location+": ")
	if cur := s.snap.Load(); cur != nil {
		s.log.Warn("JWKS reload failed; the last good key set keeps verifying tokens",
			"source", s.kind, "location", s.location, "keys", len(cur.keys), "error", msg)
		return
	}
	// Key sets load in the background, so nobody else reports a first
	// load that fails: the issuer's tokens are key_set_unavailable.
	s.log.Warn("JWKS not loaded yet; the issuer's tokens are refused (key_set_unavailable) until it loads",
		"source", s.kind, "location", s.location, "error", msg)
}

func (s *keyState) status(kind, location string) Status {
	st := Status{Kind: kind, Location: location, Age: s.Age(), LastError: s.LastError(),
		Refreshes: s.Refreshes(), Failures: s.Failures()}
	if p := s.snap.Load(); p != nil {
		st.Keys, st.Epoch = len(p.keys), p.epoch
	}
	return st
}

func hasKid(keys []decision.Key, kid string) bool {
	return slices.ContainsFunc(keys, func(k decision.Key) bool { return k.Kid == kid })
}

// errClosed is returned by loads attempted after Close.
var errClosed = errors.New("the key source is closed")
