package postgres

import (
	"bytes"
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/scopegate/scopegate/store/audit"
	"github.com/scopegate/scopegate/store/internal/backoff"
)

// Defaults of AuditSinkOptions. A zero field means its default.
const (
	// DefaultAuditBatch is the number of records copied in one COPY.
	DefaultAuditBatch = 500
	// DefaultAuditMaxPending bounds the records held while PostgreSQL does
	// not answer; past it the oldest are dropped (and counted).
	DefaultAuditMaxPending = 50_000
	// DefaultAuditWriteTimeout bounds one COPY.
	DefaultAuditWriteTimeout = 10 * time.Second
)

// AuditSinkOptions configure the PostgreSQL audit sink.
type AuditSinkOptions struct {
	// BatchSize copies the pending records once this many are waiting
	// (besides every flush interval); default DefaultAuditBatch.
	BatchSize int
	// MaxPending bounds the records held while the database is down;
	// default DefaultAuditMaxPending.
	MaxPending int
	// WriteTimeout bounds one COPY; default DefaultAuditWriteTimeout.
	WriteTimeout time.Duration
}

// AuditSink writes audit records to scopegate_audit with COPY, in batches:
// the indexed columns (time, type, decision_id, request_id, api, allow,
// reason, route, client_id, subject) and the whole record as jsonb. It
// implements audit.Sink; the audit Logger calls it from one goroutine.
type AuditSink struct {
	db      *DB
	ident   pgx.Identifier
	table   tableOnce
	opts    AuditSinkOptions
	pending [][]any
	dropped atomic.Uint64
	// After a failed COPY, records are only kept until retryAt, so that a
	// database that is down costs one attempt per backoff, not one per
	// batch; the backoff (jittered) doubles up to maxAuditBackoff.
	retryAt  time.Time
	failures int
}

// Backoff between COPY attempts while PostgreSQL fails.
const (
	minAuditBackoff = time.Second
	maxAuditBackoff = 30 * time.Second
)

var _ audit.Sink = (*AuditSink)(nil)

// auditColumns are the columns COPY fills, in row order.
var auditColumns = []string{"time", "type", "decision_id", "request_id", "api", "allow", "reason", "route", "client_id", "subject", "record"}

// AuditSink returns a sink writing audit records to d. The table is
// created on first write if missing.
func (d *DB) AuditSink(opts AuditSinkOptions) (*AuditSink, error) {
	if opts.BatchSize < 0 || opts.MaxPending < 0 || opts.WriteTimeout < 0 {
		return nil, fmt.Errorf("store: PostgreSQL audit sink: BatchSize, MaxPending and WriteTimeout must not be negative (0 means the default: %d, %d, %v)",
			DefaultAuditBatch, DefaultAuditMaxPending, DefaultAuditWriteTimeout)
	}
	if opts.BatchSize == 0 {
		opts.BatchSize = DefaultAuditBatch
	}
	if opts.MaxPending == 0 {
		opts.MaxPending = DefaultAuditMaxPending
	}
	if opts.MaxPending < opts.BatchSize {
		opts.MaxPending = opts.BatchSize
	}
	if opts.WriteTimeout == 0 {
		opts.WriteTimeout = DefaultAuditWriteTimeout
	}
	t := d.table("scopegate_audit")
	ident := pgx.Identifier{"scopegate_audit"}
	if d.schema != "" {
		ident = pgx.Identifier{d.schema, "scopegate_audit"}
	}
	return &AuditSink{db: d, ident: ident, opts: opts,
		table: tableOnce{db: d, name: "scopegate_audit", stmts: auditMigrations(t)}}, nil
}

