// Package usagetest is the conformance suite every usage.Store runs, so
// that usage reports read the same from every backend. A backend's test
// calls:
//
//	func TestUsageConformance(t *testing.T) {
//		usagetest.TestStore(t, func(t *testing.T) usage.Store { return openTestDB(t).UsageStore() })
//	}
//
// newStore must return a fresh, empty store for each call and arrange its
// cleanup.
package usagetest

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/scopegate/scopegate/store/usage"
)

var t0 = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

func sorted(ts []usage.Tally) []usage.Tally {
	out := slices.Clone(ts)
	slices.SortFunc(out, func(a, b usage.Tally) int {
		if c := strings.Compare(a.ClientID, b.ClientID); c != 0 {
			return c
		}
		return strings.Compare(a.Scope, b.Scope)
	})
	return out
}

func equal(a, b []usage.Tally) bool {
	return slices.EqualFunc(sorted(a), sorted(b), func(x, y usage.Tally) bool {
		return x.ClientID == y.ClientID && x.Scope == y.Scope && x.Count == y.Count &&
			x.LastUsed.Equal(y.LastUsed) && x.LastSeen.Equal(y.LastSeen)
	})
}

// TestStore checks the usage.Store contract.
func TestStore(t *testing.T, newStore func(t *testing.T) usage.Store) {
	t.Helper()
	ctx := context.Background()
	cases := map[string]struct {
		batches [][]usage.Tally
		client  string
		want    []usage.Tally
	}{
		"empty": {},
		"one batch": {
			batches: [][]usage.Tally{{
				{ClientID: "web", Scope: "orders:read", Count: 3, LastUsed: t0, LastSeen: t0},
				{ClientID: "web", Scope: "admin", LastSeen: t0},
			}},
			want: []usage.Tally{
				{ClientID: "web", Scope: "orders:read", Count: 3, LastUsed: t0, LastSeen: t0},
				{ClientID: "web", Scope: "admin", LastSeen: t0},
			},
		},
		"counts add, later times win": {
			batches: [][]usage.Tally{
				{{ClientID: "web", Scope: "orders:read", Count: 3, LastUsed: t0.Add(time.Hour), LastSeen: t0}},
				{{ClientID: "web", Scope: "orders:read", Count: 4, LastUsed: t0, LastSeen: t0.Add(2 * time.Hour)}},
				{{ClientID: "web", Scope: "orders:read", Count: 0}},
			},
			want: []usage.Tally{{ClientID: "web", Scope: "orders:read", Count: 7, LastUsed: t0.Add(time.Hour), LastSeen: t0.Add(2 * time.Hour)}},
		},
		"duplicates in one batch": {
			batches: [][]usage.Tally{{
				{ClientID: "web", Scope: "s", Count: 1, LastUsed: t0},
				{ClientID: "web", Scope: "s", Count: 2, LastUsed: t0.Add(time.Minute)},
			}},
			want: []usage.Tally{{ClientID: "web", Scope: "s", Count: 3, LastUsed: t0.Add(time.Minute)}},
		},
		"client filter is exact": {
			batches: [][]usage.Tally{{
				{ClientID: "web", Scope: "a", Count: 1},
				{ClientID: "web2", Scope: "a", Count: 2},
				{ClientID: "we", Scope: "a", Count: 3},
			}},
			client: "web",
			want:   []usage.Tally{{ClientID: "web", Scope: "a", Count: 1}},
		},
		"unicode and sub-second times survive": {
			batches: [][]usage.Tally{{{ClientID: "app-é", Scope: "patient/*.read", Count: 1, LastUsed: t0.Add(123456 * time.Microsecond)}}},
			want:    []usage.Tally{{ClientID: "app-é", Scope: "patient/*.read", Count: 1, LastUsed: t0.Add(123456 * time.Microsecond)}},
		},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			s := newStore(t)
			for _, b := range c.batches {
				if err := s.AddUsage(ctx, b); err != nil {
					t.Fatal(err)
				}
			}
			got, err := s.LoadUsage(ctx, c.client)
			if err != nil {
				t.Fatal(err)
			}
			if !equal(got, c.want) {
				t.Errorf("LoadUsage(%q)\n got %+v\nwant %+v", c.client, got, c.want)
			}
		})
	}
	t.Run("concurrent writers add up", func(t *testing.T) {
		s := newStore(t)
		var wg sync.WaitGroup
		errs := make(chan error, 8)
		for w := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range 10 {
					batch := []usage.Tally{
						{ClientID: "a", Scope: "x", Count: 1, LastUsed: t0.Add(time.Duration(w*10+i) * time.Second)},
						{ClientID: "b", Scope: "y", Count: 2},
					}
					if err := s.AddUsage(ctx, batch); err != nil {
						errs <- err
						return
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		got, err := s.LoadUsage(ctx, "")
		if err != nil {
			t.Fatal(err)
		}
		want := []usage.Tally{{ClientID: "a", Scope: "x", Count: 40, LastUsed: t0.Add(39 * time.Second)}, {ClientID: "b", Scope: "y", Count: 80}}
		if !equal(got, want) {
			t.Errorf("got %+v\nwant %+v", got, want)
		}
	})
	t.Run("per-day counts", func(t *testing.T) {
		s := newStore(t)
		// Days relative to today: the store prunes by its clock.
		today := usage.DayOf(time.Now())
		d := func(n int) time.Time { return today.AddDate(0, 0, -n) }
		batches := [][]usage.Tally{
			{
				{ClientID: "web", Scope: "a", Count: 3, Days: []usage.DayCount{{Day: d(2), Count: 1}, {Day: d(1), Count: 2}}},
				{ClientID: "web", Scope: "b", Count: 1, Days: []usage.DayCount{{Day: d(1).Add(13 * time.Hour), Count: 1}}},
				{ClientID: "web2", Scope: "a", Count: 5, Days: []usage.DayCount{{Day: d(1), Count: 5}}},
				{ClientID: "web", Scope: "old", Count: 1, Days: []usage.DayCount{{Day: d(500), Count: 1}}},
			},
			{
				{ClientID: "web", Scope: "a", Count: 4, Days: []usage.DayCount{{Day: d(1), Count: 4}}},
				{ClientID: "web", Scope: "a", Count: 1, Days: []usage.DayCount{{Day: d(0), Count: 1}}},
			},
		}
		for _, b := range batches {
			if err := s.AddUsage(ctx, b); err != nil {
				t.Fatal(err)
			}
		}
		dc := func(c, sc string, day time.Time, n uint64) usage.Daily {
			return usage.Daily{ClientID: c, Scope: sc, DayCount: usage.DayCount{Day: day, Count: n}}
		}
		for name, c := range map[string]struct {
			client string
			since  time.Time
			want   []usage.Daily
		}{
			"all":           {want: []usage.Daily{dc("web", "a", d(2), 1), dc("web", "a", d(1), 6), dc("web", "a", d(0), 1), dc("web", "b", d(1), 1), dc("web2", "a", d(1), 5)}},
			"one client":    {client: "web2", want: []usage.Daily{dc("web2", "a", d(1), 5)}},
			"since a day":   {client: "web", since: d(1), want: []usage.Daily{dc("web", "a", d(1), 6), dc("web", "a", d(0), 1), dc("web", "b", d(1), 1)}},
			"since mid-day": {client: "web", since: d(1).Add(time.Hour), want: []usage.Daily{dc("web", "a", d(0), 1)}},
		} {
			got, err := s.LoadDaily(ctx, c.client, c.since)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.EqualFunc(got, c.want, func(x, y usage.Daily) bool {
				return x.ClientID == y.ClientID && x.Scope == y.Scope && x.Day.Equal(y.Day) && x.Count == y.Count
			}) {
				t.Errorf("%s: LoadDaily(%q, %v)\n got %+v\nwant %+v", name, c.client, c.since, got, c.want)
			}
		}
		tallies, err := s.LoadUsage(ctx, "web")
		if err != nil {
			t.Fatal(err)
		}
		if !equal(tallies, []usage.Tally{{ClientID: "web", Scope: "a", Count: 8}, {ClientID: "web", Scope: "b", Count: 1}, {ClientID: "web", Scope: "old", Count: 1}}) {
			t.Errorf("totals: %+v; a day past usage.DailyRetention must still count in the total", tallies)
		}
	})
	t.Run("cancelled context", func(t *testing.T) {
		s := newStore(t)
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		if err := s.AddUsage(cctx, []usage.Tally{{ClientID: "a", Scope: "x", Count: 1}}); err == nil {
			t.Error("AddUsage with a cancelled context succeeded")
		}
		got, err := s.LoadUsage(ctx, "")
		if err != nil || len(got) != 0 {
			t.Errorf("after a cancelled add: %+v, %v; want nothing stored", got, err)
		}
	})
}
