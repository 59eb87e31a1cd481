package harness

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/scopegate/scopegate/decision"
)

// Report is the result of a run, as printed and as written to --json.
// Latencies are in microseconds.
type Report struct {
	Time       string      `json:"time"`
	GoVersion  string      `json:"go_version"`
	OS         string      `json:"os"`
	Arch       string      `json:"arch"`
	CPUs       int         `json:"cpus"`
	GOMAXPROCS int         `json:"gomaxprocs"`
	LoadAvg    LoadAvg     `json:"load_avg"`
	Config     RunConfig   `json:"config"`
	TokenBytes int         `json:"token_bytes"`
	Results    []APIResult `json:"results"`
	// MintSeconds is how long minting the tokens took (not measured load).
	MintSeconds       float64      `json:"mint_seconds"`
	MissPoolExhausted uint64       `json:"miss_pool_exhausted,omitempty"`
	MintErrors        uint64       `json:"mint_errors,omitempty"`
	TokenCache        *CacheStats  `json:"token_cache,omitempty"`
	Reloads           *ReloadStats `json:"reloads,omitempty"`
	Memory            *MemoryStats `json:"memory,omitempty"`
	Notes             []string     `json:"notes,omitempty"`
	// DPoP is set with the dpop shape.
	DPoP *DPoPStats `json:"dpop,omitempty"`
	// Introspection is set with --opaque.
	Introspection *IntrospectionStats `json:"introspection,omitempty"`
	// Warnings name the figures the machine or the rounds' spread make
	// unreliable.
	Warnings []string `json:"warnings,omitempty"`
}

// LoadAvg is the machine's load average (1, 5 and 15 minutes) when the
// run started (before it minted its tokens) and when its rounds ended;
// empty where unavailable.
type LoadAvg struct {
	Start []float64 `json:"start,omitempty"`
	End   []float64 `json:"end,omitempty"`
}

// RunConfig records the run's settings.
type RunConfig struct {
	Target         string   `json:"target"`
	API            string   `json:"api"`
	Concurrency    int      `json:"concurrency"`
	Conns          int      `json:"conns"`
	DurationSec    float64  `json:"duration_seconds,omitempty"`
	Requests       int      `json:"requests,omitempty"`
	WarmupSec      float64  `json:"warmup_seconds"`
	TimeoutSec     float64  `json:"timeout_seconds"`
	Rounds         int      `json:"rounds"`
	Mix            string   `json:"mix"`
	Tokens         int      `json:"tokens"`
	MissRate       float64  `json:"miss_rate"`
	Mint           string   `json:"mint"`
	Key            string   `json:"key"`
	Routes         int      `json:"routes"`
	Clients        int      `json:"clients"`
	Revocations    int      `json:"revocations"`
	TokenCacheSize int64    `json:"token_cache_size,omitempty"`
	Noop           bool     `json:"noop"`
	Opaque         bool     `json:"opaque,omitempty"`
	SoakReloadSec  float64  `json:"soak_reload_seconds,omitempty"`
	Shapes         []string `json:"shapes"`
	Segments       int      `json:"segments,omitempty"`
}

// APIResult is one API's figures: scopegate's, the no-op's, and the
// ratios between them.
type APIResult struct {
	// Shape is the load shape; Floor what it was measured against (noop,
	// cached, no-reload).
	Shape     string        `json:"shape"`
	Floor     string        `json:"floor"`
	API       string        `json:"api"`
	Scopegate ServerResult  `json:"scopegate"`
	Noop      *ServerResult `json:"noop,omitempty"`
	// Ratio is scopegate / no-op: above 1 for RPS is faster than the
	// no-op, below 1 for latencies is faster.
	Ratio *Ratios `json:"ratio,omitempty"`
	// Targets are the shape's bounds on the ratios, each with its verdict.
	Targets []TargetResult `json:"targets,omitempty"`
	// Batch is the evaluations per request of an AuthZEN batch (RPS counts
	// requests).
	Batch int `json:"batch,omitempty"`
	// Audit is the audit shape's audit log counters at the end of its
	// series (records written to the stream, dropped, failed, waiting).
	Audit *AuditStats `json:"audit,omitempty"`
}

// AuditStats are the audit shape's audit log counters.
type AuditStats struct {
	Written  uint64 `json:"written"`
	Dropped  uint64 `json:"dropped"`
	Failed   uint64 `json:"failed"`
	Buffered int    `json:"buffered"`
}

