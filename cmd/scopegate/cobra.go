package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/scopegate/scopegate/cmd/scopegate/settings"
	"github.com/scopegate/scopegate/decision/suggest"
)

// The command tree is cobra's (GNU-style --flags, help, "did you mean"
// for commands, shell completion), built from commands(). Each command
// keeps defining its flags on a standard library flag.FlagSet (define),
// attached to its cobra command with AddGoFlagSet, so a flag is one line
// in one place.

func lookup(name string) (commandInfo, bool) {
	for _, ci := range commands() {
		if ci.name == name {
			return ci, true
		}
	}
	return commandInfo{}, false
}

// newFlagSet returns the command's flags, defined by its define method,
// and the command bound to them.
func newFlagSet(ci commandInfo, errOut io.Writer) (*flag.FlagSet, command) {
	fs := flag.NewFlagSet("scopegate "+ci.name, flag.ContinueOnError)
	fs.SetOutput(errOut)
	fs.Usage = func() {}
	cmd := ci.new()
	cmd.define(fs)
	if _, ok := cmd.(layeredCommand); ok {
		annotateLayers(fs)
	}
	return fs, cmd
}

// shorthandCommand is a command some of whose flags have a one-letter
// form (test -w, fmt -w): flag name → letter.
type shorthandCommand interface {
	shorthands() map[string]string
}

// exitCode carries a command's exit code through cobra's error return.
type exitCode int

func (e exitCode) Error() string { return fmt.Sprintf("exit %d", int(e)) }

// cmdLineErr is a command line cobra refused (unknown command or flag, bad
// value, wrong arguments); run prints it with a pointer to --help.
type cmdLineErr struct {
	cmd *cobra.Command
	err error
}

func (e *cmdLineErr) Error() string { return e.err.Error() }

func (c *cli) run(ctx context.Context, args []string) int {
	root := c.rootCommand()
	if len(args) == 0 {
		root.SetOut(c.stderr)
		root.Help()
		return exitUsage
	}
	root.SetArgs(normalizeArgs(root, args))
	err := root.ExecuteContext(ctx)
	var code exitCode
	var ue *cmdLineErr
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &code):
		return int(code)
	case errors.As(err, &ue):
		fmt.Fprintf(c.stderr, "%s: %v\nRun '%s --help' for usage.\n", ue.cmd.CommandPath(), ue.err, ue.cmd.CommandPath())
		return exitUsage
	default:
		// cobra's own errors: an unknown command (with its suggestions),
		// bad arguments to a command without its own RunE.
		msg := err.Error()
		fmt.Fprintf(c.stderr, "scopegate: %s\n", strings.TrimRight(msg, "\n"))
		if !strings.Contains(msg, "--help") {
			fmt.Fprint(c.stderr, "Run 'scopegate --help' for usage.\n")
		}
		return exitUsage
	}
}

func (c *cli) rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "scopegate",
		Short: "OAuth scope authorization decisions for APIs",
		Long: "scopegate: OAuth scope authorization decisions for APIs.\n\n" +
			"Every command lists its flags with --help (scopegate help COMMAND).\n\n" + exitCodeTable,
		Version:       versionString(),
		SilenceErrors: true,
		SilenceUsage:  true,
	}
	root.SetVersionTemplate(versionLine() + "\n")
	root.SetIn(c.stdin)
	root.SetOut(c.stdout)
	root.SetErr(c.stderr)
	root.SetFlagErrorFunc(flagError)
	root.SetUsageTemplate(usageTemplate)
	root.SuggestionsMinimumDistance = 2
	root.SetHelpCommand(&cobra.Command{
		Use:   "help [command]",
		Short: "show the flags of a command: scopegate help COMMAND",
		RunE: func(hc *cobra.Command, args []string) error {
			cmd, rest, err := root.Find(args)
			if err != nil || cmd == nil || len(rest) > 0 {
				msg := fmt.Sprintf("unknown command %q", strings.Join(args, " "))
				if s := root.SuggestionsFor(args[len(args)-1]); len(s) > 0 {
					msg += "; did you mean " + strings.Join(s, " or ") + "?"
				}
				return &cmdLineErr{hc, errors.New(msg)}
			}
			return cmd.Help()
		},
	})

	for _, ci := range commands() {
		words := strings.Fields(ci.name)
		parent := root
		for _, w := range words[:len(words)-1] {
			parent = groupCommand(parent, w)
		}
		parent.AddCommand(c.cobraCommand(ci, words[len(words)-1]))
	}
	return root
}

// groupSummaries say what each group's subcommands are for, in the
// command list of scopegate --help.
var groupSummaries = map[string]string{
	"context":     "named server addresses and admin token files for the client-side commands: list, set, use",
	"ownership":   "manage the ownership records owner rules look up: import",
	"audit":       "the audit trail read back: export (evidence of one client, patient or time range)",
	"report":      "reports from a running server's Admin API: usage (granted versus used scopes)",
	"revocations": "the revocations a running server enforces: list",
}

