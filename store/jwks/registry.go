package jwks

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
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
	_ Source = (*Discovery)(nil)
)

// Registry serves the issuers' key sets to the decision engine
// (decision.KeyResolver) and runs one source per JWKS file or URL (with its
// settings), shared by every issuer and every policy that names it, so that
// a reload reuses the sources already polling and fetching instead of
// refetching every key set.
//
// Open never waits on the network: a new JWKS URL is fetched in the
// background and its keys are swapped in when they arrive. Meanwhile an
// issuer whose key set settings changed keeps verifying with the keys it
// had; a new issuer's tokens are denied with key_set_unavailable.
type Registry struct {
	// FileOptions and URLOptions are the defaults for the sources the
	// registry opens; an issuer's jwks_* settings override the URL ones.
	// Set them before the first use.
	FileOptions FileOptions
	URLOptions  URLOptions
	// OnChange, when set (before the first use), is called after any key
	// set changed: the server re-evaluates its readiness at once. It runs on
	// a source's goroutine and must not block.
	OnChange func()

	ctx     context.Context
	mu      sync.Mutex // serializes Open, Retain and Close
	sources map[string]*slot
	closed  bool
	// view is sources, copied on every change, for Keys to read without
	// a lock.
	view atomic.Pointer[map[string]*slot]
}

var _ decision.KeyResolver = (*Registry)(nil)

// slot is the key set one KeyRef ID names, as the engine sees it: the
// running source, and until that source has keys, the source the issuer
// used before its settings changed.
type slot struct {
	own      Source
	issuer   string
	fallback atomic.Pointer[decision.KeySource]
}

var _ decision.KeySource = (*slot)(nil)

// fallbackEpoch marks epochs of fallback keys, so a result verified with
// them is never taken for one verified with the new source's keys.
const fallbackEpoch = 1 << 63

func (s *slot) fb() decision.KeySource {
	if p := s.fallback.Load(); p != nil {
		if len(s.own.Keys()) > 0 {
			s.fallback.Store(nil) // ready: let the old source go
			return nil
		}
		return *p
	}
	return nil
}

// Keys implements decision.KeySource.
func (s *slot) Keys() []decision.Key {
	if k := s.own.Keys(); len(k) > 0 {
		return k
	}
	if f := s.fb(); f != nil {
		return f.Keys()
	}
	return nil
}

// Epoch implements decision.KeySource.
func (s *slot) Epoch() uint64 {
	if f := s.fb(); f != nil {
		return f.Epoch() | fallbackEpoch
	}
	return s.own.Epoch()
}

// RefreshUnknownKid implements decision.KeySource.
func (s *slot) RefreshUnknownKid(ctx context.Context, kid string) ([]decision.Key, bool) {
	return s.own.RefreshUnknownKid(ctx, kid)
}

// Status reports the running source's state.
func (s *slot) Status() Status { return s.own.Status() }

// NewRegistry returns a registry whose sources run until ctx ends or
// Close is called.
func NewRegistry(ctx context.Context) *Registry {
	return &Registry{ctx: ctx, sources: map[string]*slot{}}
}

// Keys implements decision.KeyResolver: the key set ref names, nil if no
// policy opened (Open) names it. It takes no lock and allocates nothing.
func (r *Registry) Keys(ref *decision.KeyRef) decision.KeySource {
	m := r.view.Load()
	if m == nil {
		return nil
	}
	if s, ok := (*m)[ref.ID()]; ok {
		return s
	}
	return nil
}

