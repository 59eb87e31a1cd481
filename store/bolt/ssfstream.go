package bolt

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/scopegate/scopegate/store"
)

// bucketSSFStreams holds one JSON record per transmitter, keyed by its
// name.
var bucketSSFStreams = []byte("ssf_streams")

var _ store.SSFStreamStoreProvider = (*DB)(nil)

// SSFStreams returns the SSF stream records kept in the file.
func (d *DB) SSFStreams() store.SSFStreamStore { return ssfStreams{d} }

type ssfStreams struct{ d *DB }

func (s ssfStreams) LoadSSFStream(ctx context.Context, transmitter string) (store.SSFStream, bool, error) {
	var rec store.SSFStream
	found := false
	err := s.d.view(ctx, func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketSSFStreams)
		if b == nil {
			return nil
		}
		v := b.Get([]byte(transmitter))
		if v == nil {
			return nil
		}
		found = true
		return json.Unmarshal(v, &rec)
	})
	if err != nil {
		return store.SSFStream{}, false, fmt.Errorf("store file %s: ssf stream %q: %w", s.d.path, transmitter, err)
	}
	return rec, found, nil
}

func (s ssfStreams) SaveSSFStream(ctx context.Context, rec store.SSFStream) error {
	if err := store.CheckSSFStream(rec); err != nil {
		return err
	}
	v, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	return s.d.update(ctx, func(tx *bbolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketSSFStreams)
		if err != nil {
			return err
		}
		return b.Put([]byte(rec.Transmitter), v)
	})
}

func (s ssfStreams) MarkSSFStreamVerified(ctx context.Context, transmitter, state string, at time.Time) (bool, error) {
	marked := false
	err := s.d.update(ctx, func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketSSFStreams)
		if b == nil || state == "" {
			return nil
		}
		v := b.Get([]byte(transmitter))
		if v == nil {
			return nil
		}
		var rec store.SSFStream
		if err := json.Unmarshal(v, &rec); err != nil {
			return err
		}
		if !slices.Contains(rec.States, state) {
			return nil
		}
		rec.VerifiedAt = at.UTC()
		nv, err := json.Marshal(rec)
		if err != nil {
			return err
		}
		marked = true
		return b.Put([]byte(transmitter), nv)
	})
	return marked && err == nil, err
}
