package decision_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/scopegate/scopegate/decision"
)

const labCategory = "category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory"

func TestParseSMARTScope(t *testing.T) {
	const (
		c = decision.SMARTCreate
		r = decision.SMARTRead
		u = decision.SMARTUpdate
		d = decision.SMARTDelete
		s = decision.SMARTSearch
	)
	cases := []struct {
		scope     string
		ctx       decision.SMARTContext
		typ       string
		perms     decision.SMARTPermissions
		v1        bool
		params    []decision.SMARTParam
		canonical string
		err       string // substring of the error; "" for none
		notSMART  bool
	}{
		// The examples of SMART App Launch v2, "Scopes and Launch Context".
		{scope: "patient/Observation.rs", ctx: decision.SMARTPatient, typ: "Observation", perms: r | s, canonical: "patient/Observation.rs"},
		{scope: "user/*.cruds", ctx: decision.SMARTUser, typ: "*", perms: c | r | u | d | s, canonical: "user/*.cruds"},
		{scope: "patient/*.read", ctx: decision.SMARTPatient, typ: "*", perms: r | s, v1: true, canonical: "patient/*.rs"},
		{scope: "system/Patient.write", ctx: decision.SMARTSystem, typ: "Patient", perms: c | u | d, v1: true, canonical: "system/Patient.cud"},
		{scope: "user/Observation.*", ctx: decision.SMARTUser, typ: "Observation", perms: c | r | u | d | s, v1: true, canonical: "user/Observation.cruds"},
		{scope: "patient/Observation.rs?" + labCategory, ctx: decision.SMARTPatient, typ: "Observation", perms: r | s,
			params:    []decision.SMARTParam{{Name: "category", Value: "http://terminology.hl7.org/CodeSystem/observation-category|laboratory"}},
			canonical: "patient/Observation.rs?" + labCategory},
		{scope: "user/Observation.rs?category=vital-signs&code:in=http://valueset.example.org/ValueSet/diabetes", ctx: decision.SMARTUser, typ: "Observation", perms: r | s,
			params: []decision.SMARTParam{{Name: "category", Value: "vital-signs"}, {Name: "code:in", Value: "http://valueset.example.org/ValueSet/diabetes"}}},
		{scope: "patient/Medication.r", ctx: decision.SMARTPatient, typ: "Medication", perms: r},
		{scope: "user/Appointment.cu", ctx: decision.SMARTUser, typ: "Appointment", perms: c | u},
		{scope: "system/*.d", ctx: decision.SMARTSystem, typ: "*", perms: d},
		{scope: "user/Encounter.rd", ctx: decision.SMARTUser, typ: "Encounter", perms: r | d},
		{scope: "patient/Observation.dus", err: "in-order subsequence of cruds"},
		{scope: "patient/Observation.sr", err: "in-order subsequence"},
		{scope: "patient/Observation.rr", err: "each letter once"},
		{scope: "patient/Observation.x", err: "in-order subsequence"},
		{scope: "patient/Observation.reads", err: "in-order subsequence"},
		{scope: "patient/Observation.", err: "no permissions"},
		{scope: "patient/Observation", err: "no '.'"},
		{scope: "patient/observation.rs", err: "FHIR resource type"},
		{scope: "patient/.rs", err: "FHIR resource type"},
		{scope: "patient/Observation.rs?", err: "name=value"},
		{scope: "patient/Observation.rs?category", err: "name=value"},
		{scope: "patient/Observation.rs?=lab", err: "name=value"},
		{scope: "patient/Observation.rs?a=1&&b=2", err: "name=value"},
		{scope: "launch/patient", notSMART: true},
		{scope: "openid", notSMART: true},
		{scope: "fhirUser", notSMART: true},
		{scope: "offline_access", notSMART: true},
		{scope: "Patient/Observation.rs", notSMART: true},
	}
	for _, tc := range cases {
		t.Run(tc.scope, func(t *testing.T) {
			sc, err := decision.ParseSMARTScope(tc.scope)
			switch {
			case tc.notSMART:
				if !errors.Is(err, decision.ErrNotSMARTResourceScope) {
					t.Fatalf("err = %v, want ErrNotSMARTResourceScope", err)
				}
				return
			case tc.err != "":
				if err == nil || !strings.Contains(err.Error(), tc.err) || errors.Is(err, decision.ErrNotSMARTResourceScope) {
					t.Fatalf("err = %v, want one mentioning %q", err, tc.err)
				}
				return
			case err != nil:
				t.Fatal(err)
			}
			if sc.Context != tc.ctx || sc.ResourceType != tc.typ || sc.Permissions != tc.perms || sc.V1 != tc.v1 {
				t.Fatalf("parsed %+v", sc)
			}
			if !slices.Equal(sc.Params(), tc.params) {
				t.Fatalf("params = %v, want %v", sc.Params(), tc.params)
			}
			if tc.canonical != "" && sc.String() != tc.canonical {
				t.Fatalf("String() = %q, want %q", sc.String(), tc.canonical)
			}
		})
	}
}

