package postgres

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/scopegate/scopegate/store"
)

// ownershipSQL holds the statements on scopegate's own ownership table.
type ownershipSQL struct {
	selectOwners, deleteKey, insertOwners string
}

func newOwnershipSQL(t string) ownershipSQL {
	return ownershipSQL{
		// COLLATE "C" sorts by bytes, the order every backend returns.
		selectOwners: `SELECT owner FROM ` + t + ` WHERE lookup = $1 AND key = $2 ORDER BY owner COLLATE "C"`,
		deleteKey:    `DELETE FROM ` + t + ` WHERE lookup = $1 AND key = $2`,
		insertOwners: `INSERT INTO ` + t + ` (lookup, key, owner) SELECT $1, $2, unnest($3::text[]) ON CONFLICT DO NOTHING`,
	}
}

func ownershipMigrations(t string) []string {
	return []string{
		`CREATE TABLE IF NOT EXISTS ` + t + ` (
	lookup text NOT NULL,
	key    text NOT NULL,
	owner  text NOT NULL,
	PRIMARY KEY (lookup, key, owner)
)`,
	}
}

// wrapOwnerQuery turns an operator's query into one whose single column is
// the first column of theirs cast to text, so owners of any type (uuid,
// bigint) compare with the token's claim as text and scan without surprises.
func wrapOwnerQuery(q string) string {
	q = strings.TrimRight(strings.TrimSpace(q), "; \t\r\n")
	return "SELECT scopegate_owner::text FROM (" + q + "\n) AS scopegate_q(scopegate_owner)"
}

// Owners answers a lookup from its configured query, or else from
// scopegate's own table. It honours ctx's deadline; any failure, including
// the deadline, is an error and never a "not found".
func (d *DB) Owners(ctx context.Context, lookup, key string) (owners []string, found bool, err error) {
	if err := d.usable(ctx); err != nil {
		return nil, false, fmt.Errorf("ownership lookup %q: %w", lookup, err)
	}
	if !store.KeyCanExist(lookup, key) {
		return nil, false, nil
	}
	var rows pgx.Rows
	q, custom := d.ownQueries[lookup]
	if custom {
		rows, err = d.pool.Query(ctx, q, key)
	} else {
		rows, err = d.pool.Query(ctx, d.sql.selectOwners, lookup, key)
	}
	if err == nil {
		owners, found, err = scanOwners(rows)
	}
	if err != nil {
		if custom && keyNotRepresentable(err) {
			// The key cannot be converted to the column's type ("abc" for a
			// bigint id), so no such resource can exist.
			return nil, false, nil
		}
		return nil, false, fmt.Errorf("ownership lookup %q: %w", lookup, err)
	}
	return owners, found, nil
}

// scanOwners reads the owner column. A row with a NULL or empty owner still
// means the resource exists, but it grants ownership to no one (an empty
// owner must never match a missing claim).
func scanOwners(rows pgx.Rows) (owners []string, found bool, err error) {
	defer rows.Close()
	for rows.Next() {
		found = true
		var o pgtype.Text
		if err := rows.Scan(&o); err != nil {
			return nil, false, err
		}
		if o.Valid && o.String != "" {
			owners = append(owners, o.String)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, false, err
	}
	if len(owners) > 1 {
		slices.Sort(owners)
		owners = slices.Compact(owners)
	}
	return owners, found, nil
}

// keyNotRepresentable reports a server-side conversion failure of the key
// parameter: invalid text for the type, out of range, bad date/time, or bytes
// the database encoding cannot hold.
func keyNotRepresentable(err error) bool {
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		return false
	}
	switch pe.Code {
	case "22P02", "22003", "22007", "22008", "22021", "22P05":
		return true
	}
	return false
}

// PutOwners replaces the owners of key in scopegate's own table, atomically:
// concurrent writers to the same key serialise on an advisory lock, so the
// result is one writer's list, never a mix.
func (d *DB) PutOwners(ctx context.Context, lookup, key string, owners []string) error {
	norm, err := store.CheckPut(lookup, key, owners)
	if err != nil {
		return fmt.Errorf("put owners: %w", err)
	}
	if err := d.writable(ctx, lookup); err != nil {
		return fmt.Errorf("put owners: %w", err)
	}
	err = pgx.BeginFunc(ctx, d.pool, func(tx pgx.Tx) error {
		var b pgx.Batch
		b.Queue(`SELECT pg_advisory_xact_lock(hashtext($1), hashtext($2))`, lookup, key)
		b.Queue(d.sql.deleteKey, lookup, key)
		b.Queue(d.sql.insertOwners, lookup, key, norm)
		return tx.SendBatch(ctx, &b).Close()
	})
	if err != nil {
		return fmt.Errorf("put owners %q: %w", lookup, err)
	}
	return nil
}

// DeleteOwners removes the record of key from scopegate's own table.
func (d *DB) DeleteOwners(ctx context.Context, lookup, key string) error {
	if err := store.CheckLookup(lookup); err != nil {
		return fmt.Errorf("delete owners: %w", err)
	}
	if err := store.CheckKey(key); err != nil {
		return fmt.Errorf("delete owners: %w", err)
	}
	if err := d.writable(ctx, lookup); err != nil {
		return fmt.Errorf("delete owners: %w", err)
	}
	if _, err := d.pool.Exec(ctx, d.sql.deleteKey, lookup, key); err != nil {
		return fmt.Errorf("delete owners %q: %w", lookup, err)
	}
	return nil
}

func (d *DB) writable(ctx context.Context, lookup string) error {
	if err := d.usable(ctx); err != nil {
		return err
	}
	if _, custom := d.ownQueries[lookup]; custom {
		return fmt.Errorf("lookup %q reads the operator's own table through a configured query; write there instead: %w", lookup, store.ErrReadOnlyLookup)
	}
	return nil
}

// CheckQueries prepares every configured ownership query and reports the
// first that PostgreSQL rejects or that does not take exactly one parameter,
// naming the lookup. Commands call it at start-up (or in a config check) to
// fail fast on a typo instead of denying every request with
// ownership_unavailable.
func (d *DB) CheckQueries(ctx context.Context) error {
	if err := d.usable(ctx); err != nil {
		return err
	}
	if len(d.ownQueries) == 0 {
		return nil
	}
	conn, err := d.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("store: check ownership queries: %w", err)
	}
	defer conn.Release()
	for _, lookup := range slices.Sorted(maps.Keys(d.ownQueries)) {
		sd, err := conn.Conn().Prepare(ctx, "", d.ownQueries[lookup])
		if err != nil {
			return fmt.Errorf("store: Postgres.OwnershipQueries[%q]: %w", lookup, err)
		}
		if len(sd.ParamOIDs) != 1 {
			return fmt.Errorf("store: Postgres.OwnershipQueries[%q] takes %d parameters: it must take exactly one, the key, as $1", lookup, len(sd.ParamOIDs))
		}
	}
	return nil
}
