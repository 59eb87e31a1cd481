package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/scopegate/scopegate/decision/policytest"
	"github.com/scopegate/scopegate/decision/tokenmint"
	"github.com/scopegate/scopegate/server/probe"
)

// targetFlags send the test cases to a running deployment instead of the
// in-process engine (scopegate test --target), once or --every interval.
type targetFlags struct {
	addr, api          string
	key, kid, alg      string
	iss, aud           string
	ca, cert, certKey  string
	timeout, every     time.Duration
	metricsAddr        string
	ranRound           func(rep *policytest.Report) // tests
	listeningOnMetrics func(addr string)            // tests
}

func (t *targetFlags) define(fs *flag.FlagSet) {
	fs.StringVar(&t.addr, "target", "", "send the cases to a running deployment instead: grpc://host:port (or host:port), grpcs://host:port, or an HTTP forward-auth URL http(s)://host:port/path; differing answers fail")
	fs.StringVar(&t.api, "target-api", "", "API of a gRPC --target: envoy (ext_authz, default) or scopegate (the Check RPC)")
	fs.StringVar(&t.key, "target-key", "", "PEM private key of a test issuer the deployment trusts, to mint the cases' tokens with (never a production key; see docs/governance-tools.md)")
	fs.StringVar(&t.kid, "target-kid", "", "kid header of the minted tokens: the test key's kid in the deployment's key set")
	fs.StringVar(&t.alg, "target-alg", "", "signing algorithm of the minted tokens (default: from the key)")
	fs.StringVar(&t.iss, "target-iss", "", "iss of minted tokens whose case names none (default: the policy's first issuer)")
	fs.StringVar(&t.aud, "target-aud", "", "aud of minted tokens whose case names none (default: that issuer's first audience)")
	fs.StringVar(&t.ca, "target-ca", "", "PEM CA certificates to verify a TLS --target with (makes grpc:// use TLS)")
	fs.StringVar(&t.cert, "target-tls-cert", "", "PEM client certificate for mTLS to the --target (with --target-tls-key)")
	fs.StringVar(&t.certKey, "target-tls-key", "", "PEM private key of --target-tls-cert")
	fs.DurationVar(&t.timeout, "target-timeout", probe.DefaultTimeout, "bound on each check sent to the --target")
	fs.DurationVar(&t.every, "every", 0, "with --target: run again at this interval until stopped (SIGINT, SIGTERM), exporting the results as metrics on --metrics-addr")
	fs.StringVar(&t.metricsAddr, "metrics-addr", "", "with --every: serve Prometheus metrics of the last round on this address, e.g. 127.0.0.1:9469")
}

// check refuses target flags that cannot work together.
func (t *targetFlags) check(k *testCmd) error {
	if t.addr == "" {
		for name, v := range map[string]string{"target-api": t.api, "target-key": t.key, "target-kid": t.kid, "target-alg": t.alg,
			"target-iss": t.iss, "target-aud": t.aud, "target-ca": t.ca, "target-tls-cert": t.cert, "target-tls-key": t.certKey, "metrics-addr": t.metricsAddr} {
			if v != "" {
				return fmt.Errorf("--%s needs --target", name)
			}
		}
		if t.every != 0 {
			return errors.New("--every needs --target: it repeats the checks of a running deployment")
		}
		return nil
	}
	switch {
	case k.watch:
		return errors.New("--watch and --target do not go together: --watch reruns on save, use --every to repeat checks of a deployment")
	case k.fullCoverage:
		return errors.New("--require-full-coverage and --target do not go together: a deployment's answers carry no coverage; check coverage without --target")
	case k.now != "":
		return errors.New("--now and --target do not go together: a deployment decides at its own clock")
	case t.every < 0 || t.every > 0 && t.every < time.Second:
		return fmt.Errorf("--every %s: give an interval of at least 1s, e.g. 5m", t.every)
	case t.metricsAddr != "" && t.every == 0:
		return errors.New("--metrics-addr needs --every: a single run reports through its exit code")
	case (t.cert == "") != (t.certKey == ""):
		return errors.New("--target-tls-cert and --target-tls-key go together: give both, or neither")
	case t.key == "" && (t.kid != "" || t.alg != ""):
		return errors.New("--target-kid and --target-alg describe --target-key: give the key too")
	case t.timeout <= 0:
		return fmt.Errorf("--target-timeout %s: give a positive duration, e.g. 5s", t.timeout)
	}
	return nil
}

