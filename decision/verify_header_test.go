package decision

import (
	"context"
	"encoding/base64"
	"strings"
	"testing"

	"github.com/lestrrat-go/jwx/v3/jws/jwsbb"
)

// Header member names are case-sensitive and unique (RFC 7515 section 4):
// a case variant or a second copy of a member must never be read as it.
func TestParseHeaderStrictNames(t *testing.T) {
	for _, tc := range []struct {
		name, json string
		// detail is a substring of the refusal; "" means accepted with
		// alg RS256, and kid/typ as given.
		detail, kid, typ string
	}{
		{name: "plain", json: `{"alg":"RS256","kid":"k1","typ":"at+jwt"}`, kid: "k1", typ: "at+jwt"},
		{name: "escaped name is the name", json: `{"\u0061lg":"RS256"}`},
		{name: "unknown member ignored", json: `{"alg":"RS256","x5t":"abc","foo":{"ALG":1}}`},
		{name: "null kid and typ are absent", json: `{"alg":"RS256","kid":null,"typ":null}`},

		{name: "upper ALG alone", json: `{"ALG":"RS256"}`, detail: `member "ALG"`},
		{name: "ALG beside alg", json: `{"alg":"RS256","ALG":"none"}`, detail: `member "ALG"`},
		{name: "Alg before alg", json: `{"Alg":"none","alg":"RS256"}`, detail: `member "Alg"`},
		{name: "KID", json: `{"alg":"RS256","KID":"other"}`, detail: "the member is kid"},
		{name: "Typ", json: `{"alg":"RS256","Typ":"JWT"}`, detail: "the member is typ"},
		{name: "CRIT", json: `{"alg":"RS256","CRIT":["exp"]}`, detail: "the member is crit"},
		{name: "kelvin sign kid", json: `{"alg":"RS256","\u212aid":"k"}`, detail: "the member is kid"},
		{name: "duplicate alg", json: `{"alg":"RS256","alg":"none"}`, detail: `names member "alg" twice`},
		{name: "duplicate alg escaped", json: `{"alg":"RS256","\u0061lg":"none"}`, detail: `names member "alg" twice`},
		{name: "duplicate kid", json: `{"alg":"RS256","kid":"a","kid":"b"}`, detail: `names member "kid" twice`},
		{name: "duplicate unknown", json: `{"alg":"RS256","x":1,"x":2}`, detail: `names member "x" twice`},
		{name: "null crit", json: `{"alg":"RS256","crit":null}`, detail: "crit header not supported"},
		{name: "null alg", json: `{"alg":null}`, detail: "has no alg"},
		{name: "number kid", json: `{"alg":"RS256","kid":1}`, detail: "kid is not a string"},
		{name: "invalid UTF-8", json: "{\"alg\":\"RS256\",\"k\xffd\":1}", detail: "not UTF-8"},
		{name: "array", json: `["alg"]`, detail: "not a JSON object"},
		{name: "trailing data", json: `{"alg":"RS256"} {}`, detail: "not a JSON object"},
		{name: "control character", json: "{\"alg\":\"RS\x01256\"}", detail: "not a JSON object"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, f := parseHeader(base64.RawURLEncoding.EncodeToString([]byte(tc.json)))
			if tc.detail != "" {
				if f == nil {
					t.Fatalf("accepted as %+v; want a refusal with %q", p, tc.detail)
				}
				if f.code != TokenInvalid || !strings.Contains(f.detail, tc.detail) {
					t.Fatalf("refused with %v %q; want token_invalid with %q", f.code, f.detail, tc.detail)
				}
				return
			}
			if f != nil {
				t.Fatalf("refused: %s", f.detail)
			}
			if p.alg != "RS256" || p.kid != tc.kid || p.typ != tc.typ {
				t.Fatalf("parsed %+v; want alg RS256 kid %q typ %q", p, tc.kid, tc.typ)
			}
		})
	}
}

// A validly signed token whose header carries a case variant or a
// duplicate is refused through the whole verification, cold and again
// (the refusal is not turned into an allow by the header memo or cache).
func TestVerifyRefusesHeaderVariants(t *testing.T) {
	k := testKeys(t)
	pol := testPolicyWith(testIssuer(StaticKeys(k.issuerKeys())))
	claims := b64json(t, baseClaims(testNow))
	for _, h := range []string{
		`{"alg":"RS256","kid":"rsa1","ALG":"none"}`,
		`{"ALG":"RS256","alg":"RS256","kid":"rsa1"}`,
		`{"alg":"RS256","kid":"rsa1","kid":"rsa1"}`,
		`{"alg":"RS256","kid":"rsa1","Kid":"ec1"}`,
	} {
		input := base64.RawURLEncoding.EncodeToString([]byte(h)) + "." + claims
		sig, err := jwsbb.Sign(k.rsa, "RS256", []byte(input), nil)
		if err != nil {
			t.Fatal(err)
		}
		tok := input + "." + base64.RawURLEncoding.EncodeToString(sig)
		v := newTestVerifier(t)
		for i := range 2 {
			if _, code, detail := v.verify(context.Background(), tok, pol, testNow); code != TokenInvalid {
				t.Fatalf("header %s, try %d: %v (%s); want token_invalid", h, i, code, detail)
			}
			v.wait()
		}
	}
	// The control: the same header without the variant verifies.
	input := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"RS256","kid":"rsa1"}`)) + "." + claims
	sig, _ := jwsbb.Sign(k.rsa, "RS256", []byte(input), nil)
	if _, code, detail := newTestVerifier(t).verify(context.Background(), input+"."+base64.RawURLEncoding.EncodeToString(sig), pol, testNow); code != OK {
		t.Fatalf("control token: %v (%s)", code, detail)
	}
}
