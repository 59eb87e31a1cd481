package harness

import (
	"fmt"
	"math"
)

// Thresholds past which a figure is flagged as unreliable.
const (
	// loadPerCPU: a 1-minute load average at the start of the run above
	// this many runnable tasks per CPU means other work shares the cores.
	loadPerCPU = 0.5
	// maxRoundCV is the coefficient of variation of the rounds' rates
	// (standard deviation / mean) past which the rounds disagree.
	maxRoundCV = 0.10
	// maxFloorRatio: scopegate's rate above this multiple of a no-op
	// server's cannot be true work; it is the machine. Not 1.0: over gRPC,
	// scopegate's hand-written codec beats the no-op's default codec by a
	// few percent.
	maxFloorRatio = 1.05
)

// cv returns the coefficient of variation of the rounds' rates (0 for
// fewer than two rounds).
func cv(rounds []RoundResult) float64 {
	if len(rounds) < 2 {
		return 0
	}
	var sum float64
	for _, r := range rounds {
		sum += r.RPS
	}
	mean := sum / float64(len(rounds))
	if mean == 0 {
		return 0
	}
	var sq float64
	for _, r := range rounds {
		sq += (r.RPS - mean) * (r.RPS - mean)
	}
	return math.Sqrt(sq/float64(len(rounds)-1)) / mean
}

// loadWarning returns a warning when the load average at the start, on
// cpus CPUs, says the machine was busy; "" otherwise.
func loadWarning(load []float64, cpus int) string {
	if len(load) == 0 || cpus < 1 {
		return ""
	}
	if load[0] > loadPerCPU*float64(cpus) {
		return fmt.Sprintf("load average %.2f at the start on %d CPUs: other work shares the cores, every figure of this run is unreliable (run on a quiet machine)", load[0], cpus)
	}
	return ""
}

// resultWarnings returns the warnings about one series' figures.
func resultWarnings(a *APIResult) []string {
	var out []string
	name := a.name()
	for _, s := range []*ServerResult{&a.Scopegate, a.Noop} {
		if s == nil {
			continue
		}
		if v := cv(s.Rounds); v > maxRoundCV {
			out = append(out, fmt.Sprintf("%s: %s's rounds spread by %.0f%% (coefficient of variation, over %.0f%%): the ratio is unreliable", name, s.Server, v*100, maxRoundCV*100))
		}
	}
	if a.Ratio != nil && a.Floor == floorNoop && a.Ratio.RPS > maxFloorRatio {
		out = append(out, fmt.Sprintf("%s: scopegate at %.2fx the rate of a server that does no work is not possible: the machine, not scopegate, made this figure", name, a.Ratio.RPS))
	}
	return out
}

// name is "shape" or "shape/api" when the shape loads more than one API.
func (a *APIResult) name() string {
	if a.Shape == "" || a.Shape == a.API {
		return a.API
	}
	return a.Shape + "/" + a.API
}
