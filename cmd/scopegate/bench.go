package main

import (
	"context"
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
	cfg harness.Config
}

func (b *benchCmd) define(fs *flag.FlagSet) {
	b.cfg = harness.DefaultConfig()
	b.cfg.RegisterFlags(fs)
}

func (b *benchCmd) run(ctx context.Context, c *cli) int {
	if err := b.cfg.Validate(); err != nil {
		return c.usageError("bench", "%v", err)
	}
	b.cfg.Out, b.cfg.Progress = c.stdout, c.stderr
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep, err := harness.Run(ctx, b.cfg)
	if err != nil {
		return c.fail("bench", err)
	}
	if err := rep.Failed(); err != nil {
		fmt.Fprintf(c.stderr, "scopegate bench: %v\n", err)
		return exitError
	}
	return exitOK
}
