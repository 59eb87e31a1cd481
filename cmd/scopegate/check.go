package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"text/tabwriter"

	"github.com/scopegate/scopegate/decision"
	"github.com/scopegate/scopegate/envoy"
	"github.com/scopegate/scopegate/store/jwks"
)

// maxStdinToken bounds what `--token -` reads, far above any real token.
const maxStdinToken = 1 << 20

// checkCmd decides one request against a policy file, in-process, exactly
// as the server would: the same loader, the same key sources, the same
// engine. It is how a policy is tried out and how scripts test one.
type checkCmd struct {
	policy      string
	method      string
	path        string
	token       string
	sourceIP    string
	environment string
	host        string
	explain     bool
	json        bool
	// input is a file of Check RPC requests (one JSON object, or JSON
	// lines); "-" reads standard input.
	input string
	// owners is a YAML/JSON file of ownership facts; storeDSN a store to
	// read them from.
	owners   string
	storeDSN string
}

func (k *checkCmd) define(fs *flag.FlagSet) {
	fs.StringVar(&k.policy, "policy", "", "policy file to decide with (required)")
	fs.StringVar(&k.method, "method", "GET", "HTTP method of the request")
	fs.StringVar(&k.path, "path", "", "request path, optionally with a query, e.g. /orders/1 (required)")
	fs.StringVar(&k.token, "token", "", `bearer access token; "-" reads it from standard input; empty sends no Authorization header`)
	fs.StringVar(&k.sourceIP, "source-ip", "", "IP address of the client, for network conditions")
	fs.StringVar(&k.environment, "environment", "", "deployment environment of the request (default: the policy's)")
	fs.StringVar(&k.host, "host", "", "Host / :authority of the request")
	fs.StringVar(&k.input, "input", "", `file of requests in the scopegate.v1 Check RPC's JSON shape (one object, or one per line); "-" reads standard input; replaces --path, --method, --token...`)
	fs.StringVar(&k.owners, "owners", "", "YAML or JSON file of ownership facts for the policy's owner rules: lookup → key → owners, as a test file's owners:")
	fs.StringVar(&k.storeDSN, "store", "", "read ownership facts from this store (a file path or a postgres:// URL, as serve --store) instead of --owners")
	fs.BoolVar(&k.explain, "explain", false, "print every check the decision ran, and the governance of the scopes involved")
	fs.BoolVar(&k.json, "json", false, "print the decision as one JSON object (with --input: one per line)")
}

func (k *checkCmd) run(ctx context.Context, c *cli) int {
	if k.policy == "" {
		return c.usageError("check", "--policy is required")
	}
	if k.input != "" {
		if k.path != "" || k.token != "" || k.sourceIP != "" || k.host != "" || k.environment != "" {
			return c.usageError("check", "--input gives the whole request: drop --path, --token, --source-ip, --host and --environment, or drop --input")
		}
		return k.runInput(ctx, c)
	}
	if k.path == "" {
		return c.usageError("check", "--path is required (or --input with requests)")
	}
	req := decision.Request{
		Method:      k.method,
		Path:        k.path,
		Environment: k.environment,
		Host:        k.host,
	}
	if k.sourceIP != "" {
		ip, err := netip.ParseAddr(k.sourceIP)
		if err != nil {
			return c.usageError("check", "--source-ip %q is not an IP address (write it like 203.0.113.7 or 2001:db8::1, without a port)", k.sourceIP)
		}
		req.SourceIP = ip
	}
	tok := k.token
	if tok == "-" {
		b, err := io.ReadAll(io.LimitReader(c.stdin, maxStdinToken))
		if err != nil {
			return c.fail("check", fmt.Errorf("read the token from standard input: %w", err))
		}
		tok = strings.TrimSpace(string(b))
		if tok == "" {
			return c.usageError("check", "--token -: standard input is empty")
		}
	}
	if tok != "" {
		req.Authorization = authorizationValue(tok)
		req.AuthorizationCount = 1
	}
	if k.explain {
		req.Trace = &decision.Trace{}
	}

	eng, done, code := k.engine(ctx, c)
	if eng == nil {
		return code
	}
	defer done()

	d := eng.Decide(ctx, &req)
	if k.json {
		if err := writeDecisionJSON(c.stdout, &d, req.Trace, "", true); err != nil {
			return c.fail("check", err)
		}
	} else {
		writeDecisionText(c.stdout, &d, req.Trace)
	}
	if d.Allow {
		return exitOK
	}
	return exitDeny
}

