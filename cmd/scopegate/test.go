package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"time"

	"github.com/scopegate/scopegate/decision"
	"github.com/scopegate/scopegate/decision/policytest"
)

// testCmd runs declarative policy tests against a policy file.
type testCmd struct {
	policy       string
	files        []string
	fullCoverage bool
	json         bool
	verbose      bool
	now          string
}

func (k *testCmd) define(fs *flag.FlagSet) {
	fs.StringVar(&k.policy, "policy", "", "policy file to test (or give it as the first argument)")
	fs.BoolVar(&k.fullCoverage, "require-full-coverage", false, "fail when a route or a scope is exercised by no allowed case")
	fs.BoolVar(&k.json, "json", false, "print the report as JSON")
	fs.BoolVar(&k.verbose, "v", false, "also list the cases that passed")
	fs.StringVar(&k.now, "now", "", "clock of the cases whose test file sets no now (RFC 3339; default: the wall clock)")
}

func (k *testCmd) setArgs(args []string) error {
	if k.policy == "" {
		if len(args) == 0 {
			return errors.New("name the policy file: scopegate test POLICY [TESTFILES...]")
		}
		k.policy, args = args[0], args[1:]
	}
	k.files = args
	return nil
}

func (k *testCmd) run(ctx context.Context, c *cli) int {
	now, err := govNowFlag(k.now)
	if err != nil {
		return c.usageError("test", "%v", err)
	}
	opts := policytest.Options{}
	if !now.IsZero() {
		opts.Now = func() time.Time { return now }
	}
	policy := repoPath(k.policy)
	files := make([]string, len(k.files))
	for i, f := range k.files {
		files[i] = repoPath(f)
	}
	if len(files) == 0 {
		files, err = policytest.Discover(policy)
		if err != nil {
			fmt.Fprintf(c.stderr, "scopegate test: %v\n", err)
			return exitUsage
		}
		if len(files) == 0 {
			fmt.Fprintf(c.stderr, "scopegate test: no *_test.yaml file beside %s; write one or name the test files\n", k.policy)
			return exitUsage
		}
	}
	var tests []*policytest.File
	bad := 0
	for _, p := range files {
		f, err := policytest.ReadFile(p)
		if err != nil {
			fmt.Fprintf(c.stderr, "%v\n", err)
			bad++
			continue
		}
		tests = append(tests, f)
	}
	r, err := policytest.Load(policy, opts)
	if err != nil {
		var le *decision.LoadError
		if errors.As(err, &le) {
			c.policyError("test", err)
		} else {
			fmt.Fprintf(c.stderr, "scopegate test: %v\n", err)
		}
		// The summary line ends every run, so CI logs always show it.
		if !k.json {
			fmt.Fprintf(c.stdout, "0 passed, 0 failed (the policy does not load; %d test file(s) not run)\n", len(files))
		}
		return exitUsage
	}
	defer r.Close()
	rep := r.Run(ctx, tests)
	if k.json {
		if err := rep.WriteJSON(c.stdout); err != nil {
			return c.fail("test", err)
		}
	} else {
		rep.WriteText(c.stdout, k.verbose)
	}
	if bad > 0 {
		fmt.Fprintf(c.stderr, "scopegate test: %d test file(s) could not be read; their cases did not run\n", bad)
		return exitUsage
	}
	if rep.Failed > 0 || k.fullCoverage && !rep.Coverage.Full() {
		return exitError
	}
	return exitOK
}
