package server

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/scopegate/scopegate/decision/decisiontest"
	"github.com/scopegate/scopegate/decision/ssf"
	"github.com/scopegate/scopegate/server/servertest/freeport"
	"github.com/scopegate/scopegate/store"
	"github.com/scopegate/scopegate/store/audit"
)

// closeCountingSink is an audit sink that counts its Close calls.
type closeCountingSink struct{ closes atomic.Int32 }

func (*closeCountingSink) Name() string                               { return "counting" }
func (*closeCountingSink) Write(context.Context, []audit.Entry) error { return nil }
func (*closeCountingSink) Flush(context.Context) error                { return nil }
func (s *closeCountingSink) Close(context.Context) error              { s.closes.Add(1); return nil }

// TestListenFailureReleasesEverything makes Listen fail at each stage of
// start-up, with every resource configured (the five listeners, the policy
// watcher, the JWKS registry, an audit sink, the revocation syncer, the
// Admin API, the SSF receiver), and checks that the failure leaves nothing
// behind: no goroutine (goleak), no listener (every address binds again),
// and the audit sink closed exactly once. The last case starts without a
// failure and stops without serving: Bound.Stop releases the same.
func TestListenFailureReleasesEverything(t *testing.T) {
	signer, err := decisiontest.NewECSigner("k1")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	copyFile(t, "testdata/policy.yaml", filepath.Join(dir, "policy.yaml"))
	if err := os.WriteFile(filepath.Join(dir, "jwks.json"), decisiontest.JWKS(signer), 0o600); err != nil {
		t.Fatal(err)
	}
	// No one listens on a port freed a moment ago: fetches fail at once.
	closedURL := "http://" + freeport.Addr(t) + "/jwks.json"
	unreachableKeys := filepath.Join(dir, "unreachable-keys.yaml")
	policy := strings.Replace(string(readFile(t, filepath.Join(dir, "policy.yaml"))), "jwks_file: jwks.json", "jwks_url: "+closedURL, 1)
	if err := os.WriteFile(unreachableKeys, []byte(policy), 0o600); err != nil {
		t.Fatal(err)
	}

	type addrOf func(*Config) *string
	listeners := map[string]addrOf{
		"GRPCAddr":    func(c *Config) *string { return &c.GRPCAddr },
		"HTTPAddr":    func(c *Config) *string { return &c.HTTPAddr },
		"MetricsAddr": func(c *Config) *string { return &c.MetricsAddr },
		"Admin.Addr":  func(c *Config) *string { return &c.Admin.Addr },
		"SSF.Addr":    func(c *Config) *string { return &c.SSF.Addr },
	}
	cases := map[string]struct {
		edit func(*Config)
		busy string // the listener whose address is taken
		want string // in the error; "" for a start that succeeds
	}{
		"invalid config":             {edit: func(c *Config) { c.MaxInflight = -1 }, want: "MaxInflight -1 is negative"},
		"policy does not load":       {edit: func(c *Config) { c.PolicyPath = "testdata/policy-broken.yaml" }, want: "load policy"},
		"keys not loaded in time":    {edit: func(c *Config) { c.PolicyPath, c.KeyStartupTimeout = unreachableKeys, 200*time.Millisecond }, want: "was not loaded within"},
		"admin issuer not in policy": {edit: func(c *Config) { c.Admin.Issuers = []string{"https://other.test/"} }, want: "https://other.test/"},
		"ssf transmitter twice":      {edit: func(c *Config) { c.SSF.Transmitters = append(c.SSF.Transmitters, c.SSF.Transmitters[0]) }, want: "configured twice"},
		"gRPC address in use":        {busy: "GRPCAddr"},
		"HTTP address in use":        {busy: "HTTPAddr"},
		"Admin address in use":       {busy: "Admin.Addr"},
		"metrics address in use":     {busy: "MetricsAddr"},
		"SSF address in use":         {busy: "SSF.Addr"},
		"started, stopped unserved":  {},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			before := goleak.IgnoreCurrent()
			sink := &closeCountingSink{}
			cfg := Config{
				PolicyPath: filepath.Join(dir, "policy.yaml"), Logger: quietLogger(), ShutdownTimeout: time.Second,
				GRPCAddr: freeport.Addr(t), HTTPAddr: freeport.Addr(t), MetricsAddr: freeport.Addr(t), WatchPolicy: true,
				Admin:      AdminConfig{Addr: freeport.Addr(t)},
				Revocation: RevocationConfig{Store: store.NewMemoryRevocations(nil)},
				SSF: SSFConfig{Addr: freeport.Addr(t), Transmitters: []SSFTransmitter{{
					Name: "tx", JWKSURI: closedURL, PushToken: "push-secret",
					Transmitter: ssf.Transmitter{Issuer: "https://tx.test/", Audience: []string{"scopegate"}},
				}}},
				Audit: AuditConfig{Sinks: []audit.Sink{sink}},
			}
			if tc.edit != nil {
				tc.edit(&cfg)
			}
			if tc.busy != "" {
				lis, err := net.Listen("tcp", *listeners[tc.busy](&cfg))
				if err != nil {
					t.Fatal(err)
				}
				defer lis.Close()
			}

			b, err := Listen(cfg)
			switch {
			case tc.busy != "":
				var le *ListenError
				if !errors.As(err, &le) || le.Setting != tc.busy || !le.InUse() {
					t.Fatalf("Listen = %v, want the %s address in use", err, tc.busy)
				}
			case tc.want != "":
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("Listen = %v, want an error containing %q", err, tc.want)
				}
			default:
				if err != nil {
					t.Fatal(err)
				}
				b.Stop()
				b.Stop() // twice: still once
			}

			if n := sink.closes.Load(); n != 1 {
				t.Errorf("the audit sink was closed %d times, want once", n)
			}
			for setting, addr := range listeners {
				if setting == tc.busy {
					continue
				}
				lis, err := net.Listen("tcp", *addr(&cfg))
				if err != nil {
					t.Errorf("%s %s is still bound after the failed start: %v", setting, *addr(&cfg), err)
					continue
				}
				lis.Close()
			}
			goleak.VerifyNone(t, before)
		})
	}
}