// Open starts a source for every key set of pol that has none yet, and
// returns without waiting for any fetch: a reload never waits on an
// identity provider. A jwks_file starts with the keys LoadFile read
// (Issuer.FileKeys). It fails only for a source that can never work (an
// unreadable jwks_ca_file); then nothing is opened.
func (r *Registry) Open(pol *decision.Policy) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return errClosed
	}
	added := map[string]*slot{}
	for _, name := range sortedIssuers(pol) {
		iss := pol.Issuers[name]
		id := iss.KeyRef.ID()
		if _, ok := r.sources[id]; ok {
			continue
		}
		if _, ok := added[id]; ok {
			continue
		}
		src, err := r.start(&iss.KeyRef, iss.FileKeys)
		if err != nil {
			for _, s := range added {
				s.own.Close()
			}
			return fmt.Errorf("issuer %s: %w", name, err)
		}
		sl := &slot{own: src, issuer: name}
		// A URL not fetched yet: keep the keys the issuer had. (A file was
		// read just now; if it cannot be read, the issuer has no keys.)
		if prev := r.previous(name); prev != nil && iss.KeyRef.Fetched() && len(src.Keys()) == 0 {
			var ks decision.KeySource = prev
			sl.fallback.Store(&ks)
		}
		added[id] = sl
	}
	for id, s := range added {
		r.sources[id] = s
	}
	r.publishView()
	return nil
}

// previous returns a running source issuer used, if it has keys. Called
// with r.mu held.
func (r *Registry) previous(issuer string) *slot {
	for _, s := range r.sources {
		if s.issuer == issuer && len(s.Keys()) > 0 {
			return s
		}
	}
	return nil
}

func sortedIssuers(pol *decision.Policy) []string {
	if pol == nil {
		return nil
	}
	names := make([]string, 0, len(pol.Issuers))
	for n := range pol.Issuers {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// start opens the source of ref without waiting on the network.
func (r *Registry) start(ref *decision.KeyRef, seed []decision.Key) (Source, error) {
	switch {
	case ref.File != "":
		opts := r.FileOptions
		opts.OnChange = r.changed
		return startFile(r.ctx, ref.File, opts, seed), nil
	case ref.URL != "":
		return StartURL(r.ctx, ref.URL, r.urlOptions(ref))
	case ref.Discovery:
		return StartDiscovery(r.ctx, ref.Issuer, ref.ConfigURL, r.urlOptions(ref))
	default:
		return nil, errors.New("the issuer sets none of jwks_file, jwks_url and discovery")
	}
}

// urlOptions are the registry's URL options with ref's settings.
func (r *Registry) urlOptions(ref *decision.KeyRef) URLOptions {
	opts := r.URLOptions
	opts.OnChange = r.changed
	if ref.RefreshInterval > 0 {
		opts.RefreshInterval = ref.RefreshInterval
	}
	if ref.MinRefreshInterval > 0 {
		opts.MinRefreshInterval = ref.MinRefreshInterval
	}
	if ref.CAFile != "" {
		opts.CAFile = ref.CAFile
	}
	return opts
}

// Document returns the last good discovery document of the issuer ref
// names, or false when it uses no discovery or none has loaded yet. It
// takes no lock.
func (r *Registry) Document(ref *decision.KeyRef) (Document, bool) {
	s, ok := r.Keys(ref).(*slot)
	if !ok {
		return Document{}, false
	}
	d, ok := s.own.(*Discovery)
	if !ok {
		return Document{}, false
	}
	return d.Document()
}

func (r *Registry) changed() {
	if f := r.OnChange; f != nil {
		f()
	}
}

// publishView copies sources for Keys. Called with r.mu held.
func (r *Registry) publishView() {
	m := make(map[string]*slot, len(r.sources))
	for id, s := range r.sources {
		m[id] = s
	}
	r.view.Store(&m)
}

// Retain closes every source that none of pols uses. Call it after a new
// policy is in force, with that policy (and any still being served).
// Closing only stops a source's refreshing, so a decision still running on
// an older policy keeps its keys.
func (r *Registry) Retain(pols ...*decision.Policy) {
	used := map[string]bool{}
	for _, p := range pols {
		if p == nil {
			continue
		}
		for _, iss := range p.Issuers {
			used[iss.KeyRef.ID()] = true
		}
	}
	var drop []*slot
	r.mu.Lock()
	for id, s := range r.sources {
		if !used[id] {
			drop = append(drop, s)
			delete(r.sources, id)
		}
	}
	if len(drop) > 0 {
		r.publishView()
	}
	r.mu.Unlock()
	for _, s := range drop {
		s.own.Close()
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
	r.sources = map[string]*slot{}
	r.publishView()
	r.mu.Unlock()
	for _, s := range srcs {
		s.own.Close()
	}
}
