// Command scopegate is the scopegate binary: the decision server (serve),
// and the tools around it for development and scripts: mint a token
// (token), decide one request against a policy file offline (check), and
// send one check to a running server (client).
//
// Every command exits with the codes of exitCodeTable (0 ok or allow, 1
// findings or failures, 2 inputs that cannot be used, 3 deny). Scripts can
// therefore write
//
//	scopegate check --policy policy.yaml --path /orders/1 --token "$T" && echo allowed
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"strings"
)

// Exit codes, the same for every command (exitCodeTable). A deny is not
// an error: it has its own code so scripts can tell "the request would be
// refused" from "the tool failed".
const (
	exitOK = 0
	// exitError: findings or failures (lint errors, failed tests, a wider
	// diff with --fail-on-wider, a server that cannot be reached or
	// cannot listen).
	exitError = 1
	// exitUsage: the inputs cannot be used: a bad command line, or a file
	// (policy, test, config, key) that is missing or does not load.
	exitUsage = 2
	exitDeny  = 3
)

// exitCodeTable is printed by scopegate --help and documented in
// docs/cli.md.
const exitCodeTable = `Exit codes (every command):
  0  ok; for check and client: allow
  1  findings or failures: lint errors, failed tests, a wider diff with
     --fail-on-wider, a server that cannot be reached or cannot listen
  2  inputs that cannot be used: a bad command, flag or argument, or a
     policy, test, config or key file that is missing or does not load
  3  deny (check, explain, client)`

// version is set at link time: -ldflags "-X main.version=v1.2.3".
var version = ""

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run executes one command line and returns the exit code. It is the whole
// program except for os.Exit, so tests drive it in-process.
func run(args []string, stdout, stderr io.Writer) int {
	c := &cli{stdin: os.Stdin, stdout: stdout, stderr: stderr}
	return c.run(context.Background(), args)
}

// Adding a command: write a type with define(fs *flag.FlagSet) (its flags,
// standard library style) and run(ctx, c) int (its exit code), and add
// one commandInfo to commands(). A command that takes file arguments also
// implements argsCommand; one whose flags also come from SCOPEGATE_* and
// --config implements layeredCommand; one with a boolean --json flag gets
// -o json|yaml|table (output.go). Adding a flag: one fs.XxxVar line in the command's
// define; help, completion, suggestions and (for serve) the environment
// variable and config key follow from it. cobra.go builds the command
// tree from this list.

// cli carries the streams a command reads and writes, so tests can give
// their own.
type cli struct {
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
	// lookupEnv reads the environment; nil means os.LookupEnv.
	lookupEnv func(string) (string, bool)
}

// command is one subcommand: it binds its flags to its own fields, then
// runs with them.
type command interface {
	define(fs *flag.FlagSet)
	run(ctx context.Context, c *cli) int
}

type commandInfo struct {
	name     string
	summary  string
	examples string
	new      func() command
}

