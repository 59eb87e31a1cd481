package main

import (
	"bufio"
	"context"
	"encoding/json"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/scopegate/scopegate/decision"
	"github.com/scopegate/scopegate/decision/decisiontest"
	"github.com/scopegate/scopegate/decision/review"
	"github.com/scopegate/scopegate/store"
	"github.com/scopegate/scopegate/store/audit"
	"github.com/scopegate/scopegate/store/open"
	"github.com/scopegate/scopegate/store/usage"
)

const reviewPolicy = "decision/review/testdata/policy.yaml"

// reviewDeployment is what a running scopegate leaves behind for a
// review: a store file with usage (per day too) and a revocation, and an
// audit file, all written by the real pipeline (engine → audit Logger →
// file sink and usage Aggregator → bbolt) from decisions over several
// days.
type reviewDeployment struct {
	store, auditFile string
	now              time.Time
}

// pgReviewDSN returns a DSN of the test database in a schema of its own
// (search_path, as a deployment names it), dropped at cleanup, or skips.
func pgReviewDSN(t *testing.T) string {
	t.Helper()
	base := os.Getenv("SCOPEGATE_TEST_POSTGRES")
	if base == "" {
		t.Skip("SCOPEGATE_TEST_POSTGRES not set: skipping the review of a PostgreSQL deployment")
	}
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	schema := "scopegate_review_" + strings.ToLower(decisiontest.RandomID()[:12])
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+pgx.Identifier{schema}.Sanitize()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c, err := pgx.Connect(context.Background(), base)
		if err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
			return
		}
		defer c.Close(context.Background())
		if _, err := c.Exec(context.Background(), "DROP SCHEMA "+pgx.Identifier{schema}.Sanitize()+" CASCADE"); err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
		}
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}

