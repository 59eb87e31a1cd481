package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/scopegate/scopegate/decision"
	"github.com/scopegate/scopegate/decision/review"
	"github.com/scopegate/scopegate/store"
	"github.com/scopegate/scopegate/store/audit"
	"github.com/scopegate/scopegate/store/usage"
)

// evidenceSources are the flags naming where usage, revocations and audit
// records are read from, shared by review and audit export.
type evidenceSources struct {
	storeDSN string
	audits   govListFlag
}

func (e *evidenceSources) define(fs *flag.FlagSet, storeUse string) {
	fs.StringVar(&e.storeDSN, "store", "", storeUse)
	fs.Var(&e.audits, "audit", "an audit file written by serve --audit file:PATH (JSON lines); its rotated backups PATH.1, PATH.2, ... are read too (repeatable)")
}

// open opens --store, if given; close releases it.
func (e *evidenceSources) open(ctx context.Context) (st store.Store, close func(), err error) {
	if e.storeDSN == "" {
		return nil, func() {}, nil
	}
	st, err = openStoreForRead(ctx, e.storeDSN)
	if err != nil {
		return nil, nil, err
	}
	return st, func() { st.Close() }, nil
}

// load parses --now (default: the current time), loads the policy and
// opens --store; on failure it has printed why and returns the exit code.
func (e *evidenceSources) load(ctx context.Context, c *cli, name, nowFlag, policy string) (now time.Time, pol *decision.Policy, st store.Store, closeStore func(), code int) {
	now, err := govNowFlag(nowFlag)
	if err != nil {
		return now, nil, nil, nil, c.usageError(name, "%v", err)
	}
	if now.IsZero() {
		now = time.Now().UTC()
	}
	if pol, err = decision.LoadFile(repoPath(policy), decision.CompileOptions{}); err != nil {
		return now, nil, nil, nil, c.policyError(name, err)
	}
	if st, closeStore, err = e.open(ctx); err != nil {
		return now, nil, nil, nil, c.usageError(name, "%v", err)
	}
	return now, pol, st, closeStore, exitOK
}

// readAudit calls fn with every decision record q selects, from each
// --audit file and from the store's audit log when it has one; a record
// found in two sources (a deployment writing both) is passed once. It
// returns the sources read.
func (e *evidenceSources) readAudit(ctx context.Context, st store.Store, q audit.Query, fn func(*audit.Record) error) ([]string, error) {
	seen := map[string]bool{}
	once := func(r *audit.Record) error {
		if r.DecisionID != "" {
			if seen[r.DecisionID] {
				return nil
			}
			seen[r.DecisionID] = true
		}
		return fn(r)
	}
	var sources []string
	for _, f := range e.audits {
		path := repoPath(f)
		if err := audit.ReadFiles(path, q, once); err != nil {
			return nil, fmt.Errorf("--audit %s: %w", f, err)
		}
		sources = append(sources, "file:"+f)
	}
	if ar, ok := st.(store.AuditReader); ok {
		found, err := ar.ReadAudit(ctx, q, once)
		if err != nil {
			return nil, fmt.Errorf("--store %s: %w", store.RedactDSN(e.storeDSN), err)
		}
		if found {
			sources = append(sources, "store:"+store.RedactDSN(e.storeDSN))
		}
	}
	return sources, nil
}

// reviewCmd prints the periodic access review of every client.
type reviewCmd struct {
	policy     string
	src        evidenceSources
	format     string
	out        string
	unusedDays int
	renewDays  int
	now        string
}

func (k *reviewCmd) define(fs *flag.FlagSet) {
	fs.StringVar(&k.policy, "policy", "", "policy file (or give it as the argument)")
	k.src.define(fs, "the store serve --store persists usage and revocations in: a file path (bbolt) or a postgres:// URL; with PostgreSQL its audit table is read too")
	fs.StringVar(&k.format, "output", "markdown", "output format: markdown, json or html (one self-contained page)")
	fs.StringVar(&k.out, "out", "", "write the report to this file instead of standard output")
	fs.IntVar(&k.unusedDays, "unused-days", review.DefaultUnusedDays, "a granted scope not used for this many days is to be revoked (or the grant narrowed)")
	fs.IntVar(&k.renewDays, "renew-days", review.DefaultRenewDays, "a grant still in use that expires within this many days is to be renewed")
	fs.StringVar(&k.now, "now", "", "review as of this RFC 3339 time (default: now)")
}

