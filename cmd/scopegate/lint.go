package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/scopegate/scopegate/decision"
	"github.com/scopegate/scopegate/decision/lint"
)

// argsCommand is a command that takes file names as arguments, before,
// between or after its flags (scopegate lint policy.yaml --openapi api.yaml).
type argsCommand interface {
	command
	setArgs(args []string) error
}

func init() {
	commandNotes["lint"] = `Arguments:
  POLICY   the policy file (or --policy)

Errors are printed first, then warnings, each as file:line: field: message.
Exit codes: 0 no errors (warnings allowed), 1 errors, 2 a policy that does
not load, or a usage error.`
	commandNotes["test"] = `Arguments:
  POLICY       the policy file (or --policy)
  TESTFILES    test files; default: the *_test.yaml files beside the policy

The last line of the output is always "N passed, N failed" (with
--target: "N passed, N failed, N skipped").
Exit codes: 0 every case passed, 1 failures (or missing coverage with
--require-full-coverage; with --target, also no case sent), 2 usage error
or a policy or test file that does not load.

--target sends the cases to a running deployment and compares its answers;
see docs/governance-tools.md for the flags and a safe test issuer.`
	commandNotes["diff"] = `Arguments:
  OLD NEW   the policy before and after the change

Each change is marked + (added), - (removed) or ~ (changed) and judged
WIDER (grants access that was refused), NARROWER or NEUTRAL.
Exit codes: 0, or 1 with --fail-on-wider when a change widens access,
2 usage error or a policy that does not load.`
	commandNotes["catalog"] = `Arguments:
  POLICY   the policy file (or --policy)

Exit codes: 0 written, 1 the output cannot be written, 2 a policy that
does not load, or a usage error.`
}

// lintCmd checks a policy for what loads but is still wrong.
type lintCmd struct {
	policy         string
	openapi        string
	basePath       string
	extraRoutes    bool
	nameRegex      string
	expiryDays     int
	allowWildcards bool
	wildcards      govListFlag
	now            string
	json           bool
}

// govListFlag collects a repeatable string flag.
type govListFlag []string

// String joins the values; empty when none were given, so help shows no default.
func (f *govListFlag) String() string { return strings.Join(*f, ",") }

// Type names the value in help (pflag.Value).
func (*govListFlag) Type() string { return "string" }

func (f *govListFlag) Set(s string) error {
	*f = append(*f, s)
	return nil
}

func (k *lintCmd) define(fs *flag.FlagSet) {
	fs.StringVar(&k.policy, "policy", "", "policy file to lint (or give it as the argument)")
	fs.StringVar(&k.openapi, "openapi", "", "OpenAPI 3 document of the API: every operation must be covered by a route with the same scopes")
	fs.StringVar(&k.basePath, "openapi-base-path", "", "prefix of the API's paths that the OpenAPI document leaves to servers[].url, e.g. /v1")
	fs.BoolVar(&k.extraRoutes, "allow-extra-routes", false, "with --openapi, accept public routes (health checks) that no operation reaches")
	fs.StringVar(&k.nameRegex, "name-regex", "", "naming convention of scope names, a regular expression; violations are errors (default: "+lint.DefaultNamePattern+", violations are warnings)")
	fs.IntVar(&k.expiryDays, "expiry-warning-days", 30, "warn about grants that expire within this many days (0: only expired ones)")
	fs.BoolVar(&k.allowWildcards, "allow-wildcards", false, "accept wildcard scopes (*, patient/*.rs) in a prod policy")
	fs.Var(&k.wildcards, "allow-wildcard", "accept this wildcard scope in a prod policy (repeatable)")
	fs.StringVar(&k.now, "now", "", "judge grant expiries and sunsets at this RFC 3339 time instead of now (reproducible CI runs)")
	fs.BoolVar(&k.json, "json", false, "print the findings as JSON")
}

func (k *lintCmd) setArgs(args []string) error {
	return govPolicyArg(&k.policy, args)
}

// govPolicyArg takes the policy file from the arguments or --policy.
func govPolicyArg(policy *string, args []string) error {
	switch {
	case len(args) > 1:
		return fmt.Errorf("unexpected argument %q: give one policy file", args[1])
	case len(args) == 1 && *policy != "":
		return fmt.Errorf("the policy is given twice (--policy %s and %s)", *policy, args[0])
	case len(args) == 1:
		*policy = args[0]
	case *policy == "":
		return errors.New("name the policy file")
	}
	return nil
}

func govNowFlag(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("--now %q is not an RFC 3339 time such as 2026-11-23T10:00:00Z", s)
	}
	return t, nil
}

func (k *lintCmd) run(_ context.Context, c *cli) int {
	now, err := govNowFlag(k.now)
	if err != nil {
		return c.usageError("lint", "%v", err)
	}
	opts := lint.Options{
		NamePattern:      k.nameRegex,
		ExpiryWarning:    time.Duration(k.expiryDays) * 24 * time.Hour,
		AllowWildcards:   k.allowWildcards,
		AllowedWildcards: k.wildcards,
		Now:              now,
		OpenAPIOpts:      lint.OpenAPIOptions{AllowExtraRoutes: k.extraRoutes, BasePath: k.basePath},
	}
	if k.expiryDays <= 0 {
		opts.ExpiryWarning = -1
	}
	if k.openapi != "" {
		opts.OpenAPI = repoPath(k.openapi)
	}
	res, err := lint.File(repoPath(k.policy), opts)
	if err != nil {
		return c.usageError("lint", "%v", err)
	}
	if k.json {
		if err := writeLintJSON(c.stdout, res); err != nil {
			return c.fail("lint", err)
		}
	} else {
		writeLintText(c.stdout, res)
	}
	if res.Policy == nil && res.Errors() > 0 {
		return exitUsage // the policy does not load: an input that cannot be used
	}
	if res.Errors() > 0 {
		return exitError
	}
	return exitOK
}

func writeLintText(w io.Writer, res *lint.Result) {
	for _, p := range res.Problems {
		fmt.Fprintln(w, p.String())
	}
	for _, n := range res.Notes {
		fmt.Fprintln(w, n)
	}
	writeLintObservers(w, res) // lint_observers.go
	errs := res.Errors()
	fmt.Fprintf(w, "%d error(s), %d warning(s)\n", errs, len(res.Problems)-errs)
}

type lintProblemJSON struct {
	File    string `json:"file"`
	Line    int    `json:"line,omitempty"`
	Field   string `json:"field,omitempty"`
	Message string `json:"message"`
	Level   string `json:"level"`
}

func writeLintJSON(w io.Writer, res *lint.Result) error {
	out := struct {
		Errors   int               `json:"errors"`
		Warnings int               `json:"warnings"`
		Problems []lintProblemJSON `json:"problems"`
		Notes    []string          `json:"notes,omitempty"`
	}{Problems: []lintProblemJSON{}, Notes: res.Notes}
	for _, p := range res.Problems {
		out.Problems = append(out.Problems, govProblemJSON(p))
	}
	out.Errors = res.Errors()
	out.Warnings = len(res.Problems) - out.Errors
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}

func govProblemJSON(p decision.Problem) lintProblemJSON {
	level := "error"
	if p.Warning {
		level = "warning"
	}
	return lintProblemJSON{File: p.File, Line: p.Line, Field: p.Field, Message: p.Message, Level: level}
}
