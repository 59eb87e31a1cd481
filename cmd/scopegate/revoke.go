package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	scopegatev1 "github.com/scopegate/scopegate/proto/scopegate/v1"
)

// The revocation commands: revoke, revocations list, unrevoke. Each is one
// call to a running scopegate's Admin API, authenticated by a bearer token
// (--token or $SCOPEGATE_ADMIN_TOKEN) and/or a client certificate.

// adminClient holds the flags every Admin API command shares; they are
// spelled as `scopegate report usage` spells them.
type adminClient struct {
	admin    string
	token    string
	timeout  time.Duration
	tls      bool
	caFile   string
	certFile string
	keyFile  string
	json     bool
}

func (a *adminClient) define(fs *flag.FlagSet) {
	fs.StringVar(&a.admin, "admin", "", "gRPC address of the scopegate Admin API (host:port); default $"+adminAddrEnv+", else "+defaultAdminAddr)
	fs.StringVar(&a.token, "token", "", "Admin API token, sent as \"authorization: Bearer <token>\"; default $"+adminTokenEnv+"; \"-\" reads it from standard input")
	fs.DurationVar(&a.timeout, "timeout", 10*time.Second, "deadline of the call")
	fs.BoolVar(&a.tls, "tls", false, "connect with TLS (system roots, or --ca-file)")
	fs.StringVar(&a.caFile, "ca-file", "", "PEM file of the CA that signed the Admin API's certificate (implies --tls)")
	fs.StringVar(&a.certFile, "cert-file", "", "PEM client certificate, for an Admin API that authenticates by certificate (implies --tls; with --key-file)")
	fs.StringVar(&a.keyFile, "key-file", "", "PEM private key of --cert-file")
	fs.BoolVar(&a.json, "json", false, "print the response as JSON (protojson, proto field names)")
}

// call dials the Admin API and runs fn with a context carrying the token.
func (a *adminClient) call(ctx context.Context, c *cli, fn func(context.Context, scopegatev1.AdminClient) (proto.Message, error)) (proto.Message, error) {
	if a.timeout <= 0 {
		return nil, usageErr{fmt.Errorf("--timeout %v: give a positive duration", a.timeout)}
	}
	token, err := a.adminToken(c)
	if err != nil {
		return nil, usageErr{err}
	}
	creds, err := a.credentials()
	if err != nil {
		return nil, usageErr{err}
	}
	if token == "" && a.certFile == "" {
		return nil, usageErr{errors.New("no credentials: give --token (or $" + adminTokenEnv + ") with the admin scope, or --cert-file/--key-file")}
	}
	conn, err := grpc.NewClient(a.admin, grpc.WithTransportCredentials(creds))
	if err != nil {
		return nil, usageErr{fmt.Errorf("--admin %q: %w", a.admin, err)}
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, a.timeout)
	defer cancel()
	if token != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
	}
	resp, err := fn(ctx, scopegatev1.NewAdminClient(conn))
	if err != nil {
		return nil, a.callError(err)
	}
	return resp, nil
}

// callError explains an Admin API call's error (callerr.go).
func (a *adminClient) callError(err error) error {
	return callError(callTarget{call: "Admin API call", addr: a.admin, flag: "--admin", env: adminAddrEnv, timeout: a.timeout, admin: true}, err)
}

// usageErr marks a command-line mistake (exit 2) among call errors.
type usageErr struct{ error }

// finish prints err the way its kind asks and returns the exit code.
func (a *adminClient) finish(c *cli, name string, err error) int {
	var ue usageErr
	if errors.As(err, &ue) {
		return c.usageError(name, "%v", ue.error)
	}
	return c.fail(name, err)
}

// Client-side settings from the environment, so that scripts and shells
// set them once instead of on every call.
const (
	adminAddrEnv      = "SCOPEGATE_ADMIN_ADDR"
	adminTokenFileEnv = "SCOPEGATE_ADMIN_TOKEN_FILE"
	defaultAdminAddr  = "127.0.0.1:9193"
)

func (c *cli) env(name string) (string, bool) {
	if c.lookupEnv != nil {
		return c.lookupEnv(name)
	}
	return os.LookupEnv(name)
}

