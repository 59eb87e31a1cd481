package ssf_test

import (
	"strings"
	"testing"
	"time"

	"github.com/scopegate/scopegate/decision"
	"github.com/scopegate/scopegate/decision/decisiontest"
	"github.com/scopegate/scopegate/decision/ssf"
)

const (
	txIss    = "https://idp.example.com/"
	receiver = "https://scopegate.example.com/"
	tokIss   = "https://id.example.com/"
)

var now = time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)

type fixture struct {
	signer, forger *decisiontest.Signer
	tr             *ssf.Transmitter
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	s, err := decisiontest.NewECSigner("tx-1")
	if err != nil {
		t.Fatal(err)
	}
	f, err := decisiontest.NewECSigner("tx-1") // same kid, other key
	if err != nil {
		t.Fatal(err)
	}
	tr := &ssf.Transmitter{Issuer: txIss, Audience: []string{receiver}, TokenIssuer: tokIss,
		Keys: decision.StaticKeys{{Kid: s.Kid, Alg: s.Alg, Public: s.Key.Public()}}, RevocationTTL: 24 * time.Hour}
	if err := tr.Validate(); err != nil {
		t.Fatal(err)
	}
	return &fixture{signer: s, forger: f, tr: tr}
}

func setClaims(jti string, events map[string]any) decisiontest.Claims {
	return decisiontest.Claims{"iss": txIss, "aud": receiver, "iat": now.Unix(), "jti": jti, "events": events}
}

func issSub(sub string) map[string]any {
	return map[string]any{"format": "iss_sub", "iss": tokIss, "sub": sub}
}

func (f *fixture) mint(t *testing.T, s *decisiontest.Signer, c decisiontest.Claims, hdr map[string]any) []byte {
	t.Helper()
	if hdr == nil {
		hdr = map[string]any{"typ": "secevent+jwt"}
	}
	raw, err := s.Mint(c, hdr)
	if err != nil {
		t.Fatal(err)
	}
	return []byte(raw)
}

func TestVerify(t *testing.T) {
	f := newFixture(t)
	ev := map[string]any{ssf.CredentialChange: map[string]any{"subject": issSub("alice")}}
	cases := map[string]struct {
		signer *decisiontest.Signer
		claims func(decisiontest.Claims)
		hdr    map[string]any
		code   string // "" for valid
	}{
		"valid":               {},
		"aud as an array":     {claims: func(c decisiontest.Claims) { c["aud"] = []string{"other", receiver} }},
		"media type typ":      {hdr: map[string]any{"typ": "application/secevent+jwt"}},
		"forged signature":    {signer: f.forger, code: ssf.ErrInvalidKey},
		"unknown kid":         {hdr: map[string]any{"typ": "secevent+jwt", "kid": "nope"}, code: ssf.ErrInvalidKey},
		"wrong typ":           {hdr: map[string]any{"typ": "JWT"}, code: ssf.ErrInvalidRequest},
		"no typ":              {hdr: map[string]any{"typ": nil}, code: ssf.ErrInvalidRequest},
		"another issuer":      {claims: func(c decisiontest.Claims) { c["iss"] = "https://evil.example.com/" }, code: ssf.ErrInvalidIssuer},
		"another audience":    {claims: func(c decisiontest.Claims) { c["aud"] = "https://other.example.com/" }, code: ssf.ErrInvalidAudience},
		"no audience":         {claims: func(c decisiontest.Claims) { delete(c, "aud") }, code: ssf.ErrInvalidAudience},
		"no jti":              {claims: func(c decisiontest.Claims) { delete(c, "jti") }, code: ssf.ErrInvalidRequest},
		"no iat":              {claims: func(c decisiontest.Claims) { delete(c, "iat") }, code: ssf.ErrInvalidRequest},
		"iat too old":         {claims: func(c decisiontest.Claims) { c["iat"] = now.Add(-2 * time.Hour).Unix() }, code: ssf.ErrInvalidRequest},
		"iat in the future":   {claims: func(c decisiontest.Claims) { c["iat"] = now.Add(10 * time.Minute).Unix() }, code: ssf.ErrInvalidRequest},
		"iat within the skew": {claims: func(c decisiontest.Claims) { c["iat"] = now.Add(30 * time.Second).Unix() }},
		"no events":           {claims: func(c decisiontest.Claims) { delete(c, "events") }, code: ssf.ErrInvalidRequest},
		"event not an object": {claims: func(c decisiontest.Claims) { c["events"] = map[string]any{ssf.CredentialChange: "x"} }, code: ssf.ErrInvalidRequest},
		"expired":             {claims: func(c decisiontest.Claims) { c["exp"] = now.Add(-time.Hour).Unix() }, code: ssf.ErrInvalidRequest},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			c := setClaims("j-1", ev)
			if tc.claims != nil {
				tc.claims(c)
			}
			s := tc.signer
			if s == nil {
				s = f.signer
			}
			hdr := tc.hdr
			if hdr != nil && hdr["typ"] == nil {
				hdr = map[string]any{}
			}
			set, err := f.tr.Verify(f.mint(t, s, c, hdr), now)
			switch {
			case tc.code == "" && err != nil:
				t.Fatalf("Verify: %v", err)
			case tc.code != "" && (err == nil || err.Code != tc.code):
				t.Fatalf("Verify = %v, %v; want code %s", set, err, tc.code)
			case tc.code == "" && (set.JTI != "j-1" || set.Events[ssf.CredentialChange] == nil):
				t.Fatalf("Verify = %+v", set)
			}
		})
	}
	for name, body := range map[string]string{
		"empty": "", "not a JWS": "hello", "two parts": "a.b", "bad base64": "a.b.c!", "huge": strings.Repeat("a", ssf.MaxSETBytes+1),
	} {
		if _, err := f.tr.Verify([]byte(body), now); err == nil || err.Code != ssf.ErrInvalidRequest {
			t.Errorf("%s: %v; want invalid_request", name, err)
		}
	}
	none, _ := f.signer.MintRaw(map[string]any{"alg": "none", "typ": "secevent+jwt"}, []byte(`{"iss":"`+txIss+`"}`))
	if _, err := f.tr.Verify([]byte(none), now); err == nil {
		t.Error("alg none accepted")
	}
}

