package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/scopegate/scopegate/decision/decisiontest"
	"github.com/scopegate/scopegate/server"
	"github.com/scopegate/scopegate/server/servertest/freeport"
)

// EnvOtelcol names the OpenTelemetry Collector binary built from
// .ci/otelcol/manifest.yaml (.ci/otelcol/build prints its path).
const EnvOtelcol = "SCOPEGATE_TEST_OTELCOL"

// collectorConfig is a collector that writes every span it receives over
// OTLP/gRPC to a JSON file, one export request per line.
const collectorConfig = `receivers:
  otlp:
    protocols:
      grpc:
        endpoint: %s
exporters:
  file:
    path: %s
    format: json
    flush_interval: 100ms
service:
  telemetry:
    metrics:
      level: none
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [file]
`

// buildScopegate builds cmd/scopegate once per test binary.
var buildScopegate = sync.OnceValues(func() (string, error) {
	root, err := decisiontest.FindModuleRoot("")
	if err != nil {
		return "", err
	}
	dir, err := os.MkdirTemp("", "scopegate-e2e-bin-")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "scopegate")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/scopegate")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/scopegate: %v\n%s", err, out)
	}
	return bin, nil
})

// otlpSpan is a span as the collector's file exporter writes it (OTLP
// JSON: ids in hex).
type otlpSpan struct {
	TraceID      string     `json:"traceId"`
	SpanID       string     `json:"spanId"`
	ParentSpanID string     `json:"parentSpanId"`
	Name         string     `json:"name"`
	Kind         int        `json:"kind"`
	Attributes   []otlpAttr `json:"attributes"`
	resource     map[string]string
}

type otlpAttr struct {
	Key   string `json:"key"`
	Value struct {
		StringValue string `json:"stringValue"`
	} `json:"value"`
}

func attrMap(as []otlpAttr) map[string]string {
	m := map[string]string{}
	for _, a := range as {
		m[a.Key] = a.Value.StringValue
	}
	return m
}

// readSpans parses the file exporter's output.
func readSpans(t *testing.T, path string) []otlpSpan {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	var spans []otlpSpan
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, 16<<20)
	for sc.Scan() {
		var line struct {
			ResourceSpans []struct {
				Resource struct {
					Attributes []otlpAttr `json:"attributes"`
				} `json:"resource"`
				ScopeSpans []struct {
					Spans []otlpSpan `json:"spans"`
				} `json:"scopeSpans"`
			} `json:"resourceSpans"`
		}
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Fatalf("collector output line is not OTLP JSON: %v\n%s", err, sc.Bytes())
		}
		for _, rs := range line.ResourceSpans {
			res := attrMap(rs.Resource.Attributes)
			for _, ss := range rs.ScopeSpans {
				for _, s := range ss.Spans {
					s.resource = res
					spans = append(spans, s)
				}
			}
		}
	}
	return spans
}

