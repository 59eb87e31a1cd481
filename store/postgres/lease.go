package postgres

import (
	"context"
	"errors"
	"fmt"

	"time"

	"github.com/jackc/pgx/v5"

	"github.com/scopegate/scopegate/store"
)

const leaseTable = "scopegate_ssf_leases"

var (
	_ store.LeaserProvider = (*DB)(nil)
	_ store.Leaser         = (*leaser)(nil)
)

func leaseMigrations(t string) []string {
	return []string{`CREATE TABLE IF NOT EXISTS ` + t + ` (
	name       text PRIMARY KEY,
	holder     text NOT NULL,
	expires_at timestamptz NOT NULL
)`}
}

// Leaser returns leases shared by every replica of this database
// (scopegate_ssf_leases), expiring by the database's clock.
func (d *DB) Leaser() store.Leaser {
	t := d.table(leaseTable)
	return &leaser{d: d,
		// Take a lease nobody has, or one expired, or renew our own; a row
		// comes back only when holder has it now.
		acquire: `INSERT INTO ` + t + ` AS l (name, holder, expires_at) VALUES ($1, $2, clock_timestamp() + $3 * interval '1 microsecond')
ON CONFLICT (name) DO UPDATE SET holder = EXCLUDED.holder, expires_at = EXCLUDED.expires_at
	WHERE l.expires_at < clock_timestamp() OR l.holder = EXCLUDED.holder
RETURNING holder`,
		release: `DELETE FROM ` + t + ` WHERE name = $1 AND holder = $2`,
	}
}

type leaser struct {
	d                *DB
	acquire, release string
}

func (l *leaser) Acquire(ctx context.Context, name, holder string, ttl time.Duration) (bool, error) {
	if err := store.CheckLease(name, holder, ttl); err != nil {
		return false, err
	}
	if err := l.d.usable(ctx); err != nil {
		return false, err
	}
	var got string
	err := l.d.pool.QueryRow(ctx, l.acquire, name, holder, ttl.Microseconds()).Scan(&got)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("store: PostgreSQL lease %q: %w", name, err)
	}
	return got == holder, nil
}

func (l *leaser) Release(ctx context.Context, name, holder string) error {
	if err := l.d.usable(ctx); err != nil {
		return err
	}
	if _, err := l.d.pool.Exec(ctx, l.release, name, holder); err != nil {
		return fmt.Errorf("store: PostgreSQL lease %q release: %w", name, err)
	}
	return nil
}
