package store

import (
	"context"

	"github.com/scopegate/scopegate/decision"

	"github.com/scopegate/scopegate/store/audit"
	"github.com/scopegate/scopegate/store/usage"
)

// Capabilities a backend may have beyond Store. cmd asks an opened Store
// for them by interface, never by concrete type, so a new backend gains a
// feature by implementing the method, and cmd needs no driver import for
// it.

// Migrator is a backend whose schema can be created or checked up front
// (PostgreSQL). Backends without one create what they need on open.
type Migrator interface {
	Migrate(ctx context.Context) error
}

// AuditSinkProvider is a backend that can hold the decision audit log
// (PostgreSQL: one table shared by every replica), for --audit postgres.
type AuditSinkProvider interface {
	// NewAuditSink returns a sink with the backend's default batching.
	NewAuditSink() (audit.Sink, error)
}

// UsageStoreProvider is a backend that persists scope usage tallies
// (PostgreSQL for every replica; the bbolt file for one process across
// restarts).
type UsageStoreProvider interface {
	UsageStore() usage.Store
}

// AuditReader is a backend that holds the decision audit log and can read
// it back (PostgreSQL's scopegate_audit), for reviews and evidence
// exports.
type AuditReader interface {
	// ReadAudit calls fn with each decision record q selects, oldest
	// first. ok is false when the backend holds no audit log at all.
	ReadAudit(ctx context.Context, q audit.Query, fn func(*audit.Record) error) (ok bool, err error)
}

// ReplayCacheProvider is a backend that can hold the DPoP replay cache for
// every replica that shares it (PostgreSQL). A single-process backend (the
// bbolt file) has none: the engine's cache in memory is already all there
// is to share.
type ReplayCacheProvider interface {
	ReplayCache() decision.ReplayCache
}
