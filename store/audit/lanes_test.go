package audit_test

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/scopegate/scopegate/decision"
	"github.com/scopegate/scopegate/store/audit"
	"github.com/scopegate/scopegate/store/audit/audittest"
)

// callers builds decisions from distinct callers of the fixture policy.
type callers struct {
	t *testing.T
	f *audittest.Fixture
}

// allow returns an allowed request of client.
func (c callers) allow(client string) (decision.Request, decision.Decision) {
	r, d := c.f.Decide("GET", "/orders/1", c.f.Token(c.t, "alice", client, "orders:read"))
	if !d.Allow {
		c.t.Fatalf("fixture allow of %s: %v", client, d.Code)
	}
	return r, d
}

// deny returns a denied request of client (a token without orders:write),
// or, with client "", a tokenless deny from source address src.
func (c callers) deny(client, src string) (decision.Request, decision.Decision) {
	tok := ""
	if client != "" {
		tok = c.f.Token(c.t, "bob", client, "orders:read")
	}
	r, d := c.f.Decide("POST", "/orders", tok)
	if d.Allow {
		c.t.Fatal("fixture deny was allowed")
	}
	if src != "" {
		r.SourceIP = netip.MustParseAddr(src)
	}
	return r, d
}

// recordsOf counts the sink's records carrying marker (a request id
// prefix, a client id).
func recordsOf(s *memSink, marker string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, l := range s.lines {
		if bytes.Contains(l, []byte(marker)) {
			n++
		}
	}
	return n
}

// TestAllowFloodLosesNoDeny: one caller floods allows while the sink is
// stuck; another caller's denies, interleaved, are all written once the
// sink recovers, and the allows dropped are counted as allows.
func TestAllowFloodLosesNoDeny(t *testing.T) {
	c := callers{t, audittest.New(t)}
	ra, da := c.allow("mobile-app")
	rd, dd := c.deny("web-app", "")
	sink := &memSink{gate: make(chan struct{})}
	const lane, flood, denies = 256, 20000, 120
	l := newLogger(t, audit.Options{Sinks: []audit.Sink{sink}, BufferSize: lane, MaxBatch: 4})
	ctx := context.Background()
	sent := 0
	for i := range flood {
		l.Record(ctx, audit.AuthZEN, &ra, &da, time.Now(), "")
		if i%(flood/denies) == 0 && sent < denies {
			rd.RequestID = "deny-" + strconv.Itoa(sent)
			l.Record(ctx, audit.ExtAuthz, &rd, &dd, time.Now(), "")
			sent++
		}
	}
	st := l.Stats()
	if st.Drops[audit.RecordAllow][audit.DropBufferFull]+st.Drops[audit.RecordAllow][audit.DropCallerShare] < flood-2*lane {
		t.Errorf("allow drops %v, want about %d (the sink is stuck)", st.Drops[audit.RecordAllow], flood-lane)
	}
	for r, n := range st.Drops[audit.RecordDeny] {
		if n != 0 {
			t.Errorf("%d denies dropped (%v) by a flood of allows", n, audit.DropReason(r))
		}
	}
	close(sink.gate)
	closeLogger(t, l)
	if got := recordsOf(sink, `"request_id":"deny-`); got != denies {
		t.Errorf("%d of %d denies written after an allow flood", got, denies)
	}
}

