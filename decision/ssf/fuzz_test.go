package ssf_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/scopegate/scopegate/decision"
	"github.com/scopegate/scopegate/decision/decisiontest"
	"github.com/scopegate/scopegate/decision/ssf"
)

// FuzzVerifyAndMapSET signs arbitrary payloads with the transmitter's key,
// so that every input reaches claim parsing and event mapping: no input
// may panic, an accepted SET has a jti, every revocation an event proposes
// validates and is the transmitter's, mapping is deterministic, and only
// applied events propose revocations.
func FuzzVerifyAndMapSET(f *testing.F) {
	s, err := decisiontest.NewECSigner("tx-1")
	if err != nil {
		f.Fatal(err)
	}
	tr := &ssf.Transmitter{Issuer: txIss, Audience: []string{receiver}, TokenIssuer: tokIss,
		Keys: decision.StaticKeys{{Kid: s.Kid, Alg: s.Alg, Public: s.Key.Public()}}, RevocationTTL: 24 * time.Hour,
		EmailIsSub: true, ACRValues: map[string]string{"nist-aal1": "urn:example:pwd"}}
	seed := func(events map[string]any, sub any) {
		c := setClaims("j-seed", events)
		if sub != nil {
			c["sub_id"] = sub
		}
		b, err := json.Marshal(c)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	ts := float64(now.Unix() - 60)
	for _, typ := range ssf.ActedOn {
		seed(map[string]any{typ: map[string]any{"event_timestamp": ts, "change_direction": "decrease", "current_level": "nist-aal1", "current_status": "not-compliant"}}, issSub("alice"))
	}
	seed(map[string]any{ssf.SessionRevoked: map[string]any{}}, map[string]any{"format": "complex", "user": issSub("a"), "session": map[string]any{"format": "opaque", "id": "s"}})
	seed(map[string]any{ssf.DeviceComplianceChange: map[string]any{"current_status": "not-compliant"}}, map[string]any{"format": "complex", "device": map[string]any{"format": "opaque", "id": "d"}})
	seed(map[string]any{ssf.CredentialChange: map[string]any{"subject": map[string]any{"format": "email", "email": "a@b"}}}, nil)
	seed(map[string]any{ssf.Verification: map[string]any{"state": "x"}, "https://x/event-type/y": 1}, map[string]any{"format": "opaque", "id": "stream"})
	f.Add([]byte(`{"iss":"` + txIss + `","aud":"` + receiver + `","iat":1795000000,"jti":"j","events":{"` + ssf.AccountDisabled + `":null}}`))
	f.Add([]byte(`{}`))
	f.Add([]byte(`[`))
	f.Fuzz(func(t *testing.T, payload []byte) {
		raw, err := s.MintRaw(map[string]any{"typ": "secevent+jwt"}, payload)
		if err != nil {
			t.Skip()
		}
		set, verr := tr.Verify([]byte(raw), now)
		if verr != nil {
			if verr.Code == "" {
				t.Fatalf("a refusal without an error code: %+v", verr)
			}
			return
		}
		if set.JTI == "" || len(set.Events) == 0 {
			t.Fatalf("accepted a SET without jti or events: %+v", set)
		}
		out := tr.Map(set, now)
		again := tr.Map(set, now)
		if len(out) != len(set.Events) || len(again) != len(out) {
			t.Fatalf("%d events mapped to %d outcomes", len(set.Events), len(out))
		}
		for i, o := range out {
			if o.Result != "applied" && len(o.Revocations) > 0 {
				t.Fatalf("outcome %q proposes revocations: %+v", o.Result, o)
			}
			if o.Result == "applied" && len(o.Revocations) == 0 {
				t.Fatalf("an applied outcome with no revocation: %+v", o)
			}
			if len(again[i].Revocations) != len(o.Revocations) {
				t.Fatal("mapping the same SET twice differs")
			}
			for j, r := range o.Revocations {
				if err := r.Validate(); err != nil {
					t.Fatalf("event %s proposes an invalid revocation %+v: %v", o.EventType, r, err)
				}
				if r.CreatedBy != "ssf:"+txIss || !strings.HasPrefix(r.ID, "ssf-") || r.ID != again[i].Revocations[j].ID {
					t.Fatalf("revocation %+v: not the transmitter's, or not deterministic", r)
				}
				if r.Kind == decision.RevokeToken {
					t.Fatalf("an event revoked one token by jti: %+v", r)
				}
			}
		}
	})
}