// signer is the test issuer's key, or nil without --target-key.
func (t *targetFlags) signer() (*tokenmint.Signer, error) {
	if t.key == "" {
		return nil, nil
	}
	pemBytes, err := readKeyFile(t.key)
	if err != nil {
		return nil, fmt.Errorf("--target-key %s: %w", t.key, errors.Unwrap(err))
	}
	key, err := tokenmint.ParsePrivateKeyPEM(pemBytes)
	if err != nil {
		return nil, fmt.Errorf("--target-key %s: %v", t.key, err)
	}
	s, err := tokenmint.NewSigner(t.kid, t.alg, key)
	if err != nil {
		return nil, fmt.Errorf("--target-key %s: %v", t.key, err)
	}
	return s, nil
}

// tlsConfig is the client TLS of the target, or nil for plaintext.
func (t *targetFlags) tlsConfig() (*tls.Config, error) {
	return loadClientTLS(t.ca, t.cert, t.certKey, "--target-ca", "--target-tls-cert/--target-tls-key")
}

// loadClientTLS builds a client TLS configuration from a CA file and a
// client certificate and key (each optional), or returns nil when none is
// given. caFlag and pairFlag name the flags in errors.
func loadClientTLS(caFile, certFile, keyFile, caFlag, pairFlag string) (*tls.Config, error) {
	if caFile == "" && certFile == "" {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if certFile != "" {
		cert, err := tls.LoadX509KeyPair(repoPath(certFile), repoPath(keyFile))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", pairFlag, err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	if caFile != "" {
		pem, err := os.ReadFile(repoPath(caFile))
		if err != nil {
			return nil, fileError(caFlag, caFile, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s %s holds no PEM certificate", caFlag, caFile)
		}
		cfg.RootCAs = pool
	}
	return cfg, nil
}

// runTarget sends the cases to the deployment, once or --every interval.
func (k *testCmd) runTarget(ctx context.Context, c *cli, tr *testRun) int {
	t := &k.target
	signer, err := t.signer()
	if err != nil {
		return c.usageError("test", "%v", err)
	}
	tlsConf, err := t.tlsConfig()
	if err != nil {
		return c.usageError("test", "%v", err)
	}
	target, err := probe.Dial(probe.Options{Address: t.addr, API: t.api, TLS: tlsConf, Timeout: t.timeout})
	if err != nil {
		return c.usageError("test", "%v", err)
	}
	defer target.Close()
	opts := policytest.TargetOptions{Signer: signer, Issuer: t.iss, Audience: t.aud, Env: c.env}
	tr.decide = func(ctx context.Context, r *policytest.Runner, files []*policytest.File) *policytest.Report {
		return r.RunTarget(ctx, files, target, opts)
	}
	if t.every == 0 {
		return k.once(ctx, c, tr)
	}
	return k.everyLoop(ctx, c, tr, target.API())
}

// everyLoop runs a round every --every until ctx ends, serving the last
// round's metrics; it returns the last round's exit code.
func (k *testCmd) everyLoop(ctx context.Context, c *cli, tr *testRun, api string) int {
	t := &k.target
	m := probe.NewMetrics(probe.Redacted(t.addr), api, t.every)
	if t.metricsAddr != "" {
		lis, err := net.Listen("tcp", t.metricsAddr)
		if err != nil {
			return c.fail("test", fmt.Errorf("--metrics-addr %s: %w", t.metricsAddr, err))
		}
		mux := http.NewServeMux()
		mux.Handle("/metrics", m.Handler())
		srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		go func() { _ = srv.Serve(lis) }()
		defer srv.Close()
		if t.listeningOnMetrics != nil {
			t.listeningOnMetrics(lis.Addr().String())
		}
		fmt.Fprintf(c.stderr, "scopegate test: metrics of the synthetic checks on http://%s/metrics\n", lis.Addr())
	}
	tr.after = func(rep *policytest.Report, took time.Duration) {
		if rep == nil {
			m.RecordError(time.Now())
		} else {
			m.Record(rep, took, time.Now())
		}
		if t.ranRound != nil {
			t.ranRound(rep)
		}
	}
	tick := time.NewTicker(t.every)
	defer tick.Stop()
	for {
		code := k.once(ctx, c, tr)
		fmt.Fprintf(c.stderr, "scopegate test: next round in %s (Ctrl-C stops)\n", t.every)
		select {
		case <-ctx.Done():
			return code
		case <-tick.C:
		}
	}
}
