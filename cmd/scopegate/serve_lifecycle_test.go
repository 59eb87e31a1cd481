//go:build unix

package main

import (
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/scopegate/scopegate/server/servertest/freeport"
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

	addr := freeport.Addr(t)
	logText, done, cancel := serveInProcess(t, nil, "--policy", policy, "--grpc-addr", addr, "--http-addr", "",
		"--metrics-addr", "", "--watch-policy=false", "--audit", "file:"+auditPath, "--audit-file-max-bytes", "0")
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

// openFilesIn lists the files under dir this process holds open
// (/proc/self/fd); the test skips where there is no /proc.
func openFilesIn(t *testing.T, dir string) []string {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("cannot list this process's open files: %v", err)
	}
	var open []string
	for _, fd := range fds {
		if target, err := os.Readlink(filepath.Join("/proc/self/fd", fd.Name())); err == nil && strings.HasPrefix(target, dir+string(filepath.Separator)) {
			open = append(open, target)
		}
	}
	return open
}

// TestServeFailedStartClosesAuditFile: serve opens the --audit file
// before the server starts; whichever step then fails (the configuration,
// the policy, a listener), the file is closed before serve returns.
func TestServeFailedStartClosesAuditFile(t *testing.T) {
	dir := t.TempDir()
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	bad := filepath.Join(dir, "bad-policy.yaml")
	if err := os.WriteFile(bad, []byte("routes: [\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		args []string
		code int
		// audit is the --audit value, given the directory to write in;
		// default one file.
		audit func(dir string) string
	}{
		"invalid configuration": {args: []string{"--policy", examplePolicy(t), "--http-path-prefix", "no-slash"}, code: exitUsage},
		"policy does not load":  {args: []string{"--policy", bad}, code: exitUsage},
		"listener in use":       {args: []string{"--policy", examplePolicy(t), "--grpc-addr", busy.Addr().String()}, code: exitError},
		"second audit file cannot be opened": {args: []string{"--policy", examplePolicy(t)}, code: exitUsage, audit: func(dir string) string {
			return "file:" + filepath.Join(dir, "audit.log") + ",file:" + filepath.Join(dir, "missing", "audit.log")
		}},
	} {
		t.Run(name, func(t *testing.T) {
			auditDir := t.TempDir()
			audit := "file:" + filepath.Join(auditDir, "audit.log")
			if tc.audit != nil {
				audit = tc.audit(auditDir)
			}
			args := append([]string{"serve", "--audit", audit, "--watch-policy=false", "--http-addr", "", "--metrics-addr", ""}, tc.args...)
			if !slices.Contains(tc.args, "--grpc-addr") {
				args = append(args, "--grpc-addr", freeport.Addr(t))
			}
			code, _, errs := runCLI(t, "", args...)
			if code != tc.code {
				t.Fatalf("exit %d, want %d: %s", code, tc.code, errs)
			}
			if open := openFilesIn(t, auditDir); len(open) > 0 {
				t.Errorf("still open after serve returned: %v", open)
			}
		})
	}
}
