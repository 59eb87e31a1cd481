package server

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/scopegate/scopegate/store/audit"
	"github.com/scopegate/scopegate/store/usage"
)

// AuditConfig configures the decision audit log and the scope usage
// aggregation, which share one bounded pipeline off the decision path
// (store/audit). The zero value audits nothing and aggregates nothing.
type AuditConfig struct {
	// Sinks receive one JSON record per audited decision (stdout, a file,
	// PostgreSQL, an OpenTelemetry collector). None: no audit log. The server owns them from NewServer
	// (or Listen, Run) on: it closes them when it stops, and when it fails
	// to start.
	Sinks []audit.Sink
	// AllowSample is the fraction of allows written, in (0, 1]; zero means
	// every allow. Denies are always written.
	AllowSample float64
	// DenyOnly writes no allow at all.
	DenyOnly bool
	// Block makes decisions wait for room in a full buffer (up to their
	// deadline) instead of dropping the record.
	Block bool
	// BufferSize is the number of decisions buffered; default
	// audit.DefaultBufferSize.
	BufferSize int
	// Mask drops or hashes record fields in every record, for every sink
	// (audit.ParseMask); MaskKey keys the hashes.
	Mask    []audit.MaskRule
	MaskKey []byte
	// Usage aggregates, per client, the scopes its tokens carry and the
	// scopes that satisfied a route, for the Admin UsageReport call.
	Usage bool
	// UsageStore persists the aggregation (PostgreSQL: shared by every
	// replica; a store file: this process across restarts). nil keeps it
	// in memory.
	UsageStore usage.Store
	// UsageFlushInterval is how often usage is persisted; default
	// usage.DefaultFlushInterval.
	UsageFlushInterval time.Duration
}

// options returns the audit.Options of c (without the observer).
func (c *AuditConfig) options() audit.Options {
	return audit.Options{Sinks: c.Sinks, AllowSample: c.AllowSample, DenyOnly: c.DenyOnly, Block: c.Block, BufferSize: c.BufferSize, Mask: c.Mask, MaskKey: c.MaskKey}
}

// Validate reports every invalid field, each with the fix.
func (c *AuditConfig) Validate() error {
	var errs []error
	o := c.options()
	if err := o.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("server config: Audit: %w", err))
	}
	if c.UsageStore != nil && !c.Usage {
		errs = append(errs, errors.New("server config: Audit.UsageStore is set but Audit.Usage is off: turn usage on, or drop the store"))
	}
	uo := usage.Options{FlushInterval: c.UsageFlushInterval}
	if err := uo.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("server config: Audit: %w", err))
	}
	return errors.Join(errs...)
}

// auditState is the server's audit pipeline and usage aggregator; both
// nil when off.
type auditState struct {
	log   *audit.Logger
	usage *usage.Aggregator
}

// startAudit builds the usage aggregator and the audit pipeline from
// Config.Audit and registers their flush on shutdown. NewServer calls it
// once the engine exists, before the handlers that record into it.
func (s *Server) startAudit() error {
	c := &s.cfg.Audit
	if len(c.Sinks) == 0 && !c.Usage {
		return nil
	}
	opts := c.options()
	opts.Logger = s.log
	if c.Usage {
		agg, err := usage.New(usage.Options{Store: c.UsageStore, FlushInterval: c.UsageFlushInterval, Policy: s.engine.Policy, Logger: s.log})
		if err != nil {
			return fmt.Errorf("start usage aggregation: %w", err)
		}
		s.auditing.usage = agg
		opts.Observer = agg
	}
	l, err := audit.New(opts)
	if err != nil {
		if s.auditing.usage != nil {
			_ = s.auditing.usage.Close(context.Background())
		}
		return fmt.Errorf("start the audit log: %w", err)
	}
	s.auditing.log = l
	s.OnShutdown(s.closeAudit)
	return nil
}

// closeSinks closes Config.Audit.Sinks when no audit log took them: a
// start-up that fails before startAudit still releases the files and
// connections it was given.
func (s *Server) closeSinks() {
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
	defer cancel()
	for _, sink := range s.cfg.Audit.Sinks {
		if err := sink.Close(ctx); err != nil {
			s.log.Warn("audit sink not closed cleanly", "error", err)
		}
	}
}

// closeAudit drains the audit buffer into the sinks, then persists the
// usage counts it fed, within ctx (the shutdown deadline).
func (s *Server) closeAudit(ctx context.Context) {
	if s.auditing.log == nil {
		return
	}
	if err := s.auditing.log.Close(ctx); err != nil {
		s.log.Error("audit log not fully flushed", "error", err)
	}
	st := s.auditing.log.Stats()
	if st.Dropped > 0 || st.Failed > 0 {
		s.log.Warn("audit records lost", "dropped", st.Dropped,
			"allows_dropped", sum(st.Drops[audit.RecordAllow][:]), "denies_dropped", sum(st.Drops[audit.RecordDeny][:]),
			"admin_dropped", sum(st.Drops[audit.RecordAdmin][:]), "failed_in_sinks", st.Failed)
	}
	if s.auditing.usage != nil {
		if err := s.auditing.usage.Close(ctx); err != nil {
			s.log.Error("usage counts not persisted at shutdown", "error", err)
		}
	}
}

// AuditLog returns the audit pipeline, or nil when neither an audit sink
// nor usage aggregation is configured. The Admin service records its calls
// through it (audit.Logger.RecordAdmin).
func (s *Server) AuditLog() *audit.Logger { return s.auditing.log }

// UsageAggregator returns the usage aggregator, or nil when
// Config.Audit.Usage is off. It answers the Admin UsageReport call.
func (s *Server) UsageAggregator() *usage.Aggregator { return s.auditing.usage }

func sum(ns []uint64) (t uint64) {
	for _, n := range ns {
		t += n
	}
	return t
}

// exportAuditMetrics publishes the audit drop counters (by kind and
// reason; records a sink failed to write count as reason "failed", kind
// "all") once the metrics exist; with the audit pipeline off no series is
// exported.
func (s *Server) exportAuditMetrics() {
	l := s.auditing.log
	if l == nil {
		return
	}
	s.metrics.AuditDropped(func(emit func(kind, reason string, n uint64)) {
		l.EachDrop(func(k audit.RecordKind, r audit.DropReason, n uint64) { emit(k.String(), r.String(), n) })
		emit("all", "failed", l.Stats().Failed)
	})
}
