package jwks

import (
	"context"
	"fmt"

	"github.com/scopegate/scopegate/decision"
)

// Load is the loading path of a command that decides with real keys
// (scopegate check, benchmarks): decision.LoadFile, every key set opened
// (Open), then a wait for the first fetch of every jwks_url. A key set
// that cannot be fetched is a load problem of its issuer, like a bad
// jwks_file. The server does not call it: it opens key sets and serves
// NOT_SERVING until they arrive, instead of waiting.
func (r *Registry) Load(ctx context.Context, path string, opts decision.CompileOptions) (*decision.Policy, error) {
	pol, err := decision.LoadFile(path, opts)
	if err != nil {
		return nil, err
	}
	if err := r.Open(pol); err != nil {
		return nil, err
	}
	var probs []decision.Problem
	for i, spec := range pol.File.Issuers {
		iss := pol.Issuers[spec.Issuer]
		if iss == nil || !iss.KeyRef.Fetched() {
			continue
		}
		s, ok := r.Keys(&iss.KeyRef).(*slot)
		if !ok {
			continue
		}
		var ready <-chan struct{}
		var firstErr func() error
		field, loc := "jwks_url", spec.JWKSURL
		switch src := s.own.(type) {
		case *URL:
			ready, firstErr = src.Ready(), func() error { return src.firstErr }
		case *Discovery:
			ready, firstErr = src.Ready(), src.FirstError
			field, loc = "discovery", iss.KeyRef.Location()
		default:
			continue
		}
		select {
		case <-ready:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if err := firstErr(); err != nil && len(s.own.Keys()) == 0 {
			probs = append(probs, decision.Problem{File: path, Line: iss.Line, Field: fmt.Sprintf("issuers[%d].%s", i, field),
				Message: "cannot fetch keys from " + loc + ": " + err.Error()})
		}
	}
	if len(probs) > 0 {
		return nil, &decision.LoadError{Problems: probs}
	}
	return pol, nil
}