// The v1 permissions are exactly their v2 equivalents.
func TestSMARTv1Equivalence(t *testing.T) {
	for v1, v2 := range map[string]string{"read": "rs", "write": "cud", "*": "cruds"} {
		a, err := decision.ParseSMARTScope("patient/Observation." + v1)
		if err != nil {
			t.Fatal(err)
		}
		b, err := decision.ParseSMARTScope("patient/Observation." + v2)
		if err != nil {
			t.Fatal(err)
		}
		if a.Permissions != b.Permissions || !a.V1 || b.V1 {
			t.Errorf(".%s = %s, .%s = %s", v1, a.Permissions, v2, b.Permissions)
		}
	}
}

// fakeOwners is an ownership store over a fixed map.
type fakeOwners struct {
	mu     sync.Mutex
	owners map[string][]string
	err    error
	block  bool // wait for the context to end
	calls  []string
}

func (f *fakeOwners) Owners(ctx context.Context, lookup, key string) ([]string, bool, error) {
	f.mu.Lock()
	f.calls = append(f.calls, lookup+" "+key)
	f.mu.Unlock()
	if f.block {
		<-ctx.Done()
		return nil, false, ctx.Err()
	}
	if f.err != nil {
		return nil, false, f.err
	}
	o, ok := f.owners[key]
	return o, ok, nil
}

