package decision

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/scopegate/scopegate/decision/suggest"
)

// defaultLookupTimeout bounds an ownership lookup whose lookups entry sets
// no timeout.
const defaultLookupTimeout = 100 * time.Millisecond

// maxLookupTimeout is the longest timeout a lookup may set: an
// authorization decision that waits longer is an outage, not a decision.
const maxLookupTimeout = 10 * time.Second

// maxLookupsInFlight bounds the lookups of one name that run at once,
// including those abandoned at their timeout but not yet returned by a
// store that ignores its context. Past it, decisions fail closed at once
// instead of piling up goroutines on a stuck backend.
const maxLookupsInFlight = 1024

// lookupConf is a compiled lookups entry.
type lookupConf struct {
	name     string
	timeout  time.Duration
	inflight atomic.Int64
	used     bool
}

// ownerRule is a compiled route owner rule.
type ownerRule struct {
	lookup *lookupConf
	// param is the index of the path parameter that is the whole key, or
	// -1 when the key is a template of several parts.
	param int
	parts []keyPart
	claim claimRef

	detailNoClaim, detailNotOwner, detailNotFound, detailUnavailable, detailTimeout, detailNoStore, detailBusy string
}

// keyPart is a literal of a key template, or a parameter (param >= 0).
type keyPart struct {
	lit   string
	param int
}

// key builds the resource key from the route's parameters. A key that is
// one parameter allocates nothing.
func (o *ownerRule) key(p *Params) string {
	if o.param >= 0 {
		if o.param < p.Len() {
			return p.At(o.param)
		}
		return ""
	}
	var b strings.Builder
	for _, part := range o.parts {
		if part.param >= 0 {
			if part.param < p.Len() {
				b.WriteString(p.At(part.param))
			}
			continue
		}
		b.WriteString(part.lit)
	}
	return b.String()
}

// ownsAny reports whether the claim value (a string, a number, or an array
// of them) names one of owners.
func ownsAny(claim any, owners []string) bool {
	switch x := claim.(type) {
	case string:
		return x != "" && listHas(owners, x)
	case json.Number:
		return listHas(owners, string(x))
	case []any:
		for _, e := range x {
			if ownsAny(e, owners) {
				return true
			}
		}
	}
	return false
}

type ownersResult struct {
	owners []string
	found  bool
	err    error
}

var (
	errTooManyLookups = errors.New("too many ownership lookups in flight")
	errStorePanicked  = errors.New("the ownership store panicked")
)

// checkOwner runs the route's ownership rule: the claim first (a token
// without it is not an owner of anything, and is answered without I/O),
// then the store's cached answer, then the store under the lookup's
// timeout.
func (e *Engine) checkOwner(ctx context.Context, o *ownerRule, d *Decision, tr *Trace) (Code, string) {
	claim, ok := o.claim.lookup(d.Token.Claims())
	if !ok {
		tr.add("owner", "fail", o.detailNoClaim)
		return NotOwner, o.detailNoClaim
	}
	key := o.key(&d.Params)
	store := e.ownership
	if store == nil {
		tr.add("owner", "fail", o.detailNoStore)
		return OwnershipUnavailable, o.detailNoStore
	}
	var res ownersResult
	cached := false
	if cs, ok := store.(CachedOwnershipStore); ok {
		res.owners, res.found, cached = cs.CachedOwners(o.lookup.name, key)
	}
	if !cached {
		res = callOwners(ctx, store, o.lookup, key)
	}
	switch {
	case res.err != nil:
		detail := o.detailUnavailable
		switch {
		case errors.Is(res.err, context.DeadlineExceeded):
			detail = o.detailTimeout
		case errors.Is(res.err, errTooManyLookups):
			detail = o.detailBusy
		}
		if tr != nil {
			tr.add("owner", "fail", detail+" ("+res.err.Error()+")")
		}
		return OwnershipUnavailable, detail
	case !res.found:
		tr.add("owner", "fail", o.detailNotFound)
		return ResourceNotFound, o.detailNotFound
	case !ownsAny(claim, res.owners):
		tr.add("owner", "fail", o.detailNotOwner)
		return NotOwner, o.detailNotOwner
	}
	if tr != nil {
		src := "store"
		if cached {
			src = "cache"
		}
		tr.add("owner", "pass", fmt.Sprintf("%s %q: %s is an owner (%s)", o.lookup.name, key, o.claim.name, src))
	}
	return OK, ""
}

// callOwners asks the store under the lookup's timeout. The store runs on
// its own goroutine so that a store ignoring its context cannot hold the
// decision past the timeout; such abandoned calls count against
// maxLookupsInFlight until they return.
func callOwners(ctx context.Context, store OwnershipStore, lk *lookupConf, key string) ownersResult {
	if lk.inflight.Add(1) > maxLookupsInFlight {
		lk.inflight.Add(-1)
		return ownersResult{err: errTooManyLookups}
	}
	ctx, cancel := context.WithTimeout(ctx, lk.timeout)
	defer cancel()
	ch := make(chan ownersResult, 1)
	go func() {
		defer lk.inflight.Add(-1)
		defer func() {
			if r := recover(); r != nil {
				ch <- ownersResult{err: errStorePanicked}
			}
		}()
		owners, found, err := store.Owners(ctx, lk.name, key)
		ch <- ownersResult{owners: owners, found: found, err: err}
	}()
	select {
	case res := <-ch:
		if res.err == nil && ctx.Err() != nil {
			// Answered, but only after the deadline: treat as the timeout
			// it was, so that the outcome does not depend on scheduling.
			return ownersResult{err: ctx.Err()}
		}
		return res
	case <-ctx.Done():
		return ownersResult{err: ctx.Err()}
	}
}

