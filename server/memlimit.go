package server

import (
	"math"
	"os"
	"runtime/debug"

	"github.com/KimMachineGun/automemlimit/memlimit"
)

// The Go runtime's soft memory limit (GOMEMLIMIT). Without one the garbage
// collector lets the heap grow to twice what is live and returns freed
// pages to the system slowly: after 1,000,000 distinct tokens through the
// default 64 MiB token cache the process held 368 MiB resident for 119 MiB
// live. With a limit the collector runs earlier as the process nears it and
// returns pages to stay under it.

// memoryLimitCgroupRatio is the share of a container's memory limit given
// to the Go runtime, leaving the rest for what it does not count (thread
// stacks outside Go, the binary's pages).
const memoryLimitCgroupRatio = 0.9

// memoryLimitFixed is what the process holds besides its token cache
// (policy, connections, buffers), in the limit derived from the budget.
const memoryLimitFixed = 128 << 20

// MemoryLimitAuto returns the soft memory limit to apply when none is set:
// 90% of the container's memory limit (cgroup v1 or v2) when there is one,
// else twice the token cache budget plus 128 MiB (256 MiB for the default
// 64 MiB budget). from says which.
func MemoryLimitAuto(tokenCacheBytes int64) (limit int64, from string) {
	if tokenCacheBytes <= 0 {
		tokenCacheBytes = DefaultTokenCacheBytes
	}
	if c, err := memlimit.FromCgroup(); err == nil && c > 0 && c < math.MaxInt64 {
		return int64(float64(c) * memoryLimitCgroupRatio), "container memory limit"
	}
	return 2*tokenCacheBytes + memoryLimitFixed, MemoryLimitFromBudget
}

// MemoryLimitFromBudget is MemoryLimitAuto's from for a limit derived from
// the token cache budget: the one to give Config.AutoMemoryLimit.
const MemoryLimitFromBudget = "token cache budget"

// PolicyMemoryAllowance is what a limit derived from the token cache
// budget adds for a policy file of fileBytes. A compiled policy holds 7 to
// 10 times its file on the heap (measured: 7.4x for 100 routes, 10.3x for
// 10,000 routes with 1,000 clients, 44 MB for a 4.2 MB file), and a reload
// holds the old and the new policy while the compile's garbage (about
// 50 times the file) waits for the collector: room for three compiled
// policies of 12 times the file. Without it a large policy's reload ran
// against the limit, and the collector ran back to back under load (p99
// 7.5x the same server without reloads, for 10,000 routes reloaded every
// second).
func PolicyMemoryAllowance(fileBytes int64) int64 {
	if fileBytes <= 0 {
		return 0
	}
	return 3 * 12 * fileBytes
}

// fitMemoryLimit applies AutoMemoryLimit raised for a policy file of
// fileBytes; it does nothing when the server does not manage the limit.
func (s *Server) fitMemoryLimit(fileBytes int64) {
	if s.cfg.AutoMemoryLimit <= 0 {
		return
	}
	SetMemoryLimit(s.cfg.AutoMemoryLimit + PolicyMemoryAllowance(fileBytes))
}

// policyFileBytes is the size of the policy file, 0 when it cannot be
// read (the load that follows reports why).
func (s *Server) policyFileBytes() int64 {
	fi, err := os.Stat(s.cfg.PolicyPath)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// MemoryLimitSet reports the soft memory limit in force, and whether one
// is set (by GOMEMLIMIT or SetMemoryLimit).
func MemoryLimitSet() (int64, bool) {
	l := debug.SetMemoryLimit(-1)
	return l, l != math.MaxInt64
}

// SetMemoryLimit applies a soft memory limit to the process.
func SetMemoryLimit(limit int64) { debug.SetMemoryLimit(limit) }
