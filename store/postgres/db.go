package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/scopegate/scopegate/decision"
	"github.com/scopegate/scopegate/store"
)

// DB is an open PostgreSQL store: a connection pool and the prepared forms of
// the configured queries. It is safe for concurrent use.
type DB struct {
	pool   *pgxpool.Pool
	closed atomic.Bool
	schema string
	// own table names, quoted and schema-qualified
	tOwnership string
	// lookup name → wrapped operator query
	ownQueries map[string]string
	sql        ownershipSQL

	replayMu sync.Mutex
	replay   *replayCache // replay.go, made on first use
}

var (
	_ store.Store              = (*DB)(nil)
	_ store.Migrator           = (*DB)(nil)
	_ store.AuditSinkProvider  = (*DB)(nil)
	_ store.UsageStoreProvider = (*DB)(nil)
)

// Open validates opts and creates the pool for dsn (a postgres:// URL; pool_*
// parameters in it are honoured unless opts overrides them). It connects only
// if opts.Postgres.Migrate is set, so a scopegate started while the database
// is down still serves the routes that need no lookup, and denies the others.
func Open(ctx context.Context, dsn string, opts store.Options) (*DB, error) {
	po := opts.Postgres
	if err := po.Validate(); err != nil {
		return nil, err
	}
	if !opts.File.IsZero() {
		return nil, errors.New("store: file options given for a PostgreSQL store: drop them, or give a file path instead of a postgres:// URL")
	}
	// URL schemes are case-insensitive; the driver only knows lower case.
	if scheme, rest, ok := strings.Cut(dsn, "://"); ok {
		dsn = strings.ToLower(scheme) + "://" + rest
	}
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// pgx redacts the password in its own message.
		return nil, fmt.Errorf("store: PostgreSQL DSN: %w", err)
	}
	cc := cfg.ConnConfig
	cc.DefaultQueryExecMode = pgx.QueryExecModeCacheStatement
	if po.ConnectTimeout > 0 {
		cc.ConnectTimeout = po.ConnectTimeout
	} else if cc.ConnectTimeout == 0 {
		cc.ConnectTimeout = store.DefaultConnectTimeout
	}
	if _, ok := cc.RuntimeParams["application_name"]; !ok {
		cc.RuntimeParams["application_name"] = "scopegate"
	}
	if po.MaxConns > 0 {
		cfg.MaxConns = po.MaxConns
	}
	if po.MinConns > 0 {
		cfg.MinConns = po.MinConns
	}
	if cfg.MinConns > cfg.MaxConns {
		return nil, fmt.Errorf("store: PostgreSQL pool minimum %d exceeds its maximum %d: lower Postgres.MinConns or pool_min_conns", cfg.MinConns, cfg.MaxConns)
	}
	if po.MaxConnLifetime > 0 {
		cfg.MaxConnLifetime = po.MaxConnLifetime
	}
	if po.MaxConnIdleTime > 0 {
		cfg.MaxConnIdleTime = po.MaxConnIdleTime
	}
	if po.HealthCheckPeriod > 0 {
		cfg.HealthCheckPeriod = po.HealthCheckPeriod
	}

	d := &DB{schema: po.Schema, ownQueries: make(map[string]string, len(po.OwnershipQueries))}
	d.tOwnership = d.table("scopegate_ownership")
	d.sql = newOwnershipSQL(d.tOwnership)
	for lookup, q := range po.OwnershipQueries {
		d.ownQueries[lookup] = wrapOwnerQuery(q)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("store: PostgreSQL pool: %w", err)
	}
	d.pool = pool
	if po.Migrate {
		if err := d.Migrate(ctx); err != nil {
			pool.Close()
			return nil, err
		}
	}
	return d, nil
}

// table returns name quoted and qualified by the configured schema.
func (d *DB) table(name string) string {
	if d.schema == "" {
		return pgx.Identifier{name}.Sanitize()
	}
	return pgx.Identifier{d.schema, name}.Sanitize()
}

// migrateLockID serialises Migrate across replicas starting at once:
// concurrent CREATE ... IF NOT EXISTS can still collide in the catalog.
const migrateLockID = 0x73636f7065676174 // "scopegat"

// Migrate creates scopegate's own schema objects if they are missing. Each
// statement is idempotent, so running it on every start is safe; it needs
// CREATE privilege, which read-only deployments (configured queries only)
// can avoid by never calling it.
func (d *DB) Migrate(ctx context.Context) error {
	if err := d.usable(ctx); err != nil {
		return err
	}
	var stmts []string
	if d.schema != "" {
		stmts = append(stmts, "CREATE SCHEMA IF NOT EXISTS "+pgx.Identifier{d.schema}.Sanitize())
	}
	stmts = append(stmts, ownershipMigrations(d.tOwnership)...)
	stmts = append(stmts, revocationMigrations(d.revocationTable())...)
	stmts = append(stmts, leaseMigrations(d.table(leaseTable))...)
	stmts = append(stmts, replayMigrations(d.table(replayTable), pgx.Identifier{replayTable + "_expires"}.Sanitize())...)
	stmts = append(stmts, ssfStreamMigrations(d.table(ssfStreamTable))...)
	err := pgx.BeginFunc(ctx, d.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", int64(migrateLockID)); err != nil {
			return err
		}
		for _, s := range stmts {
			if _, err := tx.Exec(ctx, s); err != nil {
				return fmt.Errorf("%s: %w", firstLine(s), err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store: PostgreSQL migrate: %w", err)
	}
	return nil
}

// Ping reports whether a connection can be had and answers.
func (d *DB) Ping(ctx context.Context) error {
	if err := d.usable(ctx); err != nil {
		return err
	}
	if err := d.pool.Ping(ctx); err != nil {
		return fmt.Errorf("store: PostgreSQL ping: %w", err)
	}
	return nil
}

// Close closes the pool, waiting for connections in use to be returned.
// Calling it again is a no-op.
func (d *DB) Close() error {
	if !d.closed.Swap(true) {
		d.replayMu.Lock()
		if d.replay != nil {
			d.replay.close()
		}
		d.replayMu.Unlock()
		d.pool.Close()
	}
	return nil
}

// Stat exposes the pool's counters for metrics.
func (d *DB) Stat() *pgxpool.Stat { return d.pool.Stat() }

// Ownership returns the read side for the decision engine.
func (d *DB) Ownership() decision.OwnershipStore { return d }

func (d *DB) usable(ctx context.Context) error {
	if d.closed.Load() {
		return fmt.Errorf("PostgreSQL: %w", store.ErrClosed)
	}
	return ctx.Err()
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}
