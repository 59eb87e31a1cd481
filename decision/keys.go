package decision

import (
	"strings"
	"sync/atomic"
	"time"
)

// KeyRef names the key set of one issuer: where its keys come from, as the
// policy file says. Compiling a policy only builds KeyRefs; nothing is read
// or fetched. The engine asks its KeyResolver for the key set a KeyRef names
// when a token of that issuer is verified.
type KeyRef struct {
	// Issuer is the issuer the keys verify (its iss claim).
	Issuer string
	// File is the jwks_file, resolved against the policy file's directory;
	// "" for a jwks_url issuer.
	File string
	// URL is the jwks_url; "" for a jwks_file or discovery issuer.
	URL string
	// Discovery is set for an issuer whose keys (jwks_uri) come from its
	// discovery document. ConfigURL is the document's configured URL
	// (openid_configuration_url), "" for the well-known locations under
	// Issuer: OpenID Connect's, then RFC 8414's.
	Discovery bool
	ConfigURL string
	// CAFile is the jwks_ca_file, resolved like File ("" for none).
	CAFile string
	// RefreshInterval and MinRefreshInterval are the jwks_url refresh
	// settings; 0 means the key source's default.
	RefreshInterval    time.Duration
	MinRefreshInterval time.Duration

	id string
}

// ID identifies the key source a KeyRef needs: two KeyRefs with the same ID
// are served by one source. It does not include the issuer, so issuers
// sharing a key set share its fetches.
func (r *KeyRef) ID() string {
	if r.id != "" {
		return r.id
	}
	return keyRefID(r) // a KeyRef built by hand
}

func keyRefID(r *KeyRef) string {
	if r.File != "" {
		return "file\x00" + r.File
	}
	if r.Discovery {
		return strings.Join([]string{"discovery", r.Issuer, r.ConfigURL, r.CAFile, r.RefreshInterval.String(), r.MinRefreshInterval.String()}, "\x00")
	}
	return strings.Join([]string{"url", r.URL, r.CAFile, r.RefreshInterval.String(), r.MinRefreshInterval.String()}, "\x00")
}

// Location is the file path or URL the keys come from, for messages.
func (r *KeyRef) Location() string {
	switch {
	case r.File != "":
		return r.File
	case r.Discovery && r.ConfigURL != "":
		return r.ConfigURL
	case r.Discovery:
		return "the discovery document of " + r.Issuer
	}
	return r.URL
}

// Fetched reports whether the keys come from the network (a jwks_url or
// discovery), so that they may arrive after a policy loads.
func (r *KeyRef) Fetched() bool { return r.URL != "" || r.Discovery }

// KeyResolver finds an issuer's key set at decision time. The server's
// implementation is store/jwks.Registry, which fetches key sets in the
// background and swaps them in when they arrive; tests use
// StaticKeyResolver.
type KeyResolver interface {
	// Keys returns the key source ref names, or nil when there is none (yet).
	// It is called on every token verification, cached or not: it must not
	// block and should not allocate.
	Keys(ref *KeyRef) KeySource
}

// KeyResolverFunc adapts a function to KeyResolver.
type KeyResolverFunc func(ref *KeyRef) KeySource

// Keys implements KeyResolver.
func (f KeyResolverFunc) Keys(ref *KeyRef) KeySource { return f(ref) }

// StaticKeyResolver resolves every issuer's key set to src: a fixed key set
// for tests and tools that sign their own tokens.
func StaticKeyResolver(src KeySource) KeyResolver {
	return KeyResolverFunc(func(*KeyRef) KeySource { return src })
}

// resolverIDs numbers the engines' resolvers, so an issuer can remember
// which one its bound key source came from.
var resolverIDs atomic.Uint64

// boundKeys remembers, per issuer, the key source one engine's resolver
// returned, so a cached verification asks the resolver once per policy, not
// once per request.
type boundKeys struct {
	resolver uint64
	ref      *KeyRef // the issuer's, so a copy of an Issuer binds afresh
	src      KeySource
}

// keyBinder resolves issuers' key sets for one engine.
type keyBinder struct {
	res KeyResolver
	id  uint64
}

func newKeyBinder(res KeyResolver) keyBinder {
	return keyBinder{res: res, id: resolverIDs.Add(1)}
}

// source returns the key source of iss, or nil when the resolver has none
// for it. A found source is remembered on the issuer: a resolver returns
// the same source for a KeyRef as long as a policy using it is in force
// (store/jwks.Registry does), and a reload compiles new issuers.
func (k keyBinder) source(iss *Issuer) KeySource {
	memo := iss.bound
	if memo != nil {
		if b := memo.Load(); b != nil && b.resolver == k.id && b.ref == &iss.KeyRef {
			return b.src
		}
	}
	if k.res == nil {
		return nil
	}
	src := k.res.Keys(&iss.KeyRef)
	if src != nil && memo != nil {
		memo.Store(&boundKeys{resolver: k.id, ref: &iss.KeyRef, src: src})
	}
	return src
}

// issuerBinding is embedded in Issuer. The compiler allocates it; an
// Issuer built by hand resolves its keys on every verification.
type issuerBinding struct {
	bound *atomic.Pointer[boundKeys]
}