// groupCommand returns parent's subcommand name, creating it as a group
// (report, revocations, ownership) whose subcommands do the work.
func groupCommand(parent *cobra.Command, name string) *cobra.Command {
	for _, sub := range parent.Commands() {
		if sub.Name() == name {
			return sub
		}
	}
	short := groupSummaries[name]
	if short == "" {
		short = "commands: see scopegate " + name + " --help"
	}
	g := &cobra.Command{
		Use:   name + " COMMAND",
		Short: short,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return &cmdLineErr{cmd, errors.New("name a subcommand")}
			}
			msg := fmt.Sprintf("unknown command %q for %q", args[0], cmd.CommandPath())
			if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
				msg += "; did you mean " + strings.Join(s, " or ") + "?"
			}
			return &cmdLineErr{cmd, errors.New(msg)}
		},
		RunE: func(*cobra.Command, []string) error { return nil },
		// SuggestionsFor reads it as it is (0 suggests only exact
		// prefixes); the root's default of 2 is not inherited.
		SuggestionsMinimumDistance: 2,
	}
	parent.AddCommand(g)
	return g
}

func (c *cli) cobraCommand(ci commandInfo, name string) *cobra.Command {
	fs, cmd := newFlagSet(ci, c.stderr)
	_, takesArgs := cmd.(argsCommand)
	use := name + " [flags]"
	if takesArgs {
		use = name + " " + argsUsage[ci.name] + " [flags]"
	}
	long := upperFirst(ci.summary) + "."
	if note := commandNotes[ci.name]; note != "" {
		long += "\n\n" + note
	}
	cc := &cobra.Command{
		Use:     use,
		Short:   ci.summary,
		Long:    long,
		Example: indent(ci.examples),
		Args: func(cc *cobra.Command, args []string) error {
			if !takesArgs && len(args) > 0 {
				return &cmdLineErr{cc, fmt.Errorf("unexpected argument %q (every option is a --flag)", args[0])}
			}
			return nil
		},
		ValidArgsFunction: func(_ *cobra.Command, _ []string, _ string) ([]cobra.Completion, cobra.ShellCompDirective) {
			if takesArgs {
				return nil, cobra.ShellCompDirectiveFilterFileExt
			}
			return nil, cobra.ShellCompDirectiveNoFileComp
		},
		RunE: func(cc *cobra.Command, args []string) error {
			if ac, ok := cmd.(argsCommand); ok {
				if err := ac.setArgs(args); err != nil {
					return &cmdLineErr{cc, err}
				}
			}
			if _, ok := cmd.(layeredCommand); ok {
				env := c.lookupEnv
				if env == nil {
					env = os.LookupEnv
				}
				if err := applyLayers(fs, changedFlags(cc), env); err != nil {
					return &cmdLineErr{cc, err}
				}
			}
			if code := cmd.run(cc.Context(), c); code != exitOK {
				return exitCode(code)
			}
			return nil
		},
	}
	if sc, ok := cmd.(shorthandCommand); ok {
		// Added before the rest, with their letter: pflag registers a
		// shorthand only when the flag is added.
		for name, short := range sc.shorthands() {
			pf := pflag.PFlagFromGoFlag(fs.Lookup(name))
			pf.Shorthand = short
			cc.Flags().AddFlag(pf)
		}
	}
	cc.Flags().AddGoFlagSet(fs)
	out := addOutputFlag(cc)
	cc.Flags().SortFlags = false
	run := cc.RunE
	cc.RunE = func(cc *cobra.Command, args []string) error {
		w, flush, err := out.apply(cc.Flags(), c.stdout)
		if err != nil {
			return &cmdLineErr{cc, err}
		}
		saved := c.stdout
		c.stdout = w
		err = run(cc, args)
		c.stdout = saved
		if ferr := flush(); ferr != nil && err == nil {
			err = ferr
		}
		return err
	}
	return cc
}

// changedFlags is the set of flags given on the command line.
func changedFlags(cc *cobra.Command) map[string]bool {
	set := map[string]bool{}
	cc.Flags().Visit(func(f *pflag.Flag) { set[f.Name] = true })
	return set
}

// flagError explains a flag cobra could not parse, suggesting the flag
// that was probably meant (--grpc-address: did you mean --grpc-addr?).
func flagError(cc *cobra.Command, err error) error {
	msg := err.Error()
	if name, ok := strings.CutPrefix(msg, "unknown flag: --"); ok {
		if s := closestFlag(cc, name); s != "" {
			msg += "; did you mean --" + s + "?"
		}
	} else if m := invalidArgRE.FindStringSubmatch(msg); m != nil {
		// invalid argument "forever" for "--ttl" flag: parse error
		if f := cc.Flags().Lookup(strings.TrimLeft(m[2], "-")); f != nil {
			msg = fmt.Sprintf("--%s %q: %s", f.Name, m[1], wantValue(f, m[3]))
		}
	} else if name, ok := strings.CutPrefix(msg, "unknown shorthand flag: "); ok {
		// "'x' in -xyz": a single-dash long flag that is not a flag at all.
		if _, word, ok := strings.Cut(name, " in -"); ok {
			if s := closestFlag(cc, word); s != "" {
				msg += "; did you mean --" + s + "?"
			}
		}
	}
	return &cmdLineErr{cc, errors.New(msg)}
}

