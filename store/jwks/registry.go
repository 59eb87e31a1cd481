package jwks

import (
	"context"
	"errors"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/scopegate/scopegate/decision"
)

// Source is a running key source the Registry manages.
type Source interface {
	decision.KeySource
	Status() Status
	Close()
}

var (
	_ Source = (*File)(nil)
	_ Source = (*URL)(nil)
)

// Registry opens key sources for policies and shares one running source
// per JWKS file or URL (with its settings), so that reloading a policy
// reuses the sources already polling and fetching instead of refetching
// every key set.
type Registry struct {
	// FileOptions and URLOptions are the defaults for the sources the
	// registry opens; an issuer's jwks_* settings override the URL ones.
	// Set them before the first use.
	FileOptions FileOptions
	URLOptions  URLOptions

	ctx     context.Context
	mu      sync.Mutex
	sources map[string]Source
	closed  bool
}

// NewRegistry returns a registry whose sources run until ctx ends or
// Close is called.
func NewRegistry(ctx context.Context) *Registry {
	return &Registry{ctx: ctx, sources: map[string]Source{}}
}

// Factory returns the decision.KeySourceFactory policies are compiled
// with. A relative jwks_file or jwks_ca_file is resolved against the
// policy file's directory.
func (r *Registry) Factory() decision.KeySourceFactory {
	return func(spec *decision.IssuerSpec, baseDir string) (decision.KeySource, error) {
		return r.open(spec, baseDir)
	}
}

func (r *Registry) open(spec *decision.IssuerSpec, baseDir string) (Source, error) {
	resolve := func(p string) string {
		if p == "" || filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(baseDir, p)
	}
	var key string
	var open func() (Source, error)
	switch {
	case spec.JWKSFile != "" && spec.JWKSURL != "":
		return nil, errors.New("set only one of jwks_file and jwks_url")
	case spec.JWKSFile != "":
		path := resolve(spec.JWKSFile)
		key = "file\x00" + path
		open = func() (Source, error) { return NewFile(r.ctx, path, r.FileOptions) }
	case spec.JWKSURL != "":
		opts := r.URLOptions
		if spec.JWKSRefreshInterval != nil {
			opts.RefreshInterval = spec.JWKSRefreshInterval.Duration
		}
		if spec.JWKSMinRefreshInterval != nil {
			opts.MinRefreshInterval = spec.JWKSMinRefreshInterval.Duration
		}
		if spec.JWKSCAFile != "" {
			opts.CAFile = resolve(spec.JWKSCAFile)
		}
		key = "url\x00" + spec.JWKSURL + "\x00" + opts.CAFile + "\x00" +
			opts.RefreshInterval.String() + "\x00" + opts.MinRefreshInterval.String()
		open = func() (Source, error) { return NewURL(r.ctx, spec.JWKSURL, opts) }
	default:
		return nil, errors.New("the issuer sets neither jwks_file nor jwks_url")
	}

	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil, errClosed
	}
	if s, ok := r.sources[key]; ok {
		r.mu.Unlock()
		return s, nil
	}
	r.mu.Unlock()

	// Opened without the lock: a first fetch may take seconds, and other
	// issuers should not wait for it.
	s, err := open()
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		s.Close()
		return nil, errClosed
	}
	if prev, ok := r.sources[key]; ok {
		s.Close() // opened concurrently; keep the first
		return prev, nil
	}
	r.sources[key] = s
	return s, nil
}

// Retain closes every source that none of pols uses. Call it after a new
// policy is in force, with that policy (and any still being served).
// Closing only stops a source's refreshing, so a decision still running on
// an older policy keeps its keys.
func (r *Registry) Retain(pols ...*decision.Policy) {
	used := map[Source]bool{}
	for _, p := range pols {
		if p == nil {
			continue
		}
		for _, iss := range p.Issuers {
			if s, ok := iss.Keys.(Source); ok {
				used[s] = true
			}
		}
	}
	var drop []Source
	r.mu.Lock()
	for k, s := range r.sources {
		if !used[s] {
			drop = append(drop, s)
			delete(r.sources, k)
		}
	}
	r.mu.Unlock()
	for _, s := range drop {
		s.Close()
	}
}

// Statuses reports every open source, ordered by location.
func (r *Registry) Statuses() []Status {
	r.mu.Lock()
	out := make([]Status, 0, len(r.sources))
	for _, s := range r.sources {
		out = append(out, s.Status())
	}
	r.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Location < out[j].Location })
	return out
}

// OldestAge returns the largest Age of the open sources: how stale the
// stalest key set is, for a health check.
func (r *Registry) OldestAge() time.Duration {
	var oldest time.Duration
	for _, st := range r.Statuses() {
		oldest = max(oldest, st.Age)
	}
	return oldest
}

// Close stops every source; the registry opens no more.
func (r *Registry) Close() {
	r.mu.Lock()
	r.closed = true
	srcs := r.sources
	r.sources = map[string]Source{}
	r.mu.Unlock()
	for _, s := range srcs {
		s.Close()
	}
}
