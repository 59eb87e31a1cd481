package replicatest_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/scopegate/scopegate/server/servertest/freeport"
)

const (
	mgmtToken    = "mgmt-secret-for-tests"
	verification = "https://schemas.openid.net/secevent/ssf/event-type/verification"
)

// streamMgmt is the transmitter's Stream Management API state (SSF 1.0
// §8.1); guarded by transmitter.mu.
type streamMgmt struct {
	streams     map[string]*txStream
	creates     int
	updates     int
	statusReads int
	subjects    []string // stream id and subject JSON of each add
	removed     []string // and of each remove
	verifies    []string // states asked for
	// hold, while open, holds every create until it is closed, and
	// createArrived is told of each create that arrives: so a second
	// replica starts while the first is creating the stream.
	hold          chan struct{}
	createArrived chan struct{}
	configReads   int // GETs of the configuration document
	refusals      int // calls refused for a wrong bearer token
}

type txStream struct {
	ID              string         `json:"stream_id"`
	Iss             string         `json:"iss"`
	Aud             string         `json:"aud"`
	Delivery        map[string]any `json:"delivery"`
	EventsRequested []string       `json:"events_requested"`
	EventsDelivered []string       `json:"events_delivered"`
	Description     string         `json:"description,omitempty"`
	status, reason  string
}

