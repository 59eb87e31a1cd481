package harness

import (
	"fmt"
	"math"
	"slices"
	"strings"
)

// Load shapes. Each one loads scopegate and a floor in alternating rounds
// and holds the ratio of the two to its targets.
const (
	// ShapeGRPC is ext_authz (or the own Check, by --api) over gRPC
	// against the no-op gRPC server: the default.
	ShapeGRPC = "grpc"
	// ShapeForwardAuth is the HTTP forward-auth check against a no-op
	// net/http handler.
	ShapeForwardAuth = "forward-auth"
	// ShapeNginx is nginx auth_request with scopegate against the same
	// nginx with the no-op handler as its auth service.
	ShapeNginx = "nginx"
	// ShapeAuthZEN is an AuthZEN evaluation against a no-op handler.
	ShapeAuthZEN = "authzen"
	// ShapeAuthZENBatch is an AuthZEN batch of --batch evaluations against
	// a no-op handler.
	ShapeAuthZENBatch = "authzen-batch"
	// ShapeCold is ext_authz at --miss-rate against the same server with
	// every token cached.
	ShapeCold = "cold"
	// ShapeReload is ext_authz with a policy reload every --soak-reload
	// (1s by default) against the same server without reloads.
	ShapeReload = "reload"
	// ShapeAudit is ext_authz against a second in-process scopegate with
	// the default audit log (every decision as a JSON line on a stream, as
	// scopegate serve writes to standard output, read by a collector)
	// against the first, which audits nothing.
	ShapeAudit = "audit"
	// ShapeDPoP is ext_authz over gRPC with DPoP-bound tokens, each request
	// with a fresh proof, against the same server deciding the same
	// tokens' unbound twins as Bearer (cached).
	ShapeDPoP = "dpop"
	// ShapeFull is ext_authz against the no-op gRPC server with every
	// feature of the full example policy in use (see genPolicy), the audit
	// log written to a file. It runs alone: it configures the in-process
	// server.
	ShapeFull = "full"
)

// Floors a shape is measured against.
const (
	floorNoop   = "noop"      // a server that does no work
	floorCached = "cached"    // scopegate, every token cached
	floorStill  = "no-reload" // scopegate, no reloads
	floorBearer = "bearer"    // scopegate, the same tokens unbound, as Bearer
	floorAudit  = "audit-off" // scopegate, no audit log
)

// shape is what a load shape loads, against which floor, held to what.
type shape struct {
	api     string
	floor   string
	targets []Target
	// inproc: the shape needs the in-process server.
	inproc bool
	about  string
}

// shapes are every shape, by name. The targets are those of the
// performance issue; authzen's are ours (none was set), at the level of
// nginx's.
var shapes = map[string]shape{
	ShapeGRPC:         {api: "", floor: floorNoop, targets: []Target{{Metric: "rps", Op: ">=", Value: 1.0}, {Metric: "p99", Op: "<=", Value: 1.2}}, about: "ext_authz over gRPC vs a no-op gRPC server"},
	ShapeForwardAuth:  {api: APIForwardAuth, floor: floorNoop, inproc: true, targets: []Target{{Metric: "rps", Op: ">=", Value: 0.95}, {Metric: "p99", Op: "<=", Value: 1.1}}, about: "HTTP forward-auth vs a no-op net/http handler"},
	ShapeNginx:        {api: APINginx, floor: floorNoop, inproc: true, targets: []Target{{Metric: "rps", Op: ">=", Value: 0.9}}, about: "nginx auth_request with scopegate vs with a no-op handler"},
	ShapeAuthZEN:      {api: APIAuthZEN, floor: floorNoop, inproc: true, targets: []Target{{Metric: "rps", Op: ">=", Value: 0.9}}, about: "AuthZEN evaluation vs a no-op handler"},
	ShapeAuthZENBatch: {api: APIAuthZENBatch, floor: floorNoop, inproc: true, targets: []Target{{Metric: "rps", Op: ">=", Value: 0.9}}, about: "AuthZEN batch vs a no-op handler"},
	ShapeCold:         {api: APIEnvoy, floor: floorCached, about: "ext_authz at --miss-rate vs every token cached (reported, no target: the cold decision's target is a Go benchmark)"},
	ShapeFull:         {api: APIEnvoy, floor: floorNoop, targets: []Target{{Metric: "rps", Op: ">=", Value: 0.85}}, inproc: true, about: "ext_authz with every feature on vs a no-op gRPC server"},
	ShapeDPoP:         {api: APIEnvoy, floor: floorBearer, inproc: true, about: "ext_authz with DPoP-bound tokens, a fresh proof each, vs the same tokens as cached Bearer (reported, no target: the issue's target is BenchmarkDPoP* in decision)"},
	ShapeAudit:        {api: APIEnvoy, floor: floorAudit, targets: []Target{{Metric: "rps", Op: ">=", Value: 0.95}}, inproc: true, about: "ext_authz with the default audit log (JSON lines to a stream) vs the same policy audited nowhere"},
	ShapeReload:       {api: APIEnvoy, floor: floorStill, targets: []Target{{Metric: "p99", Op: "<=", Value: 1.2}}, inproc: true, about: "ext_authz with a reload every second vs none"},
}

