package main

import (
	"github.com/spf13/pflag"
)

// outputCommand is a command that prints data: it takes -o/--output
// json|yaml|table (outputFlags adds the flag).
type outputCommand interface {
	outputFlags(fs *pflag.FlagSet)
}