// ServerResult is one server's figures over every round.
type ServerResult struct {
	Server   string `json:"server"`
	Requests uint64 `json:"requests"`
	Errors   uint64 `json:"errors"`
	Wrong    uint64 `json:"wrong"`
	// Internal counts in-band internal errors: the server answered, failed
	// closed and said why (e.g. the check timeout under overload).
	Internal uint64  `json:"internal"`
	Seconds  float64 `json:"seconds"`
	RPS      float64 `json:"rps"`
	Latency  Latency `json:"latency_us"`
	// Misses is how many requests carried a never-seen token.
	Misses        uint64               `json:"misses"`
	Kinds         map[string]kindStats `json:"kinds"`
	Rounds        []RoundResult        `json:"rounds"`
	FirstError    string               `json:"first_error,omitempty"`
	FirstWrong    string               `json:"first_wrong,omitempty"`
	FirstInternal string               `json:"first_internal,omitempty"`
	Prime         *PrimeResult         `json:"prime,omitempty"`
}

// Latency holds quantiles, in microseconds.
type Latency struct {
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	P999 float64 `json:"p99_9"`
	Max  float64 `json:"max"`
	Mean float64 `json:"mean"`
}

// RoundResult is one round's throughput and tail.
type RoundResult struct {
	RPS   float64 `json:"rps"`
	P99US float64 `json:"p99_us"`
}

// PrimeResult is the unmeasured pass that puts every token in the cache;
// its answers are checked too.
type PrimeResult struct {
	Requests   uint64 `json:"requests"`
	Errors     uint64 `json:"errors"`
	Wrong      uint64 `json:"wrong"`
	FirstError string `json:"first_error,omitempty"`
	FirstWrong string `json:"first_wrong,omitempty"`
}

// Ratios are scopegate's figures divided by the no-op's.
type Ratios struct {
	RPS  float64 `json:"rps"`
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	P999 float64 `json:"p99_9"`
}

// CacheStats are the in-process engine's token cache counters over the
// whole run (priming and warmup included).
type CacheStats struct {
	Hits   uint64 `json:"hits"`
	Misses uint64 `json:"misses"`
}

// DPoPStats are the proofs of a run with the dpop shape: signed before
// the rounds, and by the client during them when those ran out.
type DPoPStats struct {
	Ahead       int     `json:"signed_ahead"`
	SignSeconds float64 `json:"sign_seconds"`
	Inline      uint64  `json:"signed_inline"`
	SignErrors  uint64  `json:"sign_errors,omitempty"`
}

// IntrospectionStats are the opaque-token lookups of an --opaque run:
// answered from the token cache, sent to the stub authorization server,
// and the calls the stub counted (fewer than misses when concurrent
// lookups of one token were coalesced).
type IntrospectionStats struct {
	Hits   uint64 `json:"hits"`
	Misses uint64 `json:"misses"`
	Calls  uint64 `json:"calls"`
}

// ReloadStats count --soak-reload reloads.
type ReloadStats struct {
	Reloads uint64 `json:"reloads"`
	Failed  uint64 `json:"failed"`
}

// MemoryStats is the process's memory after the run, after a GC.
// ClientTokenBytes is what the load generator itself holds in tokens, to
// subtract when judging the server.
type MemoryStats struct {
	RSSBytes         uint64 `json:"rss_bytes"`
	PeakRSSBytes     uint64 `json:"peak_rss_bytes"`
	HeapAllocBytes   uint64 `json:"heap_alloc_bytes"`
	HeapInuseBytes   uint64 `json:"heap_inuse_bytes"`
	GoSysBytes       uint64 `json:"go_sys_bytes"`
	ClientTokenBytes uint64 `json:"client_token_bytes"`
	// The in-process server's token cache after the run: its entries,
	// the bytes it charges them, its budget, and the growth of the heap
	// and RSS since the server started (every pre-minted token already
	// held) per entry.
	CacheEntries      int     `json:"cache_entries,omitempty"`
	CacheBytes        int64   `json:"cache_bytes,omitempty"`
	CacheMaxBytes     int64   `json:"cache_max_bytes,omitempty"`
	CacheEvictions    uint64  `json:"cache_evictions,omitempty"`
	HeapPerEntryBytes float64 `json:"heap_per_entry_bytes,omitempty"`
	RSSPerEntryBytes  float64 `json:"rss_per_entry_bytes,omitempty"`
}

