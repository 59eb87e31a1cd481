package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/scopegate/scopegate/cmd/scopegate/settings"
	"github.com/scopegate/scopegate/decision"
	"github.com/scopegate/scopegate/server"
)

// layeredCommand is a command whose flags may also come from SCOPEGATE_*
// environment variables and a configuration file (settings.ApplyLayers).
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
		if f.Name == settings.ConfigFlag {
			f.Usage += " (env " + settings.EnvName(f.Name) + ")"
			return
		}
		f.Usage += " (env " + settings.EnvName(f.Name) + ", config " + settings.ConfigKey(f.Name) + ")"
	})
}

// opsFlags are the serve flags that tune the process rather than the
// policy: listeners, logging, limits and shutdown.
type opsFlags struct {
	config               string
	metricsAddr          string
	logFormat            string
	tokenCacheBytes      int64
	tokenCacheSize       int64
	dpopReplayBytes      int64
	maxTokenBytes        int
	maxRecvMsgSize       int
	maxConcurrentStreams uint
	shutdownTimeout      time.Duration
	watchPolicy          bool
	jwksStartupTimeout   time.Duration
	pprof                bool
	memoryLimit          string
}

func (o *opsFlags) define(fs *flag.FlagSet) {
	fs.StringVar(&o.config, settings.ConfigFlag, "", "YAML file of settings, keys as the flags with underscores")
	fs.StringVar(&o.metricsAddr, "metrics-addr", server.DefaultMetricsAddr, "address of the operator listener (/metrics, /healthz, /readyz, and /debug/pprof with --pprof); empty disables it")
	fs.BoolVar(&o.pprof, "pprof", false, "serve /debug/pprof on the operator listener (its command line with secrets redacted)")
	fs.StringVar(&o.logFormat, "log-format", "json", "log format: json or text")
	fs.Int64Var(&o.tokenCacheBytes, "token-cache-bytes", server.DefaultTokenCacheBytes, "heap the verified-token cache may hold, in bytes (at least 1 MiB)")
	fs.StringVar(&o.memoryLimit, "memory-limit", "auto", "soft memory limit of the Go runtime (GOMEMLIMIT): auto (GOMEMLIMIT if set, else 90% of the container's memory limit, else twice --token-cache-bytes plus 128 MiB plus 36 times the policy file's size), off, or a size such as 512MiB")
	fs.Int64Var(&o.tokenCacheSize, "token-cache-size", server.DefaultTokenCacheSize, "optional extra bound on the token cache in entries; 0: none, --token-cache-bytes alone bounds it")
	fs.Int64Var(&o.dpopReplayBytes, "dpop-replay-cache-bytes", decision.DefaultReplayCacheBytes, "memory the in-process DPoP replay cache may hold, in bytes (at least 1 MiB; 128 bytes a proof in its window; full, it refuses new proofs unless a PostgreSQL --store shares the cache)")
	fs.IntVar(&o.maxTokenBytes, "max-token-bytes", server.DefaultMaxTokenBytes, "longest bearer token accepted, in bytes")
	fs.IntVar(&o.maxRecvMsgSize, "max-recv-msg-size", server.DefaultMaxRecvMsgSize, "largest gRPC request accepted, in bytes")
	fs.UintVar(&o.maxConcurrentStreams, "max-concurrent-streams", uint(server.DefaultMaxConcurrentStreams), "concurrent gRPC calls allowed per connection")
	fs.DurationVar(&o.shutdownTimeout, "shutdown-timeout", server.DefaultShutdownTimeout, "how long requests in flight (then shutdown hooks) may take to finish on SIGTERM")
	fs.BoolVar(&o.watchPolicy, "watch-policy", true, "reload the policy when its file changes")
	fs.DurationVar(&o.jwksStartupTimeout, "jwks-startup-timeout", 0, "exit with status 1 if an issuer's key set (a jwks_url) is not loaded within this time of starting; 0 starts anyway, NOT_SERVING until the keys arrive")
}

