package decision

import (
	"strings"
	"testing"
)

func TestFHIRInteraction(t *testing.T) {
	cases := []struct {
		method, rel string
		perm        SMARTPermissions
		typ, id     string
		comp        string // compType/compID
		why         string // substring of the reason; "" for none
	}{
		{method: "GET", rel: "Observation/1", perm: SMARTRead, typ: "Observation", id: "1"},
		{method: "HEAD", rel: "/Observation/1/", perm: SMARTRead, typ: "Observation", id: "1"},
		{method: "GET", rel: "Observation", perm: SMARTSearch, typ: "Observation"},
		{method: "GET", rel: "Observation/_search", perm: SMARTSearch, typ: "Observation"},
		{method: "POST", rel: "Observation/_search", perm: SMARTSearch, typ: "Observation"},
		{method: "GET", rel: "Observation/_history", perm: SMARTSearch, typ: "Observation"},
		{method: "POST", rel: "Observation", perm: SMARTCreate, typ: "Observation"},
		{method: "PUT", rel: "Observation", perm: SMARTUpdate, typ: "Observation"},
		{method: "DELETE", rel: "Observation", perm: SMARTDelete, typ: "Observation"},
		{method: "PUT", rel: "Observation/a-1.b", perm: SMARTUpdate, typ: "Observation", id: "a-1.b"},
		{method: "PATCH", rel: "Observation/1", perm: SMARTUpdate, typ: "Observation", id: "1"},
		{method: "DELETE", rel: "Observation/1", perm: SMARTDelete, typ: "Observation", id: "1"},
		{method: "GET", rel: "Observation/1/_history", perm: SMARTRead, typ: "Observation", id: "1"},
		{method: "GET", rel: "Observation/1/_history/3", perm: SMARTRead, typ: "Observation", id: "1"},
		{method: "GET", rel: "Patient/7/Observation", perm: SMARTSearch, typ: "Observation", comp: "Patient/7"},
		{method: "POST", rel: "Patient/7/Observation/_search", perm: SMARTSearch, typ: "Observation", comp: "Patient/7"},
		{method: "GET", rel: "", perm: SMARTSearch},
		{method: "GET", rel: "_history", perm: SMARTSearch},
		{method: "POST", rel: "_search", perm: SMARTSearch},
		{method: "POST", rel: "", why: "batch"},
		{method: "POST", rel: "/", why: "batch"},
		{method: "GET", rel: "metadata", why: "capability statement"},
		{method: "POST", rel: "$export", why: "operations"},
		{method: "GET", rel: "Patient/1/$everything", why: "operations"},
		{method: "GET", rel: "observation/1", why: "resource type"},
		{method: "GET", rel: "Observation/a%20b", why: "id is invalid"},
		{method: "GET", rel: "Observation/" + strings.Repeat("x", 65), why: "id is invalid"},
		{method: "POST", rel: "Observation/1", why: "method"},
		{method: "PUT", rel: "Observation/1/_history/2", why: "method"},
		{method: "DELETE", rel: "Observation/_search", why: "method"},
		{method: "GET", rel: "Observation/1/foo", why: "not a FHIR REST interaction"},
		{method: "GET", rel: "Patient/7/Observation/x", why: "not a FHIR REST interaction"},
		{method: "GET", rel: "a/b/c/d/e/f", why: "not a FHIR REST interaction"},
		{method: "GET", rel: "Observation//1", why: "not a FHIR REST interaction"},
		{method: "OPTIONS", rel: "Observation", why: "method"},
	}
	for _, tc := range cases {
		t.Run(tc.method+" "+tc.rel, func(t *testing.T) {
			fr, why := fhirInteraction(tc.method, tc.rel)
			if tc.why != "" {
				if !strings.Contains(why, tc.why) {
					t.Fatalf("why = %q, want one mentioning %q", why, tc.why)
				}
				return
			}
			if why != "" {
				t.Fatalf("unexpected reason %q", why)
			}
			comp := ""
			if fr.compType != "" {
				comp = fr.compType + "/" + fr.compID
			}
			if fr.perm != tc.perm || fr.typ != tc.typ || fr.id != tc.id || comp != tc.comp {
				t.Fatalf("got %+v", fr)
			}
		})
	}
}

func TestSMARTBase(t *testing.T) {
	cases := map[string]struct {
		template, path string
		params         []string
		rel            string
	}{
		"rest parameter":            {template: "/tenants/{tenant}/fhir/{rest...}", path: "/tenants/t1/fhir/Observation/1", params: []string{"t1", "Observation/1"}, rel: "Observation/1"},
		"literal base":              {template: "/fhir", path: "/fhir", rel: ""},
		"literal base with a slash": {template: "/fhir", path: "/fhir/", rel: "/"},
		"typed template":            {template: "/api/fhir/{type}/{id}", path: "/api/fhir/Observation/1", params: []string{"Observation", "1"}, rel: "/Observation/1"},
		"literal type":              {template: "/api/fhir/Observation/{id}", path: "/api/fhir/Observation/1", params: []string{"1"}, rel: "/Observation/1"},
		"literal search":            {template: "/fhir/_search", path: "/fhir/_search", rel: "/_search"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			text := govInternalBase + strings.Replace(`
  - name: fhir
    match: {path: "TPL"}
    smart: {patient_lookup: l}
`, "TPL", tc.template, 1) + "lookups:\n  l: {}\n"
			pol, probs := compileProblems(t, text)
			for _, p := range probs {
				if !p.Warning {
					t.Fatal(p)
				}
			}
			var r *Route
			for _, x := range pol.Routes {
				if x.Name == "fhir" {
					r = x
				}
			}
			if r == nil || r.smart == nil {
				t.Fatal("no smart route")
			}
			d := Decision{Route: r, Path: tc.path}
			for _, p := range tc.params {
				d.Params.push(p)
			}
			if got := r.smart.relPath(&d); got != tc.rel {
				t.Fatalf("rel = %q, want %q", got, tc.rel)
			}
		})
	}
}

// Parsing a SMART scope and finding the grant allocate nothing: they run
// on every decision of a SMART route.
func TestSMARTGrantAllocs(t *testing.T) {
	scopes := []string{"openid", "fhirUser", "launch/patient", "patient/Condition.rs", "patient/Observation.rs?category=laboratory", "user/*.read"}
	fr := fhirRequest{perm: SMARTRead, typ: "Observation", id: "1"}
	n := testing.AllocsPerRun(100, func() {
		if g := smartGrant(scopes, &fr); !g.any[smartOpen] || g.mask[smartOpen] != 1<<5 {
			t.Fatal(g)
		}
	})
	if n != 0 {
		t.Fatalf("smartGrant allocates %v times", n)
	}
}
