package postgres

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/scopegate/scopegate/decision"
	"github.com/scopegate/scopegate/store"
	"github.com/scopegate/scopegate/store/internal/backoff"
)

// Revocations live in scopegate_revocations, the system of record every
// replica shares. A write notifies the other replicas in the same
// transaction (pg_notify, delivered on commit), each replica listening on a
// dedicated connection; the periodic full resync of store.RevocationSyncer
// heals any notification lost while a listener reconnects.

const revocationTable = "scopegate_revocations"

// revocationChannelBase is the LISTEN/NOTIFY channel; a configured schema
// adds a hash of its name, so deployments sharing a database in different
// schemas do not hear each other.
const revocationChannelBase = "scopegate_revocations"

// Notification payloads: "put:<id>" or "del:<id>".
const (
	notifyPut = "put:"
	notifyDel = "del:"
)

// Listener reconnection backoff, and how long the listener waits for a
// notification before checking that its connection is still alive.
const (
	listenRetryMin  = 100 * time.Millisecond
	listenRetryMax  = 5 * time.Second
	listenIdleCheck = 15 * time.Second
	listenPingWait  = 5 * time.Second
)

const revocationColumns = `id, kind, iss, jti, sub, client_id, scope, segment, reason, created_at, "until", created_by, sid, issued_before, source_event_time, device_id, acr_level`

// revocationKindCheck names the kind CHECK constraint: PostgreSQL's default
// name for the one CREATE TABLE declared, so a table created by an older
// release has its constraint replaced rather than a second one added.
const revocationKindCheck = revocationTable + "_kind_check"

func revocationMigrations(t string) []string {
	return []string{
		`CREATE TABLE IF NOT EXISTS ` + t + ` (
	id         text PRIMARY KEY,
	kind       text NOT NULL,
	iss        text NOT NULL DEFAULT '',
	jti        text NOT NULL DEFAULT '',
	sub        text NOT NULL DEFAULT '',
	client_id  text NOT NULL DEFAULT '',
	scope      text NOT NULL DEFAULT '',
	segment    text NOT NULL DEFAULT '',
	reason     text NOT NULL,
	created_at timestamptz NOT NULL DEFAULT now(),
	"until"    timestamptz,
	created_by text NOT NULL DEFAULT '',
	sid        text NOT NULL DEFAULT '',
	issued_before timestamptz,
	source_event_time timestamptz,
	device_id  text NOT NULL DEFAULT '',
	acr_level  text NOT NULL DEFAULT '',
	CONSTRAINT ` + revocationKindCheck + ` CHECK (kind IN ('token', 'subject', 'client', 'session', 'device', 'assurance'))
)`,
		// Session revocations and "issued before", added after the first
		// release. It upgrades a table an older release made, once: on an
		// upgraded table it only reads the catalog (no ALTER, no lock).
		`DO $$
BEGIN
	IF NOT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = '` + strings.ReplaceAll(t, "'", "''") + `'::regclass AND attname = 'issued_before' AND NOT attisdropped) THEN
		ALTER TABLE ` + t + ` ADD COLUMN IF NOT EXISTS sid text NOT NULL DEFAULT '';
		ALTER TABLE ` + t + ` ADD COLUMN IF NOT EXISTS issued_before timestamptz;
		ALTER TABLE ` + t + ` DROP CONSTRAINT IF EXISTS ` + revocationKindCheck + `;
		ALTER TABLE ` + t + ` ADD CONSTRAINT ` + revocationKindCheck + ` CHECK (kind IN ('token', 'subject', 'client', 'session'));
	END IF;
END $$`,
		// The source event's time (SSF), added after that.
		`DO $$
BEGIN
	IF NOT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = '` + strings.ReplaceAll(t, "'", "''") + `'::regclass AND attname = 'source_event_time' AND NOT attisdropped) THEN
		ALTER TABLE ` + t + ` ADD COLUMN IF NOT EXISTS source_event_time timestamptz;
	END IF;
END $$`,
		// Device and assurance revocations, added after that.
		`DO $$
BEGIN
	IF NOT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = '` + strings.ReplaceAll(t, "'", "''") + `'::regclass AND attname = 'acr_level' AND NOT attisdropped) THEN
		ALTER TABLE ` + t + ` ADD COLUMN IF NOT EXISTS device_id text NOT NULL DEFAULT '';
		ALTER TABLE ` + t + ` ADD COLUMN IF NOT EXISTS acr_level text NOT NULL DEFAULT '';
		ALTER TABLE ` + t + ` DROP CONSTRAINT IF EXISTS ` + revocationKindCheck + `;
		ALTER TABLE ` + t + ` ADD CONSTRAINT ` + revocationKindCheck + ` CHECK (kind IN ('token', 'subject', 'client', 'session', 'device', 'assurance'));
	END IF;
END $$`,
	}
}