// compileLookups compiles the lookups section.
func (c *compiler) compileLookups(pf *PolicyFile) map[string]*lookupConf {
	out := map[string]*lookupConf{}
	for name, spec := range pf.Lookups {
		base := []any{"lookups", name}
		field := conField("lookups", name)
		lk := &lookupConf{name: name, timeout: defaultLookupTimeout}
		if spec != nil && spec.Timeout != nil {
			switch t := spec.Timeout.Duration; {
			case t <= 0:
				c.errorf(c.li.line(append(base, "timeout")...), field+".timeout", "the timeout must be more than 0, e.g. \"50ms\"")
			case t > maxLookupTimeout:
				c.errorf(c.li.line(append(base, "timeout")...), field+".timeout", "a timeout of %s would hold decisions too long; use at most %s (a slow store denies with ownership_unavailable)", t, maxLookupTimeout)
			default:
				lk.timeout = t
			}
		}
		out[name] = lk
	}
	return out
}

// compileOwner compiles route i's owner rule. paramNames are the route's
// path parameters; tplOK is false when its template is invalid (the router
// reports that), and then the key is not checked.
func (c *compiler) compileOwner(spec *OwnerSpec, i int, routeName string, paramNames []string, tplOK bool, lookups map[string]*lookupConf) *ownerRule {
	base := []any{"routes", i, "owner"}
	field := fmt.Sprintf("routes[%d].owner", i)
	ok := true
	o := &ownerRule{param: -1}
	switch lk := lookups[spec.Lookup]; {
	case spec.Lookup == "":
		c.errorf(c.li.line(base...), field+".lookup", "an owner rule names its lookup, e.g. {lookup: orders, key: \"{id}\", claim: sub}")
		ok = false
	case lk == nil:
		msg := fmt.Sprintf("no lookup named %q; declare it under lookups (e.g. lookups: {%s: {timeout: 50ms}})", spec.Lookup, spec.Lookup)
		if s := suggest.Closest(spec.Lookup, mapKeys(lookups)); s != "" {
			msg = fmt.Sprintf("no lookup named %q; did you mean %q?", spec.Lookup, s)
		}
		c.errorf(c.li.line(append(base, "lookup")...), field+".lookup", "%s", msg)
		ok = false
	default:
		lk.used = true
		o.lookup = lk
	}
	keyLine := c.li.line(append(base, "key")...)
	if spec.Key == "" {
		c.errorf(c.li.line(base...), field+".key", "an owner rule needs a key naming the path parameter(s) of the resource, e.g. \"{id}\"")
		ok = false
	} else if !tplOK {
		ok = false
	} else {
		parts, err := parseKeyTemplate(spec.Key, paramNames)
		if err != nil {
			c.errorf(keyLine, field+".key", "%s", err)
			ok = false
		}
		o.parts = parts
		if len(parts) == 1 && parts[0].param >= 0 {
			o.param = parts[0].param
		}
	}
	claim := spec.Claim
	if claim == "" {
		claim = "sub"
	}
	o.claim = newClaimRef(claim)
	if !ok {
		return nil
	}
	who := "route " + routeName
	lkName := o.lookup.name
	o.detailNoClaim = who + ": the token has no " + claim + " claim to match the owners of the resource with"
	o.detailNotOwner = who + ": the token's " + claim + " is not an owner of the resource (lookup " + lkName + ")"
	o.detailNotFound = who + ": lookup " + lkName + " knows no such resource"
	o.detailUnavailable = who + ": lookup " + lkName + " failed; denied to fail closed"
	o.detailTimeout = who + ": lookup " + lkName + " timed out after " + o.lookup.timeout.String() + "; denied to fail closed"
	o.detailNoStore = who + ": no ownership store is configured for lookup " + lkName + "; denied to fail closed"
	o.detailBusy = who + ": too many lookups " + lkName + " are waiting on the store; denied to fail closed"
	return o
}

// parseKeyTemplate parses an owner key such as "{id}" or "{tenant}/{id}"
// against the route's parameter names.
func parseKeyTemplate(tpl string, params []string) ([]keyPart, error) {
	var parts []keyPart
	hasParam := false
	for rest := tpl; rest != ""; {
		open := strings.IndexByte(rest, '{')
		if open < 0 {
			if strings.IndexByte(rest, '}') >= 0 {
				return nil, fmt.Errorf("unbalanced '}' in key %q", tpl)
			}
			parts = append(parts, keyPart{lit: rest, param: -1})
			break
		}
		if open > 0 {
			if strings.IndexByte(rest[:open], '}') >= 0 {
				return nil, fmt.Errorf("unbalanced '}' in key %q", tpl)
			}
			parts = append(parts, keyPart{lit: rest[:open], param: -1})
		}
		end := strings.IndexByte(rest[open:], '}')
		if end < 0 {
			return nil, fmt.Errorf("unclosed '{' in key %q; name a path parameter like \"{id}\"", tpl)
		}
		name := rest[open+1 : open+end]
		idx := -1
		for j, p := range params {
			if p == name {
				idx = j
			}
		}
		if idx < 0 {
			avail := "the route's path has no parameters"
			if len(params) > 0 {
				avail = "the route's parameters are {" + strings.Join(params, "}, {") + "}"
			}
			return nil, fmt.Errorf("key %q names {%s}, which is not a parameter of the route's path; %s", tpl, name, avail)
		}
		parts = append(parts, keyPart{param: idx})
		hasParam = true
		rest = rest[open+end+1:]
	}
	if !hasParam {
		return nil, fmt.Errorf("key %q names no path parameter; write it like \"{id}\" so each request looks up its own resource", tpl)
	}
	return parts, nil
}

func mapKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}
