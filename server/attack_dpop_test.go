package server

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/scopegate/scopegate/decision"
	"github.com/scopegate/scopegate/decision/decisiontest"
	scopegatev1 "github.com/scopegate/scopegate/proto/scopegate/v1"
	"github.com/scopegate/scopegate/server/authzen"
)

// The DPoP attack list (RFC 9449): each forged, misdirected or reused proof
// is refused with its own reason and the RFC 9449 §7.1 challenge, through
// ext_authz on loopback and through forward-auth. Each case builds its
// request afresh (a fresh jti) unless it is about reuse.

type dpopAttack struct {
	name string
	// build returns the Authorization value and the DPoP header values for
	// a request GET https://api.test/orders/1.
	build func(t *testing.T) (authz string, proofs []string)
	want  decision.Code
	// challenge is the error attribute of the DPoP challenge.
	challenge string
}

func dpopAttacks(t *testing.T, e *atkEnv) []dpopAttack {
	prover, err := decisiontest.NewProver(decisiontest.KindEC)
	if err != nil {
		t.Fatal(err)
	}
	other, err := decisiontest.NewProver(decisiontest.KindEC)
	if err != nil {
		t.Fatal(err)
	}
	bound := func(jkt string) string {
		c := e.claims("orders:read")
		c["cnf"] = map[string]any{"jkt": jkt}
		return e.mint(t, e.ec1, c, nil)
	}
	tok := bound(prover.JKT)
	const htu = "https://api.test/orders/1"
	claims := func(k string, v any) decisiontest.Claims {
		c := decisiontest.Claims{"htm": "GET", "htu": htu, "ath": decisiontest.ATH(tok), "iat": time.Now().Unix(), "jti": decisiontest.RandomID()}
		if k != "" {
			c[k] = v
		}
		return c
	}
	proof := func(t *testing.T, p *decisiontest.Prover, h map[string]any, c decisiontest.Claims) string {
		s, err := p.ProofWith(h, c)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	one := func(h map[string]any, k string, v any) func(t *testing.T) (string, []string) {
		return func(t *testing.T) (string, []string) {
			return "DPoP " + tok, []string{proof(t, prover, h, claims(k, v))}
		}
	}
	private := map[string]any{"d": "AAAA"}
	for k, v := range prover.JWK {
		private[k] = v
	}
	reused := proof(t, prover, nil, claims("", nil))
	return []dpopAttack{
		{"valid proof", one(nil, "", nil), decision.OK, ""},
		{"the same proof again", func(*testing.T) (string, []string) { return "DPoP " + tok, []string{reused} }, decision.OK, ""},
		{"replayed proof", func(*testing.T) (string, []string) { return "DPoP " + tok, []string{reused} }, decision.DPoPProofReplayed, "invalid_dpop_proof"},
		{"alg none", func(t *testing.T) (string, []string) {
			p := proof(t, prover, map[string]any{"alg": "none"}, claims("", nil))
			return "DPoP " + tok, []string{p[:strings.LastIndexByte(p, '.')+1]}
		}, decision.DPoPProofInvalid, "invalid_dpop_proof"},
		{"HMAC alg", one(map[string]any{"alg": "HS256"}, "", nil), decision.DPoPProofInvalid, "invalid_dpop_proof"},
		{"private key in jwk", one(map[string]any{"jwk": private}, "", nil), decision.DPoPProofInvalid, "invalid_dpop_proof"},
		{"typ missing", one(map[string]any{"typ": nil}, "", nil), decision.DPoPProofInvalid, "invalid_dpop_proof"},
		{"typ wrong", one(map[string]any{"typ": "at+jwt"}, "", nil), decision.DPoPProofInvalid, "invalid_dpop_proof"},
		{"signed by another key than its jwk", one(map[string]any{"jwk": other.JWK}, "", nil), decision.DPoPSignatureInvalid, "invalid_dpop_proof"},
		{"jwk thumbprint is not cnf.jkt", func(t *testing.T) (string, []string) {
			return "DPoP " + tok, []string{proof(t, other, nil, claims("", nil))}
		}, decision.DPoPKeyMismatch, "invalid_token"},
		{"proof for another URL", one(nil, "htu", "https://api.test/orders/2"), decision.DPoPURIMismatch, "invalid_dpop_proof"},
		{"htu with a query string", one(nil, "htu", htu+"?x=1"), decision.OK, ""},
		{"htu with another scheme", one(nil, "htu", "http://api.test/orders/1"), decision.DPoPURIMismatch, "invalid_dpop_proof"},
		{"htu with another port", one(nil, "htu", "https://api.test:8443/orders/1"), decision.DPoPURIMismatch, "invalid_dpop_proof"},
		{"proof for another method", one(nil, "htm", "DELETE"), decision.DPoPMethodMismatch, "invalid_dpop_proof"},
		{"proof for another token", one(nil, "ath", decisiontest.ATH(bound(other.JKT))), decision.DPoPAthMismatch, "invalid_dpop_proof"},
		{"proof from the future", one(nil, "iat", time.Now().Add(time.Minute).Unix()), decision.DPoPProofStale, "invalid_dpop_proof"},
		{"stale proof", one(nil, "iat", time.Now().Add(-5*time.Minute).Unix()), decision.DPoPProofStale, "invalid_dpop_proof"},
		{"two DPoP headers", func(t *testing.T) (string, []string) {
			return "DPoP " + tok, []string{proof(t, prover, nil, claims("", nil)), proof(t, prover, nil, claims("", nil))}
		}, decision.DPoPProofInvalid, "invalid_dpop_proof"},
		{"no DPoP header", func(*testing.T) (string, []string) { return "DPoP " + tok, nil }, decision.DPoPProofMissing, "invalid_dpop_proof"},
		{"bound token as Bearer", func(t *testing.T) (string, []string) {
			return "Bearer " + tok, []string{proof(t, prover, nil, claims("", nil))}
		}, decision.DPoPDowngrade, "invalid_token"},
	}
}

func checkDPoPChallenge(t *testing.T, a dpopAttack, code, challenge string) {
	t.Helper()
	if code != a.want.String() {
		t.Fatalf("reason %q, want %s", code, a.want)
	}
	if a.want == decision.OK {
		return
	}
	if !strings.HasPrefix(challenge, "DPoP ") || !strings.Contains(challenge, `error="`+a.challenge+`"`) || !strings.Contains(challenge, `algs="ES256 ES384 ES512 RS256 PS256 EdDSA"`) {
		t.Fatalf("challenge %q, want a DPoP challenge with error=%q and the algs", challenge, a.challenge)
	}
}

func TestAttackDPoPExtAuthz(t *testing.T) {
	e := startAttackServer(t, "attack-policy.yaml", nil)
	for _, a := range dpopAttacks(t, e) {
		t.Run(a.name, func(t *testing.T) {
			authz, proofs := a.build(t)
			req := atkRequest{method: "GET", path: "/orders/1"}
			req.raw = [][2]string{{":method", "GET"}, {":path", "/orders/1"}, {":authority", "api.test"}, {"authorization", authz}}
			for _, p := range proofs {
				req.raw = append(req.raw, [2]string{"dpop", p})
			}
			resp, err := e.client.Check(atkCtx(t), req.check())
			if err != nil {
				t.Fatal(err)
			}
			var code, challenge string
			if ok := resp.GetOkResponse(); ok != nil {
				code = "ok"
			}
			for _, h := range resp.GetDeniedResponse().GetHeaders() {
				switch h.GetHeader().GetKey() {
				case "x-scopegate-reason":
					code = h.GetHeader().GetValue()
				case "www-authenticate":
					challenge = h.GetHeader().GetValue()
				}
			}
			checkDPoPChallenge(t, a, code, challenge)
		})
	}
}

func TestAttackDPoPForwardAuth(t *testing.T) {
	e := startAttackServer(t, "attack-policy.yaml", nil)
	h := e.srv.HTTPHandler()
	for _, a := range dpopAttacks(t, e) {
		t.Run(a.name, func(t *testing.T) {
			authz, proofs := a.build(t)
			r := httptest.NewRequest("GET", "http://scopegate/auth", nil)
			r.Header.Set("X-Forwarded-Method", "GET")
			r.Header.Set("X-Forwarded-Uri", "/orders/1")
			r.Header.Set("X-Forwarded-Host", "api.test")
			r.Header.Set("X-Forwarded-Proto", "https")
			r.Header.Set("Authorization", authz)
			for _, p := range proofs {
				r.Header.Add("DPoP", p)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if a.want != decision.OK && w.Code != a.want.HTTPStatus() {
				t.Fatalf("status %d, want %d", w.Code, a.want.HTTPStatus())
			}
			if a.want == decision.OK && w.Code != http.StatusOK {
				t.Fatalf("status %d, want 200: %s", w.Code, w.Body)
			}
			checkDPoPChallenge(t, a, w.Header().Get("X-Scopegate-Reason"), w.Header().Get("Www-Authenticate"))
		})
	}
}

// TestAttackDPoPAuthZEN sends the attack list through the AuthZEN
// evaluation API, the token and proof as subject properties and the
// scheme and host as resource properties: every case gets the reason and
// challenge it gets through forward-auth. Two proof headers are sent as a
// PEP that combines header lines would send them, joined by a comma.
func TestAttackDPoPAuthZEN(t *testing.T) {
	e := startAttackServer(t, "attack-policy.yaml", nil)
	h := e.srv.HTTPHandler()
	for _, a := range dpopAttacks(t, e) {
		t.Run(a.name, func(t *testing.T) {
			authz, proofs := a.build(t)
			typ, tok, _ := strings.Cut(authz, " ")
			props := map[string]any{"token": tok, "token_type": typ}
			if len(proofs) > 0 {
				props["dpop"] = strings.Join(proofs, ", ")
			}
			body, err := json.Marshal(map[string]any{
				"subject":  map[string]any{"type": "user", "properties": props},
				"action":   map[string]any{"name": "GET"},
				"resource": map[string]any{"type": "http_path", "id": "/orders/1", "properties": map[string]any{"host": "api.test", "scheme": "https"}},
			})
			if err != nil {
				t.Fatal(err)
			}
			r := httptest.NewRequest("POST", authzen.EvaluationPath, bytes.NewReader(body))
			r.Header.Set("Content-Type", "application/json")
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != http.StatusOK {
				t.Fatalf("status %d, want 200: %s", w.Code, w.Body)
			}
			var resp authzen.Response
			if err := json.Unmarshal(w.Body.Bytes(), &resp); err != nil || resp.Context == nil {
				t.Fatalf("response %s: %v", w.Body, err)
			}
			if resp.Decision != (a.want == decision.OK) {
				t.Fatalf("decision %v for %s: %s", resp.Decision, a.want, w.Body)
			}
			if a.want != decision.OK && resp.Context.HTTPStatus != a.want.HTTPStatus() {
				t.Fatalf("http_status %d, want %d", resp.Context.HTTPStatus, a.want.HTTPStatus())
			}
			checkDPoPChallenge(t, a, resp.Context.Reason, resp.Context.WWWAuthenticate)
		})
	}
}

// TestAttackDPoPCheckRPC sends the attack list through scopegate's own
// Check RPC, the scheme in its scheme field (a header saying otherwise is
// overruled) and the proofs as dpop headers (two spelled apart by case).
func TestAttackDPoPCheckRPC(t *testing.T) {
	e := startAttackServer(t, "attack-policy.yaml", nil)
	client := scopegatev1.NewAuthorizerClient(e.conn)
	for _, a := range dpopAttacks(t, e) {
		t.Run(a.name, func(t *testing.T) {
			authz, proofs := a.build(t)
			hdr := map[string]string{"authorization": authz, "x-forwarded-proto": "http"}
			for i, p := range proofs {
				hdr[[]string{"dpop", "DPoP"}[i]] = p
			}
			resp, err := client.Check(atkCtx(t), &scopegatev1.CheckRequest{Method: "GET", Path: "/orders/1", Host: "api.test", Scheme: "https", Headers: hdr})
			if err != nil {
				t.Fatal(err)
			}
			if resp.GetAllow() != (a.want == decision.OK) || len(resp.GetReasons()) == 0 {
				t.Fatalf("allow %v, reasons %v; want %s", resp.GetAllow(), resp.GetReasons(), a.want)
			}
			if a.want != decision.OK && resp.GetHttpStatus() != int32(a.want.HTTPStatus()) {
				t.Fatalf("http_status %d, want %d", resp.GetHttpStatus(), a.want.HTTPStatus())
			}
			checkDPoPChallenge(t, a, resp.GetReasons()[0].GetCode(), resp.GetWwwAuthenticate())
		})
	}
}

// TestAuthZENBatchDPoPReplay: each evaluation of a batch is a request of
// its own, so one proof given to two items is accepted once.
func TestAuthZENBatchDPoPReplay(t *testing.T) {
	e := startAttackServer(t, "attack-policy.yaml", nil)
	valid := dpopAttacks(t, e)[0]
	if valid.want != decision.OK {
		t.Fatalf("the first attack case is %q, want the valid proof", valid.name)
	}
	authz, proofs := valid.build(t)
	item := map[string]any{
		"subject":  map[string]any{"type": "user", "properties": map[string]any{"token": strings.TrimPrefix(authz, "DPoP "), "dpop": proofs[0]}},
		"action":   map[string]any{"name": "GET"},
		"resource": map[string]any{"type": "http_path", "id": "/orders/1", "properties": map[string]any{"host": "api.test", "scheme": "https"}},
	}
	body, err := json.Marshal(map[string]any{"evaluations": []any{item, item}})
	if err != nil {
		t.Fatal(err)
	}
	r := httptest.NewRequest("POST", authzen.EvaluationsPath, bytes.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	w := httptest.NewRecorder()
	e.srv.HTTPHandler().ServeHTTP(w, r)
	var resp authzen.EvaluationsResponse
	if err := json.Unmarshal(w.Body.Bytes(), &resp); err != nil || w.Code != http.StatusOK || len(resp.Evaluations) != 2 {
		t.Fatalf("status %d, %s: %v", w.Code, w.Body, err)
	}
	first, second := resp.Evaluations[0], resp.Evaluations[1]
	if !first.Decision || second.Decision || second.Context.Reason != decision.DPoPProofReplayed.String() {
		t.Fatalf("batch answers %+v, %+v; want allow, then dpop_proof_replayed", first.Context, second.Context)
	}
}
