package probe

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/scopegate/scopegate/decision/policytest"
)

// APIs a gRPC target may be reached through.
const (
	// APIEnvoy is Envoy ext_authz v3 (envoy.service.auth.v3.Authorization).
	APIEnvoy = "envoy"
	// APIScopegate is the scopegate Check RPC (scopegate.v1.Authorizer).
	APIScopegate = "scopegate"
	// APIForwardAuth is HTTP forward-auth, chosen by an http(s) address.
	APIForwardAuth = "forward-auth"
)

// DefaultTimeout bounds one check when Options.Timeout is zero.
const DefaultTimeout = 5 * time.Second

// Options say where a deployment is and how to reach it.
type Options struct {
	// Address is grpc://host:port (or host:port) for the gRPC listener,
	// grpcs://host:port for it over TLS, or http(s)://host:port/path for
	// the forward-auth listener (the path is the check request's own, as
	// a proxy's auth URL has one; scopegate reads the original request
	// from the X-Forwarded-* headers).
	Address string
	// API is APIEnvoy (default) or APIScopegate for a gRPC address; it
	// must be "" or APIForwardAuth for an HTTP one.
	API string
	// TLS, when set, is the client TLS configuration (CA, client
	// certificate for mTLS). It makes a grpc:// address use TLS too.
	TLS *tls.Config
	// Timeout bounds each check; default DefaultTimeout.
	Timeout time.Duration
}

// Target is a deployment reached over one protocol.
type Target interface {
	policytest.Target
	// API names the protocol (APIEnvoy, APIScopegate, APIForwardAuth).
	API() string
	// Close releases the connection.
	Close() error
}

// Dial returns the Target opts describe. It does not connect: the first
// check does, so a deployment that is down shows as failed cases.
func Dial(opts Options) (Target, error) {
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	addr := strings.TrimSpace(opts.Address)
	if addr == "" {
		return nil, errors.New("--target is empty: give grpc://host:port, host:port or http(s)://host:port/path")
	}
	scheme, rest, hasScheme := strings.Cut(addr, "://")
	if !hasScheme {
		scheme, rest = "grpc", addr
	}
	switch strings.ToLower(scheme) {
	case "http", "https":
		if opts.API != "" && opts.API != APIForwardAuth {
			return nil, fmt.Errorf("--target-api %s: an http(s) target is reached through forward-auth; leave --target-api out or give a grpc:// address", opts.API)
		}
		u, err := url.Parse(addr)
		if err != nil || u.Host == "" {
			return nil, fmt.Errorf("--target %q is not a URL: write it like http://scopegate:9192/", Redacted(addr))
		}
		if u.RawQuery != "" || u.Fragment != "" {
			return nil, fmt.Errorf("--target %q: the forward-auth URL takes no query or fragment", Redacted(addr))
		}
		return newForwardAuth(u, opts), nil
	case "grpc", "grpcs":
		if err := checkHostPort(rest); err != nil {
			return nil, fmt.Errorf("--target %q: %v", Redacted(addr), err)
		}
		tlsConf := opts.TLS
		if tlsConf == nil && strings.EqualFold(scheme, "grpcs") {
			tlsConf = &tls.Config{MinVersion: tls.VersionTLS12}
		}
		switch opts.API {
		case "", APIEnvoy:
			return newExtAuthz(rest, tlsConf, opts.Timeout)
		case APIScopegate:
			return newCheckRPC(rest, tlsConf, opts.Timeout)
		}
		return nil, fmt.Errorf("--target-api %q: want envoy (ext_authz) or scopegate (the Check RPC)", opts.API)
	}
	return nil, fmt.Errorf("--target %q: unknown scheme %q; write grpc://host:port, grpcs://host:port or http(s)://host:port/path", Redacted(addr), scheme)
}

// checkHostPort accepts host:port with a port and no path.
func checkHostPort(s string) error {
	if strings.ContainsAny(s, "/?#") {
		return errors.New("a gRPC target is host:port, without a path")
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil || host == "" {
		return errors.New("want host:port, e.g. scopegate:9191")
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("port %q is not a number from 1 to 65535", port)
	}
	return nil
}

// Redacted is addr as it may be shown in output and metric labels: the
// password of an http(s)://user:password@host URL is replaced by "xxxxx".
func Redacted(addr string) string {
	if u, err := url.Parse(strings.TrimSpace(addr)); err == nil && u.User != nil {
		return u.Redacted()
	}
	return addr
}
