package ssf

import (
	"sync"
	"time"
)

// Seen remembers the jtis of applied SETs until they could no longer pass
// the iat window, so a replay inside the window is refused without asking
// the store. It is bounded: when full of live entries it forgets the
// oldest, which is safe because the store refuses a second copy of every
// revocation a SET makes (deterministic ids); Seen only saves the work and
// counts the replay.
type Seen struct {
	mu    sync.Mutex
	max   int
	m     map[string]time.Time
	order []string // insertion order, for eviction
}

// NewSeen returns a Seen holding at most max jtis.
func NewSeen(max int) *Seen {
	return &Seen{max: max, m: make(map[string]time.Time, min(max, 1024))}
}

// Add records key (transmitter and jti) as seen until expiry; it returns
// false when key is already recorded and not expired: a replay.
func (s *Seen) Add(key string, expiry, now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if exp, ok := s.m[key]; ok && now.Before(exp) {
		return false
	}
	for len(s.order) > 0 && (len(s.m) >= s.max || !now.Before(s.m[s.order[0]])) {
		delete(s.m, s.order[0])
		s.order = s.order[1:]
	}
	s.m[key] = expiry
	s.order = append(s.order, key)
	return true
}

// Forget removes key, for a SET whose application failed and may be
// delivered again.
func (s *Seen) Forget(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, key)
}

// Len is the number of jtis remembered.
func (s *Seen) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m)
}