func TestSMARTDecisions(t *testing.T) {
	store := &fakeOwners{owners: map[string][]string{
		"Observation/obs1": {"123"},
		"Observation/obs2": {"456"},
		"Condition/c1":     {"123"},
	}}
	f := newGovFixture(t, readGovFile(t, "smart.yaml"), "fhir-api", decision.Options{Ownership: store})
	patient := map[string]any{"patient": "123"}
	cases := []struct {
		name         string
		scope        string
		claims       map[string]any
		method, path string
		want         decision.Code
		hints        map[string]string
		detail       string
		lookup       string // the lookup call expected, "" for none
	}{
		{name: "instance read in the patient's compartment", scope: "patient/Observation.rs", claims: patient, method: "GET", path: "/fhir/Observation/obs1", want: decision.OK,
			lookup: "patient-compartment Observation/obs1"},
		{name: "instance of another patient", scope: "patient/Observation.rs", claims: patient, method: "GET", path: "/fhir/Observation/obs2", want: decision.NotOwner},
		{name: "instance the lookup does not know", scope: "patient/Observation.rs", claims: patient, method: "GET", path: "/fhir/Observation/nope", want: decision.ResourceNotFound},
		{name: "vread", scope: "patient/Observation.r", claims: patient, method: "GET", path: "/fhir/Observation/obs1/_history/2", want: decision.OK},
		{name: "instance history is a read", scope: "patient/Observation.r", claims: patient, method: "GET", path: "/fhir/Observation/obs1/_history", want: decision.OK},
		{name: "type search is filtered upstream", scope: "patient/Observation.rs", claims: patient, method: "GET", path: "/fhir/Observation?code=1234", want: decision.OK,
			hints: map[string]string{decision.HintFHIRPatient: "123"}},
		{name: "POST _search", scope: "patient/Observation.s", claims: patient, method: "POST", path: "/fhir/Observation/_search", want: decision.OK,
			hints: map[string]string{decision.HintFHIRPatient: "123"}},
		{name: "read without search permission cannot search", scope: "patient/Observation.r", claims: patient, method: "GET", path: "/fhir/Observation", want: decision.InsufficientScope,
			detail: "patient/, user/ or system/Observation.s"},
		{name: "own Patient resource", scope: "patient/Patient.read", claims: patient, method: "GET", path: "/fhir/Patient/123", want: decision.OK},
		{name: "other Patient resource", scope: "patient/Patient.read", claims: patient, method: "GET", path: "/fhir/Patient/999", want: decision.NotOwner},
		{name: "own compartment search", scope: "patient/Observation.rs", claims: patient, method: "GET", path: "/fhir/Patient/123/Observation", want: decision.OK},
		{name: "other compartment search", scope: "patient/Observation.rs", claims: patient, method: "GET", path: "/fhir/Patient/999/Observation", want: decision.NotOwner},
		{name: "create needs c", scope: "patient/Observation.rs", claims: patient, method: "POST", path: "/fhir/Observation", want: decision.InsufficientScope},
		{name: "create under patient/ is filtered upstream", scope: "patient/Observation.c", claims: patient, method: "POST", path: "/fhir/Observation", want: decision.OK,
			hints: map[string]string{decision.HintFHIRPatient: "123"}},
		{name: "user wildcard deletes", scope: "user/*.cruds", method: "DELETE", path: "/fhir/Condition/c9", want: decision.OK},
		{name: "v1 read covers read", scope: "patient/*.read", claims: patient, method: "GET", path: "/fhir/Condition/c1", want: decision.OK},
		{name: "v1 read does not cover update", scope: "patient/*.read", claims: patient, method: "PUT", path: "/fhir/Condition/c1", want: decision.InsufficientScope},
		{name: "v1 write covers update", scope: "system/Patient.write", method: "PUT", path: "/fhir/Patient/9", want: decision.OK},
		{name: "v1 write does not cover read", scope: "system/Patient.write", method: "GET", path: "/fhir/Patient/9", want: decision.InsufficientScope},
		{name: "PATCH is update", scope: "user/Patient.u", method: "PATCH", path: "/fhir/Patient/9", want: decision.OK},
		{name: "HEAD is read", scope: "user/Patient.r", method: "HEAD", path: "/fhir/Patient/9", want: decision.OK},
		{name: "other type", scope: "user/Observation.cruds", method: "GET", path: "/fhir/Condition/c1", want: decision.InsufficientScope},
		{name: "query restriction", scope: "patient/Observation.rs?" + labCategory, claims: patient, method: "GET", path: "/fhir/Observation?" + labCategory, want: decision.OK,
			hints: map[string]string{decision.HintFHIRRestriction: labCategory, decision.HintFHIRPatient: "123"}},
		{name: "query restriction on an instance read", scope: "patient/Observation.rs?" + labCategory, claims: patient, method: "GET", path: "/fhir/Observation/obs1", want: decision.OK,
			hints: map[string]string{decision.HintFHIRRestriction: labCategory}},
		{name: "two query restrictions", scope: "user/Observation.rs?category=vital-signs user/Observation.rs?" + labCategory, method: "GET", path: "/fhir/Observation", want: decision.OK,
			hints: map[string]string{decision.HintFHIRRestriction: "category=vital-signs " + labCategory}},
		{name: "an unrestricted scope wins", scope: "user/Observation.rs?category=vital-signs user/Observation.rs", method: "GET", path: "/fhir/Observation", want: decision.OK},
		{name: "system-level search needs a wildcard", scope: "user/Observation.rs", method: "GET", path: "/fhir/_history", want: decision.InsufficientScope, detail: "user/*.s"},
		{name: "system-level history", scope: "user/*.rs", method: "GET", path: "/fhir/_history", want: decision.OK},
		{name: "system search at the base", scope: "system/*.s", method: "GET", path: "/fhir?_type=Patient", want: decision.OK},
		{name: "batch", scope: "user/*.cruds", method: "POST", path: "/fhir", want: decision.RequestInvalid, detail: "batch or transaction"},
		{name: "operation", scope: "user/*.cruds", method: "GET", path: "/fhir/Observation/$lastn", want: decision.RequestInvalid, detail: "operations"},
		{name: "not a FHIR type", scope: "user/*.cruds", method: "GET", path: "/fhir/observation/1", want: decision.RequestInvalid},
		{name: "metadata is public", method: "GET", path: "/fhir/metadata", want: decision.OK},
		{name: "non-resource scopes grant nothing", scope: "openid fhirUser launch/patient offline_access", claims: patient, method: "GET", path: "/fhir/Patient/123", want: decision.InsufficientScope},
		{name: "malformed scope grants nothing", scope: "patient/Observation.dus", claims: patient, method: "GET", path: "/fhir/Observation/obs1", want: decision.InsufficientScope},
		{name: "patient scope without patient claim", scope: "patient/Observation.rs", method: "GET", path: "/fhir/Observation", want: decision.ClaimConditionFailed, detail: "patient claim"},
		{name: "patient claim that is no FHIR id", scope: "patient/Observation.rs", claims: map[string]any{"patient": "12 3\r\n"}, method: "GET", path: "/fhir/Observation", want: decision.ClaimConditionFailed},
		{name: "typed route, upstream filters the patient", scope: "patient/Observation.rs", claims: map[string]any{"launch_patient": "77"}, method: "GET", path: "/r4/Observation/o1", want: decision.OK,
			hints: map[string]string{decision.HintFHIRPatient: "77"}},
		{name: "typed route reads its own claim", scope: "patient/Observation.rs", claims: patient, method: "GET", path: "/r4/Observation/o1", want: decision.ClaimConditionFailed, detail: "launch_patient"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			store.mu.Lock()
			store.calls = nil
			store.mu.Unlock()
			d := f.decide(tc.method, tc.path, f.token(t, "", tc.scope, tc.claims))
			if d.Code != tc.want || d.Allow != (tc.want == decision.OK) {
				t.Fatalf("code = %s (%s), want %s", d.Code, d.Message(), tc.want)
			}
			if tc.detail != "" && !strings.Contains(d.Message(), tc.detail) {
				t.Errorf("message %q does not mention %q", d.Message(), tc.detail)
			}
			if got := d.UpstreamHints(); len(got) != len(tc.hints) || !mapsEqual(got, tc.hints) {
				t.Errorf("hints = %v, want %v", got, tc.hints)
			}
			store.mu.Lock()
			calls := store.calls
			store.mu.Unlock()
			if tc.lookup != "" && !slices.Equal(calls, []string{tc.lookup}) {
				t.Errorf("lookups = %v, want [%s]", calls, tc.lookup)
			}
		})
	}
}

