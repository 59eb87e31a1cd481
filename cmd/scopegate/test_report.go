package main

import (
	"context"
	"encoding/xml"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"
	"go.yaml.in/yaml/v3"

	"github.com/scopegate/scopegate/decision/policytest"
)

// JUnit XML as CI systems read it (Jenkins, GitLab, GitHub Actions
// reporters): one testsuite per test file, one testcase per case, a
// failure for a case whose decision differs, an error for one that could
// not run or a file that could not be read.
type junitSuites struct {
	XMLName  xml.Name     `xml:"testsuites"`
	Name     string       `xml:"name,attr"`
	Tests    int          `xml:"tests,attr"`
	Failures int          `xml:"failures,attr"`
	Errors   int          `xml:"errors,attr"`
	Skipped  int          `xml:"skipped,attr,omitempty"`
	Suites   []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Name     string      `xml:"name,attr"`
	Tests    int         `xml:"tests,attr"`
	Failures int         `xml:"failures,attr"`
	Errors   int         `xml:"errors,attr"`
	Skipped  int         `xml:"skipped,attr"`
	Cases    []junitCase `xml:"testcase"`
}

type junitCase struct {
	Name      string        `xml:"name,attr"`
	Classname string        `xml:"classname,attr"`
	File      string        `xml:"file,attr,omitempty"`
	Line      int           `xml:"line,attr,omitempty"`
	Failure   *junitProblem `xml:"failure"`
	Error     *junitProblem `xml:"error"`
	Skipped   *junitSkipped `xml:"skipped"`
}

// junitSkipped marks a case scopegate test --target did not send.
type junitSkipped struct {
	Message string `xml:"message,attr"`
}

type junitProblem struct {
	Message string `xml:"message,attr"`
	Type    string `xml:"type,attr"`
	Body    string `xml:",chardata"`
}

func writeJUnit(w io.Writer, rep *policytest.Report, unread []fileProblem) error {
	out := junitSuites{Name: "scopegate test"}
	index := map[string]int{}
	suite := func(file string) *junitSuite {
		i, ok := index[file]
		if !ok {
			i = len(out.Suites)
			index[file] = i
			out.Suites = append(out.Suites, junitSuite{Name: file})
		}
		return &out.Suites[i]
	}
	for _, res := range rep.Results {
		s := suite(res.File)
		tc := junitCase{Name: res.Name, Classname: classname(res.File), File: res.File, Line: res.Line}
		switch {
		case res.Skip != "":
			tc.Skipped = &junitSkipped{Message: res.Skip}
			s.Skipped++
		case res.Error != "":
			tc.Error = &junitProblem{Message: res.Error, Type: "error", Body: caseBody(res)}
			s.Errors++
		case !res.Pass:
			tc.Failure = &junitProblem{Message: "want " + res.Want + ", got " + res.Got, Type: "mismatch", Body: caseBody(res)}
			s.Failures++
		}
		s.Tests++
		s.Cases = append(s.Cases, tc)
	}
	for _, p := range unread {
		s := suite(p.file)
		s.Cases = append(s.Cases, junitCase{Name: "load " + filepath.Base(p.file), Classname: classname(p.file), File: p.file,
			Error: &junitProblem{Message: firstLine(p.message), Type: "load", Body: p.message}})
		s.Tests++
		s.Errors++
	}
	for _, s := range out.Suites {
		out.Tests += s.Tests
		out.Failures += s.Failures
		out.Errors += s.Errors
		out.Skipped += s.Skipped
	}
	if _, err := io.WriteString(w, xml.Header); err != nil {
		return err
	}
	enc := xml.NewEncoder(w)
	enc.Indent("", "  ")
	if err := enc.Encode(out); err != nil {
		return err
	}
	_, err := io.WriteString(w, "\n")
	return err
}

// classname is the test file's name without its extension, the "class"
// JUnit viewers group cases under.
func classname(file string) string {
	base := filepath.Base(file)
	return strings.TrimSuffix(base, filepath.Ext(base))
}

