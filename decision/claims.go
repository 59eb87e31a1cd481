package decision

import (
	"bytes"
	"encoding/json"
	"math"
	"strings"
	"sync/atomic"
	"unicode/utf8"
	"unsafe"

	"github.com/valyala/fastjson"
)

// The claims set of a token is read in one pass of a pooled fastjson parser:
// the claims a decision always needs go straight into Token's fields, and
// the rest stays in the payload bytes. Claims() builds the generic map only
// when a policy reads an arbitrary claim (claim conditions, ownership,
// SMART), once per cached token. A cold verification thus allocates what
// the Token keeps and little else.

// claimParsers are reused parsers; a parser's values live until its next
// parse, so nothing read from one outlives the call that got it.
var claimParsers fastjson.ParserPool

// claimsMemo is the claims map a Token built on first use, with its
// estimated heap size, which the token cache charges to the entry on the
// next hit (tokencache.go).
type claimsMemo struct {
	m       map[string]any
	bytes   int64
	charged atomic.Bool
}

// Claims returns every claim of the token's payload, numbers as
// json.Number, as encoding/json would decode them. The map is built on
// first use and then shared: callers must not modify it.
func (t *Token) Claims() map[string]any {
	if c := t.claims.Load(); c != nil {
		return c.m
	}
	m := decodeClaimsMap(t.raw)
	c := &claimsMemo{m: m, bytes: mapBytes(m)}
	if !t.claims.CompareAndSwap(nil, c) {
		return t.claims.Load().m
	}
	return m
}

// SetClaims sets the claims Claims returns, for a Token built by hand (in
// tests, or by a caller holding claims already decoded).
func (t *Token) SetClaims(m map[string]any) {
	c := &claimsMemo{m: m}
	c.charged.Store(true)
	t.claims.Store(c)
}

// decodeClaimsMap converts the payload of a token that readClaimsSet
// accepted. It cannot fail on such a token; anything else yields an empty
// map, under which every claim condition fails closed.
func decodeClaimsMap(raw string) map[string]any {
	d1 := strings.IndexByte(raw, '.')
	d2 := strings.LastIndexByte(raw, '.')
	if d1 < 0 || d2 <= d1 {
		return map[string]any{}
	}
	payload, err := jose64.DecodeString(raw[d1+1 : d2])
	if err != nil || len(payload) == 0 {
		return map[string]any{}
	}
	p := claimParsers.Get()
	defer claimParsers.Put(p)
	v, err := p.ParseBytes(payload)
	if err != nil {
		return map[string]any{}
	}
	m, _ := jsonAny(v).(map[string]any)
	if m == nil {
		return map[string]any{}
	}
	return m
}

// jsonAny converts a parsed value to what encoding/json with UseNumber
// produces.
func jsonAny(v *fastjson.Value) any {
	switch v.Type() {
	case fastjson.TypeObject:
		o, _ := v.Object()
		m := make(map[string]any, o.Len())
		o.Visit(func(k []byte, e *fastjson.Value) { m[string(k)] = jsonAny(e) })
		return m
	case fastjson.TypeArray:
		a, _ := v.Array()
		out := make([]any, len(a))
		for i, e := range a {
			out[i] = jsonAny(e)
		}
		return out
	case fastjson.TypeString:
		b, _ := v.StringBytes()
		return string(b)
	case fastjson.TypeNumber:
		return json.Number(v.MarshalTo(nil))
	case fastjson.TypeTrue:
		return true
	case fastjson.TypeFalse:
		return false
	}
	return nil
}

// parseClaimsSet parses a decoded payload with p: strict JSON (RFC 8259,
// UTF-8), an object, no claim named twice (RFC 7519 §4). The object is
// valid until p is reused.
func parseClaimsSet(p *fastjson.Parser, payload []byte) (*fastjson.Object, *verifyFailure) {
	if !utf8.Valid(payload) {
		return nil, malformedToken("the token's payload is not UTF-8 JSON")
	}
	if err := fastjson.ValidateBytes(payload); err != nil {
		return nil, malformedToken("the token's payload is not a JSON object")
	}
	root, err := p.ParseBytes(payload)
	if err != nil || root.Type() != fastjson.TypeObject {
		return nil, malformedToken("the token's payload is not a JSON object")
	}
	obj, _ := root.Object()
	if dup := duplicateKey(obj); dup != "" {
		return nil, malformedToken("the token's payload names claim " + untrusted(dup) + " twice; claim names must be unique (RFC 7519 section 4)")
	}
	return obj, nil
}

