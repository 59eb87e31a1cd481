package audit_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/scopegate/scopegate/store/audit"
	"github.com/scopegate/scopegate/store/audit/audittest"
)

var maskKey = []byte("0123456789abcdef0123456789abcdef-test-key")

// wantHash is the documented form of a hashed value, computed apart from
// the code under test: "hmac:" and the first 16 bytes of HMAC-SHA256 in hex.
func wantHash(v string) string {
	m := hmac.New(sha256.New, maskKey)
	m.Write([]byte(v))
	return "hmac:" + hex.EncodeToString(m.Sum(nil)[:16])
}

func TestParseMask(t *testing.T) {
	rules, err := audit.ParseMask(" client_id=hash, claim:sub=drop ,source_ip=drop")
	if err != nil {
		t.Fatal(err)
	}
	want := []audit.MaskRule{{Field: "client_id", Action: audit.MaskHash}, {Claim: "sub", Action: audit.MaskDrop}, {Field: "source_ip", Action: audit.MaskDrop}}
	if len(rules) != len(want) {
		t.Fatalf("rules %+v, want %+v", rules, want)
	}
	for i := range want {
		if rules[i] != want[i] {
			t.Errorf("rule %d = %+v, want %+v", i, rules[i], want[i])
		}
	}
	if r, err := audit.ParseMask(""); err != nil || r != nil {
		t.Errorf(`ParseMask("") = %v, %v; want no rule`, r, err)
	}
	for spec, wantErr := range map[string]string{
		"client_id":       "write FIELD=ACTION",
		"client_id=hide":  `action "hide" is unknown: use drop or hash`,
		"client_id=hahs":  `did you mean "hash"?`,
		"=drop":           "write FIELD=ACTION",
		"client_id=drop,": "write FIELD=ACTION",
	} {
		if _, err := audit.ParseMask(spec); err == nil || !strings.Contains(err.Error(), wantErr) {
			t.Errorf("ParseMask(%q) = %v, want an error containing %q", spec, err, wantErr)
		}
	}
}

func TestValidateMask(t *testing.T) {
	for name, c := range map[string]struct {
		spec    string
		key     []byte
		wantErr string
	}{
		"unknown field":       {"clinet_id=drop", nil, `unknown record field "clinet_id"; did you mean "client_id"?`},
		"unknown claim":       {"claim:email=drop", nil, `claim "email" never reaches an audit record`},
		"claim typo":          {"claim:subb=hash", maskKey, `did you mean "sub"?`},
		"structural field":    {"decision=drop", nil, `field "decision" cannot be masked`},
		"object hashed":       {"shadow=hash", maskKey, "can only be dropped: write shadow=drop"},
		"conflict":            {"subject=hash,claim:sub=drop", maskKey, "both mask field subject: keep one"},
		"hash without key":    {"client_id=hash", nil, "a hash rule needs a key"},
		"hash with short key": {"client_id=hash", []byte("short"), "the key holds 5 bytes; give at least 32"},
	} {
		t.Run(name, func(t *testing.T) {
			rules, err := audit.ParseMask(c.spec)
			if err != nil {
				t.Fatal(err)
			}
			err = audit.ValidateMask(rules, c.key)
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Fatalf("ValidateMask(%q) = %v, want an error containing %q", c.spec, err, c.wantErr)
			}
			if c.key != nil && strings.Contains(err.Error(), string(c.key)) {
				t.Fatalf("the error shows the key: %v", err)
			}
			// audit.New refuses the same rules.
			if _, err := audit.New(audit.Options{Mask: rules, MaskKey: c.key}); err == nil {
				t.Fatal("audit.New accepted rules ValidateMask refuses")
			}
		})
	}
	ok, _ := audit.ParseMask("subject=hash,claim:sub=hash,drift=drop,claim:scope=drop")
	if err := audit.ValidateMask(ok, maskKey); err != nil {
		t.Errorf("rules that agree are refused: %v", err)
	}
}

// maskSpec is what the sink tests mask: the client hashed, the subject
// and source address dropped, the token's scopes hashed wherever they
// appear, the admin principal hashed and the admin details dropped.
const maskSpec = "client_id=hash,claim:sub=drop,source_ip=drop,claim:scope=hash,principal=hash,details=drop"