// TestOtelcolTraces runs a real OpenTelemetry Collector (built with the
// collector's builder from .ci/otelcol/manifest.yaml) and the scopegate
// binary exporting to it with --otlp-endpoint, sends an ext_authz check
// and two forward-auth checks, each under a caller's traceparent, and
// reads the collector's file: every check's span is there, under the
// caller's trace and span, with the documented attributes and the
// resource from the OTEL_* variables; no token appears anywhere in it.
func TestOtelcolTraces(t *testing.T) {
	col := os.Getenv(EnvOtelcol)
	if col == "" {
		t.Skip("the real-collector test is off: set " + EnvOtelcol + " to the collector binary (.ci/otelcol/build builds it and prints its path; .ci/e2e does both)")
	}
	bin, err := buildScopegate()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(filepath.Dir(bin)) })
	root, err := decisiontest.FindModuleRoot("")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	spansFile := filepath.Join(dir, "spans.json")
	otlpAddr := freeport.Addr(t)
	cfgPath := filepath.Join(dir, "collector.yaml")
	if err := os.WriteFile(cfgPath, fmt.Appendf(nil, collectorConfig, otlpAddr, spansFile), 0o600); err != nil {
		t.Fatal(err)
	}
	var colOut syncBuffer
	colCmd := exec.Command(col, "--config=file:"+cfgPath)
	colCmd.Stdout, colCmd.Stderr = &colOut, &colOut
	startProcess(t, "otelcol", otlpAddr, colCmd, syscall.SIGTERM, colOut.String)

	grpcAddr, httpAddr := freeport.Addr(t), freeport.Addr(t)
	sg := exec.Command(bin, "serve", "--policy", filepath.Join(root, "examples", "policy.yaml"),
		"--grpc-addr", grpcAddr, "--http-addr", httpAddr, "--metrics-addr=", "--otlp-endpoint", "http://"+otlpAddr)
	sg.Env = append(os.Environ(),
		"OTEL_TRACES_SAMPLER=parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG=1",
		"OTEL_SERVICE_NAME=scopegate-e2e", "OTEL_RESOURCE_ATTRIBUTES=deployment.environment=e2e")
	var sgOut syncBuffer
	sg.Stdout, sg.Stderr = &sgOut, &sgOut
	startProcess(t, "scopegate", httpAddr, sg, syscall.SIGTERM, sgOut.String)

	signer, err := decisiontest.ExampleSigner("rsa")
	if err != nil {
		t.Fatal(err)
	}
	tok, err := signer.Mint(decisiontest.StandardClaims(exampleIssuer, exampleAudience, "alice", "orders-app", "orders:read", time.Hour, time.Now()), nil)
	if err != nil {
		t.Fatal(err)
	}
	// A well-formed token the issuer never signed: denied, and as secret.
	forged := tok[:strings.LastIndexByte(tok, '.')+1] + "c2lnbmF0dXJlLW5vdC1vdXJz"

	const (
		traceExtAuthz = "4bf92f3577b34da6a3ce929d0e0e4736"
		traceHTTP     = "0af7651916cd43dd8448eb211c80319c"
		traceDenied   = "5d2d4f1e9a8b7c6d5e4f3a2b1c0d9e8f"
		callerSpan    = "00f067aa0ba902b7"
	)
	parent := func(trace string) string { return "00-" + trace + "-" + callerSpan + "-01" }

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	resp, err := authv3.NewAuthorizationClient(conn).Check(ctx, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: "GET", Path: "/orders/1", Host: "orders.example.com",
			Headers: map[string]string{"authorization": "Bearer " + tok, "traceparent": parent(traceExtAuthz), "tracestate": "vendor=1"},
		}},
		Source: &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{Address: "127.0.0.1"}}}},
	}})
	if err != nil || resp.GetStatus().GetCode() != 0 {
		t.Fatalf("ext_authz check: %v %v\n%s", resp.GetStatus(), err, sgOut.String())
	}
	forwardAuth := func(authz, traceparent string, want int) {
		t.Helper()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+httpAddr+"/", nil)
		req.Header.Set("X-Forwarded-Method", "GET")
		req.Header.Set("X-Forwarded-Uri", "/orders/2")
		req.Header.Set("X-Forwarded-Host", "orders.example.com")
		req.Header.Set("Authorization", authz)
		req.Header.Set("Traceparent", traceparent)
		r, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		r.Body.Close()
		if r.StatusCode != want {
			t.Fatalf("forward-auth: status %d, want %d", r.StatusCode, want)
		}
	}
	forwardAuth("Bearer "+tok, parent(traceHTTP), http.StatusOK)
	forwardAuth("Bearer "+forged, parent(traceDenied), http.StatusUnauthorized)

	// Stopping scopegate flushes the spans it still holds.
	if err := sg.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}

	want := map[string]map[string]string{
		traceExtAuthz: {server.AttrAPI: "ext_authz", server.AttrDecision: "allow", server.AttrReason: "ok", server.AttrRoute: "read-order", server.AttrClientID: "orders-app"},
		traceHTTP:     {server.AttrAPI: "http", server.AttrDecision: "allow", server.AttrReason: "ok", server.AttrRoute: "read-order", server.AttrClientID: "orders-app"},
		traceDenied:   {server.AttrAPI: "http", server.AttrDecision: "deny", server.AttrReason: "token_invalid", server.AttrRoute: "read-order"},
	}
	var checks map[string]otlpSpan
	deadline := time.Now().Add(20 * time.Second)
	for {
		checks = map[string]otlpSpan{}
		for _, s := range readSpans(t, spansFile) {
			if s.Name == "scopegate.check" {
				checks[s.TraceID] = s
			}
		}
		if len(checks) >= len(want) || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if len(checks) != len(want) {
		t.Fatalf("the collector has %d check spans, want %d: %v\nscopegate:\n%s\ncollector:\n%s", len(checks), len(want), checks, sgOut.String(), colOut.String())
	}
	for trace, w := range want {
		s, ok := checks[trace]
		if !ok {
			t.Errorf("no span under the caller's trace %s; spans under %v", trace, checks)
			continue
		}
		if s.ParentSpanID != callerSpan {
			t.Errorf("trace %s: parent span %q, want the caller's %s", trace, s.ParentSpanID, callerSpan)
		}
		if s.Kind != 2 { // SPAN_KIND_SERVER
			t.Errorf("trace %s: span kind %d, want 2 (server)", trace, s.Kind)
		}
		a := attrMap(s.Attributes)
		for k, v := range w {
			if a[k] != v {
				t.Errorf("trace %s: %s = %q, want %q (attributes %v)", trace, k, a[k], v, a)
			}
		}
		if a[server.AttrPolicyVersion] == "" {
			t.Errorf("trace %s: no %s (attributes %v)", trace, server.AttrPolicyVersion, a)
		}
		if _, ok := w[server.AttrClientID]; !ok {
			if v, has := a[server.AttrClientID]; has {
				t.Errorf("trace %s: client id %q recorded for a token that did not verify", trace, v)
			}
		}
		if s.resource["service.name"] != "scopegate-e2e" || s.resource["deployment.environment"] != "e2e" {
			t.Errorf("trace %s: resource %v, want service.name scopegate-e2e and deployment.environment e2e from OTEL_*", trace, s.resource)
		}
	}
	raw, err := os.ReadFile(spansFile)
	if err != nil {
		t.Fatal(err)
	}
	sig := tok[strings.LastIndexByte(tok, '.')+1:]
	for what, secret := range map[string]string{"the token": tok, "the token's signature": sig, "the forged token": forged, "an authorization header": "Bearer"} {
		if bytes.Contains(raw, []byte(secret)) {
			t.Errorf("the collector's output contains %s", what)
		}
	}
}
