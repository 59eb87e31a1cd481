package main

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"flag"
	"io"
	"os"
	"time"

	"github.com/scopegate/scopegate/decision"
	"github.com/scopegate/scopegate/decision/review"
	"github.com/scopegate/scopegate/store"
	"github.com/scopegate/scopegate/store/audit"
)

// evidenceVersion is the version of the evidence export format
// (docs/evidence.md). Fields may be added within a version; none is
// renamed, removed or changes meaning.
const evidenceVersion = 1

// auditExportCmd exports the audit records of a client, a patient or a
// time range, with the scopes each access used and the grants (approver,
// justification, dates) behind them: evidence for regulated APIs.
type auditExportCmd struct {
	policy  string
	src     evidenceSources
	client  string
	patient string
	from    string
	to      string
	out     string
	now     string
}

func (k *auditExportCmd) define(fs *flag.FlagSet) {
	fs.StringVar(&k.policy, "policy", "", "policy file whose grants are exported with the accesses (or give it as the argument)")
	k.src.define(fs, "a postgres:// URL whose audit table (serve --audit postgres) is read, or a store file (which holds no audit log)")
	fs.StringVar(&k.client, "client", "", "export only the accesses of this client_id")
	fs.StringVar(&k.patient, "patient", "", "export only the accesses concerning this patient (SMART on FHIR: the token's launch patient)")
	fs.StringVar(&k.from, "from", "", "export accesses at or after this RFC 3339 time")
	fs.StringVar(&k.to, "to", "", "export accesses before this RFC 3339 time")
	fs.StringVar(&k.out, "out", "", "write the export to this file instead of standard output")
	fs.StringVar(&k.now, "now", "", "the export's generated_at and grant activity, RFC 3339 (default: now)")
}

func (k *auditExportCmd) setArgs(args []string) error { return govPolicyArg(&k.policy, args) }

// The lines of an export, each a JSON object with version and kind.
type (
	evidenceHeader struct {
		Version     int           `json:"version"`
		Kind        string        `json:"kind"` // "export"
		GeneratedAt string        `json:"generated_at"`
		Policy      evidencePol   `json:"policy"`
		Query       evidenceQuery `json:"query"`
		Sources     []string      `json:"sources"`
	}
	evidencePol struct {
		Path    string `json:"path"`
		Version string `json:"version"`
	}
	evidenceQuery struct {
		ClientID string `json:"client_id,omitempty"`
		Patient  string `json:"patient,omitempty"`
		From     string `json:"from,omitempty"`
		To       string `json:"to,omitempty"`
	}
	evidenceGrant struct {
		Version       int    `json:"version"`
		Kind          string `json:"kind"` // "grant"
		ClientID      string `json:"client_id"`
		Scope         string `json:"scope,omitempty"`
		Segment       string `json:"segment,omitempty"`
		ApprovedBy    string `json:"approved_by"`
		Justification string `json:"justification"`
		ApprovedAt    string `json:"approved_at"`
		ExpiresAt     string `json:"expires_at"`
		Active        bool   `json:"active"`
	}
	evidenceAccess struct {
		Version       int              `json:"version"`
		Kind          string           `json:"kind"` // "access"
		Time          string           `json:"time"`
		DecisionID    string           `json:"decision_id"`
		RequestID     string           `json:"request_id,omitempty"`
		API           string           `json:"api"`
		ClientID      string           `json:"client_id"`
		Subject       string           `json:"subject"`
		Patient       string           `json:"patient,omitempty"`
		Decision      string           `json:"decision"`
		Reason        string           `json:"reason"`
		Method        string           `json:"method"`
		Path          string           `json:"path"`
		Route         string           `json:"route,omitempty"`
		ScopesGranted []string         `json:"scopes_granted"`
		ScopesUsed    []string         `json:"scopes_used"`
		Grants        []evidenceBehind `json:"grants"`
		PolicyVersion string           `json:"policy_version"`
	}
	// evidenceBehind is the grant behind one used scope of an access.
	evidenceBehind struct {
		Scope         string `json:"scope"`
		Via           string `json:"via"`
		From          string `json:"from"`
		ApprovedBy    string `json:"approved_by"`
		Justification string `json:"justification"`
		ApprovedAt    string `json:"approved_at"`
		ExpiresAt     string `json:"expires_at"`
		ActiveAtTime  bool   `json:"active_at_time"`
	}
	evidenceSummary struct {
		Version  int    `json:"version"`
		Kind     string `json:"kind"` // "summary"
		Accesses int    `json:"accesses"`
		Allowed  int    `json:"allowed"`
		Denied   int    `json:"denied"`
		Clients  int    `json:"clients"`
		First    string `json:"first,omitempty"`
		Last     string `json:"last,omitempty"`
	}
)

func rfc3339(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}

func optTime(flagName, s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, &flagErr{flagName, s}
	}
	return t, nil
}

type flagErr struct{ name, value string }

func (e *flagErr) Error() string {
	return "--" + e.name + " " + e.value + ": not an RFC 3339 time such as 2026-11-23T10:00:00Z"
}