// apply copies the flags into cfg. Values that server.Config would read as
// "use the default" (zero) are refused here, so that a setting never
// silently means something other than what was written.
func (o *opsFlags) apply(cfg *server.Config) error {
	switch {
	case o.tokenCacheBytes < 1<<20:
		return fmt.Errorf("--token-cache-bytes %d: give at least 1048576 (1 MiB) (default %d, 64 MiB)", o.tokenCacheBytes, server.DefaultTokenCacheBytes)
	case o.tokenCacheSize < 0:
		return fmt.Errorf("--token-cache-size %d: give a positive number of tokens, or 0 for no entry bound (default 0)", o.tokenCacheSize)
	case o.dpopReplayBytes < 1<<20:
		return fmt.Errorf("--dpop-replay-cache-bytes %d: give at least 1048576 (1 MiB) (default %d, 16 MiB)", o.dpopReplayBytes, int64(decision.DefaultReplayCacheBytes))
	case o.maxTokenBytes <= 0:
		return fmt.Errorf("--max-token-bytes %d: give a positive number of bytes (default %d)", o.maxTokenBytes, server.DefaultMaxTokenBytes)
	case o.maxRecvMsgSize <= 0:
		return fmt.Errorf("--max-recv-msg-size %d: give a positive number of bytes (default %d)", o.maxRecvMsgSize, server.DefaultMaxRecvMsgSize)
	case o.maxConcurrentStreams == 0 || o.maxConcurrentStreams > math.MaxUint32:
		return fmt.Errorf("--max-concurrent-streams %d: give a number from 1 to %d (default %d)", o.maxConcurrentStreams, uint32(math.MaxUint32), server.DefaultMaxConcurrentStreams)
	case o.shutdownTimeout <= 0:
		return fmt.Errorf("--shutdown-timeout %v: give a positive duration such as 10s (default %v)", o.shutdownTimeout, server.DefaultShutdownTimeout)
	case o.jwksStartupTimeout < 0:
		return fmt.Errorf("--jwks-startup-timeout %v: give 0 (start NOT_SERVING and wait for the keys) or a positive duration such as 30s", o.jwksStartupTimeout)
	}
	cfg.MetricsAddr = o.metricsAddr
	cfg.TokenCacheBytes = o.tokenCacheBytes
	cfg.TokenCacheSize = o.tokenCacheSize
	cfg.DPoPReplayCacheBytes = o.dpopReplayBytes
	cfg.MaxTokenBytes = o.maxTokenBytes
	cfg.MaxRecvMsgSize = o.maxRecvMsgSize
	cfg.MaxConcurrentStreams = uint32(o.maxConcurrentStreams)
	cfg.ShutdownTimeout = o.shutdownTimeout
	cfg.WatchPolicy = o.watchPolicy
	cfg.KeyStartupTimeout = o.jwksStartupTimeout
	cfg.Pprof = o.pprof
	return nil
}

// memLimit returns the soft memory limit --memory-limit asks for, and
// where it comes from; 0 means none is set here.
func (o *opsFlags) memLimit(gomemlimit string) (int64, string, error) {
	switch v := strings.TrimSpace(o.memoryLimit); v {
	case "auto", "":
		if gomemlimit != "" {
			return 0, "GOMEMLIMIT", nil
		}
		l, from := server.MemoryLimitAuto(o.tokenCacheBytes)
		return l, from, nil
	case "off":
		return 0, "off", nil
	default:
		n, err := parseByteSize(v)
		if err != nil || n < 16<<20 {
			return 0, "", fmt.Errorf("--memory-limit %q: give auto, off, or a size of at least 16MiB such as 512MiB or 1GiB (bytes, KiB, MiB, GiB)", v)
		}
		return n, "--memory-limit", nil
	}
}

