package store

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/scopegate/scopegate/decision"
)

// Store is one opened backend. Each concern (ownership now; revocations,
// client grants and usage later) is a method returning a small interface, so
// the engine receives only the read side it needs and writers (the admin API,
// the CLI importers) receive only the write side.
type Store interface {
	// Ownership is the read side the decision engine calls on every request
	// whose route has an owner rule. Wrap it in store/cache for production.
	Ownership() decision.OwnershipStore
	OwnershipWriter
	// Revocations is the revocation system of record (revocation.go).
	Revocations() RevocationStore
	// Ping reports whether the backend can answer now; health checks use it.
	Ping(ctx context.Context) error
	// Close releases the backend (file lock, connection pool). Lookups after
	// Close return an error.
	Close() error
}

// OwnershipWriter maintains ownership records. It is separate from the read
// side so that importers and admin endpoints can be handed only this.
type OwnershipWriter interface {
	// PutOwners replaces the owners of key in lookup with owners (at least
	// one; duplicates are dropped). Use DeleteOwners to remove a record.
	PutOwners(ctx context.Context, lookup, key string, owners []string) error
	// DeleteOwners removes the record; deleting a missing record is not an
	// error, so imports and retries are idempotent.
	DeleteOwners(ctx context.Context, lookup, key string) error
}

// Limits on stored strings, in bytes. They keep every backend able to hold
// every record (a PostgreSQL btree entry must stay under about 2.7 KB) and
// make the conformance suite meaningful: a record one backend accepts, all
// backends accept.
const (
	MaxLookupBytes = 128
	MaxKeyBytes    = 1024
	MaxOwnerBytes  = 512
	// MaxOwners bounds one record so one resource cannot make a lookup slow.
	MaxOwners = 1024
)

// ErrReadOnlyLookup is returned by writers for a lookup whose reads come from
// an operator-configured query: scopegate does not write to other people's
// tables, and writing to its own table would never be read.
var ErrReadOnlyLookup = errors.New("lookup is read-only")

// ErrLocked is returned when an embedded store file is held by another process.
var ErrLocked = errors.New("store file is locked")

// ErrClosed is returned by every call on a store after Close.
var ErrClosed = errors.New("store is closed")

// Defaults for Options fields left at zero.
const (
	DefaultLockTimeout    = time.Second
	DefaultConnectTimeout = 5 * time.Second
)

// Options configures whichever backend a DSN selects. Fields for the other
// backend must be left at zero: a PostgreSQL option given for a file store is
// a configuration mistake and is reported, not ignored.
type Options struct {
	File     FileOptions
	Postgres PostgresOptions
}

// FileOptions configures the embedded file store.
type FileOptions struct {
	// LockTimeout bounds the wait for the file lock, so a second process
	// started on the same file fails with a clear error instead of hanging.
	// Zero means DefaultLockTimeout.
	LockTimeout time.Duration
}

// PostgresOptions configures the PostgreSQL store.
type PostgresOptions struct {
	// OwnershipQueries maps a lookup name to a query over the operator's own
	// tables, e.g. "SELECT owner_id FROM orders WHERE id = $1". $1 is the key;
	// each row's first column is one owner (any type; it is compared as
	// text); no rows means the resource does not exist. Lookups not listed
	// here read scopegate's own table.
	OwnershipQueries map[string]string
	// Schema holds scopegate's own tables; empty means the connection's
	// search_path decides.
	Schema string
	// Migrate creates scopegate's own tables (if missing) when the store opens.
	Migrate bool
	// Pool sizing. Zero leaves the DSN's pool_* parameter, or else the
	// driver's default (MaxConns: the larger of 4 and the number of CPUs).
	MaxConns          int32
	MinConns          int32
	MaxConnLifetime   time.Duration
	MaxConnIdleTime   time.Duration
	HealthCheckPeriod time.Duration
	// ConnectTimeout bounds establishing one connection. Zero means
	// DefaultConnectTimeout (a lookup's own deadline still applies).
	ConnectTimeout time.Duration
}

// Validate reports the first unusable file option, naming the field.
func (o FileOptions) Validate() error {
	if o.LockTimeout < 0 {
		return fmt.Errorf("store: File.LockTimeout is %s: use a positive duration, or 0 for the default %s", o.LockTimeout, DefaultLockTimeout)
	}
	return nil
}

// Validate reports the first unusable PostgreSQL option, naming the field.
func (o PostgresOptions) Validate() error {
	for lookup, q := range o.OwnershipQueries {
		if err := CheckLookup(lookup); err != nil {
			return fmt.Errorf("store: Postgres.OwnershipQueries: %w", err)
		}
		if strings.TrimSpace(q) == "" {
			return fmt.Errorf("store: Postgres.OwnershipQueries[%q] is empty: give a SELECT that takes the key as $1", lookup)
		}
		if !strings.Contains(q, "$1") {
			return fmt.Errorf("store: Postgres.OwnershipQueries[%q] does not use $1: the key is passed as $1, e.g. WHERE id = $1", lookup)
		}
	}
	switch {
	case o.MaxConns < 0:
		return fmt.Errorf("store: Postgres.MaxConns is %d: use a positive number, or 0 for the default", o.MaxConns)
	case o.MinConns < 0:
		return fmt.Errorf("store: Postgres.MinConns is %d: use 0 or more", o.MinConns)
	case o.MaxConns > 0 && o.MinConns > o.MaxConns:
		return fmt.Errorf("store: Postgres.MinConns (%d) exceeds Postgres.MaxConns (%d): lower MinConns", o.MinConns, o.MaxConns)
	case o.MaxConnLifetime < 0, o.MaxConnIdleTime < 0, o.HealthCheckPeriod < 0:
		return errors.New("store: Postgres.MaxConnLifetime, MaxConnIdleTime and HealthCheckPeriod must not be negative")
	case o.ConnectTimeout < 0:
		return fmt.Errorf("store: Postgres.ConnectTimeout is %s: use a positive duration, or 0 for the default %s", o.ConnectTimeout, DefaultConnectTimeout)
	}
	return nil
}

// IsZero reports whether no file option was set.
func (o FileOptions) IsZero() bool { return o == FileOptions{} }

// IsZero reports whether no PostgreSQL option was set.
func (o PostgresOptions) IsZero() bool {
	return len(o.OwnershipQueries) == 0 && o.Schema == "" && !o.Migrate &&
		o.MaxConns == 0 && o.MinConns == 0 && o.MaxConnLifetime == 0 &&
		o.MaxConnIdleTime == 0 && o.HealthCheckPeriod == 0 && o.ConnectTimeout == 0
}

// IsPostgresDSN reports whether dsn selects the PostgreSQL backend: a
// postgres:// or postgresql:// URL. Anything else is a file path.
func IsPostgresDSN(dsn string) bool {
	scheme, _, ok := strings.Cut(dsn, "://")
	return ok && (strings.EqualFold(scheme, "postgres") || strings.EqualFold(scheme, "postgresql"))
}

// RedactDSN returns dsn with any password replaced, for logs and errors: a
// DSN is configuration, but its password is a secret.
func RedactDSN(dsn string) string {
	if !IsPostgresDSN(dsn) {
		return dsn
	}
	u, err := url.Parse(dsn)
	if err != nil {
		return "postgres://(unparseable DSN)"
	}
	q := u.Query()
	if q.Has("password") {
		q.Set("password", "xxxxx")
		u.RawQuery = q.Encode()
	}
	return u.Redacted()
}
