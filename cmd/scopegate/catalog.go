package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"os"

	"github.com/scopegate/scopegate/decision"
	"github.com/scopegate/scopegate/decision/catalogdoc"
)

// catalogCmd renders the scope catalog as Markdown.
type catalogCmd struct {
	policy string
	out    string
	now    string
}

func (k *catalogCmd) define(fs *flag.FlagSet) {
	fs.StringVar(&k.policy, "policy", "", "policy file (or give it as the argument)")
	fs.StringVar(&k.out, "out", "", "write the Markdown to this file instead of standard output")
	fs.StringVar(&k.now, "now", "", "decide the example requests at this RFC 3339 time (default: noon UTC of the latest grant approval in the policy, so the output depends on the policy alone)")
}

func (k *catalogCmd) setArgs(args []string) error { return govPolicyArg(&k.policy, args) }

func (k *catalogCmd) run(ctx context.Context, c *cli) int {
	now, err := govNowFlag(k.now)
	if err != nil {
		return c.usageError("catalog", "%v", err)
	}
	path := repoPath(k.policy)
	data, err := os.ReadFile(path)
	if err != nil {
		return c.policyError("catalog", &decision.LoadError{Problems: []decision.Problem{decision.ReadProblem(path, err)}})
	}
	var buf bytes.Buffer
	if err := catalogdoc.Render(ctx, &buf, data, path, catalogdoc.Options{Now: now}); err != nil {
		if le := new(decision.LoadError); errors.As(err, &le) {
			return c.policyError("catalog", err)
		}
		return c.fail("catalog", err)
	}
	if k.out == "" {
		_, err = c.stdout.Write(buf.Bytes())
	} else {
		err = os.WriteFile(k.out, buf.Bytes(), 0o644)
	}
	if err != nil {
		return c.fail("catalog", err)
	}
	return exitOK
}