func mapsEqual(a, b map[string]string) bool {
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return len(a) == len(b)
}

// A patient lookup that fails, times out or has no store denies.
func TestSMARTLookupFailsClosed(t *testing.T) {
	cases := map[string]struct {
		store decision.OwnershipStore
		want  decision.Code
	}{
		"no store":     {store: nil, want: decision.OwnershipUnavailable},
		"store error":  {store: &fakeOwners{err: errors.New("connection refused")}, want: decision.OwnershipUnavailable},
		"store blocks": {store: &fakeOwners{block: true}, want: decision.OwnershipUnavailable},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			f := newGovFixture(t, readGovFile(t, "smart.yaml"), "fhir-api", decision.Options{Ownership: tc.store})
			d := f.decide("GET", "/fhir/Observation/obs1", f.token(t, "", "patient/Observation.rs", map[string]any{"patient": "123"}))
			if d.Code != tc.want {
				t.Fatalf("code = %s (%s), want %s", d.Code, d.Message(), tc.want)
			}
			if strings.Contains(d.Message(), "connection refused") {
				t.Error("the store's error reaches the deny message")
			}
		})
	}
}

func TestSMARTRouteValidation(t *testing.T) {
	cases := map[string]struct {
		route string
		want  string
	}{
		"smart with require": {route: `{name: f, match: {path: "/fhir/{rest...}"}, smart: {patient_filter_upstream: true}, require: {all_of: [x]}}`, want: "not by require"},
		"public smart":       {route: `{name: f, match: {path: "/fhir/{rest...}"}, smart: {patient_filter_upstream: true}, public: true}`, want: "cannot be a SMART route"},
		"unknown lookup":     {route: `{name: f, match: {path: "/fhir/{rest...}"}, smart: {patient_lookup: patient-compartmnt}}`, want: `patient_lookup "patient-compartmnt" names no entry of lookups; did you mean "patient-compartment"?`},
		"unknown field":      {route: `{name: f, match: {path: "/fhir/{rest...}"}, smart: {patient_lokup: x}}`, want: `unknown field "patient_lokup"`},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			text := govBase + "lookups:\n  patient-compartment: {}\nroutes:\n  - " + tc.route + "\n"
			_, err := compileGov(t, text)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one mentioning %q", err, tc.want)
			}
		})
	}
}

