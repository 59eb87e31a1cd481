package decision

import (
	"fmt"
	"math"
	"strings"
	"time"
	_ "time/tzdata" // windows name IANA zones; the host may have no tzdata
)

// window is a compiled named time window. Weekdays and hours are wall-clock
// rules in loc, so they follow daylight-saving transitions: 09:00-17:00 in
// America/New_York is 14:00-22:00 UTC in winter and 13:00-21:00 in summer.
type window struct {
	name string
	loc  *time.Location
	// days has bit time.Weekday set for each day the window opens; allDays
	// when days were not restricted.
	days uint8
	// from and to are minutes since local midnight, to exclusive (1440 for
	// "24:00"); hasHours is false for whole days.
	from, to int
	hasHours bool
	hasDays  bool
	// dateFrom and dateTo bound the window in Unix nanoseconds, to
	// exclusive.
	dateFrom, dateTo int64
	hasDates         bool
}

const allDays = 0x7f

// contains reports whether t is inside the window. It allocates nothing.
func (w *window) contains(t time.Time) bool {
	if w.hasDates {
		n := t.UnixNano()
		if n < w.dateFrom || n >= w.dateTo {
			return false
		}
	}
	if !w.hasDays && !w.hasHours {
		return true
	}
	lt := t.In(w.loc)
	wd := lt.Weekday()
	if !w.hasHours {
		return w.days&(1<<wd) != 0
	}
	h, m, _ := lt.Clock()
	mins := h*60 + m
	if w.from < w.to {
		return w.days&(1<<wd) != 0 && mins >= w.from && mins < w.to
	}
	// The window crosses midnight: it is open from `from` on the days it
	// names, and until `to` on the day after each of them.
	if mins >= w.from && w.days&(1<<wd) != 0 {
		return true
	}
	prev := (wd + 6) % 7
	return mins < w.to && w.days&(1<<prev) != 0
}

var weekdayNames = map[string]time.Weekday{
	"sun": time.Sunday, "mon": time.Monday, "tue": time.Tuesday, "wed": time.Wednesday,
	"thu": time.Thursday, "fri": time.Friday, "sat": time.Saturday,
	"sunday": time.Sunday, "monday": time.Monday, "tuesday": time.Tuesday, "wednesday": time.Wednesday,
	"thursday": time.Thursday, "friday": time.Friday, "saturday": time.Saturday,
}

// parseDays parses one days entry: a weekday or a range such as mon-fri
// (fri-mon wraps over the weekend).
func parseDays(s string) (uint8, error) {
	ls := strings.ToLower(strings.TrimSpace(s))
	if a, b, ok := strings.Cut(ls, "-"); ok {
		from, ok1 := weekdayNames[a]
		to, ok2 := weekdayNames[b]
		if !ok1 || !ok2 {
			return 0, fmt.Errorf("%q is not a weekday range; write two weekdays joined by '-', e.g. mon-fri", s)
		}
		var m uint8
		for d := from; ; d = (d + 1) % 7 {
			m |= 1 << d
			if d == to {
				break
			}
		}
		return m, nil
	}
	d, ok := weekdayNames[ls]
	if !ok {
		return 0, fmt.Errorf("%q is not a weekday; use mon, tue, wed, thu, fri, sat or sun (or a range such as mon-fri)", s)
	}
	return 1 << d, nil
}

// parseClock parses "HH:MM" (00:00-23:59, and 24:00 when end is true) into
// minutes since midnight.
func parseClock(s string, end bool) (int, error) {
	bad := fmt.Errorf("%q is not a time of day; write HH:MM on a 24-hour clock, e.g. \"09:00\" or \"17:30\"", s)
	if len(s) != 5 || s[2] != ':' {
		return 0, bad
	}
	for _, i := range []int{0, 1, 3, 4} {
		if s[i] < '0' || s[i] > '9' {
			return 0, bad
		}
	}
	h := int(s[0]-'0')*10 + int(s[1]-'0')
	m := int(s[3]-'0')*10 + int(s[4]-'0')
	switch {
	case h == 24 && m == 0 && end:
		return 1440, nil
	case h == 24 && m == 0:
		return 0, fmt.Errorf("%q can only end a window; start it at \"00:00\"", s)
	case h > 23 || m > 59:
		return 0, bad
	}
	return h*60 + m, nil
}