func auditMigrations(t string) []string {
	return []string{
		`CREATE TABLE IF NOT EXISTS ` + t + ` (
	time        timestamptz NOT NULL,
	type        text NOT NULL,
	decision_id text NOT NULL,
	request_id  text,
	api         text NOT NULL,
	allow       boolean NOT NULL,
	reason      text NOT NULL,
	route       text,
	client_id   text,
	subject     text,
	record      jsonb NOT NULL
)`,
		`CREATE INDEX IF NOT EXISTS scopegate_audit_time ON ` + t + ` (time)`,
		`CREATE INDEX IF NOT EXISTS scopegate_audit_client_time ON ` + t + ` (client_id, time)`,
		`CREATE INDEX IF NOT EXISTS scopegate_audit_decision_id ON ` + t + ` (decision_id)`,
	}
}

// Name implements audit.Sink.
func (s *AuditSink) Name() string { return "postgres" }

// Dropped returns the records dropped because PostgreSQL stayed down
// longer than MaxPending records.
func (s *AuditSink) Dropped() uint64 { return s.dropped.Load() }

// Write implements audit.Sink: it keeps a copy of the records and copies
// them once a batch is full.
func (s *AuditSink) Write(ctx context.Context, entries []audit.Entry) error {
	for i := range entries {
		e := &entries[i]
		s.pending = append(s.pending, []any{e.Time, e.Type, e.DecisionID, nullText(e.RequestID), e.API, e.Allow, e.Reason,
			nullText(e.Route), nullText(e.ClientID), nullText(e.Subject), bytes.Clone(e.JSON)})
	}
	if len(s.pending) < s.opts.BatchSize {
		return nil
	}
	return s.Flush(ctx)
}

// Flush implements audit.Sink: it copies every pending record. On error
// the records stay pending for the next attempt (after a backoff), up to
// MaxPending.
func (s *AuditSink) Flush(ctx context.Context) error {
	if time.Now().Before(s.retryAt) {
		if n := s.trim(); n > 0 {
			return &audit.WriteError{Err: fmt.Errorf("PostgreSQL audit sink: %d records dropped while the database is down (over %d held)", n, s.opts.MaxPending), Lost: n}
		}
		return nil
	}
	return s.flush(ctx)
}

func (s *AuditSink) flush(ctx context.Context) error {
	for len(s.pending) > 0 {
		n := min(len(s.pending), s.opts.BatchSize*4)
		if err := s.copy(ctx, s.pending[:n]); err != nil {
			s.failures++
			s.retryAt = time.Now().Add(backoff.Policy{Min: minAuditBackoff, Max: maxAuditBackoff}.Delay(s.failures))
			// The records stay pending for the next attempt: only those
			// past MaxPending are lost.
			return &audit.WriteError{Err: err, Lost: s.trim()}
		}
		s.failures, s.retryAt = 0, time.Time{}
		clear(s.pending[:n])
		s.pending = s.pending[n:]
	}
	s.pending = s.pending[:0:0]
	return nil
}

// trim drops the oldest pending records beyond MaxPending and returns how
// many it dropped.
func (s *AuditSink) trim() int {
	over := len(s.pending) - s.opts.MaxPending
	if over <= 0 {
		return 0
	}
	clear(s.pending[:over])
	s.pending = s.pending[over:]
	s.dropped.Add(uint64(over))
	return over
}

func (s *AuditSink) copy(ctx context.Context, rows [][]any) error {
	if err := s.db.usable(ctx); err != nil {
		return fmt.Errorf("PostgreSQL audit sink: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, s.opts.WriteTimeout)
	defer cancel()
	if err := s.table.ensure(ctx); err != nil {
		return err
	}
	if _, err := s.db.pool.CopyFrom(ctx, s.ident, auditColumns, pgx.CopyFromRows(rows)); err != nil {
		return fmt.Errorf("PostgreSQL audit sink: copy %d records: %w", len(rows), err)
	}
	return nil
}

// Close implements audit.Sink: a last flush, whatever the backoff. The
// pool belongs to the store and stays open.
func (s *AuditSink) Close(ctx context.Context) error { return s.flush(ctx) }

func nullText(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// NewAuditSink implements store.AuditSinkProvider: a sink with the default
// options.
func (d *DB) NewAuditSink() (audit.Sink, error) { return d.AuditSink(AuditSinkOptions{}) }