// recordMasked writes one allow (with drift) and one admin call through a
// Logger masking maskSpec into sink, and returns the token used.
func recordMasked(t *testing.T, sink audit.Sink) string {
	t.Helper()
	f := audittest.New(t)
	tok := f.Token(t, "alice", "mobile-app", "orders:v1 admin:all")
	r, d := f.Decide("GET", "/orders/1", tok)
	if !d.Allow {
		t.Fatalf("fixture decision: %v", d.Code)
	}
	r.SourceIP = mustAddr(t, "203.0.113.7")
	rules, err := audit.ParseMask(maskSpec)
	if err != nil {
		t.Fatal(err)
	}
	l, err := audit.New(audit.Options{Sinks: []audit.Sink{sink}, Mask: rules, MaskKey: maskKey})
	if err != nil {
		t.Fatal(err)
	}
	l.Record(context.Background(), audit.ExtAuthz, &r, &d, time.Now(), "")
	if !l.RecordAdmin(context.Background(), audit.AdminEvent{Time: time.Now(), Method: "Revoke", Principal: "ops@example.com", Details: map[string]string{"target": "web-app"}}) {
		t.Fatal("admin record not queued")
	}
	if err := l.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	return tok
}

// checkMasked checks the two records recordMasked wrote, as JSON lines.
func checkMasked(t *testing.T, out []byte, tok string) {
	t.Helper()
	for _, secret := range []string{tok, "alice", "mobile-app", "203.0.113.7", "orders:v1", "admin:all", "ops@example.com", "web-app", string(maskKey)} {
		if bytes.Contains(out, []byte(secret)) {
			t.Errorf("output holds %q:\n%s", secret, out)
		}
	}
	var recs []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("not a JSON line: %v\n%s", err, sc.Bytes())
		}
		recs = append(recs, m)
	}
	if len(recs) != 2 {
		t.Fatalf("%d records, want 2:\n%s", len(recs), out)
	}
	dec, adm := recs[0], recs[1]
	if dec["type"] != "decision" {
		dec, adm = adm, dec
	}
	if got := dec["client_id"]; got != wantHash("mobile-app") {
		t.Errorf("client_id = %v, want %s", got, wantHash("mobile-app"))
	}
	for _, k := range []string{"subject", "source_ip"} {
		if v, ok := dec[k]; ok {
			t.Errorf("%s = %v, want it dropped", k, v)
		}
	}
	granted, _ := dec["scopes_granted"].([]any)
	if len(granted) != 2 || granted[0] != wantHash("orders:v1") || granted[1] != wantHash("admin:all") {
		t.Errorf("scopes_granted = %v, want the two scopes hashed", dec["scopes_granted"])
	}
	drift, _ := dec["drift"].(map[string]any)
	if extra, _ := drift["extra"].([]any); len(extra) != 1 || extra[0] != wantHash("admin:all") {
		t.Errorf("drift = %v, want extra [%s]", dec["drift"], wantHash("admin:all"))
	}
	// What is not masked stays as it was.
	if dec["route"] != "read-order" || dec["path"] != "/orders/1" || dec["iss"] == nil || dec["decision"] != "allow" {
		t.Errorf("unmasked fields changed: %v", dec)
	}
	if adm["principal"] != wantHash("ops@example.com") || adm["details"] != nil || adm["method"] != "Revoke" {
		t.Errorf("admin record %v, want principal hashed and details dropped", adm)
	}
}

func TestMaskStdoutSink(t *testing.T) {
	var out bytes.Buffer
	tok := recordMasked(t, audit.NewWriterSink("stdout", &out))
	checkMasked(t, out.Bytes(), tok)
}

func TestMaskFileSink(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	fs, err := audit.NewFileSink(path, audit.FileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	tok := recordMasked(t, fs)
	out, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	checkMasked(t, out, tok)
}

// TestMaskEntries checks the fields a database or OTLP sink indexes apart
// from the JSON: they are masked like the record.
func TestMaskEntries(t *testing.T) {
	s := &memSink{}
	tok := recordMasked(t, s)
	var out []byte
	for _, l := range s.lines {
		out = append(append(out, l...), '\n')
	}
	checkMasked(t, out, tok)
	for _, e := range s.entries {
		if e.Type != "decision" {
			continue
		}
		if e.ClientID != wantHash("mobile-app") || e.Subject != "" || e.Route != "read-order" {
			t.Errorf("entry client %q subject %q route %q, want the client hashed, no subject, the route kept", e.ClientID, e.Subject, e.Route)
		}
	}
}
