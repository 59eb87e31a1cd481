package audit_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/scopegate/scopegate/decision"
	"github.com/scopegate/scopegate/decision/decisiontest"
	"github.com/scopegate/scopegate/store/audit"
)

const smartPolicy = `version: smart-audit
issuers:
  - issuer: https://ehr.test/
    audiences: [fhir]
    jwks_file: keys.json
    algorithms: [ES256]
routes:
  - name: fhir
    match: {path: "/fhir/{rest...}"}
    smart: {patient_filter_upstream: true}
default: deny
`

// TestSMARTRecordsNamePatient: a decision on a SMART route records the
// token's launch patient; other decisions carry no patient field. The
// records read back through ReadRecords, filtered by patient.
func TestSMARTRecordsNamePatient(t *testing.T) {
	s, err := decisiontest.NewECSigner("k1")
	if err != nil {
		t.Fatal(err)
	}
	pol, err := decision.Compile([]byte(smartPolicy), "policy.yaml", decision.CompileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	eng, err := decision.NewEngine(pol, decision.Options{Keys: decision.StaticKeyResolver(decision.StaticKeys{{Kid: s.Kid, Alg: s.Alg, Public: s.Public()}}),
		Clock: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	mint := func(scope, patient string) string {
		c := decisiontest.StandardClaims("https://ehr.test/", "fhir", "dr-who", "ehr-app", scope, time.Hour, now)
		if patient != "" {
			c["patient"] = patient
		}
		tok, err := s.Mint(c, nil)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	var buf bytes.Buffer
	l := newLogger(t, audit.Options{Sinks: []audit.Sink{audit.NewWriterSink("buf", &buf)}})
	for _, c := range []struct{ path, token string }{
		{"/fhir/Patient/p1", mint("patient/Patient.rs launch/patient", "p1")},
		{"/fhir/Observation", mint("patient/Observation.rs", "p2")},
		{"/fhir/Observation", mint("user/Observation.rs", "")},
	} {
		r := decision.Request{Method: "GET", Path: c.path, Authorization: "Bearer " + c.token, AuthorizationCount: 1}
		d := eng.Decide(context.Background(), &r)
		if !d.Allow {
			t.Fatalf("GET %s denied: %s", c.path, d.Message())
		}
		l.Record(context.Background(), audit.HTTP, &r, &d, now, "")
	}
	closeLogger(t, l)

	var patients, used []string
	if err := audit.ReadRecords(bytes.NewReader(buf.Bytes()), "buf", audit.Query{}, func(r *audit.Record) error {
		patients = append(patients, r.Patient)
		used = append(used, strings.Join(r.ScopesUsed, " "))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if want := []string{"p1", "p2", ""}; !slices.Equal(patients, want) {
		t.Errorf("patients %q; want %q", patients, want)
	}
	if want := []string{"patient/Patient.rs", "patient/Observation.rs", "user/Observation.rs"}; !slices.Equal(used, want) {
		t.Errorf("scopes_used %q; want %q", used, want)
	}
	n := 0
	if err := audit.ReadRecords(bytes.NewReader(buf.Bytes()), "buf", audit.Query{Patient: "p2"}, func(r *audit.Record) error {
		n++
		return nil
	}); err != nil || n != 1 {
		t.Errorf("records of patient p2: %d, %v; want 1", n, err)
	}
}

// TestReadFilesRotated: the backups of a rotated file are read oldest
// first, then the file; a line that is not a record is an error naming
// its file and line.
func TestReadFilesRotated(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.log")
	rec := func(id, client string, min int) string {
		return `{"time":"2026-11-22T12:` + string(rune('0'+min/10)) + string(rune('0'+min%10)) + `:00Z","type":"decision","decision_id":"` + id + `","client_id":"` + client + `"}` + "\n"
	}
	write := func(p, s string) {
		if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(path+".2", rec("a", "web", 1)+rec("b", "cli", 2))
	write(path+".1", rec("c", "web", 3))
	write(path, rec("d", "web", 4)+`{"time":"2026-11-22T12:05:00Z","type":"admin","decision_id":"e"}`+"\n")
	var ids []string
	q := audit.Query{ClientID: "web", From: time.Date(2026, 11, 22, 12, 1, 0, 0, time.UTC), To: time.Date(2026, 11, 22, 12, 4, 0, 0, time.UTC)}
	if err := audit.ReadFiles(path, q, func(r *audit.Record) error { ids = append(ids, r.DecisionID); return nil }); err != nil {
		t.Fatal(err)
	}
	if want := []string{"a", "c"}; !slices.Equal(ids, want) {
		t.Errorf("read %v; want %v (oldest first, client and [from, to) applied, admin records left out)", ids, want)
	}
	write(path+".1", rec("c", "web", 3)+"not json\n")
	err := audit.ReadFiles(path, audit.Query{}, func(*audit.Record) error { return nil })
	if err == nil || !strings.Contains(err.Error(), "audit.log.1:2") {
		t.Errorf("a bad line: %v; want an error naming audit.log.1:2", err)
	}
	if err := audit.ReadFiles(filepath.Join(dir, "missing.log"), audit.Query{}, func(*audit.Record) error { return nil }); err == nil {
		t.Error("a missing audit file was read as empty")
	}
}
