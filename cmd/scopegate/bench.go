package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/scopegate/scopegate/bench/harness"
)

// benchCmd is the load harness (the same code as `go run ./bench`): it
// loads scopegate and a no-op ext_authz server in alternating rounds and
// prints scopegate's figures as ratios to the no-op's.
type benchCmd struct {
	cfg  harness.Config
	json bool
}

// define takes the harness's flags, except that its --json FILE is
// --json-file here: in scopegate, --json (and -o json|yaml) prints the
// results to standard output, as every other command's does.
func (b *benchCmd) define(fs *flag.FlagSet) {
	b.cfg = harness.DefaultConfig()
	all := flag.NewFlagSet("bench", flag.ContinueOnError)
	b.cfg.RegisterFlags(all)
	all.VisitAll(func(f *flag.Flag) {
		switch f.Name {
		case "json":
			fs.Var(f.Value, "json-file", "write the results, with every round, as JSON to this file")
			return
		case "output", "o":
			return // -o json|yaml|table, as every command has, does this here
		}
		fs.Var(f.Value, f.Name, f.Usage)
	})
	fs.BoolVar(&b.json, "json", false, "print the results as JSON on standard output (the figures for people go to standard error)")
}

func (b *benchCmd) run(ctx context.Context, c *cli) int {
	if err := b.cfg.Validate(); err != nil {
		return c.usageError("bench", "%v", err)
	}
	b.cfg.Out, b.cfg.Progress = c.stdout, c.stderr
	if b.json {
		b.cfg.Out = c.stderr
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep, err := harness.Run(ctx, b.cfg)
	if err != nil {
		return c.fail("bench", err)
	}
	if b.json {
		out, err := json.MarshalIndent(rep, "", "  ")
		if err != nil {
			return c.fail("bench", err)
		}
		fmt.Fprintf(c.stdout, "%s\n", out)
	}
	if err := rep.Failed(); err != nil {
		fmt.Fprintf(c.stderr, "scopegate bench: %v\n", err)
		return exitError
	}
	return exitOK
}