// commands lists the subcommands in the order help shows them.
func commands() []commandInfo {
	return []commandInfo{
		{"serve", "run the decision server (Envoy ext_authz and scopegate Check over gRPC)",
			"scopegate serve --policy examples/policy.yaml --grpc-addr 127.0.0.1:9191",
			func() command { return &serveCmd{} }},
		{"check", "decide one request against a policy file, offline",
			"scopegate check --policy examples/policy.yaml --method GET --path /orders/1 --token \"$T\" --explain\n" +
				"scopegate token --scope orders:read | scopegate check --policy examples/policy.yaml --path /orders/1 --token - --json",
			func() command { return &checkCmd{} }},
		{"token", "mint a signed access token (development keys by default)",
			"T=$(scopegate token --scope \"orders:read orders:write\")\n" +
				"scopegate token --key examples/keys/dev-ec.key.pem --sub bob --ttl 5m --claim roles='[\"admin\"]'",
			func() command { return &tokenCmd{} }},
		{"client", "send one check to a running server and print the verdict",
			"scopegate client --addr 127.0.0.1:9191 --method GET --path /orders/1 --token \"$T\"\n" +
				"scopegate client --api scopegate --path /orders --method POST --token \"$T\" --explain",
			func() command { return &clientCmd{} }},
		{"bench", "load scopegate and a no-op ext_authz server over loopback gRPC; print the figures as ratios",
			"scopegate bench --duration 20s --concurrency 64\n" +
				"scopegate bench --api both --mix allow=80,scope=10,badsig=10 --miss-rate 0.01 --json bench.json",
			func() command { return &benchCmd{} }},
		{"ownership import", "load key,owner lines into a store's ownership records (for the policy's owner rules)",
			"scopegate ownership import --store scopegate.db --lookup orders --file owners.csv\n" +
				"printf '42,alice\\n43,bob\\n' | scopegate ownership import --store scopegate.db --lookup orders",
			func() command { return &ownershipImportCmd{} }},
		{"report usage", "list each client's granted versus used scopes from a running server's Admin API, over-scoped clients first",
			"SCOPEGATE_ADMIN_TOKEN=... scopegate report usage --admin 127.0.0.1:9193 --unused-for 30d\n" +
				"scopegate report usage --admin scopegate.internal:9193 --tls --client web-app --json",
			func() command { return &reportUsageCmd{} }},
		{"explain", "check --explain: every check, and the catalog entry, segment and grant behind each scope that decided",
			"scopegate explain --policy examples/policy.yaml --method POST --path /orders --token \"$T\"",
			func() command { return &explainCmd{} }},
		{"lint", "check a policy for what loads but is wrong; with --openapi, against the API's OpenAPI document",
			"scopegate lint examples/policy.yaml\n" +
				"scopegate lint examples/policy.yaml --openapi examples/openapi.yaml --allow-extra-routes",
			func() command { return &lintCmd{} }},
		{"test", "run the declarative policy tests beside a policy (or those named), with coverage",
			"scopegate test examples/policy.yaml --require-full-coverage\n" +
				"scopegate test examples/policy.yaml examples/policy_test.yaml --json\n" +
				"scopegate test policy.yaml --target grpc://scopegate:9191 --target-key synthetic.key.pem --target-kid synthetic-1 --target-iss https://synthetic.example.com/ --every 5m --metrics-addr :9469",
			func() command { return &testCmd{} }},
		{"diff", "show what a policy change does to access: wider, narrower or neutral",
			"scopegate diff old/policy.yaml policy.yaml\n" +
				"scopegate diff old/policy.yaml policy.yaml --json --fail-on-wider",
			func() command { return &diffCmd{} }},
		{"fmt", "format policy files canonically: keys in the schema's order, two-space indentation, comments kept",
			"scopegate fmt examples/policy.yaml\n" +
				"scopegate fmt --check policies/*.yaml   # CI: exit 1 and list the files that are not formatted\n" +
				"scopegate fmt -w policy.yaml",
			func() command { return &fmtCmd{} }},
		{"catalog", "render the scope catalog as Markdown, with example requests and their answers",
			"scopegate catalog examples/policy.yaml --out docs/scopes.md",
			func() command { return &catalogCmd{} }},
		{"review", "the periodic access review of every client: grants, use, drift, revocations and an action per scope (keep, narrow, renew, revoke)",
			"scopegate review policy.yaml --store scopegate.db --audit /var/log/scopegate/audit.log -o html --out review.html\n" +
				"scopegate review policy.yaml --store postgres://scopegate@db/scopegate --unused-days 60 -o json",
			func() command { return &reviewCmd{} }},
		{"audit export", "export the audit records of a client, patient or time range with the scopes used and the grants behind them (JSON lines)",
			"scopegate audit export policy.yaml --audit /var/log/scopegate/audit.log --client ehr-app --from 2026-10-01T00:00:00Z\n" +
				"scopegate audit export policy.yaml --store postgres://scopegate@db/scopegate --patient 123 --out evidence.jsonl",
			func() command { return &auditExportCmd{} }},
		{"revoke", "revoke a token, or a subject's or client's tokens (optionally one scope or segment), through a server's Admin API",
			"scopegate revoke --admin 127.0.0.1:9193 --token \"$ADMIN\" --jti 7f2c... --iss https://id.example.com/ --reason INC-42\n" +
				"scopegate revoke --admin 127.0.0.1:9193 --client web-app --scope billing:write --reason INC-43 --until 24h\n" +
				"scopegate revoke --admin 127.0.0.1:9193 --subject alice --issued-before 2026-12-02T10:00:00Z --reason \"password changed\"",
			func() command { return &revokeCmd{} }},
		{"revocations list", "list the revocations a server enforces, and when it last synced them",
			"SCOPEGATE_ADMIN_TOKEN=... scopegate revocations list --admin 127.0.0.1:9193",
			func() command { return &revocationsListCmd{} }},
		{"unrevoke", "remove a revocation by id, through a server's Admin API",
			"scopegate unrevoke --admin 127.0.0.1:9193 --token \"$ADMIN\" --id 01jd4m6n3x0g2e5v7k9q8r1s2t",
			func() command { return &unrevokeCmd{} }},
		{"context set", "create or change a named context: the server addresses, the Admin API token's file and TLS",
			"scopegate context set prod --admin-addr scopegate.internal:9193 --admin-token-file ~/.scopegate/prod.token --tls true --use",
			func() command { return &contextSetCmd{} }},
		{"context use", "make a context the current one",
			"scopegate context use prod",
			func() command { return &contextUseCmd{} }},
		{"context list", "list the contexts; * marks the current one (tokens are never shown: the file holds their path)",
			"scopegate context list",
			func() command { return &contextListCmd{} }},
		{"version", "print the version", "", func() command { return &versionCmd{} }},
	}
}

// usageError reports a bad command line and returns exitUsage.
func (c *cli) usageError(cmd, format string, args ...any) int {
	fmt.Fprintf(c.stderr, "scopegate %s: %s\nRun 'scopegate %s --help' for usage.\n", cmd, fmt.Sprintf(format, args...), cmd)
	return exitUsage
}

// fail reports an error and returns exitError.
func (c *cli) fail(cmd string, err error) int {
	fmt.Fprintf(c.stderr, "scopegate %s: %v\n", cmd, err)
	return exitError
}

func upperFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

type versionCmd struct{}

func (*versionCmd) define(*flag.FlagSet) {}

func (*versionCmd) run(_ context.Context, c *cli) int {
	fmt.Fprintln(c.stdout, versionLine())
	return exitOK
}

// versionLine is what version and --version print.
func versionLine() string {
	return fmt.Sprintf("scopegate %s (%s, %s/%s)", versionString(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

// versionString is the link-time version, else the module version the
// binary was built at (go install ...@v1.2.3), else the VCS revision, else
// "dev".
func versionString() string {
	if version != "" {
		return version
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "dev"
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	var rev, dirty string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = "-dirty"
			}
		}
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if rev != "" {
		return "dev-" + rev + dirty
	}
	return "dev"
}
