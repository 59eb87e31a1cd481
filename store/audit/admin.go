package audit

import (
	"context"
	"time"
)

// AdminEvent is one call to the Admin API: who changed what, and whether
// it worked. Admin calls are rare and each one matters, so they are
// written whatever the sampling, and a full buffer makes the call wait
// (within its context) rather than drop the record.
type AdminEvent struct {
	Time time.Time
	// Method is the RPC, e.g. "Revoke".
	Method string
	// Principal is the administrator as the Admin service authenticated
	// it; Peer the caller's address.
	Principal string
	Peer      string
	// Status is "ok" or the failure, e.g. "invalid_argument"; "" means ok.
	Status  string
	Message string
	// Details are what the call acted on (a revocation's target, scope and
	// reason; a reload's new version). Never a token or a secret.
	Details       map[string]string
	PolicyVersion string
	Latency       time.Duration
}

// RecordAdmin writes one admin call to the sinks. Admin calls have a lane
// of their own, which no decision can fill; when even that is full it waits
// for room until ctx is done, so an admin call is never silently
// unaudited: it returns false when the record could not be queued (the
// Logger is closed, or ctx ended first), and the caller may then refuse the
// call. The drain goroutine is woken at once: admin records do not wait
// for its tick.
func (l *Logger) RecordAdmin(ctx context.Context, a AdminEvent) bool {
	if l == nil || len(l.sinks) == 0 {
		return true
	}
	if l.closed.Load() {
		l.drops[RecordAdmin][DropClosed].Add(1)
		return false
	}
	if a.Time.IsZero() {
		a.Time = time.Now()
	}
	ev := Event{write: true, admin: &a}
	select {
	case l.admin <- ev:
		l.wakeDrain()
		return true
	default:
	}
	l.wakeDrain()
	select {
	case l.admin <- ev:
		l.wakeDrain()
		return true
	case <-ctx.Done():
		l.drops[RecordAdmin][DropDeadline].Add(1)
	case <-l.quit:
		l.drops[RecordAdmin][DropClosed].Add(1)
	}
	return false
}