func (tx *transmitter) serveStreams(mux *http.ServeMux) {
	tx.mgmt.streams = map[string]*txStream{}
	authed := func(h func(w http.ResponseWriter, r *http.Request)) func(w http.ResponseWriter, r *http.Request) {
		return func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("Authorization") != "Bearer "+mgmtToken {
				tx.mu.Lock()
				tx.mgmt.refusals++
				tx.mu.Unlock()
				http.Error(w, "unauthorized", http.StatusUnauthorized)
				return
			}
			h(w, r)
		}
	}
	writeJSON := func(w http.ResponseWriter, code int, v any) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		_ = json.NewEncoder(w).Encode(v)
	}
	mux.HandleFunc("POST /ssf/stream", authed(func(w http.ResponseWriter, r *http.Request) {
		var req txStream
		if json.NewDecoder(r.Body).Decode(&req) != nil {
			http.Error(w, "bad body", http.StatusBadRequest)
			return
		}
		tx.mu.Lock()
		hold, arrived := tx.mgmt.hold, tx.mgmt.createArrived
		tx.mu.Unlock()
		if hold != nil {
			arrived <- struct{}{}
			<-hold
		}
		tx.mu.Lock()
		defer tx.mu.Unlock()
		tx.mgmt.creates++
		st := &txStream{ID: fmt.Sprintf("st-%d", tx.mgmt.creates), Iss: txIssuer, Aud: rxAudience, Delivery: req.Delivery,
			EventsRequested: req.EventsRequested, Description: req.Description, status: "enabled"}
		tx.fillStream(st)
		tx.mgmt.streams[st.ID] = st
		writeJSON(w, http.StatusCreated, st)
	}))
	mux.HandleFunc("GET /ssf/stream", authed(func(w http.ResponseWriter, r *http.Request) {
		tx.mu.Lock()
		defer tx.mu.Unlock()
		id := r.URL.Query().Get("stream_id")
		if id == "" {
			list := []*txStream{}
			for _, st := range tx.mgmt.streams {
				list = append(list, st)
			}
			writeJSON(w, http.StatusOK, list)
			return
		}
		st, ok := tx.mgmt.streams[id]
		if !ok {
			http.NotFound(w, r)
			return
		}
		writeJSON(w, http.StatusOK, st)
	}))
	mux.HandleFunc("PATCH /ssf/stream", authed(func(w http.ResponseWriter, r *http.Request) {
		var req txStream
		if json.NewDecoder(r.Body).Decode(&req) != nil {
			http.Error(w, "bad body", http.StatusBadRequest)
			return
		}
		tx.mu.Lock()
		defer tx.mu.Unlock()
		st, ok := tx.mgmt.streams[req.ID]
		if !ok {
			http.NotFound(w, r)
			return
		}
		tx.mgmt.updates++
		if req.Delivery != nil {
			st.Delivery = req.Delivery
		}
		if req.EventsRequested != nil {
			st.EventsRequested = req.EventsRequested
		}
		if req.Description != "" {
			st.Description = req.Description
		}
		tx.fillStream(st)
		writeJSON(w, http.StatusOK, st)
	}))
	mux.HandleFunc("GET /ssf/status", authed(func(w http.ResponseWriter, r *http.Request) {
		tx.mu.Lock()
		defer tx.mu.Unlock()
		tx.mgmt.statusReads++
		st, ok := tx.mgmt.streams[r.URL.Query().Get("stream_id")]
		if !ok {
			http.NotFound(w, r)
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"stream_id": st.ID, "status": st.status, "reason": st.reason})
	}))
	// Subjects (SSF 1.0 §8.1.3): each add or remove is recorded as the
	// stream id and the subject's JSON; add answers 200, remove 204.
	subjects := func(list *[]string, code int) func(w http.ResponseWriter, r *http.Request) {
		return func(w http.ResponseWriter, r *http.Request) {
			var req struct {
				StreamID string          `json:"stream_id"`
				Subject  json.RawMessage `json:"subject"`
			}
			if json.NewDecoder(r.Body).Decode(&req) != nil || len(req.Subject) == 0 {
				http.Error(w, "bad body", http.StatusBadRequest)
				return
			}
			tx.mu.Lock()
			defer tx.mu.Unlock()
			if _, ok := tx.mgmt.streams[req.StreamID]; !ok {
				http.NotFound(w, r)
				return
			}
			*list = append(*list, req.StreamID+" "+string(req.Subject))
			w.WriteHeader(code)
		}
	}
	mux.HandleFunc("POST /ssf/subjects:add", authed(subjects(&tx.mgmt.subjects, http.StatusOK)))
	mux.HandleFunc("POST /ssf/subjects:remove", authed(subjects(&tx.mgmt.removed, http.StatusNoContent)))
	// Verification (SSF 1.0 §8.1.4.2): answer 204, then push the event to
	// the stream's endpoint with its authorization header, or queue it for
	// polling.
	mux.HandleFunc("POST /ssf/verify", authed(func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			StreamID string `json:"stream_id"`
			State    string `json:"state"`
		}
		if json.NewDecoder(r.Body).Decode(&req) != nil {
			http.Error(w, "bad body", http.StatusBadRequest)
			return
		}
		tx.mu.Lock()
		st, ok := tx.mgmt.streams[req.StreamID]
		if ok {
			tx.mgmt.verifies = append(tx.mgmt.verifies, req.State)
		}
		n := len(tx.mgmt.verifies)
		var delivery map[string]any
		if ok {
			delivery = st.Delivery
		}
		tx.mu.Unlock()
		if !ok {
			http.NotFound(w, r)
			return
		}
		jti := fmt.Sprintf("verify-%d", n)
		set := tx.streamSET(jti, req.StreamID, verification, map[string]any{"state": req.State})
		w.WriteHeader(http.StatusNoContent)
		if delivery["method"] == "urn:ietf:rfc:8936" {
			tx.enqueue(jti, set)
			return
		}
		endpoint, _ := delivery["endpoint_url"].(string)
		auth, _ := delivery["authorization_header"].(string)
		go func() {
			time.Sleep(20 * time.Millisecond) // after the 204, as a transmitter's queue would
			req, err := http.NewRequest(http.MethodPost, endpoint, strings.NewReader(set))
			if err != nil {
				return
			}
			req.Header.Set("Content-Type", "application/secevent+jwt")
			req.Header.Set("Authorization", auth)
			if resp, err := http.DefaultClient.Do(req); err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}()
	}))
}

// fillStream completes a stream's transmitter-supplied fields; tx.mu held.
func (tx *transmitter) fillStream(st *txStream) {
	if st.Delivery == nil || st.Delivery["method"] == "urn:ietf:rfc:8936" {
		st.Delivery = map[string]any{"method": "urn:ietf:rfc:8936", "endpoint_url": tx.url + "/poll"}
	}
	st.EventsDelivered = slices.DeleteFunc(slices.Clone(st.EventsRequested), func(e string) bool { return !strings.Contains(e, "/secevent/") })
}

// streamSET signs a SET about a stream (sub_id: the opaque stream id).
func (tx *transmitter) streamSET(jti, streamID, typ string, ev map[string]any) string {
	raw, err := tx.signer.Mint(map[string]any{"iss": txIssuer, "aud": rxAudience, "iat": time.Now().Unix(), "jti": jti,
		"sub_id": map[string]any{"format": "opaque", "id": streamID}, "events": map[string]any{typ: ev}}, map[string]any{"typ": "secevent+jwt"})
	must(tx.t, err)
	return raw
}

