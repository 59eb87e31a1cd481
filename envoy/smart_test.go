package envoy

import (
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/scopegate/scopegate/decision"
	"github.com/scopegate/scopegate/decision/decisiontest"
)

const smartPolicy = `
issuers:
  - issuer: https://issuer.test
    audiences: [fhir]
    jwks_file: jwks.json
    algorithms: [RS256]
routes:
  - name: fhir
    match: {methods: [GET], path: "/fhir/{rest...}"}
    smart: {patient_filter_upstream: true}
  - name: plain
    match: {methods: [GET], path: /plain}
    require: {all_of: [plain:read]}
`

// TestSMARTHintsReachTheUpstream checks that an allow on a SMART route
// carries the restriction and patient hints it has as upstream headers,
// never an empty one: over ext_authz a hint it lacks is removed from the
// request (headers_to_remove), over forward-auth it is sent empty so the
// gateway overwrites a forged copy. Other routes carry none. Its dynamic
// metadata names the SMART scopes that granted the request.
func TestSMARTHintsReachTheUpstream(t *testing.T) {
	signer, err := decisiontest.NewRSASigner("k1")
	if err != nil {
		t.Fatal(err)
	}
	keys := decision.StaticKeys{{Kid: signer.Kid, Alg: signer.Alg, Public: signer.Key.Public()}}
	pol, err := decision.Compile([]byte(smartPolicy), "policy.yaml", decision.CompileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	eng, err := decision.NewEngine(pol, decision.Options{Keys: decision.StaticKeyResolver(keys), Clock: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	mint := func(scope string) string {
		c := decisiontest.StandardClaims("https://issuer.test", "fhir", "alice", "app", scope, time.Hour, now)
		c["patient"] = "123"
		tok, err := signer.Mint(c, nil)
		if err != nil {
			t.Fatal(err)
		}
		return "Bearer " + tok
	}
	cases := map[string]struct {
		path, scope       string
		restrict, patient string
		hints             bool
		used              []string
		removed           []string
	}{
		"query-parameter scope": {path: "/fhir/Observation", scope: "openid patient/Observation.rs?category=laboratory", restrict: "category=laboratory", patient: "123", hints: true,
			used: []string{"patient/Observation.rs?category=laboratory"}},
		"patient scope": {path: "/fhir/Observation", scope: "patient/Observation.rs launch/patient", patient: "123",
			used: []string{"patient/Observation.rs"}, removed: []string{decision.HintFHIRRestriction}},
		"user scope": {path: "/fhir/Observation", scope: "user/Condition.rs user/Observation.rs", used: []string{"user/Observation.rs"},
			removed: []string{decision.HintFHIRRestriction, decision.HintFHIRPatient}},
		"plain route": {path: "/plain", scope: "plain:read", used: []string{"plain:read"}},
	}
	r := NewResponder(ResponderOptions{})
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			d := eng.Decide(context.Background(), &decision.Request{Method: "GET", Path: tc.path, Authorization: mint(tc.scope), AuthorizationCount: 1})
			if !d.Allow {
				t.Fatalf("deny %s: %s", d.Code, d.Message())
			}
			resp := r.Response(&d)
			h := headerMap(t, resp.GetOkResponse().GetHeaders())
			got, present := h[decision.HintFHIRRestriction]
			if present != tc.hints || got != tc.restrict {
				t.Errorf("ext_authz %s = %q (present %v), want %q (present %v)", decision.HintFHIRRestriction, got, present, tc.restrict, tc.hints)
			}
			if got, present := h[decision.HintFHIRPatient]; got != tc.patient || present != (tc.patient != "") {
				t.Errorf("ext_authz %s = %q (present %v), want %q", decision.HintFHIRPatient, got, present, tc.patient)
			}
			if rm := resp.GetOkResponse().GetHeadersToRemove(); !slices.Equal(rm, tc.removed) {
				t.Errorf("ext_authz headers_to_remove = %q, want %q", rm, tc.removed)
			}
			var used []string
			for _, v := range resp.GetDynamicMetadata().GetFields()[MetaScopesUsed].GetListValue().GetValues() {
				used = append(used, v.GetStringValue())
			}
			if !slices.Equal(used, tc.used) {
				t.Errorf("dynamic metadata %s = %q, want %q", MetaScopesUsed, used, tc.used)
			}
			// Forward-auth answers carry the same hints as response headers.
			rec := httptest.NewRecorder()
			NewHTTPResponder(r).Write(rec, &d)
			vals, present := rec.Header()[http.CanonicalHeaderKey(decision.HintFHIRRestriction)]
			if present != d.Route.IsSMART() || (present && vals[0] != tc.restrict) {
				t.Errorf("forward-auth %s = %v (present %v), want %q", decision.HintFHIRRestriction, vals, present, tc.restrict)
			}
			if _, present := rec.Header()[http.CanonicalHeaderKey(decision.HintFHIRPatient)]; present != d.Route.IsSMART() {
				t.Errorf("forward-auth %s present %v on a SMART route %v", decision.HintFHIRPatient, present, d.Route.IsSMART())
			}
			if got := rec.Header().Get(decision.HintFHIRPatient); got != tc.patient {
				t.Errorf("forward-auth %s = %q, want %q", decision.HintFHIRPatient, got, tc.patient)
			}
		})
	}
}
