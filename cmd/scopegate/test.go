package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os/signal"
	"regexp"
	"slices"
	"syscall"
	"time"

	"github.com/scopegate/scopegate/decision"
	"github.com/scopegate/scopegate/decision/policytest"
	"github.com/scopegate/scopegate/server/probe"
)

// Report formats of scopegate test --format.
var testFormats = []string{"text", "json", "junit", "tap"}

// testCmd runs declarative policy tests against a policy file.
type testCmd struct {
	policy       string
	files        []string
	fullCoverage bool
	json         bool
	verbose      bool
	now          string
	runRE        string
	format       string
	watch        bool
	target       targetFlags
}

func (k *testCmd) define(fs *flag.FlagSet) {
	fs.StringVar(&k.policy, "policy", "", "policy file to test (or give it as the first argument)")
	fs.BoolVar(&k.fullCoverage, "require-full-coverage", false, "fail when a route or a scope is exercised by no allowed case")
	fs.StringVar(&k.runRE, "run", "", "run only the cases whose name matches this regular expression (as go test -run); coverage is then that of the cases run")
	fs.StringVar(&k.format, "format", "text", "report format: text, json, junit (JUnit XML, for CI systems) or tap (TAP 14)")
	fs.BoolVar(&k.watch, "watch", false, "run again whenever the policy or a test file is saved; stop with Ctrl-C")
	fs.BoolVar(&k.json, "json", false, "print the report as JSON (same as --format json)")
	fs.BoolVar(&k.verbose, "v", false, "also list the cases that passed")
	fs.StringVar(&k.now, "now", "", "clock of the cases whose test file sets no now (RFC 3339; default: the wall clock)")
	k.target.define(fs)
}

// shorthands gives --watch its -w.
func (k *testCmd) shorthands() map[string]string { return map[string]string{"watch": "w"} }

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

// testRun is what one run needs, checked once.
type testRun struct {
	opts   policytest.Options
	policy string
	format string
	// decide runs the cases; default the in-process engine (Runner.Run).
	decide func(context.Context, *policytest.Runner, []*policytest.File) *policytest.Report
	// after, if set, is told each run's report (nil when the policy or a
	// test file did not load) and how long it took.
	after func(rep *policytest.Report, took time.Duration)
}

func (k *testCmd) run(ctx context.Context, c *cli) int {
	tr, code := k.prepare(c)
	if code != exitOK {
		return code
	}
	if k.target.addr == "" && !k.watch {
		return k.once(ctx, c, tr)
	}
	if k.watch || k.target.every > 0 {
		var stop context.CancelFunc
		ctx, stop = signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
		defer stop()
	}
	if k.target.addr != "" {
		return k.runTarget(ctx, c, tr)
	}
	return k.watchLoop(ctx, c, tr, nil)
}

func (k *testCmd) prepare(c *cli) (*testRun, int) {
	now, err := govNowFlag(k.now)
	if err != nil {
		return nil, c.usageError("test", "%v", err)
	}
	if err := k.target.check(k); err != nil {
		return nil, c.usageError("test", "%v", err)
	}
	tr := &testRun{policy: repoPath(k.policy), format: k.format}
	if k.json {
		tr.format = "json"
	}
	if !slices.Contains(testFormats, tr.format) {
		return nil, c.usageError("test", "--format %q: want one of text, json, junit, tap", k.format)
	}
	if !now.IsZero() {
		tr.opts.Now = func() time.Time { return now }
	}
	if k.runRE != "" {
		re, err := regexp.Compile(k.runRE)
		if err != nil {
			return nil, c.usageError("test", "--run %q is not a regular expression: %v", k.runRE, err)
		}
		tr.opts.Match = re.MatchString
	}
	return tr, exitOK
}

// testFiles are the test files named, or those beside the policy.
func (k *testCmd) testFiles(policy string) ([]string, error) {
	files := make([]string, len(k.files))
	for i, f := range k.files {
		files[i] = repoPath(f)
	}
	if len(files) > 0 {
		return files, nil
	}
	files, err := policytest.Discover(policy)
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("no *_test.yaml file beside %s; write one or name the test files", k.policy)
	}
	return files, nil
}

// once runs the tests one time and prints the report. In text format the
// "N passed, N failed" line is always the last line of standard output,
// also when a test file or the policy cannot be read.
func (k *testCmd) once(ctx context.Context, c *cli, tr *testRun) int {
	start := time.Now()
	var rep *policytest.Report
	if tr.after != nil {
		defer func() { tr.after(rep, time.Since(start)) }()
	}
	files, err := k.testFiles(tr.policy)
	if err != nil {
		fmt.Fprintf(c.stderr, "scopegate test: %v\n", err)
		if tr.format == "text" {
			fmt.Fprintln(c.stdout, "0 passed, 0 failed (no test files)")
		}
		return exitUsage
	}
	var tests []*policytest.File
	var unread []fileProblem
	for _, p := range files {
		f, err := policytest.ReadFile(p)
		if err != nil {
			fmt.Fprintf(c.stderr, "%v\n", err)
			unread = append(unread, fileProblem{file: p, message: err.Error()})
			continue
		}
		tests = append(tests, f)
	}
	if len(unread) > 0 {
		fmt.Fprintf(c.stderr, "scopegate test: %d test file(s) could not be read; their cases did not run\n", len(unread))
	}
	r, err := policytest.Load(tr.policy, tr.opts)
	if err != nil {
		var le *decision.LoadError
		if errors.As(err, &le) {
			c.policyError("test", err)
		} else {
			fmt.Fprintf(c.stderr, "scopegate test: %v\n", err)
		}
		problem := []fileProblem{{file: tr.policy, message: "the policy does not load: " + err.Error()}}
		switch tr.format {
		case "text":
			fmt.Fprintf(c.stdout, "0 passed, 0 failed (the policy does not load; %d test file(s) not run)\n", len(files))
		case "junit", "tap":
			if err := writeTestReport(c.stdout, tr.format, &policytest.Report{}, append(problem, unread...)); err != nil {
				return c.fail("test", err)
			}
		}
		return exitUsage
	}
	defer r.Close()
	if tr.decide != nil {
		rep = tr.decide(ctx, r, tests)
	} else {
		rep = r.Run(ctx, tests)
	}
	switch tr.format {
	case "json":
		err = rep.WriteJSON(c.stdout)
	case "text":
		rep.WriteText(c.stdout, k.verbose)
	default:
		err = writeTestReport(c.stdout, tr.format, rep, unread)
	}
	if err != nil {
		return c.fail("test", err)
	}
	if len(unread) > 0 {
		rep = nil // a round that did not run every file
		return exitUsage
	}
	if rep.Target && rep.Passed+rep.Failed == 0 {
		fmt.Fprintf(c.stderr, "scopegate test: no case could be sent to %s (%d skipped; -v says why)\n", probe.Redacted(k.target.addr), rep.Skipped)
		return exitError
	}
	if rep.Failed > 0 || k.fullCoverage && !rep.Coverage.Full() {
		return exitError
	}
	return exitOK
}

// fileProblem is a file whose cases could not run.
type fileProblem struct{ file, message string }

func writeTestReport(w io.Writer, format string, rep *policytest.Report, unread []fileProblem) error {
	if format == "junit" {
		return writeJUnit(w, rep, unread)
	}
	return writeTAP(w, rep, unread)
}