var invalidArgRE = regexp.MustCompile(`^invalid argument "(.*)" for "(?:-\w, )?(--?[\w-]+)" flag: (.*)$`)

// typeExample is a value of each flag type, for a flag whose default is
// zero.
var typeExample = map[string]string{"int": "100000", "int64": "100000", "uint": "100000", "uint64": "100000", "float64": "0.5", "duration": "30s"}

// wantValue says what value f takes, with its default as the example,
// where the parser's own words ("parse error") do not.
func wantValue(f *pflag.Flag, reason string) string {
	var want string
	switch f.Value.Type() {
	case "int", "int64", "int32":
		want = "want an integer"
	case "uint", "uint64", "uint32":
		want = "want a whole number (0 or more)"
	case "float64":
		want = "want a number"
	case "duration":
		want = "want a duration (units s, m, h)"
	case "bool":
		return "want true or false"
	default:
		return reason
	}
	if strings.Contains(reason, "out of range") {
		want += " in range"
	}
	if d := f.DefValue; d != "" && d != "0" && d != "0s" && d != "[]" {
		want += ", e.g. " + d
	} else if ex := typeExample[f.Value.Type()]; ex != "" {
		// A zero default shows no value: give one of the type.
		want += ", e.g. " + ex
	}
	return want
}

// closestFlag is the flag of cc nearest to name: the one it starts, or
// within two edits, or "".
func closestFlag(cc *cobra.Command, name string) string {
	name, _, _ = strings.Cut(name, "=")
	var names []string
	cc.Flags().VisitAll(func(f *pflag.Flag) {
		if !f.Hidden {
			names = append(names, f.Name)
		}
	})
	best, _ := suggest.Options{Prefix: true}.Closest(name, names)
	return best
}

// normalizeArgs rewrites -name (Go's single-dash style, which earlier
// releases accepted) to --name when name is a long flag of the command
// the line runs, so scripts written for them keep working.
func normalizeArgs(root *cobra.Command, args []string) []string {
	cmd, _, err := root.Find(args)
	if err != nil || cmd == nil {
		return args
	}
	out := make([]string, 0, len(args))
	for i, a := range args {
		if a == "--" {
			return append(out, args[i:]...)
		}
		if len(a) > 2 && a[0] == '-' && a[1] != '-' {
			name, _, _ := strings.Cut(a[1:], "=")
			if len(name) > 1 && (cmd.Flags().Lookup(name) != nil || root.PersistentFlags().Lookup(name) != nil || name == "help" || name == "version") {
				a = "-" + a
			}
		}
		out = append(out, a)
	}
	return out
}

func indent(examples string) string {
	if examples == "" {
		return ""
	}
	lines := strings.Split(examples, "\n")
	for i, l := range lines {
		lines[i] = "  " + l
	}
	return strings.Join(lines, "\n")
}

// argsUsage names the arguments of the commands that take files.
var argsUsage = map[string]string{
	"lint":         "POLICY",
	"test":         "POLICY [TESTFILES...]",
	"diff":         "OLD NEW",
	"catalog":      "POLICY",
	"review":       "POLICY",
	"audit export": "POLICY",
	"fmt":          "FILE...",
	"context use":  "NAME",
	"context set":  "NAME",
}

// usageTemplate is cobra's, with the flag section's "Flags:" kept and the
// global flags (--help, --version) folded in.
const usageTemplate = `Usage:{{if .Runnable}}
  {{.UseLine}}{{end}}{{if .HasAvailableSubCommands}}
  {{.CommandPath}} [command]{{end}}{{if gt (len .Aliases) 0}}

Aliases:
  {{.NameAndAliases}}{{end}}{{if .HasAvailableSubCommands}}

Commands:{{range .Commands}}{{if (or .IsAvailableCommand (eq .Name "help"))}}
  {{rpad .Name .NamePadding }} {{.Short}}{{end}}{{end}}{{end}}{{if .HasAvailableLocalFlags}}

Flags:
{{.LocalFlags.FlagUsages | trimTrailingWhitespaces}}{{end}}{{if .HasAvailableInheritedFlags}}

Global Flags:
{{.InheritedFlags.FlagUsages | trimTrailingWhitespaces}}{{end}}{{if .HasExample}}

Examples:
{{.Example}}{{end}}{{if .HasAvailableSubCommands}}

Use "{{.CommandPath}} [command] --help" for more information about a command.{{end}}{{"\n"}}`

// applyLayers gives serve's flags not set on the command line their value
// from SCOPEGATE_* variables and the --config file.
var applyLayers = settings.ApplyLayersExcept
