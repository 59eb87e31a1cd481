package replicatest_test

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/scopegate/scopegate/decision/decisiontest"
	"github.com/scopegate/scopegate/server/servertest/freeport"
)

const (
	caepType = "https://schemas.openid.net/secevent/caep/event-type/"
	riscType = "https://schemas.openid.net/secevent/risc/event-type/"
)

// probe is a token and the path it is tried on.
type probe struct {
	what, tok, path string
}

// TestSSFEveryEventKindOnBothReplicas sends one SET of every event kind the
// receiver knows, half pushed to replica A and half polled by replica B,
// each about subjects of its own, and checks that on both replicas each
// denies exactly the tokens it names, within the propagation bound, and
// nothing else: later tokens, other sessions and devices, routes without
// step-up, and a bystander keep working.
func TestSSFEveryEventKindOnBothReplicas(t *testing.T) {
	dsn := pgDSN(t)
	c := newCluster(t)
	tx := newTransmitter(t)
	pushA := freeport.Addr(t)
	a := c.replica("replica-a", dsn, "--ssf-config", writeSSFConfig(t, c.dir, tx, false), "--ssf-addr", pushA)
	b := c.replica("replica-b", dsn, "--ssf-config", writeSSFConfig(t, c.dir, tx, true), "--ssf-addr", freeport.Addr(t))
	both := []*replica{a, b}
	now := time.Now()
	early, later := now.Add(-time.Minute), now.Add(2*time.Second)
	tok := func(sub string, iat time.Time, extra map[string]any) string {
		cl := decisiontest.StandardClaims(issuer, audience, sub, "web-app", "items:read", time.Hour, time.Now())
		cl["iat"] = iat.Unix()
		for k, v := range extra {
			cl[k] = v
		}
		raw, err := c.signer.Mint(cl, nil)
		must(t, err)
		return raw
	}
	const items, secure = "/api/items/1", "/api/secure/1"
	device := func(id string, u string) map[string]any {
		return map[string]any{"format": "complex", "device": map[string]any{"format": "iss_sub", "iss": txIssuer, "sub": id}, "user": user(u)}
	}
	type kind struct {
		typ     string
		sub     map[string]any
		extra   map[string]any
		poll    bool
		denied  []probe
		allowed []probe
	}
	kinds := map[string]kind{
		"session-revoked, a session": {typ: caepType + "session-revoked", poll: true,
			sub: map[string]any{"format": "complex", "user": user("k-ses"), "session": map[string]any{"format": "opaque", "id": "s-1"}},
			denied: []probe{{"the session's token", tok("k-ses", early, map[string]any{"sid": "s-1"}), items},
				{"the user's earlier token without sid", tok("k-ses", early, nil), items}},
			allowed: []probe{{"another session", tok("k-ses", early, map[string]any{"sid": "s-2"}), items},
				{"a later token without sid", tok("k-ses", later, nil), items}}},
		"session-revoked, a user": {typ: caepType + "session-revoked", sub: user("k-ses-user"),
			denied:  []probe{{"an earlier token", tok("k-ses-user", early, map[string]any{"sid": "s-9"}), items}},
			allowed: []probe{{"a later token", tok("k-ses-user", later, nil), items}}},
		"credential-change": {typ: caepType + "credential-change", sub: user("k-cred"), extra: map[string]any{"credential_type": "password", "change_type": "update"},
			denied:  []probe{{"an earlier token", tok("k-cred", early, nil), items}},
			allowed: []probe{{"a later token", tok("k-cred", later, nil), items}}},
		"token-claims-change": {typ: caepType + "token-claims-change", sub: user("k-claims"), poll: true, extra: map[string]any{"claims": map[string]any{"role": "ro"}},
			denied:  []probe{{"an earlier token", tok("k-claims", early, nil), items}},
			allowed: []probe{{"a later token", tok("k-claims", later, nil), items}}},
		"assurance-level-change, a decrease": {typ: caepType + "assurance-level-change", sub: user("k-aal"),
			extra:  map[string]any{"namespace": "NIST-AAL", "current_level": "aal1", "previous_level": "aal2", "change_direction": "decrease"},
			denied: []probe{{"an earlier aal2 token on a step-up route", tok("k-aal", early, map[string]any{"acr": "aal2"}), secure}},
			allowed: []probe{{"the same token on a route without step-up", tok("k-aal", early, map[string]any{"acr": "aal2"}), items},
				{"a later aal2 token on the step-up route", tok("k-aal", later, map[string]any{"acr": "aal2"}), secure}}},
		"assurance-level-change, a decrease still enough": {typ: caepType + "assurance-level-change", sub: user("k-aal-2"), poll: true,
			extra:   map[string]any{"namespace": "NIST-AAL", "current_level": "aal2", "previous_level": "aal3", "change_direction": "decrease"},
			allowed: []probe{{"an earlier aal3 token on the step-up route", tok("k-aal-2", early, map[string]any{"acr": "aal3"}), secure}}},
		"assurance-level-change, an increase": {typ: caepType + "assurance-level-change", sub: user("k-aal-up"),
			extra:   map[string]any{"namespace": "NIST-AAL", "current_level": "aal3", "previous_level": "aal2", "change_direction": "increase"},
			allowed: []probe{{"an earlier aal2 token on the step-up route", tok("k-aal-up", early, map[string]any{"acr": "aal2"}), secure}}},
		"device-compliance-change, not compliant": {typ: caepType + "device-compliance-change", sub: device("dev-1", "k-dev"),
			extra: map[string]any{"previous_status": "compliant", "current_status": "not-compliant"},
			denied: []probe{{"the device's earlier token", tok("k-dev", early, map[string]any{"did": "dev-1"}), items},
				{"another user's earlier token on the device", tok("k-dev-2", early, map[string]any{"did": "dev-1"}), items}},
			allowed: []probe{{"the user's token on another device", tok("k-dev", early, map[string]any{"did": "dev-2"}), items},
				{"the device's later token", tok("k-dev", later, map[string]any{"did": "dev-1"}), items},
				{"the user's token without a device", tok("k-dev", early, nil), items}}},
		"device-compliance-change, compliant": {typ: caepType + "device-compliance-change", sub: device("dev-3", "k-dev-ok"), poll: true,
			extra:   map[string]any{"previous_status": "not-compliant", "current_status": "compliant"},
			allowed: []probe{{"the device's token", tok("k-dev-ok", early, map[string]any{"did": "dev-3"}), items}}},
		"account-disabled": {typ: riscType + "account-disabled", sub: user("k-dis"), extra: map[string]any{"reason": "hijacking"},
			denied: []probe{{"an earlier token", tok("k-dis", early, nil), items}}},
		"account-purged": {typ: riscType + "account-purged", sub: user("k-purge"), poll: true,
			denied: []probe{{"an earlier token", tok("k-purge", early, nil), items}}},
		"account-credential-change-required": {typ: riscType + "account-credential-change-required", sub: user("k-ccr"),
			denied:  []probe{{"an earlier token", tok("k-ccr", early, nil), items}},
			allowed: []probe{{"a later token", tok("k-ccr", later, nil), items}}},
		"sessions-revoked": {typ: riscType + "sessions-revoked", sub: user("k-sess"), poll: true,
			denied: []probe{{"an earlier token with a sid", tok("k-sess", early, map[string]any{"sid": "s-5"}), items}}},
		"identifier-changed": {typ: riscType + "identifier-changed", sub: user("k-id"), extra: map[string]any{"new-value": "k-id-2"},
			denied: []probe{{"an earlier token", tok("k-id", early, nil), items}}},
		"an unknown event": {typ: "https://example.test/event-type/odd", sub: user("k-odd"),
			allowed: []probe{{"a token", tok("k-odd", early, nil), items}}},
	}
	bystanders := []probe{
		{"a bystander", tok("k-none", early, map[string]any{"sid": "s-77", "did": "dev-3", "acr": "aal2"}), items},
		{"a bystander on the step-up route", tok("k-none", early, map[string]any{"acr": "aal2"}), secure},
	}
	decide := func(r *replica, p probe) (bool, string) {
		t.Helper()
		allow, code, err := r.decideAt(p.tok, p.path)
		if err != nil {
			t.Fatalf("%s: Check: %v\n%s", r.name, err, r.logTail())
		}
		return allow, code
	}
	for name, k := range kinds {
		for _, p := range append(k.denied, k.allowed...) {
			for _, r := range both {
				if allow, code := decide(r, p); !allow {
					t.Fatalf("%s, %s: denied by %s before any event: %s", name, p.what, r.name, code)
				}
			}
		}
	}
	i := 0
	for name, k := range kinds {
		i++
		jti := fmt.Sprintf("kind-%d", i)
		set := tx.set(tx.signer, jti, k.typ, k.sub, k.extra, now)
		if k.poll {
			tx.enqueue(jti, set)
			continue
		}
		if code, body := push(t, pushA, pushToken, set); code != http.StatusAccepted {
			t.Fatalf("%s: push: %d %s", name, code, body)
		}
	}
	for name, k := range kinds {
		bound := propagationBound
		if k.poll {
			bound += time.Second // a poll interval, and B's pick-up
		}
		for _, p := range k.denied {
			d, ok := waitFor(bound, func() bool {
				for _, r := range both {
					if allow, _ := decide(r, p); allow {
						return false
					}
				}
				return true
			})
			if !ok {
				t.Errorf("%s: %s still allowed on a replica after %v", name, p.what, d)
			}
		}
	}
	// Every SET was applied (the polled ones acknowledged) before the
	// spared tokens are judged.
	for i := 1; i <= len(kinds); i++ {
		jti := fmt.Sprintf("kind-%d", i)
		tx.mu.Lock()
		_, queued := tx.queue[jti]
		tx.mu.Unlock()
		if queued {
			if _, ok := waitFor(3*time.Second, func() bool { return tx.ackedAll(jti) }); !ok {
				t.Errorf("polled SET %s never acknowledged", jti)
			}
		}
	}
	time.Sleep(300 * time.Millisecond) // beyond the sync of the last revocation
	for name, k := range kinds {
		for _, p := range k.allowed {
			for _, r := range both {
				if allow, code := decide(r, p); !allow {
					t.Errorf("%s: %s denied by %s: %s", name, p.what, r.name, code)
				}
			}
		}
	}
	for _, p := range bystanders {
		for _, r := range both {
			if allow, code := decide(r, p); !allow {
				t.Errorf("%s denied by %s: %s", p.what, r.name, code)
			}
		}
	}
}