// loadZone loads an IANA zone from the embedded database (or the host's).
func loadZone(name string) (*time.Location, error) {
	switch name {
	case "", "UTC":
		return time.UTC, nil
	case "Local":
		return nil, fmt.Errorf(`"Local" depends on the machine the PDP runs on; name an IANA zone such as Europe/Berlin, or UTC`)
	}
	loc, err := time.LoadLocation(name)
	if err != nil {
		return nil, fmt.Errorf("unknown time zone %q; name an IANA zone such as Europe/Berlin, America/New_York or UTC", name)
	}
	return loc, nil
}

// parseRangeEnd parses one end of a date range: a date (whole day in loc)
// or an RFC 3339 instant. For a date, the start of the day is returned, or
// for end=true the start of the next day, so that dates are inclusive.
func parseRangeEnd(s string, loc *time.Location, end bool) (int64, error) {
	if t, err := time.ParseInLocation("2006-01-02", s, loc); err == nil {
		if end {
			t = time.Date(t.Year(), t.Month(), t.Day()+1, 0, 0, 0, 0, loc)
		}
		return t.UnixNano(), nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t.UnixNano(), nil
	}
	return 0, fmt.Errorf("%q is neither a date (YYYY-MM-DD) nor an RFC 3339 instant (2026-12-20T02:00:00+01:00)", s)
}

// compileWindow compiles the named window; problems are reported through c.
func (c *compiler) compileWindow(name string, spec *WindowSpec) *window {
	base := []any{"windows", name}
	field := conField("windows", name)
	w := &window{name: name, days: allDays, dateFrom: math.MinInt64, dateTo: math.MaxInt64}
	ok := true
	if spec == nil {
		c.errorf(c.li.line(base...), field, "window %q is empty; give it days and from/to, or dates", name)
		return nil
	}
	loc, err := loadZone(spec.Zone)
	if err != nil {
		c.errorf(c.li.line(append(base, "zone")...), field+".zone", "%s", err)
		ok = false
		loc = time.UTC
	}
	w.loc = loc
	if len(spec.Days) > 0 {
		w.days, w.hasDays = 0, true
		for i, d := range spec.Days {
			m, err := parseDays(d)
			if err != nil {
				c.errorf(c.li.line(append(base, "days", i)...), fmt.Sprintf("%s.days[%d]", field, i), "%s", err)
				ok = false
				continue
			}
			w.days |= m
		}
	}
	if spec.From != "" || spec.To != "" {
		w.hasHours = true
		w.from, w.to = 0, 1440
		if spec.From != "" {
			v, err := parseClock(spec.From, false)
			if err != nil {
				c.errorf(c.li.line(append(base, "from")...), field+".from", "%s", err)
				ok = false
			}
			w.from = v
		}
		if spec.To != "" {
			v, err := parseClock(spec.To, true)
			if err != nil {
				c.errorf(c.li.line(append(base, "to")...), field+".to", "%s", err)
				ok = false
			}
			w.to = v
		}
		if ok && w.from == w.to {
			c.errorf(c.li.line(append(base, "from")...), field+".from", "from and to are both %q, an empty window; for whole days leave out from and to", spec.From)
			ok = false
		}
		if w.from == 0 && w.to == 1440 {
			w.hasHours = false
		}
	}
	if d := spec.Dates; d != nil {
		if d.From == "" && d.To == "" {
			c.errorf(c.li.line(append(base, "dates")...), field+".dates", "dates needs from, to or both")
			ok = false
		}
		w.hasDates = true
		if d.From != "" {
			v, err := parseRangeEnd(d.From, loc, false)
			if err != nil {
				c.errorf(c.li.line(append(base, "dates", "from")...), field+".dates.from", "%s", err)
				ok = false
			}
			w.dateFrom = v
		}
		if d.To != "" {
			v, err := parseRangeEnd(d.To, loc, true)
			if err != nil {
				c.errorf(c.li.line(append(base, "dates", "to")...), field+".dates.to", "%s", err)
				ok = false
			}
			w.dateTo = v
		}
		if ok && w.dateFrom >= w.dateTo {
			c.errorf(c.li.line(append(base, "dates")...), field+".dates", "the range ends (%s) before it starts (%s); swap from and to", d.To, d.From)
			ok = false
		}
	}
	if ok && !w.hasDays && !w.hasHours && !w.hasDates {
		c.errorf(c.li.line(base...), field, "window %q restricts nothing; give it days, from/to or dates", name)
		ok = false
	}
	if !ok {
		return nil
	}
	return w
}
