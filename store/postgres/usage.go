package postgres

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/scopegate/scopegate/store/usage"
)

// UsageStore persists scope usage tallies in scopegate_usage, one row per
// (client, scope) shared by every replica: each replica adds its deltas,
// so the table holds the sum over replicas and restarts. It implements
// usage.Store.
type UsageStore struct {
	db    *DB
	t     string
	table tableOnce
	// daily is scopegate_usage_daily, the per-day counts, added after
	// scopegate_usage: an existing deployment gets it on first use.
	td    string
	daily tableOnce
	// pruneMu guards lastPrune, when days older than usage.DailyRetention
	// were last deleted.
	pruneMu   sync.Mutex
	lastPrune time.Time
}

// pruneEvery is how often AddUsage deletes per-day counts older than
// usage.DailyRetention.
const pruneEvery = time.Hour

var _ usage.Store = (*UsageStore)(nil)

// UsageStore returns the usage store on d. Its table is created on first
// use if missing (or by a DBA beforehand; see usageMigrations).
func (d *DB) UsageStore() usage.Store {
	t := d.table("scopegate_usage")
	td := d.table("scopegate_usage_daily")
	return &UsageStore{db: d, t: t, table: tableOnce{db: d, name: "scopegate_usage", stmts: usageMigrations(t)},
		td: td, daily: tableOnce{db: d, name: "scopegate_usage_daily", stmts: usageDailyMigrations(td)}}
}

func usageDailyMigrations(t string) []string {
	return []string{
		`CREATE TABLE IF NOT EXISTS ` + t + ` (
	client_id text NOT NULL,
	scope     text NOT NULL,
	day       date NOT NULL,
	count     bigint NOT NULL DEFAULT 0,
	PRIMARY KEY (client_id, scope, day)
)`,
		`CREATE INDEX IF NOT EXISTS scopegate_usage_daily_day ON ` + t + ` (day)`,
	}
}

func usageMigrations(t string) []string {
	return []string{
		`CREATE TABLE IF NOT EXISTS ` + t + ` (
	client_id  text NOT NULL,
	scope      text NOT NULL,
	count      bigint NOT NULL DEFAULT 0,
	last_used  timestamptz,
	last_seen  timestamptz,
	updated_at timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (client_id, scope)
)`,
	}
}

// AddUsage implements usage.Store in one statement (atomic): counts are
// added, the later times kept.
func (s *UsageStore) AddUsage(ctx context.Context, deltas []usage.Tally) error {
	if err := s.db.usable(ctx); err != nil {
		return fmt.Errorf("usage store: %w", err)
	}
	if len(deltas) == 0 {
		return nil
	}
	if err := s.table.ensure(ctx); err != nil {
		return err
	}
	if err := s.daily.ensure(ctx); err != nil {
		return err
	}
	cutoff := usage.DayOf(time.Now().Add(-usage.DailyRetention))
	days := usage.MergeDays(deltas, cutoff)
	deltas = mergeTallies(deltas)
	n := len(deltas)
	clients, scopes := make([]string, n), make([]string, n)
	counts := make([]int64, n)
	used, seen := make([]pgtype.Timestamptz, n), make([]pgtype.Timestamptz, n)
	for i, t := range deltas {
		clients[i], scopes[i] = t.ClientID, t.Scope
		counts[i] = int64(min(t.Count, math.MaxInt64))
		used[i], seen[i] = timestamptz(t.LastUsed), timestamptz(t.LastSeen)
	}
	q := `INSERT INTO ` + s.t + ` AS u (client_id, scope, count, last_used, last_seen)
SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::timestamptz[], $5::timestamptz[])
ON CONFLICT (client_id, scope) DO UPDATE SET
	count = u.count + excluded.count,
	last_used = greatest(u.last_used, excluded.last_used),
	last_seen = greatest(u.last_seen, excluded.last_seen),
	updated_at = now()`
	dc, ds, dd, dn := make([]string, len(days)), make([]string, len(days)), make([]pgtype.Date, len(days)), make([]int64, len(days))
	for i, d := range days {
		dc[i], ds[i] = d.ClientID, d.Scope
		dd[i] = pgtype.Date{Time: d.Day, Valid: true}
		dn[i] = int64(min(d.Count, math.MaxInt64))
	}
	qd := `INSERT INTO ` + s.td + ` AS u (client_id, scope, day, count)
SELECT * FROM unnest($1::text[], $2::text[], $3::date[], $4::bigint[])
ON CONFLICT (client_id, scope, day) DO UPDATE SET count = u.count + excluded.count`
	prune := s.pruneDue()
	err := pgx.BeginFunc(ctx, s.db.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, q, clients, scopes, counts, used, seen); err != nil {
			return err
		}
		if len(days) > 0 {
			if _, err := tx.Exec(ctx, qd, dc, ds, dd, dn); err != nil {
				return err
			}
		}
		if prune {
			if _, err := tx.Exec(ctx, `DELETE FROM `+s.td+` WHERE day < $1`, pgtype.Date{Time: cutoff, Valid: true}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		if prune {
			s.pruneMu.Lock()
			s.lastPrune = time.Time{}
			s.pruneMu.Unlock()
		}
		return fmt.Errorf("usage store: add %d tallies: %w", n, err)
	}
	return nil
}

// pruneDue reports whether this write should delete old per-day counts,
// and if so marks them pruned.
func (s *UsageStore) pruneDue() bool {
	s.pruneMu.Lock()
	defer s.pruneMu.Unlock()
	if time.Since(s.lastPrune) < pruneEvery {
		return false
	}
	s.lastPrune = time.Now()
	return true
}

// LoadDaily implements usage.Store.
func (s *UsageStore) LoadDaily(ctx context.Context, clientID string, since time.Time) ([]usage.Daily, error) {
	if err := s.db.usable(ctx); err != nil {
		return nil, fmt.Errorf("usage store: %w", err)
	}
	if err := s.daily.ensure(ctx); err != nil {
		return nil, err
	}
	q := `SELECT client_id, scope, day, count FROM ` + s.td + ` WHERE day >= $1`
	from := pgtype.Date{InfinityModifier: pgtype.NegativeInfinity, Valid: true}
	if !since.IsZero() {
		from = pgtype.Date{Time: usage.DayOf(since), Valid: true}
		if from.Time.Before(since) {
			from.Time = from.Time.AddDate(0, 0, 1)
		}
	}
	args := []any{from}
	if clientID != "" {
		q += ` AND client_id = $2`
		args = append(args, clientID)
	}
	q += ` ORDER BY client_id COLLATE "C", scope COLLATE "C", day`
	rows, err := s.db.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("usage store: read day counts: %w", err)
	}
	defer rows.Close()
	var out []usage.Daily
	for rows.Next() {
		var d usage.Daily
		var day pgtype.Date
		var count int64
		if err := rows.Scan(&d.ClientID, &d.Scope, &day, &count); err != nil {
			return nil, fmt.Errorf("usage store: read day counts: %w", err)
		}
		d.Day = time.Date(day.Time.Year(), day.Time.Month(), day.Time.Day(), 0, 0, 0, 0, time.UTC)
		d.Count = uint64(max(count, 0))
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("usage store: read day counts: %w", err)
	}
	usage.SortDaily(out)
	return out, nil
}

