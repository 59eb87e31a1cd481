package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/scopegate/scopegate/cmd/scopegate/settings"
)

// limit is one numeric serve setting that must be positive (or, with
// zeroOK, at least 0).
type limit struct {
	flag   string // without the dashes
	value  any
	bad    bool
	zeroOK bool
	def    any // the default, the example in the message
}

// checkLimits names each limit that is out of range with its flag,
// variable and config key, the value given and an example, one line each.
func checkLimits(limits ...limit) error {
	var lines []string
	for _, l := range limits {
		if !l.bad {
			continue
		}
		want := "must be positive"
		if l.zeroOK {
			want = "must be 0 (no cap) or more"
		}
		lines = append(lines, fmt.Sprintf("--%s %v (%s, config %s): %s, e.g. %v (the default)",
			l.flag, l.value, settings.EnvName(l.flag), settings.ConfigKey(l.flag), want, l.def))
	}
	if len(lines) == 0 {
		return nil
	}
	return errors.New(strings.Join(lines, "\n  "))
}
