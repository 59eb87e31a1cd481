package main

import (
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"strings"
	"time"

	"github.com/scopegate/scopegate/server"
)

// layeredCommand is a command whose flags may also come from SCOPEGATE_*
// environment variables and a configuration file (server.ApplyLayers).
type layeredCommand interface {
	layered()
}

func (*serveCmd) layered() {}

// commandNotes are printed after a command's flags in its help.
var commandNotes = map[string]string{
	"serve": `Configuration:
  Every flag can also be set by an environment variable, SCOPEGATE_ and the
  flag name in upper case with underscores (--grpc-addr: SCOPEGATE_GRPC_ADDR),
  or by a key of the YAML file named by --config or SCOPEGATE_CONFIG, the flag
  name with underscores (grpc_addr: 127.0.0.1:9191). An unknown key in the file
  is an error. Precedence: flags > environment > config file > defaults.

Signals:
  SIGHUP reloads the policy (so does a change of the policy file, unless
  --watch-policy=false). SIGTERM or SIGINT stops accepting requests, lets those
  in flight finish within --shutdown-timeout, flushes the audit buffer, exits.

Listeners:
  --grpc-addr serves Envoy ext_authz, scopegate Check, gRPC health and
  reflection; --http-addr serves forward-auth and AuthZEN. --metrics-addr
  serves /metrics, /healthz, /readyz and, with --pprof, /debug/pprof, and
  nothing else does: keep it on loopback or a private network.`,
}

// annotateLayers appends to every flag's help the environment variable
// and config file key that also set it, so --help lists every way to
// configure the command.
func annotateLayers(fs *flag.FlagSet) {
	fs.VisitAll(func(f *flag.Flag) {
		if f.Name == server.ConfigFlag {
			f.Usage += " (env " + server.EnvName(f.Name) + ")"
			return
		}
		f.Usage += " (env " + server.EnvName(f.Name) + ", config " + server.ConfigKey(f.Name) + ")"
	})
}

// opsFlags are the serve flags that tune the process rather than the
// policy: listeners, logging, limits and shutdown.
type opsFlags struct {
	config               string
	metricsAddr          string
	logFormat            string
	tokenCacheSize       int64
	maxTokenBytes        int
	maxRecvMsgSize       int
	maxConcurrentStreams uint
	shutdownTimeout      time.Duration
	watchPolicy          bool
	pprof                bool
}

func (o *opsFlags) define(fs *flag.FlagSet) {
	fs.StringVar(&o.config, server.ConfigFlag, "", "YAML file of settings, keys as the flags with underscores")
	fs.StringVar(&o.metricsAddr, "metrics-addr", server.DefaultMetricsAddr, "address of the operator listener (/metrics, /healthz, /readyz, and /debug/pprof with --pprof); empty disables it")
	fs.BoolVar(&o.pprof, "pprof", false, "serve /debug/pprof on the operator listener (its command line with secrets redacted)")
	fs.StringVar(&o.logFormat, "log-format", "json", "log format: json or text")
	fs.Int64Var(&o.tokenCacheSize, "token-cache-size", server.DefaultTokenCacheSize, "verified tokens kept in the token cache")
	fs.IntVar(&o.maxTokenBytes, "max-token-bytes", server.DefaultMaxTokenBytes, "longest bearer token accepted, in bytes")
	fs.IntVar(&o.maxRecvMsgSize, "max-recv-msg-size", server.DefaultMaxRecvMsgSize, "largest gRPC request accepted, in bytes")
	fs.UintVar(&o.maxConcurrentStreams, "max-concurrent-streams", uint(server.DefaultMaxConcurrentStreams), "concurrent gRPC calls allowed per connection")
	fs.DurationVar(&o.shutdownTimeout, "shutdown-timeout", server.DefaultShutdownTimeout, "how long requests in flight (then shutdown hooks) may take to finish on SIGTERM")
	fs.BoolVar(&o.watchPolicy, "watch-policy", true, "reload the policy when its file changes")
}

// apply copies the flags into cfg. Values that server.Config would read as
// "use the default" (zero) are refused here, so that a setting never
// silently means something other than what was written.
func (o *opsFlags) apply(cfg *server.Config) error {
	switch {
	case o.tokenCacheSize <= 0:
		return fmt.Errorf("--token-cache-size %d: give a positive number of tokens (default %d)", o.tokenCacheSize, server.DefaultTokenCacheSize)
	case o.maxTokenBytes <= 0:
		return fmt.Errorf("--max-token-bytes %d: give a positive number of bytes (default %d)", o.maxTokenBytes, server.DefaultMaxTokenBytes)
	case o.maxRecvMsgSize <= 0:
		return fmt.Errorf("--max-recv-msg-size %d: give a positive number of bytes (default %d)", o.maxRecvMsgSize, server.DefaultMaxRecvMsgSize)
	case o.maxConcurrentStreams == 0 || o.maxConcurrentStreams > math.MaxUint32:
		return fmt.Errorf("--max-concurrent-streams %d: give a number from 1 to %d (default %d)", o.maxConcurrentStreams, uint32(math.MaxUint32), server.DefaultMaxConcurrentStreams)
	case o.shutdownTimeout <= 0:
		return fmt.Errorf("--shutdown-timeout %v: give a positive duration such as 10s (default %v)", o.shutdownTimeout, server.DefaultShutdownTimeout)
	}
	cfg.MetricsAddr = o.metricsAddr
	cfg.TokenCacheSize = o.tokenCacheSize
	cfg.MaxTokenBytes = o.maxTokenBytes
	cfg.MaxRecvMsgSize = o.maxRecvMsgSize
	cfg.MaxConcurrentStreams = uint32(o.maxConcurrentStreams)
	cfg.ShutdownTimeout = o.shutdownTimeout
	cfg.WatchPolicy = o.watchPolicy
	cfg.Pprof = o.pprof
	return nil
}

// newLogger returns the server's structured logger writing to w at level,
// in the --log-format chosen.
func (o *opsFlags) newLogger(w io.Writer, level slog.Level) (*slog.Logger, error) {
	opts := &slog.HandlerOptions{Level: level}
	switch strings.ToLower(o.logFormat) {
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	default:
		return nil, fmt.Errorf("--log-format %q is not one of json, text", o.logFormat)
	}
}