func (d *DB) revocationTable() string { return d.table(revocationTable) }

// revocationChannel is the channel name for this store's schema.
func (d *DB) revocationChannel() string {
	if d.schema == "" {
		return revocationChannelBase
	}
	h := fnv.New32a()
	_, _ = h.Write([]byte(d.schema))
	return revocationChannelBase + "_" + strconv.FormatUint(uint64(h.Sum32()), 16)
}

var _ store.RevocationStore = (*DB)(nil)

// Revocations returns the revocation store: scopegate_revocations, shared
// by every replica.
func (d *DB) Revocations() store.RevocationStore { return d }

// Revoke implements store.RevocationStore: the insert and the notification
// commit together.
func (d *DB) Revoke(ctx context.Context, r decision.Revocation) (decision.Revocation, error) {
	if err := d.usable(ctx); err != nil {
		return decision.Revocation{}, fmt.Errorf("revoke: %w", err)
	}
	r, err := store.PrepareRevocation(r, time.Now())
	if err != nil {
		return decision.Revocation{}, err
	}
	until, issuedBefore, sourceEvent := nullTime(r.Until), nullTime(r.IssuedBefore), nullTime(r.SourceEventTime)
	err = pgx.BeginFunc(ctx, d.pool, func(tx pgx.Tx) error {
		var b pgx.Batch
		b.Queue(`INSERT INTO `+d.revocationTable()+` (`+revocationColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)`,
			r.ID, r.Kind.String(), r.Issuer, r.JTI, r.Subject, r.ClientID, r.Scope, r.Segment, r.Reason, r.CreatedAt, until, r.CreatedBy, r.SessionID, issuedBefore, sourceEvent, r.DeviceID, r.ACRLevel)
		b.Queue(`SELECT pg_notify($1, $2)`, d.revocationChannel(), notifyPut+r.ID)
		return tx.SendBatch(ctx, &b).Close()
	})
	if err != nil {
		var pe *pgconn.PgError
		if errors.As(err, &pe) && pe.Code == "23505" {
			return decision.Revocation{}, fmt.Errorf("revoke %s: %w", r.ID, store.ErrRevocationExists)
		}
		return decision.Revocation{}, fmt.Errorf("revoke: %w", err)
	}
	return r, nil
}

// Unrevoke implements store.RevocationStore.
func (d *DB) Unrevoke(ctx context.Context, id string) error {
	if err := d.usable(ctx); err != nil {
		return fmt.Errorf("unrevoke: %w", err)
	}
	if store.CheckRevocationID(id) != nil {
		return fmt.Errorf("unrevoke %q: %w", id, store.ErrRevocationNotFound)
	}
	err := pgx.BeginFunc(ctx, d.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `DELETE FROM `+d.revocationTable()+` WHERE id = $1`, id)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return store.ErrRevocationNotFound
		}
		_, err = tx.Exec(ctx, `SELECT pg_notify($1, $2)`, d.revocationChannel(), notifyDel+id)
		return err
	})
	if err != nil {
		return fmt.Errorf("unrevoke %q: %w", id, err)
	}
	return nil
}

// GetRevocation implements store.RevocationStore.
func (d *DB) GetRevocation(ctx context.Context, id string) (decision.Revocation, bool, error) {
	if err := d.usable(ctx); err != nil {
		return decision.Revocation{}, false, fmt.Errorf("get revocation: %w", err)
	}
	if store.CheckRevocationID(id) != nil {
		return decision.Revocation{}, false, nil
	}
	rows, err := d.pool.Query(ctx, `SELECT `+revocationColumns+` FROM `+d.revocationTable()+` WHERE id = $1`, id)
	if err != nil {
		return decision.Revocation{}, false, fmt.Errorf("get revocation %q: %w", id, err)
	}
	revs, err := scanRevocations(rows)
	if err != nil {
		return decision.Revocation{}, false, fmt.Errorf("get revocation %q: %w", id, err)
	}
	if len(revs) == 0 {
		return decision.Revocation{}, false, nil
	}
	return revs[0], true, nil
}

// ListRevocations implements store.RevocationStore. A row that does not
// scan (an unknown kind written by hand) fails the whole list: skipping it
// would silently un-revoke.
func (d *DB) ListRevocations(ctx context.Context) ([]decision.Revocation, error) {
	if err := d.usable(ctx); err != nil {
		return nil, fmt.Errorf("list revocations: %w", err)
	}
	rows, err := d.pool.Query(ctx, `SELECT `+revocationColumns+` FROM `+d.revocationTable()+
		` WHERE "until" IS NULL OR "until" > $1 ORDER BY created_at, id COLLATE "C"`, time.Now())
	if err != nil {
		return nil, fmt.Errorf("list revocations: %w", err)
	}
	revs, err := scanRevocations(rows)
	if err != nil {
		return nil, fmt.Errorf("list revocations: %w", err)
	}
	return revs, nil
}

func scanRevocations(rows pgx.Rows) ([]decision.Revocation, error) {
	defer rows.Close()
	var out []decision.Revocation
	for rows.Next() {
		var (
			r            decision.Revocation
			kind         string
			until        pgtype.Timestamptz
			issuedBefore pgtype.Timestamptz
			sourceEvent  pgtype.Timestamptz
		)
		if err := rows.Scan(&r.ID, &kind, &r.Issuer, &r.JTI, &r.Subject, &r.ClientID, &r.Scope, &r.Segment, &r.Reason, &r.CreatedAt, &until, &r.CreatedBy, &r.SessionID, &issuedBefore, &sourceEvent, &r.DeviceID, &r.ACRLevel); err != nil {
			return nil, err
		}
		k, ok := decision.ParseRevocationKind(kind)
		if !ok {
			return nil, fmt.Errorf("revocation %q has unknown kind %q: fix or delete the row", r.ID, kind)
		}
		r.Kind = k
		r.CreatedAt = r.CreatedAt.UTC()
		if until.Valid {
			r.Until = until.Time.UTC()
		}
		if issuedBefore.Valid {
			r.IssuedBefore = issuedBefore.Time.UTC()
		}
		if sourceEvent.Valid {
			r.SourceEventTime = sourceEvent.Time.UTC()
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// WatchRevocations implements store.RevocationStore with LISTEN on a
// dedicated connection (not one of the pool's). The connection is checked
// when idle and re-established with backoff when it fails; after every
// (re)connection fn receives a Resync change, since notifications sent
// while no one listened are lost.
func (d *DB) WatchRevocations(ctx context.Context, fn func(store.RevocationChange)) error {
	retry := backoff.Policy{Min: listenRetryMin, Max: listenRetryMax}
	failures := 0
	for {
		if err := d.usable(ctx); err != nil {
			return err
		}
		err := d.listen(ctx, fn, func() { failures = 0 })
		if ctx.Err() != nil {
			return ctx.Err()
		}
		_ = err // the syncer's resync reports an unreachable database
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(retry.Delay(failures + 1)):
		}
		failures++
	}
}

// listen runs one listening connection until it fails or ctx ends.
func (d *DB) listen(ctx context.Context, fn func(store.RevocationChange), connected func()) error {
	conn, err := pgx.ConnectConfig(ctx, d.pool.Config().ConnConfig.Copy())
	if err != nil {
		return err
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = conn.Close(cctx)
	}()
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{d.revocationChannel()}.Sanitize()); err != nil {
		return err
	}
	connected()
	fn(store.RevocationChange{Resync: true})
	for {
		wctx, cancel := context.WithTimeout(ctx, listenIdleCheck)
		n, err := conn.WaitForNotification(wctx)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if !errors.Is(err, context.DeadlineExceeded) && !pgconn.Timeout(err) {
				return err
			}
			// Idle: make sure the connection is still alive.
			pctx, cancel := context.WithTimeout(ctx, listenPingWait)
			err := conn.Ping(pctx)
			cancel()
			if err != nil {
				return err
			}
			continue
		}
		switch {
		case strings.HasPrefix(n.Payload, notifyPut):
			fn(store.RevocationChange{ID: n.Payload[len(notifyPut):]})
		case strings.HasPrefix(n.Payload, notifyDel):
			fn(store.RevocationChange{ID: n.Payload[len(notifyDel):], Deleted: true})
		default:
			fn(store.RevocationChange{Resync: true})
		}
	}
}

// nullTime is t as a nullable timestamptz: NULL for the zero time.
func nullTime(t time.Time) pgtype.Timestamptz {
	return pgtype.Timestamptz{Time: t, Valid: !t.IsZero()}
}