func (tx *transmitter) setStreamStatus(id, status, reason string) {
	tx.mu.Lock()
	defer tx.mu.Unlock()
	if st, ok := tx.mgmt.streams[id]; ok {
		st.status, st.reason = status, reason
	}
}

func (tx *transmitter) counts() (creates, updates int, streams []string) {
	tx.mu.Lock()
	defer tx.mu.Unlock()
	for id := range tx.mgmt.streams {
		streams = append(streams, id)
	}
	return tx.mgmt.creates, tx.mgmt.updates, streams
}

// writeStreamConfig writes a config with a managed push stream whose
// endpoint is pushAddr (the address a load balancer would give every
// replica), authenticated to the management API with token.
func writeStreamConfig(t *testing.T, dir, file string, tx *transmitter, pushAddr, token, description, email string) string {
	must(t, os.WriteFile(filepath.Join(dir, "push.token"), []byte(pushToken+"\n"), 0o600))
	must(t, os.WriteFile(filepath.Join(dir, file+".mgmt"), []byte(token+"\n"), 0o600))
	cfg := ssfConfigHead(tx) + fmt.Sprintf(`    token: {file: %s.mgmt}
    push:
      token: {file: push.token}
    stream:
      manage: true
      delivery: push
      endpoint_url: http://%s/ssf/events
      description: %q
      status_interval: 100ms
      subjects:
        - {format: email, email: %s}
`, file, pushAddr, description, email)
	p := filepath.Join(dir, file)
	must(t, os.WriteFile(p, []byte(cfg), 0o600))
	return p
}

type streamView struct {
	Up     bool   `json:"up"`
	Error  string `json:"error"`
	Stream *struct {
		ID         string    `json:"id"`
		Managed    bool      `json:"managed"`
		Status     string    `json:"status"`
		Verified   bool      `json:"verified"`
		VerifiedAt time.Time `json:"verified_at"`
	} `json:"stream"`
}

