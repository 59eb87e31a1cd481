package decision

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/lestrrat-go/jwx/v3/jws/jwsbb"
)

// signRawPayload signs payload exactly as given, so tests can send JSON that
// no encoder would produce.
func signRawPayload(t testing.TB, k *testKeyPairs, payload string) string {
	t.Helper()
	input := b64json(t, hdr("RS256", "rsa1")) + "." + base64.RawURLEncoding.EncodeToString([]byte(payload))
	sig, err := jwsbb.Sign(k.rsa, "RS256", []byte(input), nil)
	if err != nil {
		t.Fatal(err)
	}
	return input + "." + base64.RawURLEncoding.EncodeToString(sig)
}

// TestVerifyPayloadJSON: the claims set is strict JSON with unique names,
// read the way encoding/json reads it, whatever a signer put in it.
func TestVerifyPayloadJSON(t *testing.T) {
	k := testKeys(t)
	pol := testPolicyWith(testIssuer(StaticKeys(k.issuerKeys())))
	exp := strconv.FormatInt(testNow.Unix()+3600, 10)
	base := `"iss":"` + testIss + `","aud":"` + testAud + `","exp":` + exp
	cases := []struct {
		name, payload string
		want          Code
		detail        string
		check         func(t *testing.T, tok *Token)
	}{
		{name: "plain", payload: `{` + base + `,"sub":"alice","scope":"a b"}`, want: OK, check: func(t *testing.T, tok *Token) {
			if tok.Subject != "alice" || !reflect.DeepEqual(tok.Scopes, []string{"a", "b"}) {
				t.Errorf("token %+v", tok)
			}
		}},
		{name: "escapes are decoded", payload: `{` + base + `,"sub":"al\u0069ce\n\ud83d\ude00","scope":["x\/y"]}`, want: OK, check: func(t *testing.T, tok *Token) {
			if tok.Subject != "alice\n\U0001F600" || !reflect.DeepEqual(tok.Scopes, []string{"x/y"}) {
				t.Errorf("subject %q scopes %q", tok.Subject, tok.Scopes)
			}
		}},
		{name: "escaped claim name", payload: `{` + base + `,"s\u0075b":"bob"}`, want: OK, check: func(t *testing.T, tok *Token) {
			if tok.Subject != "bob" {
				t.Errorf("subject %q, want bob", tok.Subject)
			}
		}},
		{name: "fractional and exponent dates", payload: `{"iss":"` + testIss + `","aud":"` + testAud + `","exp":` + exp + `.5,"iat":1.7e9}`, want: OK, check: func(t *testing.T, tok *Token) {
			if tok.Expiry().Nanosecond() != 5e8 || tok.IssuedAt().Unix() != 1.7e9 {
				t.Errorf("exp %v iat %v", tok.Expiry(), tok.IssuedAt())
			}
		}},
		{name: "null scope claim is no scope", payload: `{` + base + `,"scope":null}`, want: OK, check: func(t *testing.T, tok *Token) {
			if len(tok.Scopes) != 0 {
				t.Errorf("scopes %q", tok.Scopes)
			}
		}},
		{name: "duplicate claim", payload: `{` + base + `,"sub":"alice","sub":"admin"}`, want: TokenInvalid, detail: `names claim "sub" twice`},
		{name: "duplicate claim spelled with an escape", payload: `{` + base + `,"scope":"a","sc\u006fpe":"admin"}`, want: TokenInvalid, detail: `names claim "scope" twice`},
		{name: "duplicate cnf member", payload: `{` + base + `,"cnf":{"jkt":"a","jkt":"b"}}`, want: TokenInvalid, detail: "cnf names"},
		{name: "invalid utf-8", payload: `{` + base + `,"sub":"al` + "\xff" + `ce"}`, want: TokenInvalid, detail: "not UTF-8"},
		{name: "NaN", payload: `{"iss":"` + testIss + `","aud":"` + testAud + `","exp":NaN}`, want: TokenInvalid, detail: "not a JSON object"},
		{name: "Infinity", payload: `{"iss":"` + testIss + `","aud":"` + testAud + `","exp":inf}`, want: TokenInvalid, detail: "not a JSON object"},
		{name: "unknown escape", payload: `{` + base + `,"sub":"a\xb"}`, want: TokenInvalid, detail: "not a JSON object"},
		{name: "raw control character", payload: `{` + base + `,"sub":"a` + "\x01" + `b"}`, want: TokenInvalid, detail: "not a JSON object"},
		{name: "trailing data", payload: `{` + base + `} {}`, want: TokenInvalid, detail: "not a JSON object"},
		{name: "leading zero", payload: `{"iss":"` + testIss + `","aud":"` + testAud + `","exp":0` + exp + `}`, want: TokenInvalid, detail: "not a JSON object"},
		{name: "array", payload: `[` + strconv.Quote(testIss) + `]`, want: TokenInvalid, detail: "not a JSON object"},
		{name: "exp a string", payload: `{"iss":"` + testIss + `","aud":"` + testAud + `","exp":"` + exp + `"}`, want: TokenInvalid, detail: "claim exp must be a number"},
		{name: "no exp", payload: `{"iss":"` + testIss + `","aud":"` + testAud + `"}`, want: TokenInvalid, detail: "no exp"},
		{name: "scope array with a number", payload: `{` + base + `,"scope":["a",1]}`, want: TokenInvalid, detail: "non-string element"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v := newTestVerifier(t)
			vt, code, detail := v.verify(context.Background(), signRawPayload(t, k, tc.payload), pol, testNow)
			if code != tc.want || !strings.Contains(detail, tc.detail) {
				t.Fatalf("verify = %s (%s), want %s containing %q", code, detail, tc.want, tc.detail)
			}
			if tc.check != nil {
				tc.check(t, &vt.Token)
			}
		})
	}
}

// TestTokenClaimsMatchesEncodingJSON: the lazily built claims map is what
// encoding/json with UseNumber decodes, for every JSON type and escape.
func TestTokenClaimsMatchesEncodingJSON(t *testing.T) {
	k := testKeys(t)
	pol := testPolicyWith(testIssuer(StaticKeys(k.issuerKeys())))
	exp := strconv.FormatInt(testNow.Unix()+3600, 10)
	payload := `{"iss":"` + testIss + `","aud":["` + testAud + `","other"],"exp":` + exp + `,` +
		`"groups":["staff","on-call"],"tenant":"acme","n":-12.5e3,"big":123456789012345678901234567890,` +
		`"ok":true,"no":false,"nil":null,"nested":{"a":[1,{"b":"\u00e9\ud83d\ude00"}],"e":{}},"esc":"tab\there\"q\\"}`
	v := newTestVerifier(t)
	vt, code, detail := v.verify(context.Background(), signRawPayload(t, k, payload), pol, testNow)
	if code != OK {
		t.Fatalf("verify = %s (%s)", code, detail)
	}
	dec := json.NewDecoder(strings.NewReader(payload))
	dec.UseNumber()
	var want map[string]any
	if err := dec.Decode(&want); err != nil {
		t.Fatal(err)
	}
	got := vt.Token.Claims()
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Claims()\n got %#v\nwant %#v", got, want)
	}
	if again := vt.Token.Claims(); reflect.ValueOf(again).Pointer() != reflect.ValueOf(got).Pointer() {
		t.Error("Claims() decoded the payload twice; it should be built once and shared")
	}
	var hand Token
	if len(hand.Claims()) != 0 {
		t.Error("a Token built by hand has claims")
	}
}