// perEntry fills the token cache figures from the engine, against the
// memory at the baseline.
func (m *MemoryStats) perEntry(baseline *MemoryStats, e *decision.Engine) {
	u := e.TokenCacheUsage()
	m.CacheEntries, m.CacheBytes, m.CacheMaxBytes, m.CacheEvictions = e.TokenCacheEntries(), u.Bytes, u.MaxBytes, u.Evictions
	if baseline == nil || m.CacheEntries == 0 {
		return
	}
	n := float64(m.CacheEntries)
	m.HeapPerEntryBytes = (float64(m.HeapAllocBytes) - float64(baseline.HeapAllocBytes)) / n
	m.RSSPerEntryBytes = (float64(m.RSSBytes) - float64(baseline.RSSBytes)) / n
}

func newReport(cfg *Config, now time.Time) *Report {
	r := &Report{
		Time: now.UTC().Format(time.RFC3339), GoVersion: runtime.Version(), OS: runtime.GOOS, Arch: runtime.GOARCH,
		CPUs: runtime.NumCPU(), GOMAXPROCS: runtime.GOMAXPROCS(0),
		Config: RunConfig{
			Target: cfg.Target, API: cfg.API, Concurrency: cfg.Concurrency, Conns: cfg.Conns,
			Requests: cfg.Requests, WarmupSec: cfg.Warmup.Seconds(), TimeoutSec: cfg.Timeout.Seconds(), Rounds: cfg.Rounds, Mix: cfg.Mix.String(),
			Tokens: cfg.Tokens, MissRate: cfg.MissRate, Mint: cfg.Mint, Key: cfg.Key, Routes: cfg.Routes, Clients: cfg.Clients,
			Revocations: cfg.Revocations, TokenCacheSize: cfg.TokenCacheSize, Noop: cfg.Noop, Opaque: cfg.Opaque, SoakReloadSec: cfg.SoakReload.Seconds(),
			Shapes: cfg.shapes(), Segments: cfg.Segments,
		},
	}
	if cfg.Requests == 0 {
		r.Config.DurationSec = cfg.Duration.Seconds()
	}
	return r
}

func (r *Report) note(s string) { r.Notes = append(r.Notes, s) }

func (r *Report) warn(s string) { r.Warnings = append(r.Warnings, s) }

// Failed returns an error when any response was wrong or any call failed,
// priming included; nil for a clean run.
func (r *Report) Failed() error {
	var errs []error
	for _, a := range r.Results {
		for _, s := range []*ServerResult{&a.Scopegate, a.Noop} {
			if s == nil {
				continue
			}
			if s.Wrong > 0 {
				errs = append(errs, fmt.Errorf("%s %s: %d wrong decisions (first: %s)", a.name(), s.Server, s.Wrong, s.FirstWrong))
			}
			if s.Errors > 0 {
				errs = append(errs, fmt.Errorf("%s %s: %d failed calls (first: %s)", a.name(), s.Server, s.Errors, s.FirstError))
			}
			if p := s.Prime; p != nil && (p.Wrong > 0 || p.Errors > 0) {
				errs = append(errs, fmt.Errorf("%s %s priming: %d wrong decisions, %d failed calls (first: %s%s)", a.name(), s.Server, p.Wrong, p.Errors, p.FirstWrong, p.FirstError))
			}
		}
	}
	return errors.Join(errs...)
}

func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

func serverResultOf(name string, p *phaseResult, rounds []RoundResult) ServerResult {
	h := p.hist
	s := ServerResult{
		Server: name, Requests: p.requests, Errors: p.errors, Wrong: p.wrong, Internal: p.internal, Seconds: p.elapsed.Seconds(), RPS: p.rps(),
		Latency: Latency{P50: us(h.Quantile(0.50)), P90: us(h.Quantile(0.90)), P99: us(h.Quantile(0.99)),
			P999: us(h.Quantile(0.999)), Max: us(h.Max()), Mean: us(h.Mean())},
		Misses: p.misses, Kinds: map[string]kindStats{}, Rounds: rounds, FirstError: p.firstErr, FirstWrong: p.firstWrong,
		FirstInternal: p.firstInternal,
	}
	for i, k := range kinds {
		s.Kinds[k] = p.kinds[i]
	}
	return s
}

func roundOf(p *phaseResult) RoundResult {
	return RoundResult{RPS: p.rps(), P99US: us(p.hist.Quantile(0.99))}
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

func ratiosOf(s, n *ServerResult) *Ratios {
	return &Ratios{RPS: ratio(s.RPS, n.RPS), P50: ratio(s.Latency.P50, n.Latency.P50), P90: ratio(s.Latency.P90, n.Latency.P90),
		P99: ratio(s.Latency.P99, n.Latency.P99), P999: ratio(s.Latency.P999, n.Latency.P999)}
}

// fmtUS prints microseconds with a unit that keeps three digits.
func fmtUS(v float64) string {
	switch {
	case v >= 10_000:
		return strconv.FormatFloat(v/1000, 'f', 1, 64) + "ms"
	case v >= 1000:
		return strconv.FormatFloat(v/1000, 'f', 2, 64) + "ms"
	case v >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64) + "µs"
	default:
		return strconv.FormatFloat(v, 'f', 1, 64) + "µs"
	}
}