// ssfStatus reads the one transmitter's entry of /ssf/status.
func ssfStatus(t *testing.T, addr string) streamView {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/ssf/status")
	if err != nil {
		return streamView{Error: err.Error()}
	}
	defer resp.Body.Close()
	var doc struct {
		Transmitters []streamView `json:"transmitters"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil || len(doc.Transmitters) != 1 {
		t.Fatalf("/ssf/status: %v, %d transmitters", err, len(doc.Transmitters))
	}
	return doc.Transmitters[0]
}

// Two replicas sharing PostgreSQL start together with a managed stream:
// exactly one stream is created (the second waits on the first's lease
// and finds it), the subject is added once, the verification event pushed
// to one replica marks the stream verified on both; a restart reuses the
// stream, a changed configuration updates it once; a replica whose
// management credentials are refused says so and keeps deciding; a
// disabled stream and an unreachable transmitter show in health, and no
// decision changes.
func TestSSFStreamManagement(t *testing.T) {
	dsn := pgDSN(t)
	c := newCluster(t)
	tx := newTransmitter(t)
	hold := make(chan struct{})
	tx.mu.Lock()
	tx.mgmt.hold, tx.mgmt.createArrived = hold, make(chan struct{}, 4)
	tx.mu.Unlock()
	pushA, ssfB := freeport.Addr(t), freeport.Addr(t)
	cfgA := writeStreamConfig(t, c.dir, "ssf-a.yaml", tx, pushA, mgmtToken, "scopegate", "carol@example.com")
	cfgB := writeStreamConfig(t, c.dir, "ssf-b.yaml", tx, pushA, mgmtToken, "scopegate", "carol@example.com")
	a := c.replica("replica-a", dsn, "--ssf-config", cfgA, "--ssf-addr", pushA)
	select { // A is creating the stream, and holds the lease
	case <-tx.mgmt.createArrived:
	case <-time.After(10 * time.Second):
		t.Fatalf("replica-a never asked to create the stream\n%s", a.logTail())
	}
	b := c.replica("replica-b", dsn, "--ssf-config", cfgB, "--ssf-addr", ssfB)
	// B has read the configuration document, and would create a stream of
	// its own now if the lease did not stop it.
	if _, ok := waitFor(10*time.Second, func() bool { tx.mu.Lock(); defer tx.mu.Unlock(); return tx.mgmt.configReads >= 2 }); !ok {
		t.Fatal("replica-b never read the configuration document")
	}
	time.Sleep(500 * time.Millisecond)
	close(hold)
	both := []*replica{a, b}
	addr := map[*replica]string{a: pushA, b: ssfB}

	// Both verified (B from the store: the event reached A).
	for _, r := range both {
		if _, ok := waitFor(10*time.Second, func() bool {
			v := ssfStatus(t, addr[r])
			return v.Stream != nil && v.Stream.Verified && v.Stream.Status == "enabled" && v.Up
		}); !ok {
			t.Fatalf("%s: stream not verified and enabled within 10s: %+v\n%s", r.name, ssfStatus(t, addr[r]), r.logTail())
		}
	}
	creates, updates, streams := tx.counts()
	if creates != 1 || updates != 0 || len(streams) != 1 {
		t.Fatalf("creates %d, updates %d, streams %v; want one stream created, none updated", creates, updates, streams)
	}
	id := streams[0]
	for _, r := range both {
		v := ssfStatus(t, addr[r])
		if v.Stream.ID != id || !v.Stream.Managed || v.Stream.VerifiedAt.IsZero() {
			t.Errorf("%s shows stream %+v; want %s, managed, with a verification time", r.name, v.Stream, id)
		}
		for sample, want := range map[string]float64{
			`scopegate_ssf_stream_status{status="enabled",transmitter="test-idp"}`:  1,
			`scopegate_ssf_stream_status{status="disabled",transmitter="test-idp"}`: 0,
			`scopegate_ssf_stream_verified{transmitter="test-idp"}`:                 1,
		} {
			if got, ok := r.metric(sample); !ok || got != want {
				t.Errorf("%s: %s = %v (found %v); want %v", r.name, sample, got, ok, want)
			}
		}
		if ts, ok := r.metric(`scopegate_ssf_stream_last_verification_timestamp_seconds{transmitter="test-idp"}`); !ok || time.Since(time.Unix(int64(ts), 0)) > time.Minute {
			t.Errorf("%s: last verification timestamp %v (found %v)", r.name, ts, ok)
		}
	}
	tx.mu.Lock()
	subjects, verifies := slices.Clone(tx.mgmt.subjects), len(tx.mgmt.verifies)
	tx.mgmt.hold = nil
	tx.mu.Unlock()
	if len(subjects) != 1 || !strings.Contains(subjects[0], id+" ") || !strings.Contains(subjects[0], "carol@example.com") {
		t.Errorf("subjects added %v; want carol once, to %s", subjects, id)
	}
	if verifies != 2 {
		t.Errorf("%d verification requests; want one per replica start", verifies)
	}

	// A restart reuses the stream, and changes nothing at the transmitter.
	b.restart()
	if _, ok := waitFor(5*time.Second, func() bool {
		v := ssfStatus(t, ssfB)
		return v.Stream != nil && v.Stream.ID == id && v.Up
	}); !ok {
		t.Fatalf("after B's restart: %+v", ssfStatus(t, ssfB))
	}
	if creates, updates, _ := tx.counts(); creates != 1 || updates != 0 {
		t.Errorf("after a restart: creates %d, updates %d; want 1, 0", creates, updates)
	}

	// A changed configuration is sent once, as an update of that stream;
	// the subject dropped from it is removed, the new one added.
	writeStreamConfig(t, c.dir, "ssf-b.yaml", tx, pushA, mgmtToken, "scopegate, second edition", "dave@example.com")
	b.restart()
	if _, ok := waitFor(5*time.Second, func() bool { _, u, _ := tx.counts(); return u == 1 }); !ok {
		t.Fatalf("the changed configuration was not sent as an update\n%s", b.logTail())
	}
	tx.mu.Lock()
	desc := tx.mgmt.streams[id].Description
	tx.mu.Unlock()
	if creates, _, streams := tx.counts(); creates != 1 || len(streams) != 1 || desc != "scopegate, second edition" {
		t.Errorf("after the change: creates %d, streams %v, description %q", creates, streams, desc)
	}
	tx.mu.Lock()
	added, removed := slices.Clone(tx.mgmt.subjects), slices.Clone(tx.mgmt.removed)
	tx.mu.Unlock()
	if len(added) != 2 || !strings.Contains(added[1], "dave@example.com") || len(removed) != 1 || !strings.Contains(removed[0], id+" ") || !strings.Contains(removed[0], "carol@example.com") {
		t.Errorf("after the change: added %v, removed %v; want dave added, carol removed", added, removed)
	}

	// Refused management credentials: a clear error, no crash, decisions
	// as before.
	victim := c.mintAt("vic", "", time.Now().Add(-time.Minute))
	bystander := c.mintAt("bys", "", time.Now().Add(-time.Minute))
	if code, body := push(t, pushA, pushToken, tx.set(tx.signer, "ad-vic", accountDisabled, user("vic"), nil, time.Now())); code != http.StatusAccepted {
		t.Fatalf("push: %d %s", code, body)
	}
	ssfC := freeport.Addr(t)
	cfgC := writeStreamConfig(t, c.dir, "ssf-c.yaml", tx, pushA, "not-the-token", "scopegate", "carol@example.com")
	rc := c.replica("replica-c", dsn, "--ssf-config", cfgC, "--ssf-addr", ssfC)
	if _, ok := waitFor(5*time.Second, func() bool {
		return strings.Contains(ssfStatus(t, ssfC).Error, "refused this receiver's credentials (HTTP 401)")
	}); !ok {
		t.Errorf("replica-c's status does not name the refused credentials: %+v", ssfStatus(t, ssfC))
	}
	if v, ok := rc.metric(`scopegate_ssf_stream_management_errors_total{call="read",kind="unauthorized",transmitter="test-idp"}`); !ok || v < 1 {
		t.Errorf("replica-c counts no unauthorized read: %v %v", v, ok)
	}
	if st := ssfHealth(t, rc.grpcAddr); st != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Errorf("replica-c's SSF health with refused credentials: %v", st)
	}
	decisionsUnchanged := func(what string, rs ...*replica) {
		t.Helper()
		for _, r := range rs {
			if allow, _ := r.mustDecide(victim); allow {
				t.Errorf("%s: %s allows the revoked token", what, r.name)
			}
			if allow, code := r.mustDecide(bystander); !allow {
				t.Errorf("%s: %s denies another subject: %s", what, r.name, code)
			}
		}
	}
	if _, ok := waitFor(propagationBound, func() bool { allow, _ := rc.mustDecide(victim); return !allow }); !ok {
		t.Error("replica-c does not enforce the revocation")
	}
	decisionsUnchanged("refused management credentials", a, b, rc)
	if creates, _, _ := tx.counts(); creates != 1 {
		t.Errorf("creates %d after a replica with refused credentials; want 1", creates)
	}
	rc.stop()

	// The transmitter disables the stream: health shows it on both.
	tx.setStreamStatus(id, "disabled", "maintenance")
	for _, r := range both {
		if _, ok := waitFor(5*time.Second, func() bool { return ssfHealth(t, r.grpcAddr) == healthpb.HealthCheckResponse_NOT_SERVING }); !ok {
			t.Errorf("%s: SSF health does not show the disabled stream", r.name)
		}
		v := ssfStatus(t, addr[r])
		if v.Stream == nil || v.Stream.Status != "disabled" || !strings.Contains(v.Error, "maintenance") {
			t.Errorf("%s: status %+v; want the stream disabled, with the reason", r.name, v)
		}
		if got, ok := r.metric(`scopegate_ssf_stream_status{status="disabled",transmitter="test-idp"}`); !ok || got != 1 {
			t.Errorf("%s: disabled gauge %v %v", r.name, got, ok)
		}
	}
	decisionsUnchanged("stream disabled", a, b)
	tx.setStreamStatus(id, "enabled", "")
	for _, r := range both {
		if _, ok := waitFor(5*time.Second, func() bool { return ssfHealth(t, r.grpcAddr) == healthpb.HealthCheckResponse_SERVING }); !ok {
			t.Errorf("%s: SSF health does not recover when the stream is enabled: %+v", r.name, ssfStatus(t, addr[r]))
		}
	}

	// The transmitter goes away: health and status show it, decisions
	// stand.
	_ = tx.srv.Close()
	for _, r := range both {
		if _, ok := waitFor(5*time.Second, func() bool { return ssfHealth(t, r.grpcAddr) == healthpb.HealthCheckResponse_NOT_SERVING }); !ok {
			t.Errorf("%s: SSF health does not show the unreachable transmitter", r.name)
		}
		if v := ssfStatus(t, addr[r]); !strings.Contains(v.Error, "cannot be reached") {
			t.Errorf("%s: status error %q; want the transmitter unreachable", r.name, v.Error)
		}
	}
	decisionsUnchanged("transmitter down", a, b)
}
