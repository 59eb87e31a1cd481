package main

import (
	"strings"
	"testing"
)

// TestServeTracingSettings: serve refuses a collector address or an
// OTEL_* value it cannot use, naming the flag or the variable, before
// anything is opened; without --otlp-endpoint the OTEL_* variables are
// not read.
func TestServeTracingSettings(t *testing.T) {
	pol := "../../examples/policy.yaml"
	for name, tc := range map[string]struct {
		args []string
		env  map[string]string
		want string
	}{
		"bad scheme":      {[]string{"--otlp-endpoint", "grpc://collector:4317"}, nil, `--otlp-endpoint "grpc://collector:4317" is not an OTLP/gRPC collector address`},
		"no port":         {[]string{"--otlp-endpoint", "collector"}, nil, `--otlp-endpoint "collector" is not a collector address`},
		"bad ratio":       {[]string{"--otlp-endpoint", "http://127.0.0.1:4317"}, map[string]string{"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "5%"}, "OTEL_TRACES_SAMPLER_ARG"},
		"bad sampler":     {[]string{"--otlp-endpoint", "http://127.0.0.1:4317"}, map[string]string{"OTEL_TRACES_SAMPLER": "xray"}, "OTEL_TRACES_SAMPLER"},
		"bad propagator":  {[]string{"--otlp-endpoint", "http://127.0.0.1:4317"}, map[string]string{"OTEL_PROPAGATORS": "jaeger"}, "OTEL_PROPAGATORS"},
		"endpoint in env": {nil, map[string]string{"SCOPEGATE_OTLP_ENDPOINT": "ftp://x:1"}, `--otlp-endpoint "ftp://x:1"`},
	} {
		t.Run(name, func(t *testing.T) {
			args := append([]string{"serve", "--policy", pol, "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--metrics-addr="}, tc.args...)
			code, _, errs := runEnv(t, tc.env, args...)
			if code != exitUsage || !strings.Contains(errs, tc.want) {
				t.Errorf("exit %d, stderr %q; want %d naming %q", code, errs, exitUsage, tc.want)
			}
		})
	}
}
