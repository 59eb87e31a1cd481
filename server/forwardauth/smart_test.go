package forwardauth_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/scopegate/scopegate/decision"
	"github.com/scopegate/scopegate/decision/decisiontest"
	"github.com/scopegate/scopegate/server/forwardauth"
)

// TestSMARTHintsReachTheUpstream checks that a forward-auth allow on a
// SMART route answers with both hint headers, a hint it lacks sent empty so
// that the gateway, copying the answer's headers onto the request,
// overwrites a forged copy (and Caddy forwards no literal placeholder).
// Other routes carry none.
func TestSMARTHintsReachTheUpstream(t *testing.T) {
	smart := decisiontest.NewSMART(t)
	cases := map[string]struct {
		path, scope       string
		restrict, patient string
		smart             bool
	}{
		"query-parameter scope": {path: "/fhir/Observation", scope: "openid patient/Observation.rs?category=laboratory", restrict: "category=laboratory", patient: "123", smart: true},
		"patient scope":         {path: "/fhir/Observation", scope: "patient/Observation.rs launch/patient", patient: "123", smart: true},
		"user scope":            {path: "/fhir/Observation", scope: "user/Condition.rs user/Observation.rs", smart: true},
		"plain route":           {path: "/plain", scope: "plain:read"},
	}
	fr := forwardauth.NewResponder(nil)
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			d := smart.Allow(t, tc.path, tc.scope)
			rec := httptest.NewRecorder()
			fr.Write(rec, &d)
			for _, h := range []struct{ name, want string }{
				{decision.HintFHIRRestriction, tc.restrict},
				{decision.HintFHIRPatient, tc.patient},
			} {
				vals, present := rec.Header()[http.CanonicalHeaderKey(h.name)]
				if present != tc.smart || (present && (len(vals) != 1 || vals[0] != h.want)) {
					t.Errorf("%s = %q (present %v), want %q (present %v)", h.name, vals, present, h.want, tc.smart)
				}
			}
		})
	}
}
