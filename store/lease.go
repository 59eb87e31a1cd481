package store

import (
	"context"
	"errors"
	"time"
)

// Leaser hands out named leases, so that of several replicas sharing a
// store one at a time does a job that must not run twice at once (polling
// an SSF transmitter, whose position is shared). A lease is held by one
// holder until it expires; its holder keeps it by acquiring it again
// before then. Expiry is judged by the store's clock, not the replicas'.
type Leaser interface {
	// Acquire takes the lease name for holder for ttl, or renews it when
	// holder has it already. held is false when another holder has an
	// unexpired lease; an error means the store did not answer, and the
	// caller must treat the lease as not held.
	Acquire(ctx context.Context, name, holder string, ttl time.Duration) (held bool, err error)
	// Release gives the lease up, so another holder can take it at once. A
	// lease holder does not have (expired, taken over) is left as it is.
	Release(ctx context.Context, name, holder string) error
}

// LeaserProvider is a backend whose leases hold across the replicas that
// share it (PostgreSQL), or that runs in one process only (the bbolt file).
type LeaserProvider interface {
	Leaser() Leaser
}

// SingleProcessLeaser is the Leaser of a store only one process can open
// (the bbolt file is locked by its process): every lease is held at once,
// there being no one to share it with.
type SingleProcessLeaser struct{}

// Acquire implements Leaser: always held.
func (SingleProcessLeaser) Acquire(ctx context.Context, name, holder string, ttl time.Duration) (bool, error) {
	if err := CheckLease(name, holder, ttl); err != nil {
		return false, err
	}
	return true, ctx.Err()
}

// Release implements Leaser.
func (SingleProcessLeaser) Release(context.Context, string, string) error { return nil }

// CheckLease checks Acquire's arguments for every backend.
func CheckLease(name, holder string, ttl time.Duration) error {
	switch {
	case name == "":
		return errors.New("lease: empty name")
	case holder == "":
		return errors.New("lease: empty holder: give each replica its own name")
	case ttl < time.Millisecond:
		return errors.New("lease: ttl under 1ms: give a ttl several times the renewal interval")
	}
	return nil
}
