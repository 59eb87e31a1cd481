package usage

import (
	"slices"
	"strings"
	"time"
)

// MergeDays folds the Days of ts by (client, scope, day), dropping zero
// counts and days before since (none when since is zero), ordered by
// client, scope and day: what a Store adds to its per-day counts.
func MergeDays(ts []Tally, since time.Time) []Daily {
	type key struct {
		c, s string
		d    int64
	}
	sum := map[key]uint64{}
	for _, t := range ts {
		for _, d := range t.Days {
			day := DayOf(d.Day)
			if d.Count == 0 || (!since.IsZero() && day.Before(since)) {
				continue
			}
			k := key{t.ClientID, t.Scope, day.Unix()}
			if n := sum[k]; n > ^uint64(0)-d.Count {
				sum[k] = ^uint64(0)
			} else {
				sum[k] = n + d.Count
			}
		}
	}
	out := make([]Daily, 0, len(sum))
	for k, n := range sum {
		out = append(out, Daily{ClientID: k.c, Scope: k.s, DayCount: DayCount{Day: time.Unix(k.d, 0).UTC(), Count: n}})
	}
	SortDaily(out)
	return out
}

// SortDaily orders ds by client, scope and day.
func SortDaily(ds []Daily) {
	slices.SortFunc(ds, func(a, b Daily) int {
		if c := strings.Compare(a.ClientID, b.ClientID); c != 0 {
			return c
		}
		if c := strings.Compare(a.Scope, b.Scope); c != 0 {
			return c
		}
		return a.Day.Compare(b.Day)
	})
}