func (r *Report) print(w io.Writer) {
	c := r.Config
	target := c.Target
	if target == "" {
		target = "in-process"
	}
	size := fmt.Sprintf("%d requests", c.Requests)
	if c.Requests == 0 {
		size = r.durationText()
	}
	fmt.Fprintf(w, "\nscopegate bench: %s, concurrency %d over %d connections, %s per server in %d alternating rounds\n",
		target, c.Concurrency, c.Conns, size, c.Rounds)
	fmt.Fprintf(w, "mix %s; %d tokens (%s, %d bytes), miss rate %g; policy: %d routes, %d clients, %d revocations\n",
		c.Mix, c.Tokens, c.Key, r.TokenBytes, c.MissRate, c.Routes, c.Clients, c.Revocations)
	fmt.Fprintf(w, "machine: %d CPUs, GOMAXPROCS %d, %s; load average %s at start, %s at end\n\n",
		r.CPUs, r.GOMAXPROCS, r.GoVersion, fmtLoad(r.LoadAvg.Start), fmtLoad(r.LoadAvg.End))
	tw := newTable(w, "api", "server", "requests", "rps", "p50", "p90", "p99", "p99.9", "max", "errors", "internal", "wrong")
	for _, a := range r.Results {
		for _, s := range []*ServerResult{&a.Scopegate, a.Noop} {
			if s == nil {
				continue
			}
			tw.row(a.name(), s.Server, strconv.FormatUint(s.Requests, 10), strconv.FormatFloat(s.RPS, 'f', 0, 64),
				fmtUS(s.Latency.P50), fmtUS(s.Latency.P90), fmtUS(s.Latency.P99), fmtUS(s.Latency.P999), fmtUS(s.Latency.Max),
				strconv.FormatUint(s.Errors, 10), strconv.FormatUint(s.Internal, 10), strconv.FormatUint(s.Wrong, 10))
		}
		if a.Ratio != nil {
			x := func(v float64) string { return strconv.FormatFloat(v, 'f', 2, 64) + "x" }
			tw.row(a.name(), "ratio", "", x(a.Ratio.RPS), x(a.Ratio.P50), x(a.Ratio.P90), x(a.Ratio.P99), x(a.Ratio.P999), "", "", "", "")
		}
	}
	tw.flush()
	for _, a := range r.Results {
		fmt.Fprintf(w, "%s rounds (rps): scopegate %s", a.name(), fmtRounds(a.Scopegate.Rounds))
		if a.Noop != nil {
			fmt.Fprintf(w, "; %s %s", a.Noop.Server, fmtRounds(a.Noop.Rounds))
		}
		fmt.Fprintln(w)
		for _, t := range a.Targets {
			fmt.Fprintf(w, "%s target: %s\n", a.name(), t)
		}
	}
	for _, a := range r.Results {
		if s := a.Scopegate; s.Internal > 0 {
			fmt.Fprintf(w, "%s: %d in-band internal errors (the server failed closed), first: %s\n", a.API, s.Internal, s.FirstInternal)
		}
	}
	if r.TokenCache != nil {
		fmt.Fprintf(w, "token cache (whole run): %d hits, %d misses\n", r.TokenCache.Hits, r.TokenCache.Misses)
	}
	if r.Introspection != nil {
		fmt.Fprintf(w, "opaque tokens (whole run): %d cached, %d introspected, %d calls at the stub authorization server\n",
			r.Introspection.Hits, r.Introspection.Misses, r.Introspection.Calls)
	}
	if r.DPoP != nil {
		fmt.Fprintf(w, "DPoP proofs: %d signed before the rounds (%.1f s), %d by the client during them\n", r.DPoP.Ahead, r.DPoP.SignSeconds, r.DPoP.Inline)
	}
	if r.Reloads != nil {
		fmt.Fprintf(w, "policy reloads: %d (%d failed)\n", r.Reloads.Reloads, r.Reloads.Failed)
	}
	for _, a := range r.Results {
		if a.Audit != nil {
			fmt.Fprintf(w, "%s: audit records written %d, dropped %d, failed %d, waiting %d\n", a.name(), a.Audit.Written, a.Audit.Dropped, a.Audit.Failed, a.Audit.Buffered)
		}
	}
	if m := r.Memory; m != nil {
		fmt.Fprintf(w, "memory after the run: RSS %s (peak %s), Go heap %s in use; the load generator's tokens hold %s of it\n",
			mib(m.RSSBytes), mib(m.PeakRSSBytes), mib(m.HeapInuseBytes), mib(m.ClientTokenBytes))
		if m.CacheEntries > 0 {
			fmt.Fprintf(w, "token cache: %d entries, %s charged of %s (%d evictions); per cached token since start: heap %.0f bytes, RSS %.0f bytes\n",
				m.CacheEntries, mib(uint64(m.CacheBytes)), mib(uint64(m.CacheMaxBytes)), m.CacheEvictions, m.HeapPerEntryBytes, m.RSSPerEntryBytes)
		}
	}
	for _, n := range r.Notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
	for _, n := range r.Warnings {
		fmt.Fprintf(w, "WARNING: %s\n", n)
	}
}

