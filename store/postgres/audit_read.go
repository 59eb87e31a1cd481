package postgres

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/jackc/pgx/v5/pgtype"

	"github.com/scopegate/scopegate/store/audit"
)

// ReadAudit implements store.AuditReader: the decision records of
// scopegate_audit that q selects, oldest first. ok is false when the
// table does not exist (no replica ever wrote an audit record here).
func (d *DB) ReadAudit(ctx context.Context, q audit.Query, fn func(*audit.Record) error) (ok bool, err error) {
	if err := d.usable(ctx); err != nil {
		return false, fmt.Errorf("audit log: %w", err)
	}
	t := d.table("scopegate_audit")
	if err := d.pool.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, t).Scan(&ok); err != nil {
		return false, fmt.Errorf("audit log: look up table scopegate_audit: %w", err)
	}
	if !ok {
		return false, nil
	}
	var from, to pgtype.Timestamptz = timestamptz(q.From), timestamptz(q.To)
	rows, err := d.pool.Query(ctx, `SELECT record FROM `+t+` WHERE type = 'decision'
	AND ($1 = '' OR client_id = $1)
	AND ($2 = '' OR record->>'patient' = $2)
	AND ($3::timestamptz IS NULL OR time >= $3)
	AND ($4::timestamptz IS NULL OR time < $4)
ORDER BY time, decision_id`, q.ClientID, q.Patient, from, to)
	if err != nil {
		return true, fmt.Errorf("audit log: read scopegate_audit: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var raw []byte
		if err := rows.Scan(&raw); err != nil {
			return true, fmt.Errorf("audit log: read scopegate_audit: %w", err)
		}
		var rec audit.Record
		if err := json.Unmarshal(raw, &rec); err != nil {
			return true, fmt.Errorf("audit log: a record of scopegate_audit is not an audit record: %w", err)
		}
		if !q.Match(&rec) {
			continue
		}
		if err := fn(&rec); err != nil {
			return true, err
		}
	}
	if err := rows.Err(); err != nil {
		return true, fmt.Errorf("audit log: read scopegate_audit: %w", err)
	}
	return true, nil
}