func TestMap(t *testing.T) {
	f := newFixture(t)
	evTime := now.Add(-10 * time.Minute)
	ts := float64(evTime.Unix())
	cases := map[string]struct {
		sub    map[string]any // top-level sub_id; nil puts issSub("alice") in the event
		typ    string
		extra  map[string]any
		cfg    func(*ssf.Transmitter)
		result string
		want   []decision.Revocation // ID, Reason, CreatedBy, Until ignored
	}{
		"credential change": {typ: ssf.CredentialChange, result: "applied",
			want: []decision.Revocation{{Kind: decision.RevokeSubject, Issuer: tokIss, Subject: "alice", IssuedBefore: evTime}}},
		"token claims change": {typ: ssf.TokenClaimsChange, result: "applied",
			want: []decision.Revocation{{Kind: decision.RevokeSubject, Issuer: tokIss, Subject: "alice", IssuedBefore: evTime}}},
		"credential change required": {typ: ssf.AccountCredentialChange, result: "applied",
			want: []decision.Revocation{{Kind: decision.RevokeSubject, Issuer: tokIss, Subject: "alice", IssuedBefore: evTime}}},
		"account disabled: everything until now": {typ: ssf.AccountDisabled, result: "applied",
			want: []decision.Revocation{{Kind: decision.RevokeSubject, Issuer: tokIss, Subject: "alice", IssuedBefore: now}}},
		"account purged":     {typ: ssf.AccountPurged, result: "applied", want: []decision.Revocation{{Kind: decision.RevokeSubject, Issuer: tokIss, Subject: "alice", IssuedBefore: now}}},
		"sessions revoked":   {typ: ssf.SessionsRevoked, result: "applied", want: []decision.Revocation{{Kind: decision.RevokeSubject, Issuer: tokIss, Subject: "alice", IssuedBefore: now}}},
		"identifier changed": {typ: ssf.IdentifierChanged, result: "applied", want: []decision.Revocation{{Kind: decision.RevokeSubject, Issuer: tokIss, Subject: "alice", IssuedBefore: now}}},
		"session revoked, user only": {typ: ssf.SessionRevoked, result: "applied",
			want: []decision.Revocation{{Kind: decision.RevokeSubject, Issuer: tokIss, Subject: "alice", IssuedBefore: evTime}}},
		"session revoked, complex user and session": {typ: ssf.SessionRevoked, result: "applied",
			sub: map[string]any{"format": "complex", "user": issSub("alice"), "session": map[string]any{"format": "opaque", "id": "s-1"}},
			want: []decision.Revocation{
				{Kind: decision.RevokeSession, Issuer: tokIss, SessionID: "s-1"},
				{Kind: decision.RevokeSession, Issuer: tokIss, Subject: "alice", IssuedBefore: evTime},
			}},
		"session revoked, session only": {typ: ssf.SessionRevoked, result: "applied",
			sub:  map[string]any{"format": "complex", "session": map[string]any{"format": "opaque", "id": "s-1"}},
			want: []decision.Revocation{{Kind: decision.RevokeSession, Issuer: tokIss, SessionID: "s-1"}}},
		"session without a token issuer": {typ: ssf.SessionRevoked, result: "unmappable", cfg: func(tr *ssf.Transmitter) { tr.TokenIssuer = "" },
			sub: map[string]any{"format": "complex", "session": map[string]any{"format": "opaque", "id": "s-1"}}},
		"iss_sub gives the issuer": {typ: ssf.CredentialChange, result: "applied", cfg: func(tr *ssf.Transmitter) { tr.TokenIssuer = "" },
			sub:  map[string]any{"format": "iss_sub", "iss": "https://other.example.com/", "sub": "bob"},
			want: []decision.Revocation{{Kind: decision.RevokeSubject, Issuer: "https://other.example.com/", Subject: "bob", IssuedBefore: evTime}}},
		"assurance decrease": {typ: ssf.AssuranceLevelChange, result: "applied", extra: map[string]any{"change_direction": "decrease", "namespace": "NIST-AAL", "current_level": "nist-aal1", "previous_level": "nist-aal2"},
			want: []decision.Revocation{{Kind: decision.RevokeAssurance, Issuer: tokIss, Subject: "alice", ACRLevel: "nist-aal1", IssuedBefore: evTime}}},
		"assurance decrease, acr mapped": {typ: ssf.AssuranceLevelChange, result: "applied", extra: map[string]any{"change_direction": "decrease", "namespace": "NIST-AAL", "current_level": "nist-aal1"},
			cfg:  func(tr *ssf.Transmitter) { tr.ACRValues = map[string]string{"nist-aal1": "urn:example:pwd"} },
			want: []decision.Revocation{{Kind: decision.RevokeAssurance, Issuer: tokIss, Subject: "alice", ACRLevel: "urn:example:pwd", IssuedBefore: evTime}}},
		"assurance, no direction": {typ: ssf.AssuranceLevelChange, result: "applied", extra: map[string]any{"namespace": "NIST-AAL", "current_level": "nist-aal2"},
			want: []decision.Revocation{{Kind: decision.RevokeAssurance, Issuer: tokIss, Subject: "alice", ACRLevel: "nist-aal2", IssuedBefore: evTime}}},
		"assurance decrease, no level": {typ: ssf.AssuranceLevelChange, result: "applied", extra: map[string]any{"change_direction": "decrease"},
			want: []decision.Revocation{{Kind: decision.RevokeAssurance, Issuer: tokIss, Subject: "alice", IssuedBefore: evTime}}},
		"assurance increase": {typ: ssf.AssuranceLevelChange, result: "ignored", extra: map[string]any{"change_direction": "increase"}},
		"device not compliant": {typ: ssf.DeviceComplianceChange, result: "applied", extra: map[string]any{"current_status": "not-compliant", "previous_status": "compliant"},
			sub:  map[string]any{"format": "complex", "device": map[string]any{"format": "iss_sub", "iss": txIss, "sub": "dev-1"}, "user": issSub("alice")},
			want: []decision.Revocation{{Kind: decision.RevokeDevice, Issuer: tokIss, DeviceID: "dev-1", IssuedBefore: evTime}}},
		"device not compliant, opaque device": {typ: ssf.DeviceComplianceChange, result: "applied", extra: map[string]any{"current_status": "not-compliant"},
			cfg:  func(tr *ssf.Transmitter) { tr.TokenIssuer = "" },
			sub:  map[string]any{"format": "complex", "device": map[string]any{"format": "opaque", "id": "dev-2"}},
			want: []decision.Revocation{{Kind: decision.RevokeDevice, DeviceID: "dev-2", IssuedBefore: evTime}}},
		"device not compliant, user only": {typ: ssf.DeviceComplianceChange, result: "unmappable", extra: map[string]any{"current_status": "not-compliant"}},
		"device compliant": {typ: ssf.DeviceComplianceChange, result: "ignored", extra: map[string]any{"current_status": "compliant"},
			sub: map[string]any{"format": "complex", "device": map[string]any{"format": "opaque", "id": "dev-2"}}},
		"email, unmapped": {typ: ssf.CredentialChange, result: "unmappable", sub: map[string]any{"format": "email", "email": "a@example.com"}},
		"email as sub": {typ: ssf.CredentialChange, result: "applied", cfg: func(tr *ssf.Transmitter) { tr.EmailIsSub = true },
			sub:  map[string]any{"format": "email", "email": "a@example.com"},
			want: []decision.Revocation{{Kind: decision.RevokeSubject, Issuer: tokIss, Subject: "a@example.com", IssuedBefore: evTime}}},
		"aliases, the first that maps": {typ: ssf.CredentialChange, result: "applied",
			sub: map[string]any{"format": "aliases", "identifiers": []any{
				map[string]any{"format": "email", "email": "a@example.com"},
				map[string]any{"format": "iss_sub", "iss": tokIss, "sub": "alice"}}},
			want: []decision.Revocation{{Kind: decision.RevokeSubject, Issuer: tokIss, Subject: "alice", IssuedBefore: evTime}}},
		"aliases in a complex user": {typ: ssf.SessionRevoked, result: "applied",
			sub: map[string]any{"format": "complex", "user": map[string]any{"format": "aliases", "identifiers": []any{
				map[string]any{"format": "phone_number", "phone_number": "+1"}, map[string]any{"format": "iss_sub", "iss": tokIss, "sub": "bob"}}}},
			want: []decision.Revocation{{Kind: decision.RevokeSubject, Issuer: tokIss, Subject: "bob", IssuedBefore: evTime}}},
		"aliases, none maps": {typ: ssf.CredentialChange, result: "unmappable",
			sub: map[string]any{"format": "aliases", "identifiers": []any{map[string]any{"format": "email", "email": "a@example.com"},
				map[string]any{"format": "aliases", "identifiers": []any{issSub("nested")}}}}},
		"opaque, unmapped":  {typ: ssf.CredentialChange, result: "unmappable", sub: map[string]any{"format": "opaque", "id": "u-1"}},
		"phone, unmappable": {typ: ssf.AccountDisabled, result: "unmappable", sub: map[string]any{"format": "phone_number", "phone_number": "+1"}},
		"unknown event":     {typ: "https://example.com/event-type/weird", result: "unknown"},
		"verification":      {typ: ssf.Verification, result: "verification", extra: map[string]any{"state": "abc"}},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			tr := *f.tr
			if tc.cfg != nil {
				tc.cfg(&tr)
			}
			payload := map[string]any{"event_timestamp": ts}
			for k, v := range tc.extra {
				payload[k] = v
			}
			c := setClaims("j-"+name, map[string]any{tc.typ: payload})
			if tc.sub != nil {
				c["sub_id"] = tc.sub
			} else {
				payload["subject"] = issSub("alice")
			}
			set, verr := tr.Verify(f.mint(t, f.signer, c, nil), now)
			if verr != nil {
				t.Fatal(verr)
			}
			out := tr.Map(set, now)
			if len(out) != 1 || out[0].Result != tc.result {
				t.Fatalf("Map = %+v; want one outcome %s", out, tc.result)
			}
			got := out[0].Revocations
			if len(got) != len(tc.want) {
				t.Fatalf("revocations %+v; want %+v", got, tc.want)
			}
			for i, w := range tc.want {
				g := got[i]
				if g.Kind != w.Kind || g.Issuer != w.Issuer || g.Subject != w.Subject || g.SessionID != w.SessionID || g.DeviceID != w.DeviceID || g.ACRLevel != w.ACRLevel || !g.IssuedBefore.Equal(w.IssuedBefore) {
					t.Errorf("revocation %d = %+v; want %+v", i, g, w)
				}
				if err := g.Validate(); err != nil {
					t.Errorf("revocation %d does not validate: %v", i, err)
				}
				if g.CreatedBy != "ssf:"+txIss || !g.Until.Equal(now.Add(24*time.Hour)) || !strings.HasPrefix(g.ID, "ssf-") {
					t.Errorf("revocation %d: id %q created_by %q until %v", i, g.ID, g.CreatedBy, g.Until)
				}
			}
			// The same SET maps to the same ids: idempotent in the store.
			again := tr.Map(set, now.Add(time.Second))
			for i := range got {
				if again[0].Revocations[i].ID != got[i].ID {
					t.Errorf("ids differ between two mappings of one SET")
				}
			}
		})
	}
}

