package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/scopegate/scopegate/store"
)

const ssfStreamTable = "scopegate_ssf_streams"

var _ store.SSFStreamStoreProvider = (*DB)(nil)

func ssfStreamMigrations(t string) []string {
	return []string{`CREATE TABLE IF NOT EXISTS ` + t + ` (
	transmitter text PRIMARY KEY,
	record      jsonb NOT NULL,
	updated_at  timestamptz NOT NULL DEFAULT now()
)`}
}

// SSFStreams returns the SSF stream records every replica of this
// database shares (scopegate_ssf_streams).
func (d *DB) SSFStreams() store.SSFStreamStore {
	t := d.table(ssfStreamTable)
	return &ssfStreams{d: d,
		load: `SELECT record FROM ` + t + ` WHERE transmitter = $1`,
		save: `INSERT INTO ` + t + ` (transmitter, record) VALUES ($1, $2)
ON CONFLICT (transmitter) DO UPDATE SET record = EXCLUDED.record, updated_at = now()`,
		// One statement, so a replica saving the record at the same time
		// (a new verification state) cannot lose the mark, nor the mark
		// its state.
		mark: `UPDATE ` + t + ` SET record = jsonb_set(record, '{verified_at}', to_jsonb($3::text)), updated_at = now()
WHERE transmitter = $1 AND record->'states' ? $2`,
	}
}

type ssfStreams struct {
	d                *DB
	load, save, mark string
}

func (s *ssfStreams) LoadSSFStream(ctx context.Context, transmitter string) (store.SSFStream, bool, error) {
	if err := s.d.usable(ctx); err != nil {
		return store.SSFStream{}, false, err
	}
	var raw []byte
	err := s.d.pool.QueryRow(ctx, s.load, transmitter).Scan(&raw)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return store.SSFStream{}, false, nil
	case err != nil:
		return store.SSFStream{}, false, fmt.Errorf("store: PostgreSQL ssf stream %q: %w", transmitter, err)
	}
	var rec store.SSFStream
	if err := json.Unmarshal(raw, &rec); err != nil {
		return store.SSFStream{}, false, fmt.Errorf("store: PostgreSQL ssf stream %q: record: %w", transmitter, err)
	}
	return rec, true, nil
}

func (s *ssfStreams) SaveSSFStream(ctx context.Context, rec store.SSFStream) error {
	if err := store.CheckSSFStream(rec); err != nil {
		return err
	}
	if err := s.d.usable(ctx); err != nil {
		return err
	}
	raw, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	if _, err := s.d.pool.Exec(ctx, s.save, rec.Transmitter, raw); err != nil {
		return fmt.Errorf("store: PostgreSQL ssf stream %q save: %w", rec.Transmitter, err)
	}
	return nil
}

func (s *ssfStreams) MarkSSFStreamVerified(ctx context.Context, transmitter, state string, at time.Time) (bool, error) {
	if state == "" {
		return false, nil
	}
	if err := s.d.usable(ctx); err != nil {
		return false, err
	}
	tag, err := s.d.pool.Exec(ctx, s.mark, transmitter, state, at.UTC().Format(time.RFC3339Nano))
	if err != nil {
		return false, fmt.Errorf("store: PostgreSQL ssf stream %q verified: %w", transmitter, err)
	}
	return tag.RowsAffected() == 1, nil
}
