package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/scopegate/scopegate/server"
	"github.com/scopegate/scopegate/store"
	"github.com/scopegate/scopegate/store/open"
)

// adminFlags are serve's store, revocation and Admin API flags.
type adminFlags struct {
	storeDSN string
	// ownershipQueries are the PostgreSQL queries of owner lookups.
	ownershipQueries queryFlag
	adminAddr        string
	adminScope       string
	adminIssuers     listFlag
	adminTLSCert     string
	adminTLSKey      string
	adminClientCA    string
	revResync        time.Duration
	revStaleAfter    time.Duration
	storeMigrateMax  time.Duration
}

func (a *adminFlags) define(fs *flag.FlagSet) {
	fs.StringVar(&a.storeDSN, "store", "", "store: a postgres:// URL (shared by replicas: revocations, usage, audit, DPoP replay cache) or a file path (embedded, this node only); empty keeps revocations in memory")
	fs.StringVar(&a.adminAddr, "admin-addr", "", "address of the Admin API listener (revoke, reload, usage), e.g. 127.0.0.1:9193; empty disables it")
	fs.StringVar(&a.adminScope, "admin-scope", server.DefaultAdminScope, "scope an Admin API bearer token must carry (from one of the policy's issuers)")
	fs.Var(&a.adminIssuers, "admin-issuer", "only tokens of this issuer (exact iss, one of the policy's) are admin tokens; repeatable or comma-separated; unset accepts admin tokens from every issuer of the policy")
	fs.StringVar(&a.adminTLSCert, "admin-tls-cert", "", "PEM certificate of the Admin API listener (with --admin-tls-key); without it the listener is plain text")
	fs.StringVar(&a.adminTLSKey, "admin-tls-key", "", "PEM private key of --admin-tls-cert")
	fs.StringVar(&a.adminClientCA, "admin-client-ca", "", "PEM CA bundle: Admin API callers presenting a certificate it issued are authenticated by it (needs --admin-tls-cert)")
	fs.DurationVar(&a.revResync, "revocation-resync", store.DefaultRevocationResync, "how often the whole revocation list is reloaded from the store (heals missed notifications)")
	fs.DurationVar(&a.revStaleAfter, "revocation-stale-after", server.DefaultRevocationStaleAfter, "past this age of the last revocation sync, routes that require a high-risk scope deny with revocation_stale")
	fs.Var(&a.ownershipQueries, "ownership-query", "with a postgres:// --store, LOOKUP=SQL answers the policy's lookup LOOKUP from your own tables: $1 is the key, each row's first column an owner (repeatable; lookups without one use the table scopegate_ownership)")
	fs.DurationVar(&a.storeMigrateMax, "store-migrate-timeout", 10*time.Second, "how long to try creating the store's tables at start (an unreachable store is retried in the background)")
}

// open opens --store (nil when empty) and sets the revocation and admin
// configuration. The caller closes the store after the server stops.
func (a *adminFlags) open(ctx context.Context, cfg *server.Config, log *slog.Logger) (store.Store, error) {
	if a.revResync <= 0 || a.revStaleAfter <= 0 {
		return nil, fmt.Errorf("--revocation-resync and --revocation-stale-after must be positive (defaults %v, %v)", store.DefaultRevocationResync, server.DefaultRevocationStaleAfter)
	}
	cfg.Admin = server.AdminConfig{
		Addr: a.adminAddr, Scope: a.adminScope, Issuers: a.adminIssuers,
		TLSCertFile: a.adminTLSCert, TLSKeyFile: a.adminTLSKey, ClientCAFile: a.adminClientCA,
	}
	cfg.Revocation.Resync, cfg.Revocation.StaleAfter = a.revResync, a.revStaleAfter
	if a.storeDSN == "" {
		return nil, nil
	}
	var opts store.Options
	if len(a.ownershipQueries) > 0 {
		opts.Postgres.OwnershipQueries = a.ownershipQueries
	}
	st, err := open.Open(ctx, a.storeDSN, opts)
	if err != nil {
		return nil, fmt.Errorf("--store %s: %w", store.RedactDSN(a.storeDSN), err)
	}
	// PostgreSQL: create the tables now if missing. A database that is
	// down at start is not fatal: the server starts with the revocations
	// failing closed for high-risk routes, and catches up when it returns.
	if m, ok := st.(store.Migrator); ok {
		mctx, cancel := context.WithTimeout(ctx, a.storeMigrateMax)
		err := m.Migrate(mctx)
		cancel()
		if err != nil {
			log.Warn("store: could not create or check the tables; continuing with what the database has", "store", store.RedactDSN(a.storeDSN), "error", err)
		}
	}
	cfg.Revocation.Store = st.Revocations()
	cfg.Ownership = st.Ownership()
	// PostgreSQL: replicas share the DPoP replay cache. The bbolt file is
	// locked by one process, whose cache in memory already sees every
	// proof.
	if p, ok := st.(store.ReplayCacheProvider); ok {
		cfg.DPoPReplay = p.ReplayCache()
	}
	return st, nil
}

// queryFlag collects repeated --ownership-query LOOKUP=SQL values.
type queryFlag map[string]string

func (q *queryFlag) String() string {
	if q == nil || *q == nil {
		return ""
	}
	names := make([]string, 0, len(*q))
	for name := range *q {
		names = append(names, name)
	}
	slices.Sort(names)
	return strings.Join(names, ",")
}

// Type names the value in help (pflag.Value).
func (*queryFlag) Type() string { return "LOOKUP=SQL" }

func (q *queryFlag) Set(v string) error {
	name, sql, ok := strings.Cut(v, "=")
	if !ok || strings.TrimSpace(name) == "" || strings.TrimSpace(sql) == "" {
		return fmt.Errorf("want LOOKUP=SQL, e.g. orders=\"SELECT customer_id FROM orders WHERE id = $1\"")
	}
	if *q == nil {
		*q = map[string]string{}
	}
	(*q)[strings.TrimSpace(name)] = sql
	return nil
}

// listFlag collects a repeatable flag whose values may also be
// comma-separated (so one environment variable or config key can carry
// several).
type listFlag []string

func (l *listFlag) String() string {
	if l == nil {
		return ""
	}
	return strings.Join(*l, ",")
}

func (l *listFlag) Set(v string) error {
	for part := range strings.SplitSeq(v, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			return fmt.Errorf("%q has an empty entry: give values separated by commas", v)
		}
		*l = append(*l, part)
	}
	return nil
}