// adminToken resolves the Admin API address (--admin, else
// $SCOPEGATE_ADMIN_ADDR, else the default) and returns the token:
// --token, else $SCOPEGATE_ADMIN_TOKEN, else the file named by
// $SCOPEGATE_ADMIN_TOKEN_FILE.
//
// The current context (context.go) comes after the environment: its
// admin_addr, admin_token_file, and its tls settings when no TLS flag is
// given.
func (a *adminClient) adminToken(c *cli) (string, error) {
	cx, err := c.currentContext()
	if err != nil {
		return "", err
	}
	if cx == nil {
		cx = &cliContext{}
	}
	if a.admin == "" {
		if v, ok := c.env(adminAddrEnv); ok && strings.TrimSpace(v) != "" {
			a.admin = strings.TrimSpace(v)
		} else if cx.AdminAddr != "" {
			a.admin = cx.AdminAddr
		} else {
			a.admin = defaultAdminAddr
		}
	}
	if t := cx.TLS; t != nil && !a.tls && a.caFile == "" && a.certFile == "" && a.keyFile == "" {
		a.tls, a.caFile, a.certFile, a.keyFile = t.Enabled, t.CAFile, t.CertFile, t.KeyFile
	}
	switch a.token {
	case "-":
		b, err := io.ReadAll(io.LimitReader(c.stdin, maxStdinToken))
		if err != nil {
			return "", fmt.Errorf("read the token from standard input: %w", err)
		}
		tok := strings.TrimSpace(string(b))
		if tok == "" {
			return "", errors.New("--token -: standard input is empty")
		}
		return tok, nil
	case "":
		env := c.lookupEnv
		if env == nil {
			env = os.LookupEnv
		}
		if tok, ok := env(adminTokenEnv); ok {
			return strings.TrimSpace(tok), nil
		}
		if path, ok := env(adminTokenFileEnv); ok && path != "" {
			b, err := os.ReadFile(path)
			if err != nil {
				return "", fmt.Errorf("%s=%s: %v", adminTokenFileEnv, path, errors.Unwrap(err))
			}
			return strings.TrimSpace(string(b)), nil
		}
		if path := cx.AdminTokenFile; path != "" {
			b, err := os.ReadFile(path)
			if err != nil {
				return "", fmt.Errorf("the current context's admin_token_file %s: %v (fix it with scopegate context set)", path, errors.Unwrap(err))
			}
			return strings.TrimSpace(string(b)), nil
		}
		return "", nil
	}
	return a.token, nil
}