// shapeOrder is the order of "all" and of the flag's help.
var shapeOrder = []string{ShapeGRPC, ShapeForwardAuth, ShapeNginx, ShapeAuthZEN, ShapeAuthZENBatch, ShapeCold, ShapeReload, ShapeAudit}

// allShapes is every shape; "all" is shapeOrder, without ShapeFull,
// which runs alone.
var allShapes = append(slices.Clone(shapeOrder), ShapeFull, ShapeDPoP)

func shapeNames() string { return strings.Join(allShapes, ", ") }

// ShapeList is the value of --shape: names separated by commas, "all"
// for every shape.
type ShapeList []string

// Set implements flag.Value.
func (l *ShapeList) Set(s string) error {
	var out ShapeList
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		switch {
		case part == "":
		case part == "all":
			out = append(out, shapeOrder...)
		case shapes[part].floor == "":
			return fmt.Errorf("unknown shape %q: use %s, or all", part, shapeNames())
		case !slices.Contains(out, part):
			out = append(out, part)
		}
	}
	if len(out) == 0 {
		return fmt.Errorf("no shape in %q: use %s, or all", s, shapeNames())
	}
	*l = out
	return nil
}

// String implements flag.Value.
func (l *ShapeList) String() string {
	if l == nil {
		return ""
	}
	return strings.Join(*l, ",")
}

// shapes returns the shapes of the run, ShapeGRPC when none was given,
// and ShapeDPoP after them with --dpop.
func (c *Config) shapes() []string {
	out := c.Shapes
	if len(out) == 0 {
		out = []string{ShapeGRPC}
	}
	if c.DPoP && !slices.Contains(out, ShapeDPoP) {
		out = append(slices.Clone(out), ShapeDPoP)
	}
	return out
}

func (c *Config) has(name string) bool { return slices.Contains(c.shapes(), name) }

func (c *Config) usesInprocOnly() bool {
	return slices.ContainsFunc(c.shapes(), func(s string) bool { return shapes[s].inproc })
}

// series returns the (shape, API) pairs the run measures, in order.
func (c *Config) series() [][2]string {
	var out [][2]string
	for _, s := range c.shapes() {
		if s == ShapeGRPC {
			for _, api := range c.apis() {
				out = append(out, [2]string{s, api})
			}
			continue
		}
		out = append(out, [2]string{s, shapes[s].api})
	}
	return out
}

// Target is a bound on one ratio of scopegate to its floor.
type Target struct {
	// Metric is "rps" or "p99".
	Metric string `json:"metric"`
	// Op is ">=" or "<=".
	Op    string  `json:"op"`
	Value float64 `json:"value"`
}

// TargetResult is a target and the ratio measured against it.
type TargetResult struct {
	Target
	Got float64 `json:"got"`
	Met bool    `json:"met"`
}

// evaluate holds r to t. A ratio that could not be computed (0, NaN) is
// not met.
func (t Target) evaluate(r *Ratios) TargetResult {
	got := r.RPS
	if t.Metric == "p99" {
		got = r.P99
	}
	met := false
	if got > 0 && !math.IsNaN(got) {
		switch t.Op {
		case ">=":
			met = got >= t.Value
		case "<=":
			met = got <= t.Value
		}
	}
	return TargetResult{Target: t, Got: got, Met: met}
}

func (t TargetResult) String() string {
	verdict := "met"
	if !t.Met {
		verdict = "NOT met"
	}
	return fmt.Sprintf("%s %.2fx (target %s %.2fx): %s", t.Metric, t.Got, t.Op, t.Value, verdict)
}
