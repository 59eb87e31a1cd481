package audit_test

import (
	"context"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/scopegate/scopegate/store/audit"
	"github.com/scopegate/scopegate/store/audit/audittest"
)

// discardSink accepts every record and keeps none.
type discardSink struct{}

func (discardSink) Name() string                               { return "discard" }
func (discardSink) Write(context.Context, []audit.Entry) error { return nil }
func (discardSink) Flush(context.Context) error                { return nil }
func (discardSink) Close(context.Context) error                { return nil }

// BenchmarkAuditEnqueue is what the decision path pays per decision with
// the audit log on: copy the event into the buffer. "drain" has the drain
// goroutine encoding every record (to a sink that discards them); "full"
// has a stuck sink, so every Record is a drop.
func BenchmarkAuditEnqueue(b *testing.B) {
	f := audittest.New(b)
	tok := f.Token(b, "alice", "mobile-app", "orders:read")
	r, d := f.Decide("GET", "/orders/1", tok)
	if !d.Allow {
		b.Fatalf("fixture decision: %v", d.Code)
	}
	ctx := context.Background()
	// One arrival time for every call: the benchmark measures Record, not
	// the loop's clock reads.
	start := time.Now()
	b.Run("drain", func(b *testing.B) {
		l, _ := audit.New(audit.Options{Sinks: []audit.Sink{discardSink{}}})
		defer l.Close(ctx)
		b.ReportAllocs()
		for b.Loop() {
			l.Record(ctx, audit.ExtAuthz, &r, &d, start, "")
		}
		b.ReportMetric(float64(l.Stats().Dropped)/float64(b.N), "dropped/op")
	})
	b.Run("drain-parallel", func(b *testing.B) {
		l, _ := audit.New(audit.Options{Sinks: []audit.Sink{discardSink{}}})
		defer l.Close(ctx)
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			r, d := r, d
			for pb.Next() {
				l.Record(ctx, audit.ExtAuthz, &r, &d, start, "")
			}
		})
		b.ReportMetric(float64(l.Stats().Dropped)/float64(b.N), "dropped/op")
	})
	// "buffered" is the request path alone: every record finds room and
	// the drain goroutine stays asleep while the loop runs (run it with
	// -benchtime up to 131072x).
	b.Run("buffered", func(b *testing.B) {
		l, _ := audit.New(audit.Options{Sinks: []audit.Sink{discardSink{}}, BufferSize: 1 << 17, DrainInterval: time.Hour})
		defer l.Close(ctx)
		b.ReportAllocs()
		for b.Loop() {
			l.Record(ctx, audit.ExtAuthz, &r, &d, start, "")
		}
		b.ReportMetric(float64(l.Stats().Dropped)/float64(b.N), "dropped/op")
	})
	b.Run("full", func(b *testing.B) {
		sink := &memSink{gate: make(chan struct{})}
		l, _ := audit.New(audit.Options{Sinks: []audit.Sink{sink}, BufferSize: 16})
		defer func() { close(sink.gate); l.Close(ctx) }()
		b.ReportAllocs()
		for b.Loop() {
			l.Record(ctx, audit.ExtAuthz, &r, &d, start, "")
		}
	})
	b.Run("sampled-out", func(b *testing.B) {
		l, _ := audit.New(audit.Options{Sinks: []audit.Sink{discardSink{}}, DenyOnly: true})
		defer l.Close(ctx)
		b.ReportAllocs()
		for b.Loop() {
			l.Record(ctx, audit.ExtAuthz, &r, &d, start, "")
		}
	})
}

// BenchmarkAuditPaced is the whole cost of auditing one decision at a
// modest request rate, as at concurrency 1: one Record every 20µs of busy
// work, records written as JSON lines to /dev/null (a write system call per
// sink write). cpu-ns/op is the process's CPU time (user and system, every
// thread: the drain goroutine's encoding and writes included) per request;
// the difference between "on" and "off" is what auditing costs a request.
func BenchmarkAuditPaced(b *testing.B) {
	f := audittest.New(b)
	tok := f.Token(b, "alice", "mobile-app", "orders:read")
	r, d := f.Decide("GET", "/orders/1", tok)
	ctx := context.Background()
	devnull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer devnull.Close()
	const work = 20 * time.Microsecond
	for _, on := range []bool{false, true} {
		name := "off"
		if on {
			name = "on"
		}
		b.Run(name, func(b *testing.B) {
			var l *audit.Logger
			if on {
				l, _ = audit.New(audit.Options{Sinks: []audit.Sink{audit.NewWriterSink("devnull", devnull)}})
			}
			b.ReportAllocs()
			cpu0 := cpuTime()
			n := 0
			for b.Loop() {
				start := time.Now()
				for time.Since(start) < work {
				}
				l.Record(ctx, audit.ExtAuthz, &r, &d, start, "")
				n++
			}
			if l != nil {
				l.Close(ctx)
			}
			b.ReportMetric(float64(cpuTime()-cpu0)/float64(n), "cpu-ns/op")
		})
	}
}

// cpuTime is the process's user and system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
