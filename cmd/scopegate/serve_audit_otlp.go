package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strings"

	"github.com/scopegate/scopegate/server"
	"github.com/scopegate/scopegate/server/auditotlp"
	"github.com/scopegate/scopegate/store/audit"
)

// otlpAuditFlags are the serve flags of the otlp audit sink and of the
// masking applied to every sink.
type otlpAuditFlags struct {
	endpoint    string
	insecure    bool
	caFile      string
	headersFile string
	buffer      int
	mask        string
	maskKeyFile string
}

func (o *otlpAuditFlags) define(fs *flag.FlagSet) {
	fs.StringVar(&o.endpoint, "audit-otlp-endpoint", "", "OpenTelemetry collector receiving --audit otlp records over OTLP/gRPC: host:port, http://host:port (plaintext) or https://host:port; default $OTEL_EXPORTER_OTLP_LOGS_ENDPOINT, else $OTEL_EXPORTER_OTLP_ENDPOINT, else localhost:4317")
	fs.BoolVar(&o.insecure, "audit-otlp-insecure", false, "send --audit otlp records in plaintext (a collector on loopback or in the same pod); default TLS, unless the endpoint is an http:// URL")
	fs.StringVar(&o.caFile, "audit-otlp-ca-file", "", "PEM CA certificates the collector's TLS certificate must chain to (default: the system's)")
	fs.StringVar(&o.headersFile, "audit-otlp-headers-file", "", "file of headers sent with every export, key=value per line (e.g. authorization=Bearer%20...); default $OTEL_EXPORTER_OTLP_LOGS_HEADERS or $OTEL_EXPORTER_OTLP_HEADERS. Never logged")
	fs.IntVar(&o.buffer, "audit-otlp-buffer", auditotlp.DefaultBufferSize, "allows the otlp sink holds while the collector is slow or down, and as many denies and admin records; beyond it records are dropped and counted")
	fs.StringVar(&o.mask, "audit-mask", "", "record fields masked in every sink: FIELD=ACTION or claim:NAME=ACTION, comma separated, ACTION drop or hash, e.g. client_id=hash,claim:sub=drop,source_ip=drop")
	fs.StringVar(&o.maskKeyFile, "audit-mask-key-file", "", "file holding the HMAC key of --audit-mask hash rules (at least 32 random bytes, the same on every replica so hashes match)")
}

// applyMask sets the masking of ac from the flags.
func (o *otlpAuditFlags) applyMask(ac *server.AuditConfig) error {
	rules, err := audit.ParseMask(o.mask)
	if err != nil {
		return fmt.Errorf("--audit-mask: %w", err)
	}
	var key []byte
	if o.maskKeyFile != "" {
		if len(rules) == 0 {
			return errors.New("--audit-mask-key-file is set but --audit-mask has no rule: add rules, or drop the key file")
		}
		b, err := os.ReadFile(repoPath(o.maskKeyFile))
		if err != nil {
			return fileError("--audit-mask-key-file", o.maskKeyFile, err)
		}
		key = bytes.TrimRight(b, "\r\n")
		if len(key) < audit.MinMaskKeyBytes {
			return fmt.Errorf("--audit-mask-key-file %s holds %d bytes; the mask key needs at least %d random bytes (e.g. openssl rand -base64 48 > %s)", o.maskKeyFile, len(key), audit.MinMaskKeyBytes, o.maskKeyFile)
		}
	}
	if err := audit.ValidateMask(rules, key); err != nil {
		if len(key) == 0 && strings.Contains(err.Error(), "needs a key") {
			return fmt.Errorf("--audit-mask: %w: give --audit-mask-key-file", err)
		}
		return fmt.Errorf("--audit-mask: %w", err)
	}
	ac.Mask, ac.MaskKey = rules, key
	return nil
}