func TestRevocationIDsDiffer(t *testing.T) {
	ids := map[string]bool{}
	for _, in := range [][4]string{{"a", "j", "t", "0"}, {"a", "j", "t", "1"}, {"a", "k", "t", "0"}, {"b", "j", "t", "0"}, {"a", "j", "u", "0"}} {
		i := 0
		if in[3] == "1" {
			i = 1
		}
		id := ssf.RevocationID(in[0], in[1], in[2], i)
		if len(id) > decision.MaxRevocationIDBytes || ids[id] {
			t.Fatalf("id %q (len %d) repeats or is too long", id, len(id))
		}
		ids[id] = true
	}
}

func TestSeen(t *testing.T) {
	s := ssf.NewSeen(2)
	if !s.Add("a", now.Add(time.Hour), now) || s.Add("a", now.Add(time.Hour), now) {
		t.Fatal("a replay inside the window was not detected")
	}
	if !s.Add("a", now.Add(2*time.Hour), now.Add(time.Hour)) {
		t.Error("an expired entry still counts as seen")
	}
	s.Add("b", now.Add(3*time.Hour), now.Add(time.Hour))
	s.Add("c", now.Add(3*time.Hour), now.Add(time.Hour))
	if s.Len() > 2 {
		t.Errorf("Len %d exceeds the bound", s.Len())
	}
	s.Forget("c")
	if !s.Add("c", now.Add(3*time.Hour), now.Add(time.Hour)) {
		t.Error("a forgotten jti is still seen")
	}
}

