package bolt

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/scopegate/scopegate/decision"
	"github.com/scopegate/scopegate/store"
)

// bucketRevocations maps a revocation id to its record. The bucket is
// created by the first Revoke; until then the store holds no revocations.
var bucketRevocations = []byte("revocations")

// revocationV1 is the stored form of a revocation: JSON, so the file stays
// readable with bbolt's tools and new fields can be added. V is the format
// version.
type revocationV1 struct {
	V         int       `json:"v"`
	ID        string    `json:"id"`
	Kind      string    `json:"kind"`
	Issuer    string    `json:"iss,omitempty"`
	JTI       string    `json:"jti,omitempty"`
	Subject   string    `json:"sub,omitempty"`
	ClientID  string    `json:"client_id,omitempty"`
	Scope     string    `json:"scope,omitempty"`
	Segment   string    `json:"segment,omitempty"`
	Reason    string    `json:"reason"`
	CreatedAt time.Time `json:"created_at"`
	Until     time.Time `json:"until,omitzero"`
	CreatedBy string    `json:"created_by,omitempty"`
	// Added after the first release; absent in older records.
	SessionID       string    `json:"sid,omitempty"`
	IssuedBefore    time.Time `json:"issued_before,omitzero"`
	SourceEventTime time.Time `json:"source_event_time,omitzero"`
	DeviceID        string    `json:"device_id,omitempty"`
	ACRLevel        string    `json:"acr_level,omitempty"`
}

var _ store.RevocationStore = (*DB)(nil)

// Revocations returns the revocation store: this file, which keeps one
// node's revocations across restarts.
func (d *DB) Revocations() store.RevocationStore { return d }

// Revoke implements store.RevocationStore.
func (d *DB) Revoke(ctx context.Context, r decision.Revocation) (decision.Revocation, error) {
	r, err := store.PrepareRevocation(r, time.Now())
	if err != nil {
		return decision.Revocation{}, err
	}
	val, err := encodeRevocation(&r)
	if err != nil {
		return decision.Revocation{}, fmt.Errorf("revoke: %w", err)
	}
	err = d.update(ctx, func(tx *bbolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketRevocations)
		if err != nil {
			return err
		}
		if b.Get([]byte(r.ID)) != nil {
			return fmt.Errorf("revoke %s: %w", r.ID, store.ErrRevocationExists)
		}
		return b.Put([]byte(r.ID), val)
	})
	if err != nil {
		return decision.Revocation{}, err
	}
	return r, nil
}

// Unrevoke implements store.RevocationStore.
func (d *DB) Unrevoke(ctx context.Context, id string) error {
	return d.update(ctx, func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketRevocations)
		if b == nil || store.CheckRevocationID(id) != nil || b.Get([]byte(id)) == nil {
			return fmt.Errorf("unrevoke %q: %w", id, store.ErrRevocationNotFound)
		}
		return b.Delete([]byte(id))
	})
}

// GetRevocation implements store.RevocationStore.
func (d *DB) GetRevocation(ctx context.Context, id string) (r decision.Revocation, found bool, err error) {
	if store.CheckRevocationID(id) != nil {
		return decision.Revocation{}, false, d.usable(ctx)
	}
	err = d.view(ctx, func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketRevocations)
		if b == nil {
			return nil
		}
		v := b.Get([]byte(id))
		if v == nil {
			return nil
		}
		found = true
		r, err = decodeRevocation(v)
		return err
	})
	if err != nil {
		return decision.Revocation{}, false, fmt.Errorf("get revocation %q: %w", id, err)
	}
	return r, found, nil
}

// ListRevocations implements store.RevocationStore. A record that does not
// decode fails the whole list: skipping it would silently un-revoke.
func (d *DB) ListRevocations(ctx context.Context) ([]decision.Revocation, error) {
	now := time.Now()
	var out []decision.Revocation
	err := d.view(ctx, func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketRevocations)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			r, err := decodeRevocation(v)
			if err != nil {
				return fmt.Errorf("record %q: %w", k, err)
			}
			if r.ActiveAt(now) {
				out = append(out, r)
			}
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("list revocations: %w", err)
	}
	store.SortRevocations(out)
	return out, nil
}

// WatchRevocations implements store.RevocationStore. The file is locked by
// its one process, so no one else writes to it: it reports nothing and
// returns when ctx ends.
func (d *DB) WatchRevocations(ctx context.Context, _ func(store.RevocationChange)) error {
	<-ctx.Done()
	return ctx.Err()
}

func encodeRevocation(r *decision.Revocation) ([]byte, error) {
	return json.Marshal(revocationV1{
		V: 1, ID: r.ID, Kind: r.Kind.String(), Issuer: r.Issuer, JTI: r.JTI, Subject: r.Subject,
		ClientID: r.ClientID, Scope: r.Scope, Segment: r.Segment, Reason: r.Reason,
		CreatedAt: r.CreatedAt, Until: r.Until, CreatedBy: r.CreatedBy,
		SessionID: r.SessionID, IssuedBefore: r.IssuedBefore, SourceEventTime: r.SourceEventTime,
		DeviceID: r.DeviceID, ACRLevel: r.ACRLevel,
	})
}

var errCorruptRevocation = errors.New("corrupt revocation record: remove it with Unrevoke and revoke again")

// decodeRevocation copies v (it is only valid inside the transaction).
func decodeRevocation(v []byte) (decision.Revocation, error) {
	var s revocationV1
	if err := json.Unmarshal(v, &s); err != nil || s.V != 1 {
		return decision.Revocation{}, errCorruptRevocation
	}
	kind, ok := decision.ParseRevocationKind(s.Kind)
	if !ok {
		return decision.Revocation{}, errCorruptRevocation
	}
	return decision.Revocation{
		ID: s.ID, Kind: kind, Issuer: s.Issuer, JTI: s.JTI, Subject: s.Subject, ClientID: s.ClientID,
		Scope: s.Scope, Segment: s.Segment, Reason: s.Reason,
		CreatedAt: s.CreatedAt.UTC(), Until: utcOrZero(s.Until), CreatedBy: s.CreatedBy,
		SessionID: s.SessionID, IssuedBefore: utcOrZero(s.IssuedBefore), SourceEventTime: utcOrZero(s.SourceEventTime),
		DeviceID: s.DeviceID, ACRLevel: s.ACRLevel,
	}, nil
}

func utcOrZero(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return t.UTC()
}