// TestDenyFloodKeepsRoomForOthers: one caller floods denies (a batch
// endpoint, a scanner) while the sink is stuck: it can take at most half of
// the deny lane, and every deny of the other callers (by client id, by
// source address) is still written; the flooder's own losses are counted as
// denies dropped for its share.
func TestDenyFloodKeepsRoomForOthers(t *testing.T) {
	c := callers{t, audittest.New(t)}
	for name, flooder := range map[string]struct{ client, src string }{
		"flooder by client id":      {"mobile-app", ""},
		"flooder by source address": {"", "203.0.113.9"},
	} {
		t.Run(name, func(t *testing.T) {
			rf, df := c.deny(flooder.client, flooder.src)
			type victim struct {
				r decision.Request
				d decision.Decision
			}
			var victims []victim
			if flooder.client == "" {
				r, d := c.deny("mobile-app", "")
				victims = append(victims, victim{r, d})
			} else {
				r, d := c.deny("", "198.51.100.7")
				victims = append(victims, victim{r, d})
			}
			r, d := c.deny("web-app", "")
			victims = append(victims, victim{r, d})
			for i := range 20 {
				r, d := c.deny("", fmt.Sprintf("192.0.2.%d", i+1))
				victims = append(victims, victim{r, d})
			}

			sink := &memSink{gate: make(chan struct{})}
			const lane, flood, each = 256, 10000, 4
			l := newLogger(t, audit.Options{Sinks: []audit.Sink{sink}, BufferSize: lane, MaxBatch: 4})
			ctx := context.Background()
			// The flood first fills what it can, then the others' denies
			// arrive between its records.
			for range lane {
				l.Record(ctx, audit.AuthZEN, &rf, &df, time.Now(), "")
			}
			want := 0
			for i := range flood - lane {
				l.Record(ctx, audit.AuthZEN, &rf, &df, time.Now(), "")
				if i%100 == 0 && want < len(victims)*each {
					v := &victims[want%len(victims)]
					v.r.RequestID = "victim-" + strconv.Itoa(want)
					l.Record(ctx, audit.ExtAuthz, &v.r, &v.d, time.Now(), "")
					want++
				}
			}
			st := l.Stats()
			if got := st.Drops[audit.RecordDeny][audit.DropCallerShare]; got < flood-lane {
				t.Errorf("flooder's denies dropped for its share = %d, want at least %d", got, flood-lane)
			}
			if st.Drops[audit.RecordDeny][audit.DropBufferFull] != 0 {
				t.Errorf("deny lane overflowed (%d buffer_full): the flooder took the others' room", st.Drops[audit.RecordDeny][audit.DropBufferFull])
			}
			close(sink.gate)
			closeLogger(t, l)
			if got := recordsOf(sink, `"request_id":"victim-`); got != want {
				t.Errorf("%d of %d denies of the other callers written during the flood", got, want)
			}
			if got := recordsOf(sink, `"decision":"deny"`) - want; got > lane/2+4+1 {
				t.Errorf("the flooder kept %d records, more than half the lane (%d) plus one batch", got, lane/2)
			}
		})
	}
}

// TestNoLossBelowCapacity: many callers together (each within a 64th of
// the lane) may fill a lane to its last slot with the sink stuck; nothing
// below the capacity is dropped.
func TestNoLossBelowCapacity(t *testing.T) {
	c := callers{t, audittest.New(t)}
	const lane, callersN = 512, 64
	rs := make([]decision.Request, callersN)
	ds := make([]decision.Decision, callersN)
	for i := range rs {
		rs[i], ds[i] = c.deny("", fmt.Sprintf("10.0.%d.1", i))
	}
	// The per-caller counts are a sketch under a random seed: a caller
	// that shares both of its buckets with others is counted above its own
	// events, by design (it loses only the lane's last slots). This test is
	// of the capacity, so it takes a Logger that counts its callers exactly.
	var sink *memSink
	var l *audit.Logger
	for try := 0; ; try++ {
		sink = &memSink{gate: make(chan struct{})}
		l = newLogger(t, audit.Options{Sinks: []audit.Sink{sink}, BufferSize: lane, MaxBatch: 1})
		if !audit.CallersCollide(l, rs, ds) {
			break
		}
		close(sink.gate)
		if try == 20 {
			t.Fatal("20 Loggers in a row counted one of 64 callers above its events: the caller hash is not spreading")
		}
	}
	ctx := context.Background()
	// The drain goroutine takes the first record and waits in the stuck
	// sink; then lane records fit, from callers taking turns.
	l.Record(ctx, audit.ExtAuthz, &rs[0], &ds[0], time.Now(), "")
	waitFor(t, func() bool { return sink.writes.Load() == 1 })
	for i := range lane {
		l.Record(ctx, audit.ExtAuthz, &rs[i%callersN], &ds[i%callersN], time.Now(), "")
	}
	if st := l.Stats(); st.Dropped != 0 || st.Buffered != lane {
		t.Errorf("stats %+v: want the %d records below the capacity all buffered, none dropped", st, lane)
	}
	l.Record(ctx, audit.ExtAuthz, &rs[0], &ds[0], time.Now(), "")
	if st := l.Stats(); st.Drops[audit.RecordDeny][audit.DropBufferFull]+st.Drops[audit.RecordDeny][audit.DropCallerShare] != 1 {
		t.Errorf("one record past the capacity: drops %v, want 1", st.Drops[audit.RecordDeny])
	}
	close(sink.gate)
	closeLogger(t, l)
	if got := sink.count(); got != lane+1 {
		t.Errorf("written %d, want %d", got, lane+1)
	}
}