// readTokenClaims fills vt from the claims set; it returns why a claim is
// refused, or "". The strings a token keeps are copied into one arena
// (claimArena), and a single audience the issuer expects is the policy's
// own string: a cached token holds a few allocations, not one per claim.
func readTokenClaims(obj *fastjson.Object, vt *verifiedToken, iss *Issuer) string {
	t := &vt.Token
	var a claimArena
	var clientID, azp []byte
	detail := ""
	hasExp, sharedAud := false, false
	obj.Visit(func(k []byte, v *fastjson.Value) {
		if detail != "" {
			return
		}
		switch string(k) {
		case "sub":
			detail = a.stringClaim("sub", v, &t.Subject)
		case "jti":
			detail = a.stringClaim("jti", v, &t.JTI)
		case "sid":
			detail = a.stringClaim("sid", v, &t.SessionID)
		case "acr":
			detail = a.stringClaim("acr", v, &t.ACR)
		case "client_id":
			clientID, detail = stringClaimBytes("client_id", v)
		case "azp":
			azp, detail = stringClaimBytes("azp", v)
		case "exp":
			t.exp, detail = readNumericDate("exp", v)
			hasExp = true
		case "nbf":
			t.nbf, detail = readNumericDate("nbf", v)
		case "iat":
			t.iat, detail = readNumericDate("iat", v)
		case "auth_time":
			t.authTime, detail = readNumericDate("auth_time", v)
		case "amr":
			var ok bool
			if t.AMR, ok = a.strings(v); !ok {
				detail = "claim amr must be an array of strings"
			}
		case "cnf":
			detail = a.readCnf(v, t)
		case "aud":
			if v.Type() == fastjson.TypeString {
				b, _ := v.StringBytes()
				if t.Audience, sharedAud = expectedAudience(b, iss.Audiences); !sharedAud {
					t.Audience = make([]string, 1)
					a.add(&t.Audience[0], b)
				}
				return
			}
			var ok bool
			if t.Audience, ok = a.strings(v); !ok {
				detail = "claim aud must be a string or an array of strings"
			}
		default:
			if iss.DeviceClaim != "" && string(k) == iss.DeviceClaim {
				detail = a.stringClaim(iss.DeviceClaim, v, &t.DeviceID)
			}
		}
	})
	if detail != "" {
		return detail
	}
	if !hasExp {
		return "the token has no exp claim"
	}
	if len(clientID) == 0 {
		clientID = azp
	}
	a.add(&t.ClientID, clientID)
	var room [16][]byte
	scopes, detail := readScopes(obj, iss.ScopeClaims, room[:0])
	if detail != "" {
		return detail
	}
	n := a.finish(t, scopes) + sliceBytes(t.Scopes) + sliceBytes(t.AMR)
	if !sharedAud {
		n += sliceBytes(t.Audience)
	}
	vt.claimBytes = int32(n)
	return ""
}

// expectedAudience returns the one-element slice of want that is aud, so
// that a token naming the expected audience shares the policy's string.
// The slice's capacity is 1: appending to it copies.
func expectedAudience(aud []byte, want []string) ([]string, bool) {
	for i := range want {
		if want[i] == string(aud) {
			return want[i : i+1 : i+1], true
		}
	}
	return nil, false
}

// pendingString is a string a claimArena will copy into *dst.
type pendingString struct {
	dst *string
	b   []byte
}

// claimArena gathers the strings a verified token keeps from its claims,
// read from the parser (valid until it is reused), and copies them into
// one allocation, each then a substring of it. The scopes are joined into
// ScopeString there, and Scopes are substrings of it.
// It lives on the stack of one verification: the first strings go into
// an array of its own (a slice pointing into the struct itself would move
// it to the heap), the rest, rarely any, into more.
type claimArena struct {
	small [12]pendingString
	n     int
	more  []pendingString
	size  int
}

func (a *claimArena) add(dst *string, b []byte) {
	if len(b) == 0 {
		*dst = ""
		return
	}
	if a.n < len(a.small) {
		a.small[a.n] = pendingString{dst, b}
		a.n++
	} else {
		a.more = append(a.more, pendingString{dst, b})
	}
	a.size += len(b)
}

// finish copies the strings and the scopes; it returns the arena's heap
// size.
func (a *claimArena) finish(t *Token, scopes [][]byte) int64 {
	n := a.size
	for i, s := range scopes {
		if i > 0 {
			n++
		}
		n += len(s)
	}
	if n == 0 {
		return 0
	}
	buf := make([]byte, 0, n)
	for _, pend := range [2][]pendingString{a.small[:a.n], a.more} {
		for _, p := range pend {
			start := len(buf)
			buf = append(buf, p.b...)
			*p.dst = unsafe.String(&buf[start], len(p.b))
		}
	}
	if len(scopes) > 0 {
		start := len(buf)
		t.Scopes = make([]string, len(scopes))
		for i, s := range scopes {
			if i > 0 {
				buf = append(buf, ' ')
			}
			from := len(buf)
			buf = append(buf, s...)
			t.Scopes[i] = unsafe.String(&buf[from], len(s))
		}
		t.ScopeString = unsafe.String(&buf[start], len(buf)-start)
	}
	return allocSize(int64(n))
}