func (r *Report) durationText() string {
	return time.Duration(r.Config.DurationSec * float64(time.Second)).String()
}

func fmtRounds(rs []RoundResult) string {
	parts := make([]string, len(rs))
	for i, r := range rs {
		parts[i] = strconv.FormatFloat(r.RPS, 'f', 0, 64)
	}
	return strings.Join(parts, " ")
}

func fmtLoad(l []float64) string {
	if len(l) == 0 {
		return "n/a"
	}
	parts := make([]string, len(l))
	for i, v := range l {
		parts[i] = strconv.FormatFloat(v, 'f', 2, 64)
	}
	return strings.Join(parts, " ")
}

func mib(b uint64) string { return strconv.FormatFloat(float64(b)/(1<<20), 'f', 1, 64) + " MiB" }

func (r *Report) json() ([]byte, error) {
	b, err := json.MarshalIndent(r, "", "  ")
	return append(b, '\n'), err
}

func (r *Report) writeJSON(path string) error {
	b, err := r.json()
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		return fmt.Errorf("write --json: %w", err)
	}
	return nil
}

// loadAvg reads the load average on Linux; nil elsewhere.
func loadAvg() []float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return nil
	}
	f := strings.Fields(string(b))
	var out []float64
	for i := 0; i < 3 && i < len(f); i++ {
		v, err := strconv.ParseFloat(f[i], 64)
		if err != nil {
			return nil
		}
		out = append(out, v)
	}
	return out
}

// readMemory collects a GC'd view of the process's memory.
func readMemory(toks *tokenSet) *MemoryStats {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	m := &MemoryStats{HeapAllocBytes: ms.HeapAlloc, HeapInuseBytes: ms.HeapInuse, GoSysBytes: ms.Sys}
	for _, set := range [][]string{toks.bearer, toks.bad, toks.fresh} {
		for _, t := range set {
			m.ClientTokenBytes += uint64(len(t)) + 16
		}
	}
	if f, err := os.Open("/proc/self/status"); err == nil {
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			line := sc.Bytes()
			if v, ok := statusKB(line, "VmRSS:"); ok {
				m.RSSBytes = v
			} else if v, ok := statusKB(line, "VmHWM:"); ok {
				m.PeakRSSBytes = v
			}
		}
	}
	return m
}

func statusKB(line []byte, key string) (uint64, bool) {
	rest, ok := bytes.CutPrefix(line, []byte(key))
	if !ok {
		return 0, false
	}
	f := strings.Fields(string(rest))
	if len(f) == 0 {
		return 0, false
	}
	v, err := strconv.ParseUint(f[0], 10, 64)
	if err != nil {
		return 0, false
	}
	return v << 10, true
}

// table prints aligned columns.
type table struct {
	w    io.Writer
	rows [][]string
}

func newTable(w io.Writer, header ...string) *table {
	return &table{w: w, rows: [][]string{header}}
}

func (t *table) row(cols ...string) { t.rows = append(t.rows, cols) }

func (t *table) flush() {
	widths := make([]int, len(t.rows[0]))
	for _, r := range t.rows {
		for i, c := range r {
			widths[i] = max(widths[i], len([]rune(c)))
		}
	}
	for _, r := range t.rows {
		var b strings.Builder
		for i, c := range r {
			pad := widths[i] - len([]rune(c))
			if i < 2 {
				b.WriteString(c + strings.Repeat(" ", pad))
			} else {
				b.WriteString(strings.Repeat(" ", pad) + c)
			}
			if i < len(r)-1 {
				b.WriteString("  ")
			}
		}
		fmt.Fprintln(t.w, strings.TrimRight(b.String(), " "))
	}
	fmt.Fprintln(t.w)
}