func FuzzParseSMARTScope(f *testing.F) {
	for _, s := range []string{"patient/Observation.rs", "user/*.cruds", "patient/*.read", "system/Patient.write", "patient/Observation.rs?" + labCategory, "patient/Observation.dus", "launch/patient", "user/A.c?x=1&y=2"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		sc, err := decision.ParseSMARTScope(s)
		if err != nil {
			return
		}
		if sc.Permissions == 0 || sc.ResourceType == "" || sc.Context == 0 {
			t.Fatalf("%q parsed to %+v", s, sc)
		}
		// The canonical form parses to the same scope.
		again, err := decision.ParseSMARTScope(sc.String())
		if err != nil || again.Permissions != sc.Permissions || again.ResourceType != sc.ResourceType || again.Context != sc.Context || again.Query != sc.Query {
			t.Fatalf("%q → %q → %+v, %v", s, sc.String(), again, err)
		}
		for _, p := range sc.Params() {
			if p.Name == "" || p.Value == "" {
				t.Fatalf("%q has an empty param: %+v", s, sc.Params())
			}
		}
	})
}

// Adding a scope never takes SMART access away: every scope that could
// grant the request is tried (issue: a patient/ scope bound to another
// patient hid a user/ scope that grants). The granting scopes are the ones
// used.
func TestSMARTEveryGrantingScopeIsTried(t *testing.T) {
	store := &fakeOwners{owners: map[string][]string{
		"Observation/obs1": {"123"},
		"Observation/obs2": {"456"},
	}}
	f := newGovFixture(t, readGovFile(t, "smart.yaml"), "fhir-api", decision.Options{Ownership: store})
	patient := map[string]any{"patient": "123"}
	userLab := "user/Observation.rs?" + labCategory
	cases := []struct {
		name   string
		scope  string
		claims map[string]any
		path   string
		want   decision.Code
		used   []string
		hints  map[string]string
	}{
		{name: "patient scope of another patient beside a user query scope", scope: "patient/Observation.rs " + userLab, claims: patient, path: "/fhir/Observation/obs2",
			want: decision.OK, used: []string{userLab}, hints: map[string]string{decision.HintFHIRRestriction: labCategory}},
		{name: "same, scopes in the other order", scope: userLab + " patient/Observation.rs", claims: patient, path: "/fhir/Observation/obs2",
			want: decision.OK, used: []string{userLab}, hints: map[string]string{decision.HintFHIRRestriction: labCategory}},
		{name: "the user query scope alone", scope: userLab, claims: patient, path: "/fhir/Observation/obs2",
			want: decision.OK, used: []string{userLab}, hints: map[string]string{decision.HintFHIRRestriction: labCategory}},
		{name: "patient scope without patient claim beside a user query scope", scope: "patient/Observation.rs " + userLab, path: "/fhir/Observation",
			want: decision.OK, used: []string{userLab}, hints: map[string]string{decision.HintFHIRRestriction: labCategory}},
		{name: "patient scope of the patient wins over the query scope", scope: "patient/Observation.rs " + userLab, claims: patient, path: "/fhir/Observation/obs1",
			want: decision.OK, used: []string{"patient/Observation.rs"}},
		{name: "unknown resource beside a user query scope", scope: "patient/Observation.rs " + userLab, claims: patient, path: "/fhir/Observation/nope",
			want: decision.OK, used: []string{userLab}, hints: map[string]string{decision.HintFHIRRestriction: labCategory}},
		{name: "patient query scope of another patient beside a user query scope", scope: "patient/Observation.rs?category=vital-signs " + userLab, claims: patient, path: "/fhir/Observation/obs2",
			want: decision.OK, used: []string{userLab}, hints: map[string]string{decision.HintFHIRRestriction: labCategory}},
		{name: "only patient scopes of another patient", scope: "patient/Observation.rs patient/Observation.rs?" + labCategory, claims: patient, path: "/fhir/Observation/obs2",
			want: decision.NotOwner},
		{name: "an unrestricted user scope is used alone", scope: "patient/Observation.rs user/Observation.r " + userLab, claims: patient, path: "/fhir/Observation/obs2",
			want: decision.OK, used: []string{"user/Observation.r"}},
		{name: "every unrestricted user scope that grants is used", scope: "user/Observation.r openid user/*.rs", path: "/fhir/Observation/obs2",
			want: decision.OK, used: []string{"user/Observation.r", "user/*.rs"}},
		{name: "the patient scope that grants a search", scope: "openid patient/Observation.rs launch/patient", claims: patient, path: "/fhir/Observation",
			want: decision.OK, used: []string{"patient/Observation.rs"}, hints: map[string]string{decision.HintFHIRPatient: "123"}},
		{name: "scopes that do not grant are not used", scope: "user/Condition.rs user/Observation.s", path: "/fhir/Observation",
			want: decision.OK, used: []string{"user/Observation.s"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := f.decide("GET", tc.path, f.token(t, "", tc.scope, tc.claims))
			if d.Code != tc.want || d.Allow != (tc.want == decision.OK) {
				t.Fatalf("code = %s (%s), want %s", d.Code, d.Message(), tc.want)
			}
			if !d.Allow {
				return
			}
			if got := d.ScopesUsed(); !slices.Equal(got, tc.used) {
				t.Errorf("ScopesUsed = %q, want %q", got, tc.used)
			}
			if got := slices.Collect(d.ScopesUsedSeq()); !slices.Equal(got, tc.used) {
				t.Errorf("ScopesUsedSeq = %q, want %q", got, tc.used)
			}
			if got := d.UpstreamHints(); !mapsEqual(got, tc.hints) {
				t.Errorf("hints = %v, want %v", got, tc.hints)
			}
		})
	}
}

