package bolt

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"

	bbolt "go.etcd.io/bbolt"
	bberrors "go.etcd.io/bbolt/errors"

	"github.com/scopegate/scopegate/decision"
	"github.com/scopegate/scopegate/store"
)

// DB is an open store file. It is safe for concurrent use; reads run in
// parallel, writes one at a time.
type DB struct {
	db     *bbolt.DB
	path   string
	closed atomic.Bool
}

var (
	_ store.Store              = (*DB)(nil)
	_ store.UsageStoreProvider = (*DB)(nil)
)

// Open opens (creating if needed) the store file at path. It waits at most
// opts.File.LockTimeout for the file lock, so a second scopegate process on
// the same file fails with a clear error (wrapping store.ErrLocked) instead
// of hanging. PostgreSQL options are rejected: they mean the DSN was meant to
// be a postgres:// URL.
func Open(path string, opts store.Options) (*DB, error) {
	if path == "" {
		return nil, errors.New("store: file path is empty: give a file path or a postgres:// URL")
	}
	if err := opts.File.Validate(); err != nil {
		return nil, err
	}
	if !opts.Postgres.IsZero() {
		return nil, fmt.Errorf("store: PostgreSQL options given for the file store %s: use a postgres:// URL, or drop the PostgreSQL options", path)
	}
	timeout := opts.File.LockTimeout
	if timeout == 0 {
		timeout = store.DefaultLockTimeout
	}
	if dir := filepath.Dir(path); dir != "" {
		if st, err := os.Stat(dir); err != nil || !st.IsDir() {
			return nil, fmt.Errorf("store: directory %s of store file %s does not exist: create it first", dir, path)
		}
	}
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: timeout})
	if errors.Is(err, bberrors.ErrTimeout) {
		return nil, fmt.Errorf("store file %s is locked by another scopegate process (waited %s): stop that process or give this one another file: %w", path, timeout, store.ErrLocked)
	}
	if err != nil {
		return nil, fmt.Errorf("store: open file %s: %w", path, err)
	}
	d := &DB{db: db, path: path}
	if err := db.Update(func(tx *bbolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(bucketOwnership)
		return err
	}); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("store: initialise file %s: %w", path, err)
	}
	return d, nil
}

// Path is the file this store uses.
func (d *DB) Path() string { return d.path }

// Ping reports whether the store is open and its file readable.
func (d *DB) Ping(ctx context.Context) error {
	return d.view(ctx, func(*bbolt.Tx) error { return nil })
}

// Close releases the file and its lock. It waits for running transactions;
// calling it again is a no-op.
func (d *DB) Close() error {
	if d.closed.Swap(true) {
		return nil
	}
	return d.db.Close()
}

// view runs fn in a read transaction after checking ctx and the open state.
// bbolt transactions are not interruptible, but they take microseconds.
func (d *DB) view(ctx context.Context, fn func(*bbolt.Tx) error) error {
	if err := d.usable(ctx); err != nil {
		return err
	}
	return d.mapErr(d.db.View(fn))
}

func (d *DB) update(ctx context.Context, fn func(*bbolt.Tx) error) error {
	if err := d.usable(ctx); err != nil {
		return err
	}
	return d.mapErr(d.db.Update(func(tx *bbolt.Tx) error {
		if err := fn(tx); err != nil {
			return err
		}
		return ctx.Err() // a caller that gave up does not get a silent commit
	}))
}

func (d *DB) usable(ctx context.Context) error {
	if d.closed.Load() {
		return fmt.Errorf("store file %s: %w", d.path, store.ErrClosed)
	}
	return ctx.Err()
}

func (d *DB) mapErr(err error) error {
	if errors.Is(err, bberrors.ErrDatabaseNotOpen) {
		return fmt.Errorf("store file %s: %w", d.path, store.ErrClosed)
	}
	return err
}

// Ownership returns the read side for the decision engine.
func (d *DB) Ownership() decision.OwnershipStore { return d }

// Leaser returns leases for one process: the file is locked by the process
// that opened it, so there is no other replica to share a lease with.
func (d *DB) Leaser() store.Leaser { return store.SingleProcessLeaser{} }
