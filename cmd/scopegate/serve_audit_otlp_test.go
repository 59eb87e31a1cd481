package main

import (
	"bytes"
	"flag"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/scopegate/scopegate/server"
	"github.com/scopegate/scopegate/server/auditotlp"
)

// applyAudit parses args as serve's audit flags and applies them with
// env as the environment.
func applyAudit(t *testing.T, env map[string]string, args ...string) (server.AuditConfig, error) {
	t.Helper()
	var a auditFlags
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	a.define(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	cfg := server.Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	err := a.apply(&cfg, &bytes.Buffer{}, nil, func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err == nil {
		t.Cleanup(func() { closeSinks(cfg.Audit.Sinks) })
	}
	return cfg.Audit, err
}

func TestAuditMaskFlags(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "mask.key")
	short := filepath.Join(dir, "short.key")
	if err := os.WriteFile(key, []byte(strings.Repeat("k", 40)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(short, []byte("kkkk"), 0o600); err != nil {
		t.Fatal(err)
	}
	ac, err := applyAudit(t, nil, "--audit", "off", "--audit-mask", "client_id=hash,claim:sub=drop", "--audit-mask-key-file", key)
	if err != nil {
		t.Fatal(err)
	}
	if len(ac.Mask) != 2 || len(ac.MaskKey) != 40 {
		t.Fatalf("mask %+v key %d bytes, want 2 rules and the key without its newline", ac.Mask, len(ac.MaskKey))
	}
	for name, c := range map[string]struct {
		args []string
		want string
	}{
		"typo":            {[]string{"--audit-mask", "clientid=drop"}, `--audit-mask: audit mask rule clientid: unknown record field "clientid"; did you mean "client_id"?`},
		"hash, no key":    {[]string{"--audit-mask", "client_id=hash"}, "needs a key"},
		"key, no rule":    {[]string{"--audit-mask-key-file", key}, "--audit-mask has no rule"},
		"short key":       {[]string{"--audit-mask", "client_id=hash", "--audit-mask-key-file", short}, "holds 4 bytes; the mask key needs at least 32"},
		"missing key":     {[]string{"--audit-mask", "client_id=hash", "--audit-mask-key-file", filepath.Join(dir, "none")}, "--audit-mask-key-file"},
		"otlp flag alone": {[]string{"--audit", "stdout", "--audit-otlp-endpoint", "c:4317"}, "--audit-otlp-endpoint is set but --audit \"stdout\" has no otlp"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := applyAudit(t, nil, c.args...)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("%v: %v, want an error containing %q", c.args, err, c.want)
			}
			if strings.Contains(err.Error(), strings.Repeat("k", 40)) {
				t.Fatalf("the error shows the key: %v", err)
			}
		})
	}
}

func TestAuditOTLPFlags(t *testing.T) {
	dir := t.TempDir()
	headers := filepath.Join(dir, "headers")
	if err := os.WriteFile(headers, []byte("# the collector's token\nAuthorization=Bearer%20file-secret\nx-tenant=a\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "bad")
	if err := os.WriteFile(bad, []byte("authorization Bearer file-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ac, err := applyAudit(t, map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317"}, "--audit", "stdout,otlp", "--audit-otlp-headers-file", headers)
	if err != nil {
		t.Fatal(err)
	}
	if len(ac.Sinks) != 2 || ac.Sinks[1].Name() != "otlp:127.0.0.1:4317" {
		t.Fatalf("sinks %v, want stdout and otlp:127.0.0.1:4317", ac.Sinks)
	}
	for name, c := range map[string]struct {
		env  map[string]string
		args []string
		want string
	}{
		"endpoint with a path":  {nil, []string{"--audit-otlp-endpoint", "http://c:4317/v1/logs"}, "--audit-otlp-endpoint: endpoint \"c:4317/v1/logs\" is not host:port"},
		"env endpoint":          {map[string]string{"OTEL_EXPORTER_OTLP_LOGS_ENDPOINT": "ftp://c"}, nil, "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT: endpoint"},
		"https and insecure":    {nil, []string{"--audit-otlp-endpoint", "https://c:4317", "--audit-otlp-insecure"}, "choose one"},
		"headers file":          {nil, []string{"--audit-otlp-headers-file", bad}, "entry 1 is not key=value"},
		"headers env":           {map[string]string{"OTEL_EXPORTER_OTLP_HEADERS": "a=1,broken"}, nil, "OTEL_EXPORTER_OTLP_HEADERS: headers: entry 2 is not key=value"},
		"buffer":                {nil, []string{"--audit-otlp-buffer", "0"}, "--audit-otlp-buffer 0: give 1 to"},
		"ca file, plaintext":    {nil, []string{"--audit-otlp-endpoint", "http://c:4317", "--audit-otlp-ca-file", headers}, "choose one"},
		"ca file without a PEM": {nil, []string{"--audit-otlp-endpoint", "c:4317", "--audit-otlp-ca-file", headers}, "holds no PEM certificate"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := applyAudit(t, c.env, append([]string{"--audit", "otlp"}, c.args...)...)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("%v: %v, want an error containing %q", c.args, err, c.want)
			}
			if strings.Contains(err.Error(), "secret") {
				t.Fatalf("the error shows a header value: %v", err)
			}
		})
	}
}

func TestParseOTLPHeaders(t *testing.T) {
	h, err := auditotlp.ParseHeaders("Authorization=Bearer%20abc, x-tenant = t1")
	if err != nil {
		t.Fatal(err)
	}
	if h["authorization"] != "Bearer abc" || h["x-tenant"] != "t1" || len(h) != 2 {
		t.Fatalf("headers %v", h)
	}
	if _, err := auditotlp.ParseHeaders("authorization=Bearer%zzsecret"); err == nil || strings.Contains(err.Error(), "secret") {
		t.Fatalf("a bad escape: %v, want an error without the value", err)
	}
	for in, want := range map[string]string{"c:4317": "c:4317", "http://c": "c:4317", "https://c:443/": "c:443"} {
		if got, _, _, err := auditotlp.ParseEndpoint(in); err != nil || got != want {
			t.Errorf("ParseEndpoint(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}