func TestTransmitterValidate(t *testing.T) {
	f := newFixture(t)
	for name, mut := range map[string]func(*ssf.Transmitter){
		"no issuer":   func(tr *ssf.Transmitter) { tr.Issuer = "" },
		"no audience": func(tr *ssf.Transmitter) { tr.Audience = nil },
		"no keys":     func(tr *ssf.Transmitter) { tr.Keys = nil },
		"short ttl":   func(tr *ssf.Transmitter) { tr.RevocationTTL = time.Minute },
	} {
		tr := *f.tr
		mut(&tr)
		if tr.Validate() == nil {
			t.Errorf("%s: Validate accepted it", name)
		}
	}
}

// Verification and stream-updated events are about the stream their
// opaque sub_id names, and revoke nothing.
func TestStreamEvents(t *testing.T) {
	f := newFixture(t)
	stream := map[string]any{"format": "opaque", "id": "st-1"}
	for name, tc := range map[string]struct {
		typ                                     string
		payload                                 map[string]any
		sub                                     map[string]any
		result, streamID, state, status, reason string
	}{
		"verification":            {typ: ssf.Verification, payload: map[string]any{"state": "s-9"}, sub: stream, result: "verification", streamID: "st-1", state: "s-9"},
		"verification, no stream": {typ: ssf.Verification, payload: map[string]any{"state": "s-9"}, sub: issSub("alice"), result: "verification", state: "s-9"},
		"stream disabled":         {typ: ssf.StreamUpdated, payload: map[string]any{"status": "disabled", "reason": "maintenance"}, sub: stream, result: "stream_updated", streamID: "st-1", status: "disabled", reason: "maintenance"},
	} {
		t.Run(name, func(t *testing.T) {
			c := setClaims("j-"+name, map[string]any{tc.typ: tc.payload})
			c["sub_id"] = tc.sub
			set, verr := f.tr.Verify(f.mint(t, f.signer, c, nil), now)
			if verr != nil {
				t.Fatal(verr)
			}
			out := f.tr.Map(set, now)
			if len(out) != 1 {
				t.Fatalf("Map = %+v", out)
			}
			o := out[0]
			if o.Result != tc.result || o.StreamID != tc.streamID || o.State != tc.state || o.Status != tc.status || o.Reason != tc.reason || len(o.Revocations) != 0 {
				t.Errorf("outcome %+v; want result %s stream %q state %q status %q reason %q, no revocations", o, tc.result, tc.streamID, tc.state, tc.status, tc.reason)
			}
		})
	}
}
