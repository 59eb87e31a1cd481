package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"net/url"
	"strings"

	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"

	"github.com/scopegate/scopegate/server"
)

// tracingFlags turn on OpenTelemetry tracing (server.Tracing). The
// endpoint is a flag like every listener's address; sampling, the
// resource and the propagators come from the OpenTelemetry SDK's standard
// environment variables, so a mesh configures scopegate as it configures
// every other hop.
type tracingFlags struct {
	otlpEndpoint string
}

func (t *tracingFlags) define(fs *flag.FlagSet) {
	fs.StringVar(&t.otlpEndpoint, "otlp-endpoint", "", "OpenTelemetry collector to export a span per check to, over OTLP/gRPC: http://host:port (plaintext), https://host:port or host:port (TLS); empty turns tracing off. Sampling, resource and propagators: OTEL_TRACES_SAMPLER, OTEL_TRACES_SAMPLER_ARG, OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES, OTEL_PROPAGATORS")
}

// The standard OpenTelemetry variables read when tracing is on.
const (
	envTracesSampler    = "OTEL_TRACES_SAMPLER"
	envTracesSamplerArg = "OTEL_TRACES_SAMPLER_ARG"
	envServiceName      = "OTEL_SERVICE_NAME"
	envResourceAttrs    = "OTEL_RESOURCE_ATTRIBUTES"
	envPropagators      = "OTEL_PROPAGATORS"
)

// otlpOptions reads --otlp-endpoint: host:port is TLS, a URL says by its
// scheme (http is plaintext).
func otlpOptions(endpoint string) ([]otlptracegrpc.Option, error) {
	const forms = "give host:port (TLS), http://host:port (plaintext) or https://host:port"
	if !strings.Contains(endpoint, "://") {
		if _, port, err := net.SplitHostPort(endpoint); err != nil || port == "" {
			return nil, fmt.Errorf("--otlp-endpoint %q is not a collector address: %s", endpoint, forms)
		}
		return []otlptracegrpc.Option{otlptracegrpc.WithEndpoint(endpoint)}, nil
	}
	u, err := url.Parse(endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("--otlp-endpoint %q is not an OTLP/gRPC collector address: %s", endpoint, forms)
	}
	return []otlptracegrpc.Option{otlptracegrpc.WithEndpointURL(endpoint)}, nil
}

// check reports a --otlp-endpoint that cannot be used, before anything
// is opened.
func (t *tracingFlags) check() error {
	if t.otlpEndpoint == "" {
		return nil
	}
	_, err := otlpOptions(t.otlpEndpoint)
	return err
}

// apply fills cfg.Tracing with the OTLP exporter (which connects when it
// first exports: a collector that is down costs spans, never the start)
// and the OTEL_* settings; the server validates those, naming the
// variable of a value it cannot use. The server shuts the exporter down.
func (t *tracingFlags) apply(cfg *server.Config, env func(string) (string, bool)) error {
	if t.otlpEndpoint == "" {
		return nil
	}
	opts, err := otlpOptions(t.otlpEndpoint)
	if err != nil {
		return err
	}
	exp, err := otlptracegrpc.New(context.Background(), opts...)
	if err != nil {
		return fmt.Errorf("--otlp-endpoint %s: %w", t.otlpEndpoint, err)
	}
	get := func(name string) string { v, _ := env(name); return v }
	cfg.Tracing = server.Tracing{
		Exporter:           exp,
		Sampler:            get(envTracesSampler),
		SamplerArg:         get(envTracesSamplerArg),
		ServiceName:        get(envServiceName),
		ResourceAttributes: get(envResourceAttrs),
		Propagators:        get(envPropagators),
	}
	return nil
}

// closeTracing shuts down an exporter the server did not take (start-up
// failed before it did).
func closeTracing(cfg *server.Config) {
	if exp := cfg.Tracing.Exporter; exp != nil {
		_ = exp.Shutdown(context.Background())
	}
}