// TestAdminLaneApart: a full decision lane never costs an admin record.
func TestAdminLaneApart(t *testing.T) {
	c := callers{t, audittest.New(t)}
	ra, da := c.allow("mobile-app")
	rd, dd := c.deny("", "192.0.2.1")
	sink := &memSink{gate: make(chan struct{})}
	l := newLogger(t, audit.Options{Sinks: []audit.Sink{sink}, BufferSize: 16, MaxBatch: 1, NoCallerShare: true})
	ctx := context.Background()
	for range 1000 {
		l.Record(ctx, audit.ExtAuthz, &ra, &da, time.Now(), "")
		l.Record(ctx, audit.ExtAuthz, &rd, &dd, time.Now(), "")
	}
	for i := range 10 {
		actx, cancel := context.WithTimeout(ctx, time.Second)
		ok := l.RecordAdmin(actx, audit.AdminEvent{Method: "Revoke", Principal: "ops", Message: "admin-" + strconv.Itoa(i)})
		cancel()
		if !ok {
			t.Fatalf("admin record %d refused while the decision lanes are full", i)
		}
	}
	st := l.Stats()
	if st.Drops[audit.RecordAllow][audit.DropBufferFull] == 0 || st.Drops[audit.RecordDeny][audit.DropBufferFull] == 0 {
		t.Errorf("drops %v: the decision lanes did not overflow, the test proves nothing", st.Drops)
	}
	for r, n := range st.Drops[audit.RecordAdmin] {
		if n != 0 {
			t.Errorf("%d admin records dropped (%v)", n, audit.DropReason(r))
		}
	}
	close(sink.gate)
	closeLogger(t, l)
	if got := recordsOf(sink, `"message":"admin-`); got != 10 {
		t.Errorf("%d of 10 admin records written", got)
	}
}

// TestDrainBatches: under steady light load the sinks see few writes, each
// with many records (the drain runs on its interval, not per record), and
// a record is written within a few intervals.
func TestDrainBatches(t *testing.T) {
	c := callers{t, audittest.New(t)}
	r, d := c.allow("mobile-app")
	sink := &memSink{}
	const every = 50 * time.Millisecond
	l := newLogger(t, audit.Options{Sinks: []audit.Sink{sink}, DrainInterval: every})
	ctx := context.Background()
	const n = 2000
	start := time.Now()
	for i := range n {
		l.Record(ctx, audit.ExtAuthz, &r, &d, time.Now(), "")
		if i%100 == 99 {
			time.Sleep(time.Millisecond)
		}
	}
	elapsed := time.Since(start)
	waitFor(t, func() bool { return sink.count() == n })
	writes := sink.writes.Load()
	// One write per drain interval (and per DefaultMaxBatch records).
	if max := int64(elapsed/every) + n/audit.DefaultMaxBatch + 3; writes > max {
		t.Errorf("%d records took %d sink writes over %v, want at most %d (batched per drain)", n, writes, elapsed, max)
	}
	t.Logf("%d records in %d writes over %v", n, writes, elapsed)
}