// engine loads the policy and the ownership facts and returns the engine
// and what releases it; on failure it has printed why and returns nil
// and the exit code.
func (k *checkCmd) engine(ctx context.Context, c *cli) (*decision.Engine, func(), int) {
	if k.owners != "" && k.storeDSN != "" {
		return nil, nil, c.usageError("check", "--owners and --store both give ownership facts: use one")
	}
	reg := jwks.NewRegistry(ctx)
	// Registry.Load reads the policy through decision.LoadFile, as every
	// command does, and waits for each jwks_url's first fetch.
	pol, err := reg.Load(ctx, repoPath(k.policy), decision.CompileOptions{})
	if err != nil {
		reg.Close()
		return nil, nil, c.policyError("check", err)
	}
	closers := []func(){reg.Close}
	done := func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
	}
	opts := decision.Options{Keys: reg}
	switch {
	case k.owners != "":
		o, err := readOwnersFile(k.owners)
		if err != nil {
			done()
			return nil, nil, c.usageError("check", "%v", err)
		}
		opts.Ownership = o
	case k.storeDSN != "":
		st, err := openStoreForRead(ctx, k.storeDSN)
		if err != nil {
			done()
			return nil, nil, c.usageError("check", "%v", err)
		}
		closers = append(closers, func() { st.Close() })
		opts.Ownership = st.Ownership()
	}
	eng, err := decision.NewEngine(pol, opts)
	if err != nil {
		done()
		return nil, nil, c.fail("check", err)
	}
	closers = append(closers, eng.Close)
	return eng, done, exitOK
}

// authorizationValue turns --token into an Authorization header value: a
// bare token gets the Bearer scheme, a value that already names a scheme
// ("Bearer x", "DPoP x") is sent as given.
func authorizationValue(tok string) string {
	if scheme, _, ok := strings.Cut(tok, " "); ok && scheme != "" && !strings.ContainsAny(scheme, ".=") {
		return tok
	}
	return "Bearer " + tok
}

// policyError prints every problem of a policy that failed to load and
// returns exitUsage (an input that cannot be used); any other error is
// printed as it is, with exitError.
func (c *cli) policyError(cmd string, err error) int {
	var le *decision.LoadError
	if !errors.As(err, &le) {
		return c.fail(cmd, err)
	}
	n := 0
	for _, p := range le.Problems {
		if !p.Warning {
			n++
		}
	}
	fmt.Fprintf(c.stderr, "scopegate %s: the policy has %d error(s):\n", cmd, n)
	for _, p := range le.Problems {
		fmt.Fprintf(c.stderr, "  %s\n", p.String())
	}
	return exitUsage
}

// writeDecisionText prints the one-line verdict, then the trace if any:
//
//	ALLOW route=read-order scopes=orders:read subject=alice client=web-app
//	DENY insufficient_scope: the token lacks ... (route=read-order)
func writeDecisionText(w io.Writer, d *decision.Decision, tr *decision.Trace) {
	var b strings.Builder
	if d.Allow {
		b.WriteString("ALLOW")
		if d.Route != nil {
			b.WriteString(" route=" + d.Route.Name)
			if d.Route.Public {
				b.WriteString(" public=true")
			}
		}
		if used := d.ScopesUsed(); len(used) > 0 {
			b.WriteString(" scopes=" + strings.Join(used, ","))
		}
		if d.Token != nil {
			if d.Token.Subject != "" {
				b.WriteString(" subject=" + d.Token.Subject)
			}
			if d.Token.ClientID != "" {
				b.WriteString(" client=" + d.Token.ClientID)
			}
		}
	} else {
		b.WriteString("DENY " + d.Code.String() + ": " + d.Message())
		if d.Route != nil {
			b.WriteString(" (route=" + d.Route.Name + ")")
		}
	}
	fmt.Fprintln(w, b.String())
	if tr == nil {
		return
	}
	writeTrace(w, traceOf(tr))
	writeGovernanceText(w, d)
}

