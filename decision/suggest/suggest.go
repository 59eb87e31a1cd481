// Package suggest finds the name a user probably meant when they wrote one
// that is not known: a misspelt policy field, config key, flag, scope or
// reason code. Every "did you mean" of scopegate comes from here, so they
// all judge closeness the same way.
//
// It is a leaf package (standard library only) outside decision/internal so
// that server and cmd can use it too.
package suggest

import (
	"fmt"
	"strings"
)

// MaxEdits is how far a suggestion may be from what was written by
// default: two typos.
const MaxEdits = 2

// maxLen bounds the strings compared: longer ones are never close, which
// keeps the cost of a suggestion bounded whatever the input.
const maxLen = 64

// far is the distance Distance answers for strings it does not compare.
const far = 1 << 30

// Distance is the optimal-string-alignment distance between a and b: the
// fewest insertions, deletions, substitutions and transpositions of two
// adjacent bytes that turn a into b ("grpc_adrd" is one edit from
// "grpc_addr"). Strings over 64 bytes are never close: it answers a very
// large number for them.
func Distance(a, b string) int {
	if len(a) > maxLen || len(b) > maxLen {
		return far
	}
	var rows [3][maxLen + 1]int
	prev2, prev, cur := rows[0][:len(b)+1], rows[1][:len(b)+1], rows[2][:len(b)+1]
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(b)]
}

// Options tune Closest.
type Options struct {
	// MaxEdits is the farthest a suggestion may be; 0 means MaxEdits (2).
	MaxEdits int
	// Prefix counts a candidate that starts with what was written, or
	// that it starts with, as one edit away (flags: --grpc → --grpc-addr).
	Prefix bool
}

// Closest returns the candidate nearest to name and its distance, or ""
// when none is near enough to be a likely typo: within o.MaxEdits edits,
// and fewer edits than name has bytes (so "x" does not suggest "y"). ASCII
// case is ignored, so "Routes" suggests "routes". Of equally near
// candidates the one first in byte order wins, so the answer does not
// depend on the candidates' order (map keys may be passed in any order).
func (o Options) Closest(name string, candidates []string) (string, int) {
	limit := o.MaxEdits
	if limit <= 0 {
		limit = MaxEdits
	}
	lname := strings.ToLower(name)
	best, bestD := "", limit+1
	for _, c := range candidates {
		lc := strings.ToLower(c)
		d := Distance(lname, lc)
		if o.Prefix && lname != "" && (strings.HasPrefix(lc, lname) || strings.HasPrefix(lname, lc)) {
			d = min(d, 1)
		}
		if d >= len(name) || d > bestD || d == bestD && best != "" && c >= best {
			continue
		}
		if d <= limit {
			best, bestD = c, d
		}
	}
	return best, bestD
}

// Closest is Options{}.Closest without the distance: the candidate within
// two edits of name, or "".
func Closest(name string, candidates []string) string {
	s, _ := Options{}.Closest(name, candidates)
	return s
}

// DidYouMean is `; did you mean "x"?` for Closest(name, candidates), or ""
// when nothing is close: the tail most problems end with.
func DidYouMean(name string, candidates []string) string {
	if s := Closest(name, candidates); s != "" {
		return fmt.Sprintf("; did you mean %q?", s)
	}
	return ""
}
