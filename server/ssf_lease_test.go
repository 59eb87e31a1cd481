package server

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// flipLeaser holds the lease while held is set; err makes Acquire fail.
type flipLeaser struct {
	held     atomic.Bool
	fail     atomic.Bool
	mu       sync.Mutex
	released []string
}

func (l *flipLeaser) Acquire(ctx context.Context, name, holder string, ttl time.Duration) (bool, error) {
	if l.fail.Load() {
		return false, context.DeadlineExceeded
	}
	return l.held.Load(), nil
}

func (l *flipLeaser) Release(_ context.Context, name, holder string) error {
	l.mu.Lock()
	l.released = append(l.released, name+"/"+holder)
	l.mu.Unlock()
	return nil
}

// The poller polls only while it holds the lease: a lost lease or a failed
// renewal stops it within one renewal interval, a regained one restarts
// it, and closing releases it.
func TestSSFPollOnlyUnderLease(t *testing.T) {
	var polls atomic.Int64
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		polls.Add(1)
		_, _ = w.Write([]byte(`{"sets":{},"moreAvailable":false}`))
	}))
	defer ts.Close()
	const ttl = 150 * time.Millisecond
	l := &flipLeaser{}
	r := &SSFReceiver{log: quietLogger(), leaser: l, holder: "me", m: newSSFMetrics(nil), clock: time.Now}
	r.ctx, r.cancel = context.WithCancel(t.Context())
	tx := &ssfTx{cfg: SSFTransmitter{Name: "idp", PollURL: ts.URL, PollInterval: 5 * time.Millisecond,
		MaxEvents: 10, LeaseTTL: ttl, HTTPClient: ts.Client()}}
	r.txs = []*ssfTx{tx}
	r.wg.Add(1)
	go func() { defer r.wg.Done(); r.pollUnderLease(tx) }()

	quiet := func(what string) {
		t.Helper()
		time.Sleep(ttl / 3) // the stop takes at most one renewal interval
		n := polls.Load()
		time.Sleep(ttl)
		if got := polls.Load(); got != n {
			t.Errorf("%s: %d polls without the lease", what, got-n)
		}
		if tx.leaseHeld.Load() {
			t.Errorf("%s: the status shows the lease held", what)
		}
	}
	polling := func(what string) {
		t.Helper()
		n := polls.Load()
		time.Sleep(ttl)
		if polls.Load() == n {
			t.Errorf("%s: no poll while holding the lease", what)
		}
		if !tx.leaseHeld.Load() {
			t.Errorf("%s: the status does not show the lease held", what)
		}
	}
	quiet("another replica holds the lease")
	l.held.Store(true)
	polling("lease taken")
	l.held.Store(false)
	quiet("lease lost")
	l.held.Store(true)
	polling("lease taken again")
	l.fail.Store(true)
	quiet("renewal failing")
	l.fail.Store(false)
	polling("store back")
	r.cancel()
	r.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.released) != 1 || l.released[0] != "ssf-poll:idp/me" {
		t.Errorf("released %v; want the lease released once on close", l.released)
	}
}