// traceOf is tr's steps in the form both printers take.
func traceOf(tr *decision.Trace) []traceJSON {
	if tr == nil {
		return nil
	}
	out := make([]traceJSON, len(tr.Steps))
	for i, s := range tr.Steps {
		out[i] = traceJSON{Check: s.Check, Result: s.Result, Detail: s.Detail}
	}
	return out
}

// writeTrace prints the checks a decision ran, one numbered line each
// with the check, its result and the detail in aligned columns. check
// --explain and client --explain both print it.
func writeTrace(w io.Writer, steps []traceJSON) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for i, s := range steps {
		fmt.Fprintf(tw, "  %d.\t%s\t%s\t%s\n", i+1, s.Check, s.Result, s.Detail)
	}
	_ = tw.Flush()
}

// decisionJSON is the --json form of a decision. Its field names follow
// the scopegate Check RPC's CheckResponse, so scripts read both alike.
type decisionJSON struct {
	Allow           bool     `json:"allow"`
	Code            string   `json:"code"`
	Message         string   `json:"message"`
	HTTPStatus      int      `json:"http_status"`
	WWWAuthenticate string   `json:"www_authenticate,omitempty"`
	Route           string   `json:"route,omitempty"`
	Path            string   `json:"path,omitempty"`
	ScopesUsed      []string `json:"scopes_used,omitempty"`
	// ScopesMissing: the scopes an insufficient_scope deny names
	// (decision.Decision.MissingScopes).
	ScopesMissing []string `json:"scopes_missing,omitempty"`
	Subject       string   `json:"subject,omitempty"`
	ClientID      string   `json:"client_id,omitempty"`
	Issuer        string   `json:"issuer,omitempty"`
	PolicyVersion string   `json:"policy_version,omitempty"`
	// RequestID is the request_id of a --input request, to match answers
	// to requests.
	RequestID string      `json:"request_id,omitempty"`
	Trace     []traceJSON `json:"trace,omitempty"`
	// Governance is, with --explain, the catalog entry, segment and grants
	// behind each scope that decided (explain.go).
	Governance []scopeGovernance `json:"governance,omitempty"`
}

type traceJSON struct {
	Check  string `json:"check"`
	Result string `json:"result"`
	Detail string `json:"detail,omitempty"`
}

// writeDecisionJSON writes d as one JSON object: indented, or on one line
// (a JSON lines stream, for --input).
func writeDecisionJSON(w io.Writer, d *decision.Decision, tr *decision.Trace, requestID string, indent bool) error {
	out := decisionJSON{
		Allow:           d.Allow,
		Code:            d.Code.String(),
		Message:         d.Message(),
		HTTPStatus:      d.Code.HTTPStatus(),
		WWWAuthenticate: envoy.WWWAuthenticate(d),
		Path:            d.Path,
		ScopesUsed:      d.ScopesUsed(),
		ScopesMissing:   d.MissingScopes(),
		PolicyVersion:   d.PolicyVersion(),
		RequestID:       requestID,
	}
	if d.Route != nil {
		out.Route = d.Route.Name
	}
	if d.Token != nil {
		out.Subject, out.ClientID, out.Issuer = d.Token.Subject, d.Token.ClientID, d.Token.Issuer
	}
	if tr != nil {
		out.Trace = traceOf(tr)
		out.Governance = governanceOf(d)
	}
	enc := json.NewEncoder(w)
	if indent {
		enc.SetIndent("", "  ")
	}
	return enc.Encode(out)
}
