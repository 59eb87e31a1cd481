package audit

import "github.com/scopegate/scopegate/decision"

// CallersCollide reports whether, under l's seed, one of the given callers
// shares each of its two count-min buckets with another caller (the same
// one or not), so that the sketch counts it above its own events. A test
// of exact capacity uses it to pick a Logger on which its callers are
// counted exactly (with 64 callers, about one Logger in five is not).
func CallersCollide(l *Logger, rs []decision.Request, ds []decision.Decision) bool {
	var rows [2]map[uint64]map[uint64]bool
	hs := make([]uint64, len(rs))
	for r := range rows {
		rows[r] = make(map[uint64]map[uint64]bool)
	}
	for i := range rs {
		h := l.callerHash(&ds[i], &rs[i])
		hs[i] = h
		for r, b := range [2]uint64{h & callerMask, (h >> 32) & callerMask} {
			if rows[r][b] == nil {
				rows[r][b] = make(map[uint64]bool)
			}
			rows[r][b][h] = true
		}
	}
	for _, h := range hs {
		if len(rows[0][h&callerMask]) > 1 && len(rows[1][(h>>32)&callerMask]) > 1 {
			return true
		}
	}
	return false
}
