package bolt

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"

	bbolt "go.etcd.io/bbolt"

	"github.com/scopegate/scopegate/store"
)

// bucketOwnership holds one sub-bucket per lookup, mapping key → owners.
var bucketOwnership = []byte("ownership")

// ownersV1 tags the owners encoding: the version byte, a uvarint count, then
// each owner as a uvarint length and its bytes. Compact, and decoding needs
// two allocations whatever the number of owners.
const ownersV1 = 1

// Owners returns the owners of key in lookup. found is false when the lookup
// or the key is unknown.
func (d *DB) Owners(ctx context.Context, lookup, key string) (owners []string, found bool, err error) {
	if err := d.usable(ctx); err != nil {
		return nil, false, fmt.Errorf("ownership lookup %q: %w", lookup, err)
	}
	if !store.KeyCanExist(lookup, key) {
		return nil, false, nil
	}
	err = d.view(ctx, func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketOwnership).Bucket([]byte(lookup))
		if b == nil {
			return nil
		}
		v := b.Get([]byte(key))
		if v == nil {
			return nil
		}
		found = true
		owners, err = decodeOwners(v) // copies: v is only valid inside the transaction
		return err
	})
	if err != nil {
		return nil, false, fmt.Errorf("ownership lookup %q: %w", lookup, err)
	}
	return owners, found, nil
}

// PutOwners replaces the owners of key in lookup.
func (d *DB) PutOwners(ctx context.Context, lookup, key string, owners []string) error {
	norm, err := store.CheckPut(lookup, key, owners)
	if err != nil {
		return fmt.Errorf("put owners: %w", err)
	}
	val := encodeOwners(norm)
	return d.update(ctx, func(tx *bbolt.Tx) error {
		b, err := tx.Bucket(bucketOwnership).CreateBucketIfNotExists([]byte(lookup))
		if err != nil {
			return fmt.Errorf("put owners: lookup %q: %w", lookup, err)
		}
		return b.Put([]byte(key), val)
	})
}

// DeleteOwners removes the record of key in lookup, if any.
func (d *DB) DeleteOwners(ctx context.Context, lookup, key string) error {
	if err := store.CheckLookup(lookup); err != nil {
		return fmt.Errorf("delete owners: %w", err)
	}
	if err := store.CheckKey(key); err != nil {
		return fmt.Errorf("delete owners: %w", err)
	}
	return d.update(ctx, func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketOwnership).Bucket([]byte(lookup))
		if b == nil {
			return nil
		}
		return b.Delete([]byte(key))
	})
}

func encodeOwners(owners []string) []byte {
	n := 1 + binary.MaxVarintLen64
	for _, o := range owners {
		n += binary.MaxVarintLen64 + len(o)
	}
	buf := make([]byte, 0, n)
	buf = append(buf, ownersV1)
	buf = binary.AppendUvarint(buf, uint64(len(owners)))
	for _, o := range owners {
		buf = binary.AppendUvarint(buf, uint64(len(o)))
		buf = append(buf, o...)
	}
	return buf
}

var errCorrupt = errors.New("corrupt owners record: rewrite it with PutOwners")

// decodeOwners copies every owner into one new string and slices it, so the
// result does not alias the transaction's memory map.
func decodeOwners(v []byte) ([]string, error) {
	if len(v) < 2 || v[0] != ownersV1 {
		return nil, errCorrupt
	}
	p := v[1:]
	count, n := binary.Uvarint(p)
	if n <= 0 || count == 0 || count > store.MaxOwners {
		return nil, errCorrupt
	}
	p = p[n:]
	// p now holds (len, bytes) pairs; copying it whole costs one allocation.
	all := string(p)
	owners := make([]string, 0, count)
	off := 0
	for range count {
		l, n := binary.Uvarint(p[off:])
		if n <= 0 || l > uint64(len(p)-off-n) {
			return nil, errCorrupt
		}
		off += n
		owners = append(owners, all[off:off+int(l)])
		off += int(l)
	}
	if off != len(p) {
		return nil, errCorrupt
	}
	return owners, nil
}
