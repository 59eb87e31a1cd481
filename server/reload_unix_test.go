//go:build unix

package server

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestReloadOnRealSIGHUP sends SIGHUP to this process while startOps has
// it handled (signal.Notify), as an operator's kill -HUP would.
func TestReloadOnRealSIGHUP(t *testing.T) {
	e := startE2E(t, nil)
	if err := e.srv.startOps(); err != nil {
		t.Fatal(err)
	}
	replaceFile(t, filepath.Join(e.dir, "policy.yaml"), readFile(t, "testdata/policy-v2.yaml"))
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Skipf("cannot signal this process: %v", err)
	}
	waitFor(t, "the reload", func() bool { return strings.HasPrefix(versionOf(e.srv), "e2e-v2+") })
}
