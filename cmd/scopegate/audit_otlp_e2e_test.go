//go:build unix

package main

import (
	"bufio"
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	logspb "go.opentelemetry.io/proto/otlp/logs/v1"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/scopegate/scopegate/server/servertest/freeport"
)

// collectorEnv names the OpenTelemetry Collector binary (built with the
// collector's builder: OTLP receiver, file exporter) the end-to-end test
// of --audit otlp runs.
const collectorEnv = "SCOPEGATE_TEST_OTELCOL"

// collector is one run of a real OpenTelemetry Collector: OTLP/gRPC on
// addr, every log record to out as OTLP JSON lines.
type collector struct {
	cmd *exec.Cmd
	out string
	log bytes.Buffer
}

// startCollector runs the collector on addr, exporting to a new file of
// dir, and waits until it accepts connections.
func startCollector(t *testing.T, bin, dir, addr string, run int) *collector {
	t.Helper()
	c := &collector{out: filepath.Join(dir, fmt.Sprintf("logs-%d.json", run))}
	cfg := fmt.Sprintf(`receivers:
  otlp:
    protocols:
      grpc:
        endpoint: %s
exporters:
  file:
    path: %s
    flush_interval: 50ms
service:
  telemetry:
    logs:
      level: warn
    metrics:
      level: none
  pipelines:
    logs:
      receivers: [otlp]
      exporters: [file]
`, addr, c.out)
	cfgPath := filepath.Join(dir, fmt.Sprintf("otelcol-%d.yaml", run))
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	c.cmd = exec.Command(bin, "--config", cfgPath)
	c.cmd.Stdout, c.cmd.Stderr = &c.log, &c.log
	if err := c.cmd.Start(); err != nil {
		t.Fatalf("start the collector %s: %v", bin, err)
	}
	t.Cleanup(func() { c.stop(t) })
	deadline := time.Now().Add(20 * time.Second)
	for {
		conn, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			conn.Close()
			return c
		}
		if time.Now().After(deadline) {
			t.Fatalf("the collector does not listen on %s: %s", addr, c.log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop ends the collector as an orchestrator does (SIGTERM: it flushes
// its exporters) and waits for it.
func (c *collector) stop(t *testing.T) {
	if c.cmd.ProcessState != nil {
		return
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- c.cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		_ = c.cmd.Process.Kill()
		<-done
		t.Errorf("the collector did not stop on SIGTERM: %s", c.log.String())
	}
}

// logRecords reads every log record the collector runs wrote to dir.
func logRecords(t *testing.T, dir string) (recs []*logspb.LogRecord, raw []byte) {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "logs-*.json"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		// The exporter may be writing: read whole lines only.
		b = b[:bytes.LastIndexByte(b, '\n')+1]
		raw = append(raw, b...)
		sc := bufio.NewScanner(bytes.NewReader(b))
		sc.Buffer(nil, 64<<20)
		for sc.Scan() {
			var ld logspb.LogsData
			if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(sc.Bytes(), &ld); err != nil {
				t.Fatalf("%s: not OTLP JSON: %v\n%s", f, err, sc.Bytes())
			}
			for _, rl := range ld.ResourceLogs {
				svc := ""
				for _, kv := range rl.GetResource().GetAttributes() {
					if kv.Key == "service.name" {
						svc = kv.Value.GetStringValue()
					}
				}
				if svc != "scopegate" {
					t.Errorf("resource service.name %q, want scopegate", svc)
				}
				for _, sl := range rl.ScopeLogs {
					recs = append(recs, sl.LogRecords...)
				}
			}
		}
	}
	return recs, raw
}

// waitRecords waits until the collector runs wrote want records.
func waitRecords(t *testing.T, dir string, want int) []*logspb.LogRecord {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		recs, _ := logRecords(t, dir)
		if len(recs) >= want || time.Now().After(deadline) {
			return recs
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestAuditOTLPCollector runs scopegate serve with --audit otlp against
// a real OpenTelemetry Collector: records arrive with the documented
// attributes, masked, with no token; none is lost while the collector
// restarts within the buffer's capacity; beyond it the drops are counted
// by kind in scopegate_audit_dropped_total.
func TestAuditOTLPCollector(t *testing.T) {
	bin := os.Getenv(collectorEnv)
	if bin == "" {
		t.Skipf("%s is not set: give the path of an OpenTelemetry Collector built with the OTLP receiver and the file exporter to run the --audit otlp end-to-end test", collectorEnv)
	}
	dir := t.TempDir()
	colAddr, grpcAddr, metricsAddr := freeport.Addr(t), freeport.Addr(t), freeport.Addr(t)
	col := startCollector(t, bin, dir, colAddr, 1)

	key := filepath.Join(dir, "mask.key")
	keyBytes := []byte("e2e-mask-key-0123456789abcdef0123456789")
	if err := os.WriteFile(key, keyBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	const capacity = 16
	logText, done, stop := serveInProcess(t, map[string]string{"OTEL_RESOURCE_ATTRIBUTES": "deployment.environment.name=e2e"},
		"--policy", examplePolicy(t), "--grpc-addr", grpcAddr, "--http-addr", "",
		"--metrics-addr", metricsAddr, "--log-level", "warn", "--watch-policy=false",
		"--audit", "otlp", "--audit-otlp-endpoint", "http://"+colAddr, "--audit-otlp-buffer", strconv.Itoa(capacity),
		"--audit-mask", "client_id=hash,claim:sub=drop,source_ip=drop", "--audit-mask-key-file", key)
	defer func() {
		stop()
		select {
		case code := <-done:
			if code != exitOK {
				t.Errorf("serve exited with %d: %s", code, logText())
			}
		case <-time.After(20 * time.Second):
			t.Error("serve did not stop")
		}
	}()
	tok := mint(t, "--scope", "orders:read")
	check := func(withToken bool) {
		t.Helper()
		args := []string{"client", "--addr", grpcAddr, "--path", "/orders/1", "--timeout", "5s"}
		want := exitDeny
		if withToken {
			args, want = append(args, "--token", tok), exitOK
		}
		if code, out, errs := runCLI(t, "", args...); code != want {
			t.Fatalf("client: exit %d, want %d\n%s%s", code, want, out, errs)
		}
	}
	waitServing(t, grpcAddr, done, logText)
	base := len(waitRecords(t, dir, 1)) // the readiness probe's own records

	// 1. N checks with the collector up: N records, documented
	// attributes, masked fields masked, no token anywhere.
	const n = 10
	for i := range n {
		check(i%2 == 0)
	}
	recs := waitRecords(t, dir, base+n)
	if len(recs) != base+n {
		t.Fatalf("%d records arrived, want %d", len(recs), base+n)
	}
	mac := hmac.New(sha256.New, keyBytes)
	mac.Write([]byte("web-app"))
	wantClient := "hmac:" + hex.EncodeToString(mac.Sum(nil)[:16])
	allows, denies := 0, 0
	for _, r := range recs[base:] {
		a := map[string]string{}
		for _, kv := range r.Attributes {
			a[kv.Key] = kv.Value.GetStringValue()
		}
		var body map[string]any
		if err := json.Unmarshal([]byte(r.Body.GetStringValue()), &body); err != nil {
			t.Fatalf("body is not the JSON record: %v", err)
		}
		if a["scopegate.api"] != "ext_authz" || a["scopegate.record.type"] != "decision" || a["scopegate.decision_id"] != body["decision_id"] || a["scopegate.route"] != "read-order" {
			t.Errorf("attributes %v, record %v", a, body)
		}
		if _, ok := body["subject"]; ok {
			t.Errorf("the subject was not dropped: %v", body)
		}
		if _, ok := body["source_ip"]; ok {
			t.Errorf("the source address was not dropped: %v", body)
		}
		switch a["scopegate.decision"] {
		case "allow":
			allows++
			if r.SeverityText != "INFO" || a["scopegate.reason"] != "ok" || a["scopegate.client_id"] != wantClient || body["client_id"] != wantClient {
				t.Errorf("allow: severity %q attributes %v record %v; want the client as %s", r.SeverityText, a, body, wantClient)
			}
		case "deny":
			denies++
			if r.SeverityText != "WARN" || a["scopegate.reason"] != "token_missing" {
				t.Errorf("deny: severity %q attributes %v", r.SeverityText, a)
			}
		}
	}
	if allows != n/2 || denies != n/2 {
		t.Errorf("%d allows and %d denies arrived, want %d of each", allows, denies, n/2)
	}
	_, raw := logRecords(t, dir)
	for _, secret := range []string{tok, strings.Split(tok, ".")[2], `"alice"`, `\"alice\"`, string(keyBytes)} {
		if bytes.Contains(raw, []byte(secret)) {
			t.Errorf("the collector's output holds %q", secret)
		}
	}

	// 2. The collector stops; M < capacity checks; it starts again on
	// the same port: all M arrive.
	col.stop(t)
	const m = capacity - 4
	for range m {
		check(false)
	}
	time.Sleep(300 * time.Millisecond) // the sink tries, fails and holds them
	col = startCollector(t, bin, dir, colAddr, 2)
	if recs := waitRecords(t, dir, base+n+m); len(recs) != base+n+m {
		t.Fatalf("after the restart %d records, want %d: records held during the outage were lost\n%s", len(recs), base+n+m, logText())
	}
	if got := auditDropped(t, metricsAddr, "deny", "sink_full"); got != 0 {
		t.Errorf("%v denies counted dropped within the capacity", got)
	}

	// 3. The collector stops again; more denies than the buffer holds:
	// capacity arrive after the restart, the rest are counted as drops.
	col.stop(t)
	const over = capacity + 9
	for range over {
		check(false)
	}
	deadline := time.Now().Add(10 * time.Second)
	for auditDropped(t, metricsAddr, "deny", "sink_full") < over-capacity && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond) // drops are reported at the next write or flush
	}
	if got := auditDropped(t, metricsAddr, "deny", "sink_full"); got != over-capacity {
		t.Errorf(`scopegate_audit_dropped_total{kind="deny",reason="sink_full"} = %v, want %d`, got, over-capacity)
	}
	startCollector(t, bin, dir, colAddr, 3)
	want := base + n + m + capacity
	recs = waitRecords(t, dir, want)
	if len(recs) != want {
		t.Errorf("after the second restart %d records, want %d (the buffer's %d)", len(recs), want, capacity)
	}
	t.Logf("%d records through three collector runs: %d probe, %d with the collector up, %d held over a restart, %d of %d held over a second (%v counted dropped)",
		len(recs), base, n, m, capacity, over, auditDropped(t, metricsAddr, "deny", "sink_full"))
}

// auditDropped scrapes scopegate_audit_dropped_total{kind, reason}.
func auditDropped(t *testing.T, addr, kind, reason string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	series := fmt.Sprintf(`scopegate_audit_dropped_total{kind=%q,reason=%q} `, kind, reason)
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, series); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				t.Fatalf("%s: %v", line, err)
			}
			return f
		}
	}
	t.Fatalf("no series %s in /metrics", series)
	return 0
}
