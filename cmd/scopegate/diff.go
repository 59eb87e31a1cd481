package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"time"

	"github.com/scopegate/scopegate/decision"
	"github.com/scopegate/scopegate/decision/policydiff"
)

// diffCmd shows what a policy change does to access.
type diffCmd struct {
	old, new    string
	json        bool
	failOnWider bool
	now         string
}

func (k *diffCmd) define(fs *flag.FlagSet) {
	fs.BoolVar(&k.json, "json", false, "print the changes as JSON (for bots)")
	fs.BoolVar(&k.failOnWider, "fail-on-wider", false, "exit 1 when a change widens access (a CI gate that asks for review)")
	fs.StringVar(&k.now, "now", "", "judge client grants as they stand at this RFC 3339 time (default: now)")
}

func (k *diffCmd) setArgs(args []string) error {
	if len(args) != 2 {
		return errors.New("name two policy files: scopegate diff OLD NEW")
	}
	k.old, k.new = args[0], args[1]
	return nil
}

func (k *diffCmd) run(_ context.Context, c *cli) int {
	at, err := govNowFlag(k.now)
	if err != nil {
		return c.usageError("diff", "%v", err)
	}
	if at.IsZero() {
		at = time.Now()
	}
	load := func(path string) *decision.Policy {
		pol, err := policydiff.Load(repoPath(path))
		if err != nil {
			c.policyError("diff", err)
			return nil
		}
		return pol
	}
	a, b := load(k.old), load(k.new)
	if a == nil || b == nil {
		return exitUsage
	}
	d := policydiff.Compare(a, b, at)
	d.Old, d.New = k.old, k.new
	if k.json {
		if err := d.WriteJSON(c.stdout); err != nil {
			return c.fail("diff", err)
		}
	} else {
		d.WriteText(c.stdout)
	}
	if k.failOnWider && d.Wider() {
		fmt.Fprintf(c.stderr, "scopegate diff: %d change(s) widen access\n", d.Count(policydiff.Wider))
		return exitError
	}
	return exitOK
}
