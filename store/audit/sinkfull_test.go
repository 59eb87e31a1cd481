package audit_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/scopegate/scopegate/store/audit"
	"github.com/scopegate/scopegate/store/audit/audittest"
)

// fullSink takes nothing: it reports every record as dropped by its own
// buffer, by kind, as the OTLP sink does when its buffer is full.
type fullSink struct{}

func (fullSink) Name() string { return "full" }
func (fullSink) Write(_ context.Context, entries []audit.Entry) error {
	we := &audit.WriteError{Err: errors.New("sink buffer full")}
	for i := range entries {
		we.Dropped[audit.KindOf(&entries[i])]++
	}
	return we
}
func (fullSink) Flush(context.Context) error { return nil }
func (fullSink) Close(context.Context) error { return nil }

func TestSinkFullCountedByKind(t *testing.T) {
	f := audittest.New(t)
	tok := f.Token(t, "alice", "mobile-app", "orders:read")
	ra, allow := f.Decide("GET", "/orders/1", tok)
	rd, deny := f.Decide("GET", "/orders/1", "")
	if !allow.Allow || deny.Allow {
		t.Fatalf("fixture decisions: %v %v", allow.Code, deny.Code)
	}
	l, err := audit.New(audit.Options{Sinks: []audit.Sink{fullSink{}}, Logger: slogTo(t.Output())})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for range 3 {
		l.Record(ctx, audit.ExtAuthz, &ra, &allow, time.Now(), "")
	}
	for range 2 {
		l.Record(ctx, audit.HTTP, &rd, &deny, time.Now(), "")
	}
	l.RecordAdmin(ctx, audit.AdminEvent{Time: time.Now(), Method: "Reload"})
	if err := l.Close(ctx); err != nil {
		t.Fatal(err)
	}
	st := l.Stats()
	for k, want := range map[audit.RecordKind]uint64{audit.RecordAllow: 3, audit.RecordDeny: 2, audit.RecordAdmin: 1} {
		if got := st.Drops[k][audit.DropSinkFull]; got != want {
			t.Errorf("%s dropped by the sink: %d, want %d", k, got, want)
		}
	}
	if st.Dropped != 6 || st.Failed != 0 {
		t.Errorf("dropped %d, failed %d; want 6 dropped and none counted as failed", st.Dropped, st.Failed)
	}
	got := map[string]uint64{}
	l.EachDrop(func(k audit.RecordKind, r audit.DropReason, n uint64) { got[k.String()+"/"+r.String()] += n })
	if got["deny/sink_full"] != 2 {
		t.Errorf("EachDrop deny/sink_full = %d, want 2 (%v)", got["deny/sink_full"], got)
	}
}