func (k *reviewCmd) shorthands() map[string]string { return map[string]string{"output": "o"} }

func (k *reviewCmd) setArgs(args []string) error { return govPolicyArg(&k.policy, args) }

func (k *reviewCmd) run(ctx context.Context, c *cli) int {
	const name = "review"
	if !slices.Contains(review.Formats, k.format) {
		return c.usageError(name, "-o %q: want markdown, json or html", k.format)
	}
	if k.unusedDays <= 0 || k.renewDays < 0 {
		return c.usageError(name, "--unused-days must be positive and --renew-days not negative")
	}
	if k.src.storeDSN == "" {
		return c.usageError(name, "give --store (the file or postgres:// URL serve --store writes usage to): without usage, every grant would look unused")
	}
	now, pol, st, closeStore, code := k.src.load(ctx, c, name, k.now, k.policy)
	if code != exitOK {
		return code
	}
	defer closeStore()
	in, err := k.input(ctx, st, pol, now)
	if err != nil {
		return c.fail(name, err)
	}
	var buf bytes.Buffer
	if err := review.Write(&buf, review.Build(in), k.format); err != nil {
		return c.fail(name, err)
	}
	if k.out == "" {
		_, err = c.stdout.Write(buf.Bytes())
	} else {
		err = os.WriteFile(k.out, buf.Bytes(), 0o644)
	}
	if err != nil {
		return c.fail(name, err)
	}
	return exitOK
}

// input reads the store and the audit sources into a review.Input.
func (k *reviewCmd) input(ctx context.Context, st store.Store, pol *decision.Policy, now time.Time) (review.Input, error) {
	since := now.Add(-time.Duration(k.unusedDays) * 24 * time.Hour)
	in := review.Input{Policy: pol, PolicyPath: k.policy, Now: now, UnusedDays: k.unusedDays, RenewDays: k.renewDays,
		AuditFrom: since, UsageSource: "store:" + store.RedactDSN(k.src.storeDSN)}
	up, ok := st.(store.UsageStoreProvider)
	if !ok {
		return in, errors.New("--store: this backend keeps no usage")
	}
	us := up.UsageStore()
	tallies, err := us.LoadUsage(ctx, "")
	if err != nil {
		return in, err
	}
	for _, t := range tallies {
		in.Uses = append(in.Uses, review.Use{ClientID: t.ClientID, Scope: t.Scope, Count: t.Count, LastUsed: t.LastUsed, LastSeen: t.LastSeen})
	}
	days, err := us.LoadDaily(ctx, "", usage.DayOf(since))
	if err != nil {
		return in, err
	}
	for _, d := range days {
		in.Days = append(in.Days, review.DayUse{ClientID: d.ClientID, Scope: d.Scope, Day: d.Day, Count: d.Count})
	}
	revs, err := st.Revocations().ListRevocations(ctx)
	if err != nil {
		return in, fmt.Errorf("--store: revocations: %w", err)
	}
	in.Revocations = revs
	in.AuditSource, err = k.src.readAudit(ctx, st, audit.Query{From: since}, func(r *audit.Record) error {
		// Only records with drift or a deprecated scope say anything the
		// usage store does not: keep those alone, so a long log costs
		// little memory.
		if r.Drift == nil && len(r.DeprecatedScopesUsed) == 0 {
			return nil
		}
		a := review.Access{Time: r.Time, ClientID: r.ClientID, Allow: r.Decision == "allow", Deprecated: r.DeprecatedScopesUsed}
		if r.Drift != nil {
			a.Extra, a.Segments = r.Drift.Extra, r.Drift.Segments
		}
		in.Accesses = append(in.Accesses, a)
		return nil
	})
	return in, err
}
