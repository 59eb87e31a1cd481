package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/durationpb"

	scopegatev1 "github.com/scopegate/scopegate/proto/scopegate/v1"
	"github.com/scopegate/scopegate/store/usage"
)

// adminTokenEnv holds the Admin API token when --token is not given, so
// the token stays out of the process list and the shell history.
const adminTokenEnv = "SCOPEGATE_ADMIN_TOKEN"

// reportUsageCmd asks a running scopegate's Admin API which scopes each
// client was granted and which it used, and lists the over-scoped clients
// first: the grants to withdraw for least privilege.
type reportUsageCmd struct {
	// adminClient holds the Admin API connection flags, shared with
	// revoke, unrevoke and revocations list.
	adminClient
	unusedFor string
	client    string
}

func (r *reportUsageCmd) define(fs *flag.FlagSet) {
	r.adminClient.define(fs)
	fs.StringVar(&r.unusedFor, "unused-for", "", "list only granted scopes not used for at least this long, never used included (30d, 12h)")
	fs.StringVar(&r.client, "client", "", "report only this client_id")
}

func (r *reportUsageCmd) run(ctx context.Context, c *cli) int {
	const name = "report usage"
	req := &scopegatev1.UsageReportRequest{ClientId: r.client}
	if r.unusedFor != "" {
		d, err := usage.ParseWindow(r.unusedFor)
		if err != nil {
			return c.usageError(name, "--unused-for: %v", err)
		}
		req.UnusedFor = durationpb.New(d)
	}
	if r.timeout <= 0 {
		return c.usageError(name, "--timeout %v: give a positive duration", r.timeout)
	}
	token, err := r.adminToken(c)
	if err != nil {
		return c.usageError(name, "%v", err)
	}
	creds, err := r.credentials()
	if err != nil {
		return c.usageError(name, "%v", err)
	}
	conn, err := grpc.NewClient(r.admin, grpc.WithTransportCredentials(creds))
	if err != nil {
		return c.usageError(name, "--admin %q: %v", r.admin, err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	if token != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
	}
	resp, err := scopegatev1.NewAdminClient(conn).UsageReport(ctx, req)
	if err != nil {
		return c.fail(name, r.callError(err))
	}
	if r.json {
		if err := printJSON(c.stdout, resp); err != nil {
			return c.fail(name, err)
		}
		return exitOK
	}
	printUsageTable(c.stdout, resp, time.Now())
	return exitOK
}

// overScoped counts the scopes of c granted but never used.
func overScoped(c *scopegatev1.ClientUsage) int {
	n := 0
	for _, s := range c.GetScopes() {
		if s.GetGranted() && !s.GetUsed() {
			n++
		}
	}
	return n
}

// printUsageTable prints one line per (client, scope); clients with the
// most granted-but-unused scopes first, then by client id.
func printUsageTable(w io.Writer, resp *scopegatev1.UsageReportResponse, now time.Time) {
	clients := slices.Clone(resp.GetClients())
	if len(clients) == 0 {
		fmt.Fprintln(w, "no usage recorded for the clients and window asked")
		return
	}
	slices.SortStableFunc(clients, func(a, b *scopegatev1.ClientUsage) int {
		if d := overScoped(b) - overScoped(a); d != 0 {
			return d
		}
		return strings.Compare(a.GetClientId(), b.GetClientId())
	})
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CLIENT\tSCOPE\tGRANTED\tUSED\tLAST USED\tCOUNT")
	for _, c := range clients {
		for _, s := range c.GetScopes() {
			last := "never"
			if s.GetLastUsed() != nil {
				t := s.GetLastUsed().AsTime()
				last = t.UTC().Format(time.RFC3339) + " (" + ago(now.Sub(t)) + ")"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\n", c.GetClientId(), s.GetScope(), yesNo(s.GetGranted()), yesNo(s.GetUsed()), last, s.GetCount())
		}
	}
	tw.Flush()
	var over []string
	for _, c := range clients {
		if n := overScoped(c); n > 0 {
			over = append(over, c.GetClientId()+" ("+strconv.Itoa(n)+")")
		}
	}
	if len(over) > 0 {
		fmt.Fprintf(w, "\nover-scoped (granted, never used): %s\n", strings.Join(over, ", "))
	}
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// ago renders d coarsely: "3d ago", "5h ago", "12m ago", "just now".
func ago(d time.Duration) string {
	switch {
	case d >= 48*time.Hour:
		return strconv.Itoa(int(d/(24*time.Hour))) + "d ago"
	case d >= 2*time.Hour:
		return strconv.Itoa(int(d/time.Hour)) + "h ago"
	case d >= 2*time.Minute:
		return strconv.Itoa(int(d/time.Minute)) + "m ago"
	case d >= 0:
		return "just now"
	default:
		return "in the future"
	}
}
