package server

import (
	"context"

	"go.opentelemetry.io/otel/attribute"

	"github.com/scopegate/scopegate/decision"
)

// Child spans for the work a check sends out of the process. Each
// decorator is put in front of the store or client only when tracing is
// on, and starts a span only under a check that is traced; the ownership
// decorator sits behind the cache, so only a lookup that reaches the
// backend has one. (A JWKS fetch for an unknown kid is traced in
// store/jwks, which reads the check's span from the context.)

// AttrLookup is the ownership lookup's name (lookups.<name> in the policy).
const AttrLookup = "scopegate.lookup"

// Child span names.
const (
	spanOwnership     = "scopegate.ownership_lookup"
	spanIntrospection = "scopegate.introspection"
)

// tracedOwnership traces the lookups that reach an ownership backend.
type tracedOwnership struct{ inner decision.OwnershipStore }

func (t tracedOwnership) Owners(ctx context.Context, lookup, key string) ([]string, bool, error) {
	ctx, sp := childSpan(ctx, spanOwnership)
	if sp != nil {
		sp.SetAttributes(attribute.String(AttrLookup, lookup))
	}
	owners, found, err := t.inner.Owners(ctx, lookup, key)
	endChild(sp, err)
	return owners, found, err
}

// tracedCachedOwnership is tracedOwnership for a store that caches
// itself: its cache hits stay untraced and free.
type tracedCachedOwnership struct {
	tracedOwnership
	cached decision.CachedOwnershipStore
}

func (t tracedCachedOwnership) CachedOwners(lookup, key string) ([]string, bool, bool) {
	return t.cached.CachedOwners(lookup, key)
}

// traceOwnership puts the tracing decorator in front of inner (nil stays
// nil).
func traceOwnership(inner decision.OwnershipStore) decision.OwnershipStore {
	switch s := inner.(type) {
	case nil:
		return nil
	case decision.CachedOwnershipStore:
		return tracedCachedOwnership{tracedOwnership{s}, s}
	default:
		return tracedOwnership{s}
	}
}

// tracedIntrospector traces introspection calls. The token is never an
// attribute; an error's text names no token (decision.Introspector).
type tracedIntrospector struct{ inner decision.Introspector }

func (t tracedIntrospector) Introspect(ctx context.Context, in *decision.Introspection, token string) (decision.IntrospectionResponse, error) {
	ctx, sp := childSpan(ctx, spanIntrospection)
	resp, err := t.inner.Introspect(ctx, in, token)
	endChild(sp, err)
	return resp, err
}