func (a *claimArena) stringClaim(name string, v *fastjson.Value, dst *string) string {
	b, detail := stringClaimBytes(name, v)
	if detail == "" {
		a.add(dst, b)
	}
	return detail
}

func stringClaimBytes(name string, v *fastjson.Value) ([]byte, string) {
	if v.Type() != fastjson.TypeString {
		return nil, "claim " + name + " must be a string"
	}
	b, _ := v.StringBytes()
	return b, ""
}

func (a *claimArena) strings(v *fastjson.Value) ([]string, bool) {
	if v.Type() != fastjson.TypeArray {
		return nil, false
	}
	arr, _ := v.Array()
	for _, e := range arr {
		if e.Type() != fastjson.TypeString {
			return nil, false
		}
	}
	out := make([]string, len(arr))
	for i, e := range arr {
		b, _ := e.StringBytes()
		a.add(&out[i], b)
	}
	return out, true
}

func (a *claimArena) readCnf(v *fastjson.Value, t *Token) string {
	if v.Type() != fastjson.TypeObject {
		return "claim cnf must be a JSON object"
	}
	o, _ := v.Object()
	if dup := duplicateKey(o); dup != "" {
		return "claim cnf names " + untrusted(dup) + " twice"
	}
	if x := o.Get("x5t#S256"); x != nil {
		if x.Type() != fastjson.TypeString {
			return "claim cnf.x5t#S256 must be a string"
		}
		b, _ := x.StringBytes()
		a.add(&t.CnfX5tS256, b)
	}
	if x := o.Get("jkt"); x != nil {
		if x.Type() != fastjson.TypeString {
			return "claim cnf.jkt must be a string"
		}
		b, _ := x.StringBytes()
		a.add(&t.CnfJKT, b)
	}
	return ""
}

// readScopes collects the granted scopes from the scope claims, in order:
// union, token order, duplicates removed, exact strings.
// They are appended to out, which the caller gives room in.
func readScopes(obj *fastjson.Object, names []string, out [][]byte) ([][]byte, string) {
	add := func(s []byte) {
		if len(s) == 0 {
			return
		}
		for _, x := range out {
			if string(x) == string(s) {
				return
			}
		}
		out = append(out, s)
	}
	for _, name := range names {
		v := obj.Get(name)
		if v == nil || v.Type() == fastjson.TypeNull {
			continue
		}
		switch v.Type() {
		case fastjson.TypeString:
			b, _ := v.StringBytes()
			for len(b) > 0 {
				i := bytes.IndexByte(b, ' ')
				if i < 0 {
					add(b)
					break
				}
				add(b[:i])
				b = b[i+1:]
			}
		case fastjson.TypeArray:
			arr, _ := v.Array()
			for _, e := range arr {
				if e.Type() != fastjson.TypeString {
					return nil, "claim " + name + " must be a space-separated string or an array of strings; it has a non-string element"
				}
				b, _ := e.StringBytes()
				add(b)
			}
		default:
			return nil, "claim " + name + " must be a space-separated string or an array of strings"
		}
	}
	return out, ""
}

// duplicateKey returns a member name obj holds twice, or "".
func duplicateKey(obj *fastjson.Object) string {
	var small [32][]byte
	keys := small[:0]
	dup := ""
	obj.Visit(func(k []byte, _ *fastjson.Value) {
		if dup != "" {
			return
		}
		for _, seen := range keys {
			if string(seen) == string(k) {
				dup = string(k)
				return
			}
		}
		keys = append(keys, k)
	})
	return dup
}

func jsonString(v *fastjson.Value) string {
	b, _ := v.StringBytes()
	return string(b)
}

// readNumericDate reads a JSON NumericDate (RFC 7519 §2): seconds since
// the epoch, integer or not, clamped to ±maxNumericDate.
func readNumericDate(name string, v *fastjson.Value) (numericDate, string) {
	if v.Type() != fastjson.TypeNumber {
		return 0, "claim " + name + " must be a number (seconds since 1970-01-01 UTC)"
	}
	var sec, nsec int64
	if i, err := v.Int64(); err == nil {
		sec = i
	} else {
		f, err := v.Float64()
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			return 0, "claim " + name + " must be a number (seconds since 1970-01-01 UTC)"
		}
		f = max(min(f, maxNumericDate), -maxNumericDate)
		whole := math.Floor(f)
		sec, nsec = int64(whole), int64((f-whole)*1e9)
	}
	sec = max(min(sec, maxNumericDate), -maxNumericDate)
	return dateAt(sec*1e9 + nsec), ""
}
