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
	// Days splits Count by UTC day, for usage over time: each entry adds
	// its Count to the client's count of the scope on that day. A Store
	// keeps them for DailyRetention.
	Days []DayCount
}

// DayCount is a count of uses on one UTC day.
type DayCount struct {
	// Day is 00:00 UTC of the day.
	Day   time.Time
	Count uint64
}

// Daily is one client's use of one scope on one UTC day, as a Store
// returns it.
type Daily struct {
	ClientID string
	Scope    string
	DayCount
}

// DailyRetention is how long a Store keeps per-day counts: a little more
// than a year, so that an annual review sees the whole year. Older days
// are pruned as new ones are added; the totals (Count, LastUsed) stay.
const DailyRetention = 400 * 24 * time.Hour

// DayOf returns 00:00 UTC of the day t falls on.
func DayOf(t time.Time) time.Time {
	y, m, d := t.UTC().Date()
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
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
	// LoadDaily returns the per-day counts of clientID (every client when
	// ""), of days at or after since (every kept day when zero), ordered
	// by client, scope and day.
	LoadDaily(ctx context.Context, clientID string, since time.Time) ([]Daily, error)
}
