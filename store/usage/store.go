package usage

import (
	"context"
	"time"
)

// Tally is one client's use of one scope: what a Store persists and a
// report is built from.
type Tally struct {
	ClientID string
	Scope    string
	// Count is the number of allowed requests the scope helped satisfy.
	Count uint64
	// LastUsed is when an allowed request last used the scope; zero means
	// never.
	LastUsed time.Time
	// LastSeen is when a token of the client last carried the scope; zero
	// means never.
	LastSeen time.Time
}

// Store persists tallies for every replica. store/postgres (shared by all
// replicas) and store/bolt (one process) implement it.
type Store interface {
	// AddUsage merges deltas into the stored tallies: each Count is added
	// to the stored count, and the later of the stored and given times is
	// kept. It is atomic: on error nothing was stored.
	AddUsage(ctx context.Context, deltas []Tally) error
	// LoadUsage returns the stored tallies of clientID, or of every client
	// when clientID is "".
	LoadUsage(ctx context.Context, clientID string) ([]Tally, error)
}