// newReviewDeployment writes the deployment's data to a store file and an
// audit file, or with a postgres:// dsn to PostgreSQL only (usage,
// revocations and the audit table).
func newReviewDeployment(t *testing.T, dsn string) reviewDeployment {
	t.Helper()
	dir := t.TempDir()
	d := reviewDeployment{store: filepath.Join(dir, "scopegate.db"), auditFile: filepath.Join(dir, "audit.log")}
	if dsn != "" {
		d.store, d.auditFile = dsn, ""
	}
	// Days relative to today: the store keeps per-day counts for
	// usage.DailyRetention of its own clock.
	d.now = usage.DayOf(time.Now()).Add(12 * time.Hour)
	signer, err := decisiontest.NewECSigner("k1")
	if err != nil {
		t.Fatal(err)
	}
	pol, err := decision.LoadFile(repoPath(reviewPolicy), decision.CompileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	clock := d.now
	eng, err := decision.NewEngine(pol, decision.Options{Keys: decision.StaticKeyResolver(decision.StaticKeys{{Kid: signer.Kid, Alg: signer.Alg, Public: signer.Public()}}),
		Clock: func() time.Time { return clock }})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	ctx := context.Background()
	db, err := open.Open(ctx, d.store, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if m, ok := db.(store.Migrator); ok { // as serve does
		if err := m.Migrate(ctx); err != nil {
			t.Fatal(err)
		}
	}
	agg, err := usage.New(usage.Options{Store: db.(store.UsageStoreProvider).UsageStore(), FlushInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	var sink audit.Sink
	if d.auditFile != "" {
		sink, err = audit.NewFileSink(d.auditFile, audit.FileOptions{})
	} else {
		sink, err = db.(store.AuditSinkProvider).NewAuditSink()
	}
	if err != nil {
		t.Fatal(err)
	}
	l, err := audit.New(audit.Options{Sinks: []audit.Sink{sink}, Observer: agg})
	if err != nil {
		t.Fatal(err)
	}
	send := func(daysAgo, n int, client, scope, method, path string) {
		clock = d.now.AddDate(0, 0, -daysAgo)
		claims := decisiontest.StandardClaims("https://id.example.com/", "api", "alice", client, scope, time.Hour, clock)
		tok, err := signer.Mint(claims, nil)
		if err != nil {
			t.Fatal(err)
		}
		for range n {
			r := decision.Request{Method: method, Path: path, Authorization: "Bearer " + tok, AuthorizationCount: 1}
			dec := eng.Decide(ctx, &r)
			l.Record(ctx, audit.HTTP, &r, &dec, clock, "")
		}
	}
	send(3, 4, "keeper", "orders:read", "GET", "/r")
	send(1, 6, "keeper", "orders:read", "GET", "/r")
	send(2, 2, "segmented", "reports:read", "GET", "/r")
	send(1, 3, "legacy", "orders:v1", "GET", "/r")
	send(1, 2, "straddler", "orders:read payments:refund", "GET", "/r")
	send(0, 1, "rogue", "orders:write", "POST", "/w")
	if err := l.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := agg.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Revocations().Revoke(ctx, decision.Revocation{Kind: decision.RevokeClient, ClientID: "revoked", Reason: "INC-7", CreatedBy: "ops"}); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	return d
}

func (d reviewDeployment) run(t *testing.T, format, out string) {
	t.Helper()
	args := []string{"review", reviewPolicy, "--store", d.store, "-o", format, "--out", out, "--now", d.now.Format(time.RFC3339)}
	if d.auditFile != "" {
		args = append(args, "--audit", d.auditFile)
	}
	code, stdout, stderr := runCLI(t, "", args...)
	if code != exitOK {
		t.Fatalf("review -o %s: exit %d\n%s%s", format, code, stdout, stderr)
	}
}

func readReport(t *testing.T, path string) review.Report {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var r review.Report
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	return r
}

// TestReviewCommand: the report of a deployment agrees with the data the
// pipeline stored: usage counts, per-day counts, drift and straddles from
// the audit file, the revocation.
func TestReviewCommand(t *testing.T) {
	t.Run("store file and audit file", func(t *testing.T) { testReviewCommand(t, newReviewDeployment(t, "")) })
	t.Run("PostgreSQL", func(t *testing.T) { testReviewCommand(t, newReviewDeployment(t, pgReviewDSN(t))) })
}

func testReviewCommand(t *testing.T, d reviewDeployment) {
	out := filepath.Join(t.TempDir(), "review.json")
	d.run(t, "json", out)
	r := readReport(t, out)
	byClient := map[string]review.Client{}
	for _, c := range r.Clients {
		byClient[c.ClientID] = c
	}
	keeper := byClient["keeper"]
	if keeper.Uses != 10 || len(keeper.Daily) != 2 || keeper.Daily[0].Count != 4 || keeper.Daily[1].Count != 6 {
		t.Errorf("keeper: %d uses, daily %+v; want 10 uses over two days (4, 6)", keeper.Uses, keeper.Daily)
	}
	if want := d.now.AddDate(0, 0, -3).Format(time.DateOnly); len(keeper.Daily) > 0 && keeper.Daily[0].Day != want {
		t.Errorf("keeper's first day %s; want %s", keeper.Daily[0].Day, want)
	}
	rogue := byClient["rogue"]
	if rogue.Registered || len(rogue.Drift) != 1 || rogue.Drift[0].Scope != "orders:write" || len(rogue.Lines) != 1 || rogue.Lines[0].Action != review.Revoke {
		t.Errorf("rogue: %+v", rogue)
	}
	if st := byClient["straddler"].Straddles; len(st) != 1 || st[0].Count != 2 || strings.Join(st[0].Segments, ",") != "orders,payments" {
		t.Errorf("straddler's straddles %+v; want orders+payments twice", st)
	}
	if rv := byClient["revoked"].Revocations; len(rv) != 1 || len(r.Revocations) != 1 || r.Revocations[0].Reason != "INC-7" {
		t.Errorf("revocations %+v / %v", r.Revocations, rv)
	}
	if dep := byClient["legacy"].Deprecated; len(dep) != 1 || dep[0].Scope != "orders:v1" || dep[0].Count != 3 || dep[0].Sunset != "2027-06-30T00:00:00Z" {
		t.Errorf("legacy's deprecated scopes from the audit log: %+v; want orders:v1 three times, sunset 2027-06-30", dep)
	}
	for _, l := range byClient["legacy"].Lines {
		if l.Scope == "orders:v1" && (l.Action != review.Narrow || l.Count != 3) {
			t.Errorf("legacy orders:v1: %+v", l)
		}
	}

	if want := 1; len(r.Sources.Audit) != want {
		t.Errorf("audit sources %v; want one", r.Sources.Audit)
	}
	code, _, stderr := runCLI(t, "", "review", reviewPolicy, "--audit", "audit.log")
	if code != exitUsage || !strings.Contains(stderr, "give --store") {
		t.Errorf("review without --store: exit %d, %s", code, stderr)
	}
	code, _, stderr = runCLI(t, "", "review", reviewPolicy, "--store", d.store, "-o", "pdf")
	if code != exitUsage || !strings.Contains(stderr, "markdown, json or html") {
		t.Errorf("review -o pdf: exit %d, %s", code, stderr)
	}
}

// chromium returns the browser binary, or skips the test saying why.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("SCOPEGATE_TEST_CHROMIUM") == "1" {
		t.Fatal("SCOPEGATE_TEST_CHROMIUM=1 but no chromium on PATH: apt-get install -y chromium")
	}
	t.Skip("no chromium on PATH (apt-get install -y chromium, or set SCOPEGATE_TEST_CHROMIUM=1 to require it): skipping the browser test of the review page")
	return ""
}

// dumpDOM loads url in headless Chromium and returns the DOM after its
// scripts ran.
func dumpDOM(t *testing.T, browser, url string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
		"--user-data-dir="+t.TempDir(), "--virtual-time-budget=5000", "--dump-dom", url)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("chromium --dump-dom %s: %v\n%s", url, err, stderr.String())
	}
	return string(out)
}

