package server

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/scopegate/scopegate/server/servertest/freeport"
)

// TestRunOperatorListener runs the whole process (Run) and checks that the
// operator listener serves metrics, probes and pprof, that no decision
// listener serves them, and that everything closes when the context ends.
func TestRunOperatorListener(t *testing.T) {
	e := startE2E(t, nil) // for the policy directory and keys only
	grpcAddr, httpAddr, opsAddr := freeport.Addr(t), freeport.Addr(t), freeport.Addr(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Config{
			PolicyPath:  filepath.Join(e.dir, "policy.yaml"),
			GRPCAddr:    grpcAddr,
			HTTPAddr:    httpAddr,
			MetricsAddr: opsAddr,
			Pprof:       true,
			WatchPolicy: true,
			Logger:      quietLogger(),
		})
	}()
	t.Cleanup(cancel)

	conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	waitFor(t, "the gRPC listener", func() bool {
		resp, err := healthpb.NewHealthClient(conn).Check(ctxT(t), &healthpb.HealthCheckRequest{})
		return err == nil && resp.GetStatus() == healthpb.HealthCheckResponse_SERVING
	})

	for _, path := range []string{"/readyz", "/metrics", "/debug/pprof/"} {
		if status, body := httpGet(t, "http://"+opsAddr+path); status != 200 {
			t.Errorf("operator listener GET %s = %d: %.200s", path, status, body)
		}
	}
	// The HTTP decision listener must not expose the process: whatever it
	// answers to these paths (a forward-auth deny, a 404), it is not a
	// profile or a scrape.
	client := &http.Client{Timeout: 5 * time.Second}
	for _, path := range []string{"/debug/pprof/", "/debug/pprof/goroutine?debug=1", "/metrics"} {
		resp, err := client.Get("http://" + httpAddr + path)
		if err != nil {
			continue // no HTTP listener: nothing exposed either
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for _, leak := range []string{"goroutine profile", "Types of profiles", "go_goroutines", metricDecisions} {
			if strings.Contains(string(body), leak) {
				t.Errorf("HTTP decision listener GET %s exposes %q", path, leak)
			}
		}
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
	if resp, err := client.Get("http://" + opsAddr + "/healthz"); err == nil {
		resp.Body.Close()
		t.Error("the operator listener still answers after Run returned")
	}
}

// TestRunAddrInUse: an address that cannot be bound, whichever listener it
// is, stops Run with a *ListenError naming the listener and the setting,
// before anything is announced: no health status, no "serving" line.
func TestRunAddrInUse(t *testing.T) {
	e := startE2E(t, nil)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	taken := l.Addr().String()
	for _, tc := range []struct {
		listener, setting string
		edit              func(*Config)
	}{
		{ListenerGRPC, "GRPCAddr", func(c *Config) { c.GRPCAddr = taken }},
		{ListenerHTTP, "HTTPAddr", func(c *Config) { c.HTTPAddr = taken }},
		{ListenerMetrics, "MetricsAddr", func(c *Config) { c.MetricsAddr = taken }},
		{ListenerAdmin, "Admin.Addr", func(c *Config) { c.Admin.Addr = taken }},
	} {
		t.Run(tc.setting, func(t *testing.T) {
			var logs strings.Builder
			cfg := Config{
				PolicyPath:  filepath.Join(e.dir, "policy.yaml"),
				GRPCAddr:    freeport.Addr(t),
				HTTPAddr:    freeport.Addr(t),
				MetricsAddr: freeport.Addr(t),
				Logger:      slog.New(slog.NewTextHandler(&syncWriter{w: &logs}, nil)),
			}
			tc.edit(&cfg)
			err := Run(context.Background(), cfg)
			var le *ListenError
			if !errors.As(err, &le) {
				t.Fatalf("Run = %v, want a *ListenError", err)
			}
			if le.Listener != tc.listener || le.Setting != tc.setting || le.Addr != taken || !le.InUse() {
				t.Errorf("ListenError = %+v, want listener %s, setting %s, addr %s, in use", le, tc.listener, tc.setting, taken)
			}
			msg := err.Error()
			if strings.Contains(msg, tc.setting) || !strings.Contains(msg, taken) || !strings.Contains(msg, "in use") {
				t.Errorf("message %q: want the address and \"in use\", not the field name", msg)
			}
			if strings.Count(msg, taken) != 1 {
				t.Errorf("message %q names the address more than once", msg)
			}
			if out := logs.String(); strings.Contains(out, "SERVING") || strings.Contains(out, "serving") {
				t.Errorf("announced before every listener was bound:\n%s", out)
			}
		})
	}
}

// syncWriter serializes writes to w.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

func TestConfigValidateMetricsAddr(t *testing.T) {
	for addr, ok := range map[string]bool{
		"":               true,
		"127.0.0.1:9194": true,
		":9194":          true,
		"localhost":      false,
		"1.2.3.4:99999":  false,
		"1.2.3.4:http":   false,
	} {
		c := Config{PolicyPath: "p.yaml", MetricsAddr: addr}
		err := c.Validate()
		if (err == nil) != ok {
			t.Errorf("MetricsAddr %q: Validate = %v, want ok=%v", addr, err, ok)
		}
		if err != nil && !strings.Contains(err.Error(), "MetricsAddr") {
			t.Errorf("MetricsAddr %q: error %q does not name the field", addr, err)
		}
	}
}
