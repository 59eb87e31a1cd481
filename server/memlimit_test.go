package server

import (
	"math"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"
)

// TestMemoryLimitAuto: without a container limit the soft limit is twice
// the token cache budget plus 128 MiB; with one, 90% of it.
func TestMemoryLimitAuto(t *testing.T) {
	l, from := MemoryLimitAuto(64 << 20)
	switch from {
	case MemoryLimitFromBudget:
		if l != 256<<20 {
			t.Fatalf("limit %d for the default budget, want %d", l, 256<<20)
		}
		if l2, _ := MemoryLimitAuto(1 << 30); l2 != 2<<30+128<<20 {
			t.Fatalf("limit %d for a 1 GiB budget, want %d", l2, 2<<30+128<<20)
		}
		if l0, _ := MemoryLimitAuto(0); l0 != l {
			t.Fatalf("limit %d for budget 0 (the default), want %d", l0, l)
		}
	case "container memory limit":
		if l <= 0 {
			t.Fatalf("limit %d from the container", l)
		}
		t.Logf("container limit: soft limit %d", l)
	default:
		t.Fatalf("limit %d from %q", l, from)
	}
}

// TestAutoMemoryLimitFollowsThePolicy: a server given AutoMemoryLimit
// applies it raised by the policy file's allowance at start, and again
// for the new file on a reload; a failed reload restores the limit of the
// policy in force.
func TestAutoMemoryLimitFollowsThePolicy(t *testing.T) {
	prev := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(prev) })
	dir := t.TempDir()
	pol := filepath.Join(dir, "policy.yaml")
	copyFile(t, "testdata/policy.yaml", pol)
	copyFile(t, "testdata/jwks.json", filepath.Join(dir, "jwks.json"))
	const base = 256 << 20
	srv, err := NewServer(Config{PolicyPath: pol, Logger: quietLogger(), AutoMemoryLimit: base})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	size := func() int64 {
		fi, err := os.Stat(pol)
		if err != nil {
			t.Fatal(err)
		}
		return fi.Size()
	}
	if l, _ := MemoryLimitSet(); l != base+PolicyMemoryAllowance(size()) || l <= base {
		t.Fatalf("limit %d at start, want %d", l, base+PolicyMemoryAllowance(size()))
	}
	// A policy ten times the size: the limit grows with it.
	text, err := os.ReadFile(pol)
	if err != nil {
		t.Fatal(err)
	}
	bigger := append([]byte{}, text...)
	for range 9 {
		bigger = append(bigger, []byte("\n# "+strings.Repeat("x", len(text)-4))...)
	}
	if err := os.WriteFile(pol, bigger, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := srv.Reload(); err != nil {
		t.Fatal(err)
	}
	grown := base + PolicyMemoryAllowance(size())
	if l, _ := MemoryLimitSet(); l != grown {
		t.Fatalf("limit %d after reloading a bigger policy, want %d", l, grown)
	}
	// A broken file keeps the policy in force, and its limit.
	if err := os.WriteFile(pol, append(bigger, []byte("\nroutes: [")...), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := srv.Reload(); err == nil {
		t.Fatal("a broken policy reloaded")
	}
	if l, _ := MemoryLimitSet(); l != grown {
		t.Fatalf("limit %d after a failed reload, want %d", l, grown)
	}
}

// Without AutoMemoryLimit the server leaves the process's limit alone.
func TestNoAutoMemoryLimit(t *testing.T) {
	prev := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(prev) })
	debug.SetMemoryLimit(math.MaxInt64)
	dir := t.TempDir()
	copyFile(t, "testdata/policy.yaml", filepath.Join(dir, "policy.yaml"))
	copyFile(t, "testdata/jwks.json", filepath.Join(dir, "jwks.json"))
	srv, err := NewServer(Config{PolicyPath: filepath.Join(dir, "policy.yaml"), Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	if l, set := MemoryLimitSet(); set {
		t.Fatalf("a server without AutoMemoryLimit set the limit to %d", l)
	}
}
