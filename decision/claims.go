package decision

import (
	"encoding/json"
	"math"
	"strings"
	"time"
	"unicode/utf8"

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

// Claims returns every claim of the token's payload, numbers as
// json.Number, as encoding/json would decode them. The map is built on
// first use and then shared: callers must not modify it.
func (t *Token) Claims() map[string]any {
	if m := t.claims.Load(); m != nil {
		return *m
	}
	m := decodeClaimsMap(t.payload)
	t.claims.Store(&m)
	return m
}

// SetClaims sets the claims Claims returns, for a Token built by hand (in
// tests, or by a caller holding claims already decoded).
func (t *Token) SetClaims(m map[string]any) { t.claims.Store(&m) }

// decodeClaimsMap converts a payload that readClaimsSet accepted. It cannot
// fail on such a payload; anything else yields an empty map, under which
// every claim condition fails closed.
func decodeClaimsMap(payload []byte) map[string]any {
	if len(payload) == 0 {
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
// refused, or "".
func readTokenClaims(obj *fastjson.Object, vt *verifiedToken, scopeClaims []string) string {
	t := &vt.Token
	clientID, azp, detail := "", "", ""
	hasExp := false
	obj.Visit(func(k []byte, v *fastjson.Value) {
		if detail != "" {
			return
		}
		switch string(k) {
		case "sub":
			detail = readStringClaim("sub", v, &t.Subject)
		case "jti":
			detail = readStringClaim("jti", v, &t.JTI)
		case "sid":
			detail = readStringClaim("sid", v, &t.SessionID)
		case "acr":
			detail = readStringClaim("acr", v, &t.ACR)
		case "client_id":
			detail = readStringClaim("client_id", v, &clientID)
		case "azp":
			detail = readStringClaim("azp", v, &azp)
		case "exp":
			t.Expiry, vt.exp, detail = readNumericDate("exp", v)
			hasExp = true
		case "nbf":
			t.NotBefore, vt.nbf, detail = readNumericDate("nbf", v)
			vt.hasNbf = true
		case "iat":
			t.IssuedAt, vt.iat, detail = readNumericDate("iat", v)
			vt.hasIat = true
		case "auth_time":
			t.AuthTime, _, detail = readNumericDate("auth_time", v)
		case "amr":
			var ok bool
			if t.AMR, ok = jsonStrings(v); !ok {
				detail = "claim amr must be an array of strings"
			}
		case "cnf":
			detail = readCnf(v, t)
		case "aud":
			if v.Type() == fastjson.TypeString {
				t.Audience = []string{jsonString(v)}
				return
			}
			var ok bool
			if t.Audience, ok = jsonStrings(v); !ok {
				detail = "claim aud must be a string or an array of strings"
			}
		}
	})
	if detail != "" {
		return detail
	}
	if !hasExp {
		return "the token has no exp claim"
	}
	t.ClientID = clientID
	if t.ClientID == "" {
		t.ClientID = azp
	}
	if t.Scopes, detail = readTokenScopes(obj, scopeClaims); detail != "" {
		return detail
	}
	t.ScopeString = strings.Join(t.Scopes, " ")
	return ""
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

func readStringClaim(name string, v *fastjson.Value, dst *string) string {
	if v.Type() != fastjson.TypeString {
		return "claim " + name + " must be a string"
	}
	*dst = jsonString(v)
	return ""
}

func jsonStrings(v *fastjson.Value) ([]string, bool) {
	if v.Type() != fastjson.TypeArray {
		return nil, false
	}
	a, _ := v.Array()
	out := make([]string, len(a))
	for i, e := range a {
		if e.Type() != fastjson.TypeString {
			return nil, false
		}
		out[i] = jsonString(e)
	}
	return out, true
}

func readCnf(v *fastjson.Value, t *Token) string {
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
		t.CnfX5tS256 = jsonString(x)
	}
	if x := o.Get("jkt"); x != nil {
		if x.Type() != fastjson.TypeString {
			return "claim cnf.jkt must be a string"
		}
		t.CnfJKT = jsonString(x)
	}
	return ""
}

// readNumericDate reads a JSON NumericDate (RFC 7519 §2): seconds since
// the epoch, integer or not, clamped to ±maxNumericDate.
func readNumericDate(name string, v *fastjson.Value) (time.Time, int64, string) {
	if v.Type() != fastjson.TypeNumber {
		return time.Time{}, 0, "claim " + name + " must be a number (seconds since 1970-01-01 UTC)"
	}
	var sec, nsec int64
	if i, err := v.Int64(); err == nil {
		sec = i
	} else {
		f, err := v.Float64()
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			return time.Time{}, 0, "claim " + name + " must be a number (seconds since 1970-01-01 UTC)"
		}
		f = max(min(f, maxNumericDate), -maxNumericDate)
		whole := math.Floor(f)
		sec, nsec = int64(whole), int64((f-whole)*1e9)
	}
	sec = max(min(sec, maxNumericDate), -maxNumericDate)
	return time.Unix(sec, nsec), sec*1e9 + nsec, ""
}

// readTokenScopes collects the granted scopes from the scope claims, in
// order: union, token order, duplicates removed, exact strings.
func readTokenScopes(obj *fastjson.Object, names []string) ([]string, string) {
	var out []string
	add := func(s string) {
		if s == "" || listHas(out, s) {
			return
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
			for f := range strings.SplitSeq(jsonString(v), " ") {
				add(f)
			}
		case fastjson.TypeArray:
			a, _ := v.Array()
			for _, e := range a {
				if e.Type() != fastjson.TypeString {
					return nil, "claim " + name + " must be a space-separated string or an array of strings; it has a non-string element"
				}
				add(jsonString(e))
			}
		default:
			return nil, "claim " + name + " must be a space-separated string or an array of strings"
		}
	}
	return out, ""
}
