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

// bucketUsageDaily maps client_id NUL scope NUL day → the day's count, the
// day as 8 big-endian bytes of its unix time (00:00 UTC) and the count as
// 8 big-endian bytes. It was added after bucketUsage: a file without it
// simply has no per-day counts yet.
var bucketUsageDaily = []byte("usage_daily")

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
type UsageStore struct {
	db *DB
	// now is the clock pruning uses (time.Now).
	now func() time.Time
	// lastPrune is when old per-day counts were last removed (guarded by
	// the write transaction).
	lastPrune time.Time
}

// pruneEvery is how often AddUsage removes per-day counts older than
// usage.DailyRetention.
const pruneEvery = time.Hour

var _ usage.Store = (*UsageStore)(nil)

// UsageStore returns the usage store in d's file.
func (d *DB) UsageStore() usage.Store { return &UsageStore{db: d, now: time.Now} }

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
		return s.addDays(tx, deltas)
	})
	if err != nil {
		return fmt.Errorf("usage store %s: add %d tallies: %w", s.db.path, len(deltas), err)
	}
	return nil
}

// LoadUsage implements usage.Store.
func (s *UsageStore) LoadUsage(ctx context.Context, clientID string) ([]usage.Tally, error) {
	var out []usage.Tally
	err := s.scanClient(ctx, bucketUsage, clientID, func(k, v []byte) error {
		client, scope, ok := bytes.Cut(k, []byte{0})
		if !ok {
			return fmt.Errorf("usage store: malformed key %q", k)
		}
		t, err := decodeTally(string(client), string(scope), v)
		if err != nil {
			return err
		}
		out = append(out, t)
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

// addDays adds the deltas' per-day counts, and once every pruneEvery
// removes the days older than usage.DailyRetention.
func (s *UsageStore) addDays(tx *bbolt.Tx, deltas []usage.Tally) error {
	now := s.now()
	cutoff := usage.DayOf(now.Add(-usage.DailyRetention))
	days := usage.MergeDays(deltas, cutoff)
	if len(days) == 0 && now.Sub(s.lastPrune) < pruneEvery {
		return nil
	}
	b, err := tx.CreateBucketIfNotExists(bucketUsageDaily)
	if err != nil {
		return err
	}
	for _, d := range days {
		k, err := usageKey(d.ClientID, d.Scope)
		if err != nil {
			return err
		}
		k = binary.BigEndian.AppendUint64(append(k, 0), uint64(d.Day.Unix()))
		n := d.Count
		if v := b.Get(k); v != nil {
			if len(v) != 8 {
				return fmt.Errorf("usage store: day count of %q / %q has an unknown encoding (written by a newer scopegate?)", d.ClientID, d.Scope)
			}
			if cur := binary.BigEndian.Uint64(v); cur > math.MaxUint64-n {
				n = math.MaxUint64
			} else {
				n += cur
			}
		}
		if err := b.Put(k, binary.BigEndian.AppendUint64(nil, n)); err != nil {
			return err
		}
	}
	if now.Sub(s.lastPrune) < pruneEvery {
		return nil
	}
	c := b.Cursor()
	for k, _ := c.First(); k != nil; {
		if len(k) >= 8 && int64(binary.BigEndian.Uint64(k[len(k)-8:])) < cutoff.Unix() {
			if err := c.Delete(); err != nil {
				return err
			}
			k, _ = c.Seek(k)
			continue
		}
		k, _ = c.Next()
	}
	s.lastPrune = now
	return nil
}

// LoadDaily implements usage.Store.
func (s *UsageStore) LoadDaily(ctx context.Context, clientID string, since time.Time) ([]usage.Daily, error) {
	var out []usage.Daily
	err := s.scanClient(ctx, bucketUsageDaily, clientID, func(k, v []byte) error {
		client, rest, ok := bytes.Cut(k, []byte{0})
		if !ok || len(rest) < 9 || rest[len(rest)-9] != 0 || len(v) != 8 {
			return fmt.Errorf("usage store: malformed day count %q", k)
		}
		day := time.Unix(int64(binary.BigEndian.Uint64(rest[len(rest)-8:])), 0).UTC()
		if !since.IsZero() && day.Before(since) {
			return nil
		}
		out = append(out, usage.Daily{ClientID: string(client), Scope: string(rest[:len(rest)-9]),
			DayCount: usage.DayCount{Day: day, Count: binary.BigEndian.Uint64(v)}})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("usage store %s: read day counts: %w", s.db.path, err)
	}
	usage.SortDaily(out)
	return out, nil
}

// scanClient calls fn with each key and value of bucket whose key starts
// with clientID NUL (every key when clientID is "").
func (s *UsageStore) scanClient(ctx context.Context, bucket []byte, clientID string, fn func(k, v []byte) error) error {
	return s.db.view(ctx, func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucket)
		if b == nil {
			return nil
		}
		c := b.Cursor()
		var prefix []byte
		if clientID != "" {
			prefix = append([]byte(clientID), 0)
		}
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			if err := fn(k, v); err != nil {
				return err
			}
		}
		return nil
	})
}
