package store

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/scopegate/scopegate/decision"
)

// RevocationStore is the system of record of revocations: the admin API
// writes to it, and every replica's RevocationSyncer reads it into its
// engine. PostgreSQL shares it between replicas and pushes changes; the
// embedded file keeps one node's revocations across restarts.
//
// The record is decision.Revocation, so the engine, the store and the admin
// API agree on one shape; every backend stores and returns exactly what
// PrepareRevocation produced (times in UTC, to the microsecond).
type RevocationStore interface {
	// Revoke stores a new revocation. It checks r with PrepareRevocation
	// (errors wrap ErrInvalidRevocation), assigns ID and CreatedAt, and
	// returns the revocation as stored.
	Revoke(ctx context.Context, r decision.Revocation) (decision.Revocation, error)
	// Unrevoke removes the revocation id. An id that does not exist (or no
	// longer does) is ErrRevocationNotFound.
	Unrevoke(ctx context.Context, id string) error
	// GetRevocation returns the revocation id, lapsed or not; found is
	// false when there is none.
	GetRevocation(ctx context.Context, id string) (r decision.Revocation, found bool, err error)
	// ListRevocations returns every revocation that has not lapsed, oldest
	// first (then by ID).
	ListRevocations(ctx context.Context) ([]decision.Revocation, error)
	// WatchRevocations calls fn for every change other writers make, until
	// ctx ends; it then returns ctx's error. Notifications can be lost (a
	// dropped connection): after each (re)connection fn receives a change
	// with Resync set, and callers resync periodically anyway. A backend
	// with no other writers (the embedded file, locked by its one process)
	// reports nothing. fn runs on the watching goroutine; it must not block
	// for long.
	WatchRevocations(ctx context.Context, fn func(RevocationChange)) error
}

// RevocationChange is one notification of WatchRevocations.
type RevocationChange struct {
	// ID is the revocation that was added or removed ("" with Resync).
	ID string
	// Deleted is set when the revocation was removed.
	Deleted bool
	// Resync is set when changes may have been missed: reload everything.
	Resync bool
}

// ErrRevocationNotFound is returned by Unrevoke for an unknown id.
var ErrRevocationNotFound = errors.New("revocation not found")

// ErrInvalidRevocation wraps every reason Revoke refuses a revocation, so
// the admin API answers INVALID_ARGUMENT.
var ErrInvalidRevocation = errors.New("invalid revocation")

// ErrRevocationExists is returned by Revoke for an ID already stored.
var ErrRevocationExists = errors.New("revocation id already exists")

// PrepareRevocation checks r for storing at now and returns it completed:
// an ID if it has none, CreatedAt set to now, and both times in UTC and
// truncated to the microsecond (what PostgreSQL keeps), so every backend
// returns the same values (IssuedBefore and SourceEventTime too). A revocation that lapses at or before now is
// refused: it would never take effect. Errors wrap ErrInvalidRevocation.
func PrepareRevocation(r decision.Revocation, now time.Time) (decision.Revocation, error) {
	if err := r.Validate(); err != nil {
		return decision.Revocation{}, fmt.Errorf("%w: %w", ErrInvalidRevocation, err)
	}
	if r.ID == "" {
		r.ID = NewRevocationID(now)
	} else if err := CheckRevocationID(r.ID); err != nil {
		return decision.Revocation{}, fmt.Errorf("%w: %w", ErrInvalidRevocation, err)
	}
	r.CreatedAt = now.UTC().Truncate(time.Microsecond)
	if !r.IssuedBefore.IsZero() {
		r.IssuedBefore = r.IssuedBefore.UTC().Truncate(time.Microsecond)
	}
	if !r.SourceEventTime.IsZero() {
		r.SourceEventTime = r.SourceEventTime.UTC().Truncate(time.Microsecond)
	}
	if !r.Until.IsZero() {
		r.Until = r.Until.UTC().Truncate(time.Microsecond)
		if !r.Until.After(r.CreatedAt) {
			return decision.Revocation{}, fmt.Errorf("%w: until %s is not in the future: give a later time, or none for a revocation that lasts until removed", ErrInvalidRevocation, r.Until.Format(time.RFC3339))
		}
	}
	return r, nil
}

// CheckRevocationID reports whether id can name a revocation: 1 to
// decision.MaxRevocationIDBytes of letters, digits, '-' and '_'.
func CheckRevocationID(id string) error {
	if id == "" {
		return errors.New("revocation id is empty: give the id Revoke or ListRevocations returned")
	}
	if len(id) > decision.MaxRevocationIDBytes {
		return fmt.Errorf("revocation id is %d bytes: ids are at most %d", len(id), decision.MaxRevocationIDBytes)
	}
	if strings.IndexFunc(id, func(r rune) bool {
		return !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || r == '-' || r == '_')
	}) >= 0 {
		return fmt.Errorf("revocation id %q has characters other than letters, digits, - and _", id)
	}
	return nil
}

// crockford is Crockford's base32 alphabet, lower-cased: no i, l, o or u,
// so ids survive being read aloud or copied by hand.
const crockford = "0123456789abcdefghjkmnpqrstvwxyz"

// NewRevocationID returns a new unique id: 48 bits of milliseconds since
// the Unix epoch then 80 random bits, as 26 base32 characters (the ULID
// layout), so ids sort by creation time.
func NewRevocationID(now time.Time) string {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], uint64(now.UnixMilli())<<16)
	_, _ = rand.Read(b[6:]) // crypto/rand.Read never fails on supported platforms
	hi, lo := binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])
	var out [26]byte
	for i := 25; i >= 0; i-- {
		out[i] = crockford[lo&31]
		lo = lo>>5 | hi<<59
		hi >>= 5
	}
	return string(out[:])
}