var (
	reRows   = regexp.MustCompile(`(?s)<table id="lines".*?<tbody>(.*?)</tbody>`)
	reRow    = regexp.MustCompile(`(?s)<tr><td>([^<]*)</td><td><code>([^<]*)</code>.*?<td class="num" data-sort="(\d+)">`)
	reChart  = regexp.MustCompile(`<div class="chart" data-client="(\d+)" data-total="(\d+)" data-days="(\d+)">`)
	reBars   = regexp.MustCompile(`<rect [^>]*data-count="(\d+)"`)
	reJSUses = regexp.MustCompile(`<span id="js-uses">(\d+)</span>`)
)

// TestReviewPageInChromium opens the HTML review in a real headless
// Chromium: its script ran (totals it computes from the embedded data,
// one chart per client with a bar per day), a click on a column header
// sorts the table, and every number matches the JSON report.
func TestReviewPageInChromium(t *testing.T) {
	browser := chromium(t)
	d := newReviewDeployment(t, "")
	dir := t.TempDir()
	page, js := filepath.Join(dir, "review.html"), filepath.Join(dir, "review.json")
	d.run(t, "html", page)
	d.run(t, "json", js)
	r := readReport(t, js)

	dom := dumpDOM(t, browser, "file://"+page)
	if !strings.Contains(dom, `data-rendered="true"`) {
		t.Fatal("the page's script did not run to its end")
	}
	m := reJSUses.FindStringSubmatch(dom)
	if m == nil || m[1] != strconv.FormatUint(r.Summary.Uses, 10) || r.Summary.Uses == 0 {
		t.Errorf("uses computed in the page %v; JSON summary.uses %d", m, r.Summary.Uses)
	}
	charts := reChart.FindAllStringSubmatch(dom, -1)
	if len(charts) != len(r.Clients) {
		t.Fatalf("%d charts drawn for %d clients", len(charts), len(r.Clients))
	}
	bars := 0
	for _, ch := range charts {
		i, _ := strconv.Atoi(ch[1])
		var total uint64
		for _, p := range r.Clients[i].Daily {
			total += p.Count
		}
		if ch[2] != strconv.FormatUint(total, 10) || ch[3] != strconv.Itoa(len(r.Clients[i].Daily)) {
			t.Errorf("chart of %s: total %s over %s days; JSON daily sums to %d over %d", r.Clients[i].ClientID, ch[2], ch[3], total, len(r.Clients[i].Daily))
		}
		bars += len(r.Clients[i].Daily)
	}
	var drawn uint64
	for _, b := range reBars.FindAllStringSubmatch(dom, -1) {
		n, _ := strconv.ParseUint(b[1], 10, 64)
		drawn += n
	}
	var daily uint64
	for _, c := range r.Clients {
		for _, p := range c.Daily {
			daily += p.Count
		}
	}
	if got := len(reBars.FindAllString(dom, -1)); got != bars || drawn != daily || daily == 0 {
		t.Errorf("%d bars drawn summing to %d; JSON has %d days summing to %d", got, drawn, bars, daily)
	}

	// The rows as the JSON lists them, then sorted by uses, highest first.
	type row struct {
		key   string
		count uint64
	}
	var want []row
	for _, c := range r.Clients {
		for _, l := range c.Lines {
			want = append(want, row{c.ClientID + " " + l.Scope, l.Count})
		}
	}
	rows := func(dom string) []row {
		t.Helper()
		body := reRows.FindStringSubmatch(dom)
		if body == nil {
			t.Fatal("no lines table in the page")
		}
		var out []row
		for _, m := range reRow.FindAllStringSubmatch(body[1], -1) {
			n, _ := strconv.ParseUint(m[3], 10, 64)
			out = append(out, row{m[1] + " " + m[2], n})
		}
		return out
	}
	if got := rows(dom); !slices.Equal(got, want) {
		t.Errorf("rows before sorting\n got %v\nwant %v", got, want)
	}
	slices.SortStableFunc(want, func(a, b row) int { return int(b.count) - int(a.count) })
	sorted := rows(dumpDOM(t, browser, "file://"+page+"#sort=lines:4:desc"))
	counts := func(rs []row) []uint64 {
		var out []uint64
		for _, r := range rs {
			out = append(out, r.count)
		}
		return out
	}
	if !slices.Equal(counts(sorted), counts(want)) || len(sorted) != len(want) {
		t.Errorf("uses after two clicks on the Uses header\n got %v\nwant %v", counts(sorted), counts(want))
	}
	if slices.Equal(counts(sorted), counts(rows(dom))) {
		t.Error("sorting changed nothing: the fixture must have rows out of order")
	}
}

