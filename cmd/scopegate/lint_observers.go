package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/scopegate/scopegate/decision/lint"
)

// writeLintObservers prints the routes in shadow mode as what they are:
// observers of the requests the enforced routes answer.
func writeLintObservers(w io.Writer, res *lint.Result) {
	for _, o := range res.Observers {
		by := make([]string, 0, len(o.Observes))
		for _, n := range o.Observes {
			if n == "" {
				n = "no route (the policy's default)"
			}
			by = append(by, n)
		}
		fmt.Fprintf(w, "note: shadow route %q (line %d) observes requests answered by %s; it records what it would answer and decides nothing\n",
			o.Route, o.Line, strings.Join(by, ", "))
	}
}
