//go:build unix

package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestServeSIGHUP runs serve in-process and sends this process a real
// SIGHUP, as kill -HUP does: the command reopens the audit file that
// logrotate moved away and reloads the policy, though the file watcher is
// off. The signal is the command's alone: the server installs no handler.
func TestServeSIGHUP(t *testing.T) {
	dir := t.TempDir()
	jwks, err := filepath.Abs(filepath.Join(filepath.Dir(examplePolicy(t)), "keys", "jwks.json"))
	if err != nil {
		t.Fatal(err)
	}
	src, err := os.ReadFile(examplePolicy(t))
	if err != nil {
		t.Fatal(err)
	}
	policy := filepath.Join(dir, "policy.yaml")
	body := strings.Replace(string(src), "jwks_file: keys/jwks.json", "jwks_file: "+jwks, 1)
	writePolicy := func(version string) {
		t.Helper()
		if err := os.WriteFile(policy, []byte("version: "+version+"\n"+body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	writePolicy("before-hup")
	auditPath := filepath.Join(dir, "audit.log")

	addr := freeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var serveErr bytes.Buffer
	logs := &syncWriter{w: &serveErr}
	logText := func() string {
		logs.mu.Lock()
		defer logs.mu.Unlock()
		return serveErr.String()
	}
	done := make(chan int, 1)
	go func() {
		c := &cli{stdin: strings.NewReader(""), stdout: &bytes.Buffer{}, stderr: logs}
		done <- c.run(ctx, []string{"serve", "--policy", policy, "--grpc-addr", addr, "--http-addr", "",
			"--metrics-addr", "", "--watch-policy=false", "--audit", "file:" + auditPath, "--audit-file-max-bytes", "0"})
	}()
	logged := func(what string, want ...string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			text := logText()
			all := true
			for _, w := range want {
				all = all && strings.Contains(text, w)
			}
			if all {
				return
			}
			select {
			case code := <-done:
				t.Fatalf("serve exited with %d before %s: %s", code, what, text)
			case <-time.After(20 * time.Millisecond):
			}
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s: %s", what, text)
			}
		}
	}
	check := func() {
		t.Helper()
		if code, out, errs := runCLI(t, "", "client", "--addr", addr, "--path", "/orders/1", "--timeout", "5s"); code != exitDeny {
			t.Fatalf("client: exit %d, want %d (deny without a token)\n%s%s", code, exitDeny, out, errs)
		}
	}
	logged("the server to serve", `"msg":"serving gRPC"`)
	check()
	if err := os.Rename(auditPath, auditPath+".1"); err != nil {
		t.Fatalf("the audit file was not written before the signal: %v", err)
	}
	writePolicy("after-hup")

	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Skipf("cannot signal this process: %v", err)
	}
	logged("the reload", `"msg":"policy reloaded"`, `"trigger":"SIGHUP"`, `"version":"after-hup`)
	check()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if b, err := os.ReadFile(auditPath); err == nil && len(b) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the audit file was not reopened at its path after SIGHUP")
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	select {
	case code := <-done:
		if code != exitOK {
			t.Errorf("serve exited with %d: %s", code, logText())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("serve did not stop after its context was cancelled")
	}
}