// Property: for random SMART scope sets S and an extra scope x, a request
// allowed with S is allowed with S ∪ {x}, whatever x is and wherever it
// goes in the token.
func TestSMARTGrantMonotonic(t *testing.T) {
	store := &fakeOwners{owners: map[string][]string{
		"Observation/mine":   {"123"},
		"Observation/theirs": {"456"},
		"Condition/mine":     {"123"},
	}}
	f := newGovFixture(t, readGovFile(t, "smart.yaml"), "fhir-api", decision.Options{Ownership: store})
	contexts := []string{"patient", "user", "system"}
	types := []string{"Observation", "Condition", "Patient", "*"}
	perms := []string{"r", "s", "rs", "cruds", "read", "c", "u", "d"}
	queries := []string{"", "", "?" + labCategory, "?category=vital-signs"}
	extras := []string{"openid", "launch/patient", "patient/Observation.dus"}
	requests := []struct{ method, path string }{
		{"GET", "/fhir/Observation/mine"}, {"GET", "/fhir/Observation/theirs"}, {"GET", "/fhir/Observation/nope"},
		{"GET", "/fhir/Observation"}, {"GET", "/fhir/Patient/123"}, {"GET", "/fhir/Patient/999"},
		{"GET", "/fhir/Patient/999/Observation"}, {"POST", "/fhir/Observation"}, {"PUT", "/fhir/Condition/mine"},
		{"DELETE", "/fhir/Condition/theirs"}, {"GET", "/fhir/_history"},
	}
	claimSets := []map[string]any{{"patient": "123"}, nil}
	rnd := rand.New(rand.NewPCG(20260413, 13))
	scope := func() string {
		if rnd.IntN(8) == 0 {
			return extras[rnd.IntN(len(extras))]
		}
		return contexts[rnd.IntN(len(contexts))] + "/" + types[rnd.IntN(len(types))] + "." + perms[rnd.IntN(len(perms))] + queries[rnd.IntN(len(queries))]
	}
	checked := 0
	for range 300 {
		n := rnd.IntN(4)
		set := make([]string, 0, n+1)
		for range n {
			set = append(set, scope())
		}
		x := scope()
		at := rnd.IntN(len(set) + 1)
		withX := slices.Insert(slices.Clone(set), at, x)
		claims := claimSets[rnd.IntN(len(claimSets))]
		tokS := f.token(t, "", strings.Join(set, " "), claims)
		tokX := f.token(t, "", strings.Join(withX, " "), claims)
		for _, rq := range requests {
			a := f.decide(rq.method, rq.path, tokS)
			if !a.Allow {
				continue
			}
			checked++
			b := f.decide(rq.method, rq.path, tokX)
			if !b.Allow {
				t.Fatalf("%s %s: allowed with [%s] but denied %s (%s) with [%s]", rq.method, rq.path,
					strings.Join(set, " "), b.Code, b.Message(), strings.Join(withX, " "))
			}
			if len(b.ScopesUsed()) == 0 {
				t.Fatalf("%s %s with [%s]: allowed with no scope used", rq.method, rq.path, strings.Join(withX, " "))
			}
		}
	}
	if checked < 50 {
		t.Fatalf("only %d allowed requests were checked; the generator is too narrow", checked)
	}
}