// TestAuditExport: the evidence export of one client from the audit file
// the pipeline wrote: a header, the client's grants before its first
// access, one line per access with the scopes used and the grant behind
// each, and a summary that counts them.
func TestAuditExport(t *testing.T) {
	t.Run("audit file", func(t *testing.T) { testAuditExport(t, newReviewDeployment(t, "")) })
	t.Run("PostgreSQL", func(t *testing.T) { testAuditExport(t, newReviewDeployment(t, pgReviewDSN(t))) })
}

func testAuditExport(t *testing.T, d reviewDeployment) {
	out := filepath.Join(t.TempDir(), "evidence.jsonl")
	src := []string{"--audit", d.auditFile}
	if d.auditFile == "" {
		src = []string{"--store", d.store}
	}
	code, stdout, stderr := runCLI(t, "", append([]string{"audit", "export", reviewPolicy, "--client", "keeper", "--out", out,
		"--from", d.now.AddDate(0, 0, -2).Format(time.RFC3339)}, src...)...)
	if code != exitOK {
		t.Fatalf("audit export: exit %d\n%s%s", code, stdout, stderr)
	}
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var kinds []string
	var accesses int
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var line map[string]any
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Fatalf("not JSON: %s", sc.Text())
		}
		if line["version"] != float64(1) {
			t.Errorf("line without version 1: %s", sc.Text())
		}
		kind, _ := line["kind"].(string)
		if len(kinds) == 0 || kinds[len(kinds)-1] != kind {
			kinds = append(kinds, kind)
		}
		switch kind {
		case "grant":
			if line["approved_by"] != "dana" || line["justification"] != "order history" || line["approved_at"] != "2026-01-12T00:00:00Z" {
				t.Errorf("grant line %s", sc.Text())
			}
		case "access":
			accesses++
			g, _ := line["grants"].([]any)
			used, _ := line["scopes_used"].([]any)
			if line["client_id"] != "keeper" || len(used) != 1 || used[0] != "orders:read" || len(g) != 1 {
				t.Errorf("access line %s", sc.Text())
			} else if gm := g[0].(map[string]any); gm["approved_by"] != "dana" || gm["active_at_time"] != true {
				t.Errorf("grant behind the access %v", gm)
			}
		case "summary":
			if line["accesses"] != float64(6) || line["allowed"] != float64(6) || line["clients"] != float64(1) {
				t.Errorf("summary %s; want 6 accesses (the 4 before --from left out)", sc.Text())
			}
		}
	}
	if want := []string{"export", "grant", "access", "summary"}; !slices.Equal(kinds, want) {
		t.Errorf("line kinds %v; want %v", kinds, want)
	}
	if accesses != 6 {
		t.Errorf("%d accesses; want 6", accesses)
	}
	code, _, stderr = runCLI(t, "", "audit", "export", reviewPolicy)
	if code != exitUsage || !strings.Contains(stderr, "--audit FILE") {
		t.Errorf("export without a source: exit %d, %s", code, stderr)
	}
	code, _, stderr = runCLI(t, "", append([]string{"audit", "export", reviewPolicy, "--from", "yesterday"}, src...)...)
	if code != exitUsage || !strings.Contains(stderr, "--from yesterday") {
		t.Errorf("export --from yesterday: exit %d, %s", code, stderr)
	}
}
