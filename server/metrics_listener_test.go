package server

import (
	"context"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// freeAddr returns a loopback address with a port free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// TestRunOperatorListener runs the whole process (Run) and checks that the
// operator listener serves metrics, probes and pprof, that no decision
// listener serves them, and that everything closes when the context ends.
func TestRunOperatorListener(t *testing.T) {
	e := startE2E(t, nil) // for the policy directory and keys only
	grpcAddr, httpAddr, opsAddr := freeAddr(t), freeAddr(t), freeAddr(t)
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

// TestRunMetricsAddrInUse: a metrics address that cannot be bound stops Run
// with an error naming the setting.
func TestRunMetricsAddrInUse(t *testing.T) {
	e := startE2E(t, nil)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	err = Run(context.Background(), Config{
		PolicyPath:  filepath.Join(e.dir, "policy.yaml"),
		GRPCAddr:    freeAddr(t),
		HTTPAddr:    freeAddr(t),
		MetricsAddr: l.Addr().String(),
		Logger:      quietLogger(),
	})
	if err == nil || !strings.Contains(err.Error(), "MetricsAddr") {
		t.Fatalf("Run = %v, want an error naming MetricsAddr", err)
	}
}

func TestConfigValidateMetricsAddr(t *testing.T) {
	for addr, ok := range map[string]bool{
		"":               true,
		"127.0.0.1:9090": true,
		":9090":          true,
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
