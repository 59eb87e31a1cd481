package audit

import (
	"fmt"
	"strings"
)

// Destination kinds of a --audit specification.
const (
	KindStdout   = "stdout"
	KindFile     = "file"
	KindPostgres = "postgres"
	KindOTLP     = "otlp"
	KindOff      = "off"
)

// Destination is one sink named by a --audit specification.
type Destination struct {
	// Kind is KindStdout, KindFile, KindPostgres or KindOTLP.
	Kind string
	// Path is the file of a KindFile destination.
	Path string
}

// ParseDestinations parses a --audit specification: "off", or a comma
// separated list of "stdout", "file:PATH", "postgres" (the store's
// PostgreSQL database) and "otlp" (an OpenTelemetry collector), e.g.
// "stdout,otlp". "off" returns none.
func ParseDestinations(spec string) ([]Destination, error) {
	spec = strings.TrimSpace(spec)
	if spec == "" || spec == KindOff {
		return nil, nil
	}
	var out []Destination
	seen := map[string]bool{}
	for part := range strings.SplitSeq(spec, ",") {
		part = strings.TrimSpace(part)
		var d Destination
		switch {
		case part == KindStdout:
			d = Destination{Kind: KindStdout}
		case part == KindPostgres:
			d = Destination{Kind: KindPostgres}
		case part == KindOTLP:
			d = Destination{Kind: KindOTLP}
		case strings.HasPrefix(part, KindFile+":"):
			d = Destination{Kind: KindFile, Path: strings.TrimPrefix(part, KindFile+":")}
			if d.Path == "" {
				return nil, fmt.Errorf("audit destination %q names no file: write file:PATH, e.g. file:/var/log/scopegate/audit.log", part)
			}
		case part == KindOff:
			return nil, fmt.Errorf("audit destinations %q: off cannot be combined with other destinations", spec)
		case part == "":
			return nil, fmt.Errorf("audit destinations %q: empty entry: separate destinations with single commas", spec)
		default:
			return nil, fmt.Errorf("audit destination %q is unknown: use stdout, file:PATH, postgres, otlp or off (several separated by commas)", part)
		}
		key := d.Kind + ":" + d.Path
		if seen[key] {
			return nil, fmt.Errorf("audit destinations %q name %q twice: name each once", spec, part)
		}
		seen[key] = true
		out = append(out, d)
	}
	return out, nil
}
