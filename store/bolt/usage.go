package bolt

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/scopegate/scopegate/store/usage"
)

// bucketUsage maps client_id NUL scope → a tally (usageV1).
var bucketUsage = []byte("usage")

// usageV1 tags the tally encoding: the version byte, then count, last used
// and last seen (unix nanoseconds, 0 for never) as big-endian 8-byte
// integers.
const (
	usageV1      = 1
	usageValueSz = 1 + 3*8
)

// UsageStore persists scope usage tallies in the store file, so a single
// scopegate keeps its usage report across restarts. It implements
// usage.Store.
type UsageStore struct{ db *DB }

var _ usage.Store = (*UsageStore)(nil)

// UsageStore returns the usage store in d's file.
func (d *DB) UsageStore() usage.Store { return &UsageStore{db: d} }

// usageKey is client_id NUL scope; neither may hold a NUL.
func usageKey(client, scope string) ([]byte, error) {
	if strings.IndexByte(client, 0) >= 0 || strings.IndexByte(scope, 0) >= 0 {
		return nil, errors.New("usage store: a client id or scope holds a NUL byte")
	}
	k := make([]byte, 0, len(client)+1+len(scope))
	k = append(k, client...)
	k = append(k, 0)
	return append(k, scope...), nil
}

// AddUsage implements usage.Store in one transaction.
func (s *UsageStore) AddUsage(ctx context.Context, deltas []usage.Tally) error {
	if len(deltas) == 0 {
		return s.db.usable(ctx)
	}
	err := s.db.update(ctx, func(tx *bbolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketUsage)
		if err != nil {
			return err
		}
		for _, t := range deltas {
			k, err := usageKey(t.ClientID, t.Scope)
			if err != nil {
				return err
			}
			cur := usage.Tally{ClientID: t.ClientID, Scope: t.Scope}
			if v := b.Get(k); v != nil {
				if cur, err = decodeTally(t.ClientID, t.Scope, v); err != nil {
					return err
				}
			}
			if cur.Count > math.MaxUint64-t.Count {
				cur.Count = math.MaxUint64
			} else {
				cur.Count += t.Count
			}
			if t.LastUsed.After(cur.LastUsed) {
				cur.LastUsed = t.LastUsed
			}
			if t.LastSeen.After(cur.LastSeen) {
				cur.LastSeen = t.LastSeen
			}
			if err := b.Put(k, encodeTally(cur)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("usage store %s: add %d tallies: %w", s.db.path, len(deltas), err)
	}
	return nil
}

// LoadUsage implements usage.Store.
func (s *UsageStore) LoadUsage(ctx context.Context, clientID string) ([]usage.Tally, error) {
	var out []usage.Tally
	err := s.db.view(ctx, func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketUsage)
		if b == nil {
			return nil
		}
		c := b.Cursor()
		var prefix []byte
		if clientID != "" {
			prefix = append([]byte(clientID), 0)
		}
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			client, scope, ok := bytes.Cut(k, []byte{0})
			if !ok {
				return fmt.Errorf("usage store: malformed key %q", k)
			}
			t, err := decodeTally(string(client), string(scope), v)
			if err != nil {
				return err
			}
			out = append(out, t)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("usage store %s: read: %w", s.db.path, err)
	}
	return out, nil
}

func encodeTally(t usage.Tally) []byte {
	v := make([]byte, usageValueSz)
	v[0] = usageV1
	binary.BigEndian.PutUint64(v[1:], t.Count)
	binary.BigEndian.PutUint64(v[9:], uint64(unixNano(t.LastUsed)))
	binary.BigEndian.PutUint64(v[17:], uint64(unixNano(t.LastSeen)))
	return v
}

func decodeTally(client, scope string, v []byte) (usage.Tally, error) {
	if len(v) != usageValueSz || v[0] != usageV1 {
		return usage.Tally{}, fmt.Errorf("usage store: tally of %q / %q has an unknown encoding (written by a newer scopegate?)", client, scope)
	}
	return usage.Tally{
		ClientID: client,
		Scope:    scope,
		Count:    binary.BigEndian.Uint64(v[1:]),
		LastUsed: fromUnixNano(int64(binary.BigEndian.Uint64(v[9:]))),
		LastSeen: fromUnixNano(int64(binary.BigEndian.Uint64(v[17:]))),
	}, nil
}

func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromUnixNano(ns int64) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns).UTC()
}