func caseBody(res policytest.Result) string {
	var b strings.Builder
	if res.Line > 0 {
		fmt.Fprintf(&b, "%s:%d\n", res.File, res.Line)
	}
	if res.Request != "" {
		fmt.Fprintf(&b, "request: %s\n", res.Request)
	}
	if res.Error != "" {
		fmt.Fprintf(&b, "error:   %s\n", res.Error)
		return b.String()
	}
	fmt.Fprintf(&b, "want:    %s\ngot:     %s\n", res.Want, res.Got)
	return b.String()
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

// tapDiagnostic is the YAML block under a "not ok" line (TAP 14).
type tapDiagnostic struct {
	Message string `yaml:"message,omitempty"`
	File    string `yaml:"file,omitempty"`
	Line    int    `yaml:"line,omitempty"`
	Request string `yaml:"request,omitempty"`
	Want    string `yaml:"want,omitempty"`
	Got     string `yaml:"got,omitempty"`
}

// writeTAP prints the report as TAP version 14: the plan, one test point
// per case, a YAML diagnostic under each failure, the totals last.
func writeTAP(w io.Writer, rep *policytest.Report, unread []fileProblem) error {
	var b strings.Builder
	b.WriteString("TAP version 14\n")
	fmt.Fprintf(&b, "1..%d\n", len(rep.Results)+len(unread))
	n := 0
	point := func(ok bool, name, skip string, diag *tapDiagnostic) error {
		n++
		status := "ok"
		if !ok {
			status = "not ok"
		}
		// "#" starts a directive in TAP; escape it in names.
		fmt.Fprintf(&b, "%s %d - %s", status, n, strings.ReplaceAll(name, "#", `\#`))
		if skip != "" {
			fmt.Fprintf(&b, " # SKIP %s", strings.ReplaceAll(skip, "\n", " "))
		}
		b.WriteString("\n")
		if diag == nil {
			return nil
		}
		y, err := yaml.Marshal(diag)
		if err != nil {
			return err
		}
		b.WriteString("  ---\n")
		for _, l := range strings.Split(strings.TrimRight(string(y), "\n"), "\n") {
			b.WriteString("  " + l + "\n")
		}
		b.WriteString("  ...\n")
		return nil
	}
	for _, res := range rep.Results {
		var diag *tapDiagnostic
		if !res.Pass && res.Skip == "" {
			diag = &tapDiagnostic{Message: res.Error, File: res.File, Line: res.Line, Request: res.Request}
			if res.Error == "" {
				diag.Want, diag.Got = res.Want, res.Got
			}
		}
		if err := point(res.Pass || res.Skip != "", res.Name, res.Skip, diag); err != nil {
			return err
		}
	}
	for _, p := range unread {
		if err := point(false, "load "+p.file, "", &tapDiagnostic{Message: p.message, File: p.file}); err != nil {
			return err
		}
	}
	if rep.Target {
		fmt.Fprintf(&b, "# %d passed, %d failed, %d skipped\n", rep.Passed, rep.Failed+len(unread), rep.Skipped)
	} else {
		fmt.Fprintf(&b, "# %d passed, %d failed\n", rep.Passed, rep.Failed+len(unread))
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// watchDebounce collects the burst of events one save makes (editors
// write, rename and chmod) into one run.
const watchDebounce = 150 * time.Millisecond

// watchLoop runs the tests, then again after every save of the policy or
// a test file, until ctx ends (Ctrl-C); it returns the last run's exit
// code. Directories are watched rather than files, because editors save
// by writing a new file and renaming it over the old one. ran, if set, is
// called after each run (tests use it).
func (k *testCmd) watchLoop(ctx context.Context, c *cli, tr *testRun, ran func(code int)) int {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return c.fail("test", fmt.Errorf("--watch: %w", err))
	}
	defer w.Close()
	watched := map[string]bool{}
	watch := func(dir string) {
		if watched[dir] {
			return
		}
		if err := w.Add(dir); err != nil {
			fmt.Fprintf(c.stderr, "scopegate test: --watch: cannot watch %s: %v\n", dir, err)
			return
		}
		watched[dir] = true
	}
	var relevant map[string]bool
	setup := func() {
		relevant = map[string]bool{filepath.Clean(tr.policy): true}
		watch(filepath.Dir(tr.policy))
		files, _ := k.testFiles(tr.policy)
		for _, f := range files {
			relevant[filepath.Clean(f)] = true
			watch(filepath.Dir(f))
		}
	}
	isRelevant := func(name string) bool {
		name = filepath.Clean(name)
		if relevant[name] {
			return true
		}
		// A new test file beside the policy is picked up when no files
		// are named.
		return len(k.files) == 0 && filepath.Dir(name) == filepath.Dir(filepath.Clean(tr.policy)) &&
			(strings.HasSuffix(name, "_test.yaml") || strings.HasSuffix(name, "_test.yml"))
	}

	for {
		setup()
		code := k.once(ctx, c, tr)
		fmt.Fprintf(c.stderr, "scopegate test: watching %s and its test files; saving one runs the tests again (Ctrl-C stops)\n", k.policy)
		if ran != nil {
			ran(code)
		}
		changed := ""
	wait:
		for {
			select {
			case <-ctx.Done():
				return code
			case err, ok := <-w.Errors:
				if !ok {
					return code
				}
				fmt.Fprintf(c.stderr, "scopegate test: --watch: %v\n", err)
			case ev, ok := <-w.Events:
				if !ok {
					return code
				}
				if ev.Op == fsnotify.Chmod || !isRelevant(ev.Name) {
					continue
				}
				changed = ev.Name
				break wait
			}
		}
		// Let the rest of the save land.
		timer := time.NewTimer(watchDebounce)
	drain:
		for {
			select {
			case <-ctx.Done():
				timer.Stop()
				return code
			case <-w.Events:
			case <-timer.C:
				break drain
			}
		}
		fmt.Fprintf(c.stderr, "\nscopegate test: %s changed, running again\n", changed)
	}
}