// sink opens the otlp sink from the flags and the standard OTEL_*
// variables env reads.
func (o *otlpAuditFlags) sink(env func(string) (string, bool), log *slog.Logger) (*auditotlp.Sink, error) {
	if o.buffer <= 0 || o.buffer > auditotlp.MaxBufferSize {
		return nil, fmt.Errorf("--audit-otlp-buffer %d: give 1 to %d records (default %d)", o.buffer, auditotlp.MaxBufferSize, auditotlp.DefaultBufferSize)
	}
	raw, from := o.endpoint, "--audit-otlp-endpoint"
	for _, name := range []string{"OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"} {
		if raw != "" {
			break
		}
		if v, ok := env(name); ok && strings.TrimSpace(v) != "" {
			raw, from = v, name
		}
	}
	if raw == "" {
		raw = "localhost:4317"
	}
	hostport, plaintext, set, err := auditotlp.ParseEndpoint(raw)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", from, err)
	}
	opts := auditotlp.Options{Endpoint: hostport, Insecure: o.insecure || (set && plaintext), BufferSize: o.buffer, Logger: log}
	if o.insecure && set && !plaintext {
		return nil, fmt.Errorf("%s is an https:// URL but --audit-otlp-insecure asks for plaintext: choose one", from)
	}
	if o.caFile != "" {
		if opts.Insecure {
			return nil, errors.New("--audit-otlp-ca-file is set but the sink sends in plaintext (--audit-otlp-insecure or an http:// endpoint): choose one")
		}
		pem, err := os.ReadFile(repoPath(o.caFile))
		if err != nil {
			return nil, fileError("--audit-otlp-ca-file", o.caFile, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--audit-otlp-ca-file %s holds no PEM certificate: give the CA certificates in PEM", o.caFile)
		}
		opts.TLS = &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool}
	}
	if opts.Headers, err = o.headers(env); err != nil {
		return nil, err
	}
	if v, ok := env("OTEL_SERVICE_NAME"); ok && strings.TrimSpace(v) != "" {
		opts.ServiceName = strings.TrimSpace(v)
	}
	if v, ok := env("OTEL_RESOURCE_ATTRIBUTES"); ok {
		if opts.Resource, err = resourceAttributes(v); err != nil {
			return nil, fmt.Errorf("OTEL_RESOURCE_ATTRIBUTES: %w", err)
		}
	}
	s, err := auditotlp.New(opts)
	if err != nil {
		return nil, fmt.Errorf("--audit otlp: %w", err)
	}
	return s, nil
}

// headers reads --audit-otlp-headers-file, else the standard variables.
// No error shows a header's value.
func (o *otlpAuditFlags) headers(env func(string) (string, bool)) (map[string]string, error) {
	if o.headersFile != "" {
		b, err := os.ReadFile(repoPath(o.headersFile))
		if err != nil {
			return nil, fileError("--audit-otlp-headers-file", o.headersFile, err)
		}
		h, err := auditotlp.ParseHeaders(string(b))
		if err != nil {
			return nil, fmt.Errorf("--audit-otlp-headers-file %s: %w", o.headersFile, err)
		}
		return h, nil
	}
	for _, name := range []string{"OTEL_EXPORTER_OTLP_LOGS_HEADERS", "OTEL_EXPORTER_OTLP_HEADERS"} {
		if v, ok := env(name); ok {
			h, err := auditotlp.ParseHeaders(v)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", name, err)
			}
			return h, nil
		}
	}
	return nil, nil
}

// resourceAttributes parses OTEL_RESOURCE_ATTRIBUTES: key=value pairs,
// comma separated, values percent-encoded.
func resourceAttributes(s string) (map[string]string, error) {
	out := map[string]string{}
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		k, v, ok := strings.Cut(part, "=")
		if !ok || strings.TrimSpace(k) == "" {
			return nil, fmt.Errorf("%q is not key=value (e.g. deployment.environment.name=prod)", part)
		}
		dv, err := url.PathUnescape(strings.TrimSpace(v))
		if err != nil {
			return nil, fmt.Errorf("the value of %s is not percent-encoded correctly", k)
		}
		out[strings.TrimSpace(k)] = dv
	}
	return out, nil
}