func (k *auditExportCmd) run(ctx context.Context, c *cli) int {
	const name = "audit export"
	q := audit.Query{ClientID: k.client, Patient: k.patient}
	var err error
	if q.From, err = optTime("from", k.from); err != nil {
		return c.usageError(name, "%v", err)
	}
	if q.To, err = optTime("to", k.to); err != nil {
		return c.usageError(name, "%v", err)
	}
	if !q.From.IsZero() && !q.To.IsZero() && !q.From.Before(q.To) {
		return c.usageError(name, "--from %s is not before --to %s", k.from, k.to)
	}
	if len(k.src.audits) == 0 && k.src.storeDSN == "" {
		return c.usageError(name, "name the audit log: --audit FILE (serve --audit file:FILE) or --store postgres://... (serve --audit postgres)")
	}
	now, pol, st, closeStore, code := k.src.load(ctx, c, name, k.now, k.policy)
	if code != exitOK {
		return code
	}
	defer closeStore()

	var w io.Writer = c.stdout
	if k.out != "" {
		f, err := os.Create(k.out)
		if err != nil {
			return c.fail(name, err)
		}
		defer f.Close()
		w = f
	}
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	enc.SetEscapeHTML(false)
	ex := &exporter{pol: pol, now: now, enc: enc, granted: map[string]bool{}}
	var header bool
	writeHeader := func() error {
		header = true
		return enc.Encode(evidenceHeader{Version: evidenceVersion, Kind: "export", GeneratedAt: rfc3339(now),
			Policy:  evidencePol{Path: k.policy, Version: pol.Version},
			Query:   evidenceQuery{ClientID: k.client, Patient: k.patient, From: rfc3339(q.From), To: rfc3339(q.To)},
			Sources: sourcesOf(k.src)})
	}
	_, err = k.src.readAudit(ctx, st, q, func(r *audit.Record) error {
		if !header {
			if err := writeHeader(); err != nil {
				return err
			}
		}
		return ex.access(r)
	})
	if err == nil && !header {
		err = writeHeader()
	}
	if err == nil {
		err = ex.summary()
	}
	if err == nil {
		err = bw.Flush()
	}
	if err != nil {
		return c.fail(name, err)
	}
	return exitOK
}

// sourcesOf names the sources an export reads, before reading them.
func sourcesOf(e evidenceSources) []string {
	out := []string{}
	for _, f := range e.audits {
		out = append(out, "file:"+f)
	}
	if e.storeDSN != "" {
		out = append(out, "store:"+store.RedactDSN(e.storeDSN))
	}
	return out
}

// exporter writes the grant and access lines, and counts for the summary.
type exporter struct {
	pol     *decision.Policy
	now     time.Time
	enc     *json.Encoder
	granted map[string]bool // clients whose grants are written
	sum     evidenceSummary
}

// access writes r, preceded by its client's grants the first time the
// client appears.
func (x *exporter) access(r *audit.Record) error {
	if r.ClientID != "" && !x.granted[r.ClientID] {
		x.granted[r.ClientID] = true
		if err := x.grants(r.ClientID); err != nil {
			return err
		}
	}
	a := evidenceAccess{Version: evidenceVersion, Kind: "access", Time: rfc3339(r.Time), DecisionID: r.DecisionID, RequestID: r.RequestID,
		API: r.API, ClientID: r.ClientID, Subject: r.Subject, Patient: r.Patient, Decision: r.Decision, Method: r.Method, Path: r.Path,
		Route: r.Route, ScopesGranted: nonNil(r.ScopesGranted), ScopesUsed: nonNil(r.ScopesUsed),
		Grants: []evidenceBehind{}, PolicyVersion: r.PolicyVersion}
	if len(r.Reasons) > 0 {
		a.Reason = r.Reasons[0]
	}
	for _, s := range a.ScopesUsed {
		for _, g := range x.pol.GrantsCovering(r.ClientID, s) {
			a.Grants = append(a.Grants, evidenceBehind{Scope: s, Via: g.Via, From: cmp.Or(g.From, g.Grant.Scope, g.Grant.Segment),
				ApprovedBy: g.Grant.ApprovedBy, Justification: g.Grant.Justification, ApprovedAt: rfc3339(g.ApprovedAt),
				ExpiresAt: rfc3339(g.ExpiresAt), ActiveAtTime: g.ActiveAt(r.Time) && !r.Time.Before(g.ApprovedAt)})
		}
	}
	x.sum.Accesses++
	if r.Decision == "allow" {
		x.sum.Allowed++
	} else {
		x.sum.Denied++
	}
	if x.sum.First == "" {
		x.sum.First = a.Time
	}
	if a.Time > x.sum.Last {
		x.sum.Last = a.Time
	}
	return x.enc.Encode(a)
}

// grants writes every grant of client in the policy.
func (x *exporter) grants(client string) error {
	if x.pol.File == nil {
		return nil
	}
	for _, cs := range x.pol.File.Clients {
		if cs.ClientID != client {
			continue
		}
		for _, g := range cs.Grants {
			approved, _ := review.ParseGrantDate(g.ApprovedAt)
			expires, _ := review.ParseGrantDate(g.ExpiresAt)
			line := evidenceGrant{Version: evidenceVersion, Kind: "grant", ClientID: client, Scope: g.Scope, Segment: g.Segment,
				ApprovedBy: g.ApprovedBy, Justification: g.Justification, ApprovedAt: rfc3339(approved), ExpiresAt: rfc3339(expires),
				Active: expires.IsZero() || x.now.Before(expires)}
			if err := x.enc.Encode(line); err != nil {
				return err
			}
		}
	}
	return nil
}

func (x *exporter) summary() error {
	x.sum.Version, x.sum.Kind, x.sum.Clients = evidenceVersion, "summary", len(x.granted)
	return x.enc.Encode(x.sum)
}

// nonNil makes a missing list an empty one, so that every line has it.
func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