// parseByteSize reads a byte count with an optional KiB, MiB or GiB suffix.
func parseByteSize(s string) (int64, error) {
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}} {
		if rest, ok := strings.CutSuffix(s, u.suffix); ok {
			s, mult = strings.TrimSpace(rest), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 || n > math.MaxInt64/mult {
		return 0, fmt.Errorf("not a size: %q", s)
	}
	return n * mult, nil
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

// serveFlagOf maps the server.Config fields that the server's errors name
// to the serve flags that set them, so that a user reads the flag (and
// with it the variable and config key), never a Go field name.
var serveFlagOf = map[string]string{
	"PolicyPath":            "policy",
	"GRPCAddr":              "grpc-addr",
	"HTTPAddr":              "http-addr",
	"HTTPPathPrefix":        "http-path-prefix",
	"MetricsAddr":           "metrics-addr",
	"Pprof":                 "pprof",
	"TokenCacheSize":        "token-cache-size",
	"TokenCacheBytes":       "token-cache-bytes",
	"DPoPReplayCacheBytes":  "dpop-replay-cache-bytes",
	"MaxTokenBytes":         "max-token-bytes",
	"MaxRecvMsgSize":        "max-recv-msg-size",
	"MaxConcurrentStreams":  "max-concurrent-streams",
	"MaxRequestHeaders":     "max-request-headers",
	"MaxRequestHeaderBytes": "max-request-header-bytes",
	"MaxPolicyBytes":        "max-policy-bytes",
	"AutoMemoryLimit":       "memory-limit",
	"CheckTimeout":          "check-timeout",
	"KeyStartupTimeout":     "jwks-startup-timeout",
	"MaxInflight":           "max-inflight",
	"MaxConnections":        "max-connections",
	"MaxConnectionIdle":     "max-connection-idle",
	"MaxConnectionAge":      "max-connection-age",
	"ShutdownTimeout":       "shutdown-timeout",
	"Admin.Addr":            "admin-addr",
	"Admin.Scope":           "admin-scope",
	"Admin.TLSCertFile":     "admin-tls-cert",
	"Admin.TLSKeyFile":      "admin-tls-key",
	"Admin.ClientCAFile":    "admin-client-ca",
	"Revocation.Resync":     "revocation-resync",
	"Revocation.StaleAfter": "revocation-stale-after",
	"Audit.UsageStore":      "store",
	"Audit.Usage":           "usage",
	"Audit":                 "audit",
	"SSF.Addr":              "ssf-addr",
	"SSF.TLSCertFile":       "ssf-tls-cert",
	"SSF.TLSKeyFile":        "ssf-tls-key",
	"SSF.ClientCAFile":      "ssf-client-ca",
}

var configFieldRE = regexp.MustCompile(`\b(?:(?:Admin|Revocation|Audit|SSF)\.)?[A-Z][A-Za-z]+\b`)

// serveErrorText is err as a serve user should read it: a listener that
// cannot bind names its flag, variable and config key and the fix; the
// server's configuration errors name flags instead of Config fields.
func serveErrorText(err error) string {
	var le *server.ListenError
	if errors.As(err, &le) {
		name := serveFlagOf[le.Setting]
		msg := fmt.Sprintf("--%s %s (%s, config %s): the %s listener cannot listen: %s", name, le.Addr, settings.EnvName(name), settings.ConfigKey(name), le.Listener, le.Reason())
		if le.InUse() {
			msg += fmt.Sprintf(".\n  Stop what holds the port (ss -ltnp 'sport = :%s' shows it), or choose another address: --%s 127.0.0.1:PORT or %s=127.0.0.1:PORT", portOf(le.Addr), name, settings.EnvName(name))
		} else {
			msg += fmt.Sprintf(".\n  Choose another address with --%s HOST:PORT or %s", name, settings.EnvName(name))
		}
		if name != "grpc-addr" {
			msg += fmt.Sprintf("; an empty value (--%s \"\") turns the %s listener off", name, le.Listener)
		}
		return msg
	}
	msg := strings.ReplaceAll(err.Error(), "server config: ", "")
	return configFieldRE.ReplaceAllStringFunc(msg, func(w string) string {
		if f, ok := serveFlagOf[w]; ok {
			return "--" + f
		}
		return w
	})
}

func portOf(addr string) string {
	if _, p, err := net.SplitHostPort(addr); err == nil {
		return p
	}
	return addr
}
