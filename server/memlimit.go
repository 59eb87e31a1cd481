package server

import (
	"math"
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
	return 2*tokenCacheBytes + memoryLimitFixed, "token cache budget"
}

// MemoryLimitSet reports the soft memory limit in force, and whether one
// is set (by GOMEMLIMIT or SetMemoryLimit).
func MemoryLimitSet() (int64, bool) {
	l := debug.SetMemoryLimit(-1)
	return l, l != math.MaxInt64
}

// SetMemoryLimit applies a soft memory limit to the process.
func SetMemoryLimit(limit int64) { debug.SetMemoryLimit(limit) }
