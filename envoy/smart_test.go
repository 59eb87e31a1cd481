package envoy_test

import (
	"slices"
	"testing"

	"github.com/scopegate/scopegate/decision"
	"github.com/scopegate/scopegate/decision/decisiontest"
	"github.com/scopegate/scopegate/envoy"
)

// TestSMARTHintsReachTheUpstream checks that an ext_authz allow on a SMART
// route carries the restriction and patient hints it has as upstream
// headers, never an empty one: a hint it lacks is removed from the request
// (headers_to_remove), so a forged copy never reaches the FHIR server.
// Other routes carry none. Its dynamic metadata names the SMART scopes
// that granted the request.
func TestSMARTHintsReachTheUpstream(t *testing.T) {
	smart := decisiontest.NewSMART(t)
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
	r := envoy.NewResponder(envoy.ResponderOptions{})
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			d := smart.Allow(t, tc.path, tc.scope)
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
			for _, v := range resp.GetDynamicMetadata().GetFields()[envoy.MetaScopesUsed].GetListValue().GetValues() {
				used = append(used, v.GetStringValue())
			}
			if !slices.Equal(used, tc.used) {
				t.Errorf("dynamic metadata %s = %q, want %q", envoy.MetaScopesUsed, used, tc.used)
			}
		})
	}
}