// LoadUsage implements usage.Store.
func (s *UsageStore) LoadUsage(ctx context.Context, clientID string) ([]usage.Tally, error) {
	if err := s.db.usable(ctx); err != nil {
		return nil, fmt.Errorf("usage store: %w", err)
	}
	if err := s.table.ensure(ctx); err != nil {
		return nil, err
	}
	q := `SELECT client_id, scope, count, last_used, last_seen FROM ` + s.t
	var args []any
	if clientID != "" {
		q += ` WHERE client_id = $1`
		args = append(args, clientID)
	}
	q += ` ORDER BY client_id COLLATE "C", scope COLLATE "C"`
	rows, err := s.db.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("usage store: read: %w", err)
	}
	defer rows.Close()
	var out []usage.Tally
	for rows.Next() {
		var t usage.Tally
		var count int64
		var used, seen pgtype.Timestamptz
		if err := rows.Scan(&t.ClientID, &t.Scope, &count, &used, &seen); err != nil {
			return nil, fmt.Errorf("usage store: read: %w", err)
		}
		t.Count = uint64(max(count, 0))
		if used.Valid {
			t.LastUsed = used.Time.UTC()
		}
		if seen.Valid {
			t.LastSeen = seen.Time.UTC()
		}
		out = append(out, t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("usage store: read: %w", err)
	}
	return out, nil
}

// mergeTallies folds tallies of the same (client, scope) into one, since
// one INSERT ... ON CONFLICT cannot update a row twice.
func mergeTallies(ts []usage.Tally) []usage.Tally {
	type key struct{ c, s string }
	idx := make(map[key]int, len(ts))
	out := make([]usage.Tally, 0, len(ts))
	for _, t := range ts {
		k := key{t.ClientID, t.Scope}
		i, ok := idx[k]
		if !ok {
			idx[k] = len(out)
			out = append(out, t)
			continue
		}
		m := &out[i]
		m.Count += t.Count
		if t.LastUsed.After(m.LastUsed) {
			m.LastUsed = t.LastUsed
		}
		if t.LastSeen.After(m.LastSeen) {
			m.LastSeen = t.LastSeen
		}
	}
	slices.SortFunc(out, func(a, b usage.Tally) int {
		// A fixed order makes concurrent upserts from replicas lock rows in
		// the same order, so they cannot deadlock.
		if c := strings.Compare(a.ClientID, b.ClientID); c != 0 {
			return c
		}
		return strings.Compare(a.Scope, b.Scope)
	})
	return out
}

func timestamptz(t time.Time) pgtype.Timestamptz {
	if t.IsZero() {
		return pgtype.Timestamptz{}
	}
	return pgtype.Timestamptz{Time: t, Valid: true}
}

// tableOnce creates one of scopegate's own tables the first time it is
// needed. A table that already exists is left alone without asking for
// CREATE privilege, so a DBA may create it beforehand and grant only
// INSERT/SELECT. A failure is retried on the next use.
type tableOnce struct {
	db    *DB
	name  string
	stmts []string
	mu    sync.Mutex
	done  bool
}

func (o *tableOnce) ensure(ctx context.Context) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.done {
		return nil
	}
	var exists bool
	if err := o.db.pool.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, o.db.table(o.name)).Scan(&exists); err != nil {
		return fmt.Errorf("store: PostgreSQL: look up table %s: %w", o.name, err)
	}
	if !exists {
		var stmts []string
		if o.db.schema != "" {
			stmts = append(stmts, "CREATE SCHEMA IF NOT EXISTS "+pgx.Identifier{o.db.schema}.Sanitize())
		}
		stmts = append(stmts, o.stmts...)
		err := pgx.BeginFunc(ctx, o.db.pool, func(tx pgx.Tx) error {
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
			return fmt.Errorf("store: PostgreSQL: create table %s (or create it beforehand): %w", o.name, err)
		}
	}
	o.done = true
	return nil
}