func (a *adminClient) credentials() (credentials.TransportCredentials, error) {
	if (a.certFile == "") != (a.keyFile == "") {
		return nil, errors.New("--cert-file and --key-file go together: give both, or neither")
	}
	if !a.tls && a.caFile == "" && a.certFile == "" {
		return insecure.NewCredentials(), nil
	}
	cfg, err := loadClientTLS(a.caFile, a.certFile, a.keyFile, "--ca-file", "--cert-file/--key-file")
	if err != nil {
		return nil, err
	}
	if cfg == nil { // --tls alone: the system roots
		cfg = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	return credentials.NewTLS(cfg), nil
}

// printJSON prints m as indented JSON (protoJSON: proto field names,
// numbers as numbers).
func printJSON(w io.Writer, m proto.Message) error {
	b, err := protoJSON(m)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}

// revokeCmd revokes one token, or every token of a subject or client,
// optionally for one scope or segment and until a time.
type revokeCmd struct {
	adminClient
	jti, iss, sub, client string
	session, device       string
	assurance             optionalString
	scope, segment        string
	reason, until         string
	issuedBefore          string
	now                   func() time.Time
}

func (r *revokeCmd) define(fs *flag.FlagSet) {
	r.adminClient.define(fs)
	fs.StringVar(&r.jti, "jti", "", "revoke one token: its jti claim (with --iss)")
	fs.StringVar(&r.iss, "iss", "", "the token's issuer (with --jti); with --sub or --client, limits the revocation to tokens of this issuer")
	fs.StringVar(&r.sub, "sub", "", "revoke every token of this subject (sub claim)")
	fs.StringVar(&r.sub, "subject", "", "the same as --sub")
	fs.StringVar(&r.session, "session", "", "revoke the tokens of one session: their sid claim (with --iss)")
	fs.StringVar(&r.device, "device", "", "revoke the tokens of one device: their device claim (the issuer's device_claim); with --iss, of that issuer only")
	fs.Var(&r.assurance, "assurance-level", "with --sub: the subject's assurance was lowered to this acr value; on step-up routes that need a higher one, its tokens (with --issued-before, the earlier ones) are refused. \"\" for no level at all")
	fs.StringVar(&r.issuedBefore, "issued-before", "", "with --sub, --client, --session or --device: revoke only tokens issued before this RFC 3339 time (iat earlier; tokens without iat count as earlier), e.g. after a password change")
	fs.StringVar(&r.client, "client", "", "revoke every token of this client (client_id, else azp)")
	fs.StringVar(&r.scope, "scope", "", "revoke only this scope: the tokens keep their other scopes")
	fs.StringVar(&r.segment, "segment", "", "revoke only this segment: a scope-catalog segment name (billing), or a path prefix (/v1/payments)")
	fs.StringVar(&r.reason, "reason", "", "why (required): a ticket or incident reference; recorded and audited, never shown to clients")
	fs.StringVar(&r.until, "until", "", "when the revocation lapses: an RFC 3339 time (2026-12-01T00:00:00Z) or a duration from now (24h, 7d); default never")
}

func (r *revokeCmd) run(ctx context.Context, c *cli) int {
	const name = "revoke"
	req := &scopegatev1.RevokeRequest{Scope: r.scope, Segment: r.segment, Reason: r.reason}
	targets := 0
	if r.jti != "" {
		targets++
		if r.iss == "" {
			return c.usageError(name, "--jti needs --iss: a jti is unique only within its issuer")
		}
		req.Target = &scopegatev1.RevokeRequest_Token{Token: &scopegatev1.TokenTarget{Iss: r.iss, Jti: r.jti}}
	}
	if r.sub != "" {
		targets++
		req.Target, req.Issuer = &scopegatev1.RevokeRequest_Subject{Subject: r.sub}, r.iss
		if r.assurance.set {
			req.Target = &scopegatev1.RevokeRequest_Assurance{Assurance: &scopegatev1.AssuranceTarget{Subject: r.sub, AcrLevel: r.assurance.v}}
		}
	} else if r.assurance.set {
		return c.usageError(name, "--assurance-level goes with --sub: the subject whose assurance was lowered")
	}
	if r.device != "" {
		targets++
		req.Target, req.Issuer = &scopegatev1.RevokeRequest_DeviceId{DeviceId: r.device}, r.iss
	}
	if r.client != "" {
		targets++
		req.Target, req.Issuer = &scopegatev1.RevokeRequest_ClientId{ClientId: r.client}, r.iss
	}
	if r.session != "" {
		targets++
		if r.iss == "" {
			return c.usageError(name, "--session needs --iss: a sid is unique only within its issuer")
		}
		req.Target, req.Issuer = &scopegatev1.RevokeRequest_SessionId{SessionId: r.session}, r.iss
	}
	if targets != 1 {
		return c.usageError(name, "give exactly one of --jti (with --iss), --sub, --client, --session (with --iss) or --device")
	}
	if r.issuedBefore != "" {
		if r.jti != "" {
			return c.usageError(name, "--issued-before goes with --sub, --client, --session or --device; --jti names one token already")
		}
		t, err := time.Parse(time.RFC3339Nano, r.issuedBefore)
		if err != nil {
			return c.usageError(name, "--issued-before %q: give an RFC 3339 time, e.g. 2026-12-02T10:00:00Z", r.issuedBefore)
		}
		req.IssuedBefore = timestamppb.New(t)
	}
	if r.scope != "" && r.segment != "" {
		return c.usageError(name, "give --scope or --segment, not both")
	}
	if strings.TrimSpace(r.reason) == "" {
		return c.usageError(name, "--reason is required: say why (a ticket or incident reference)")
	}
	if r.until != "" {
		now := time.Now
		if r.now != nil {
			now = r.now
		}
		t, err := parseUntil(r.until, now())
		if err != nil {
			return c.usageError(name, "--until: %v", err)
		}
		req.Until = timestamppb.New(t)
	}
	resp, err := r.call(ctx, c, func(ctx context.Context, a scopegatev1.AdminClient) (proto.Message, error) {
		return a.Revoke(ctx, req)
	})
	if err != nil {
		return r.finish(c, name, err)
	}
	rev := resp.(*scopegatev1.RevokeResponse).GetRevocation()
	if r.json {
		if err := printJSON(c.stdout, rev); err != nil {
			return c.fail(name, err)
		}
		return exitOK
	}
	fmt.Fprintln(c.stdout, rev.GetId())
	return exitOK
}

// parseUntil reads an RFC 3339 time, or a duration from now: Go's (90m,
// 24h) or whole days (7d).
func parseUntil(s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	if days, ok := strings.CutSuffix(s, "d"); ok {
		if n, err := strconv.Atoi(days); err == nil && n > 0 {
			return now.Add(time.Duration(n) * 24 * time.Hour), nil
		}
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return time.Time{}, fmt.Errorf("%q is neither an RFC 3339 time (2026-12-01T00:00:00Z) nor a positive duration (24h, 7d)", s)
	}
	return now.Add(d), nil
}

// unrevokeCmd removes a revocation by id.
type unrevokeCmd struct {
	adminClient
	id string
}

func (u *unrevokeCmd) define(fs *flag.FlagSet) {
	u.adminClient.define(fs)
	fs.StringVar(&u.id, "id", "", "id of the revocation to remove, as revoke or revocations list printed it (required)")
}

func (u *unrevokeCmd) run(ctx context.Context, c *cli) int {
	const name = "unrevoke"
	if u.id == "" {
		return c.usageError(name, "--id is required")
	}
	_, err := u.call(ctx, c, func(ctx context.Context, a scopegatev1.AdminClient) (proto.Message, error) {
		return a.Unrevoke(ctx, &scopegatev1.UnrevokeRequest{Id: u.id})
	})
	if err != nil {
		return u.finish(c, name, err)
	}
	if !u.json {
		fmt.Fprintf(c.stdout, "revocation %s removed\n", u.id)
	} else {
		fmt.Fprintf(c.stdout, "{\"id\": %q}\n", u.id)
	}
	return exitOK
}

// revocationsListCmd lists the revocations a server enforces.
type revocationsListCmd struct {
	adminClient
}

func (l *revocationsListCmd) run(ctx context.Context, c *cli) int {
	const name = "revocations list"
	resp, err := l.call(ctx, c, func(ctx context.Context, a scopegatev1.AdminClient) (proto.Message, error) {
		return a.ListRevocations(ctx, &scopegatev1.ListRevocationsRequest{})
	})
	if err != nil {
		return l.finish(c, name, err)
	}
	list := resp.(*scopegatev1.ListRevocationsResponse)
	if l.json {
		if err := printJSON(c.stdout, list); err != nil {
			return c.fail(name, err)
		}
		return exitOK
	}
	printRevocations(c.stdout, list)
	return exitOK
}

func printRevocations(w io.Writer, list *scopegatev1.ListRevocationsResponse) {
	if t := list.GetSyncedAt(); t != nil {
		fmt.Fprintf(w, "synced at %s\n", t.AsTime().UTC().Format(time.RFC3339))
	} else {
		fmt.Fprintln(w, "never synced with the store")
	}
	if len(list.GetRevocations()) == 0 {
		fmt.Fprintln(w, "no revocations in force")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tKIND\tTARGET\tISSUER\tONLY\tUNTIL\tCREATED\tBY\tREASON")
	for _, r := range list.GetRevocations() {
		target := r.GetJti()
		switch r.GetKind() {
		case "subject":
			target = r.GetSubject()
		case "client":
			target = r.GetClientId()
		case "session":
			target = "sid " + r.GetSessionId()
			if r.GetSessionId() == "" {
				target = "sub " + r.GetSubject() + " (no sid)"
			}
		case "device":
			target = r.GetDeviceId()
		case "assurance":
			level := r.GetAcrLevel()
			if level == "" {
				level = "none"
			}
			target = r.GetSubject() + " (acr " + level + " on step-up routes)"
		}
		only := "-"
		if r.GetScope() != "" {
			only = "scope " + r.GetScope()
		} else if r.GetSegment() != "" {
			only = "segment " + r.GetSegment()
		}
		if ib := r.GetIssuedBefore(); ib != nil {
			before := "issued before " + ib.AsTime().UTC().Format(time.RFC3339)
			if only == "-" {
				only = before
			} else {
				only += ", " + before
			}
		}
		until := "never"
		if r.GetUntil() != nil {
			until = r.GetUntil().AsTime().UTC().Format(time.RFC3339)
		}
		created := ""
		if r.GetCreatedAt() != nil {
			created = r.GetCreatedAt().AsTime().UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.GetId(), r.GetKind(), target, dashIfEmpty(r.GetIssuer()), only, until, created, dashIfEmpty(r.GetCreatedBy()), r.GetReason())
	}
	tw.Flush()
}

func dashIfEmpty(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// optionalString is a string flag that records whether it was given, so
// that "" can be a value.
type optionalString struct {
	v   string
	set bool
}

func (o *optionalString) String() string { return o.v }

func (o *optionalString) Set(v string) error {
	o.v, o.set = v, true
	return nil
}
