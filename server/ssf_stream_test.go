package server

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/scopegate/scopegate/decision"
	"github.com/scopegate/scopegate/decision/decisiontest"
	"github.com/scopegate/scopegate/decision/ssf"
	"github.com/scopegate/scopegate/store"
)

// pollTransmitter is a transmitter that allows one stream per receiver
// and has one already, delivering by poll.
type pollTransmitter struct {
	t       *testing.T
	signer  *decisiontest.Signer
	srv     *httptest.Server
	mu      sync.Mutex
	creates int
	patched map[string]any
	queue   map[string]string
	setErrs map[string]map[string]string
	status  string
	states  []string
}

const pollIss = "https://poll-idp.test/"

func newPollTransmitter(t *testing.T) *pollTransmitter {
	s, err := decisiontest.NewECSigner("tx-1")
	if err != nil {
		t.Fatal(err)
	}
	p := &pollTransmitter{t: t, signer: s, queue: map[string]string{}, setErrs: map[string]map[string]string{}, status: "enabled"}
	mux := http.NewServeMux()
	conf := func() map[string]any {
		return map[string]any{"stream_id": "st-old", "iss": pollIss, "aud": "https://scopegate.test/",
			"delivery": map[string]any{"method": ssfMethodPoll, "endpoint_url": p.srv.URL + "/poll"}, "events_requested": []string{ssf.SessionRevoked}}
	}
	write := func(w http.ResponseWriter, v any) { _ = json.NewEncoder(w).Encode(v) }
	mux.HandleFunc("GET /.well-known/ssf-configuration", func(w http.ResponseWriter, _ *http.Request) {
		write(w, map[string]any{"issuer": pollIss, "configuration_endpoint": p.srv.URL + "/stream",
			"status_endpoint": p.srv.URL + "/status", "verification_endpoint": p.srv.URL + "/verify"})
	})
	mux.HandleFunc("POST /stream", func(w http.ResponseWriter, _ *http.Request) {
		p.mu.Lock()
		p.creates++
		p.mu.Unlock()
		http.Error(w, "one stream per receiver", http.StatusConflict)
	})
	mux.HandleFunc("GET /stream", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("stream_id") != "" {
			write(w, conf())
			return
		}
		write(w, []any{conf()})
	})
	mux.HandleFunc("PATCH /stream", func(w http.ResponseWriter, r *http.Request) {
		var body map[string]any
		_ = json.NewDecoder(r.Body).Decode(&body)
		p.mu.Lock()
		p.patched = body
		p.mu.Unlock()
		write(w, conf())
	})
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, _ *http.Request) {
		p.mu.Lock()
		defer p.mu.Unlock()
		write(w, map[string]string{"stream_id": "st-old", "status": p.status})
	})
	mux.HandleFunc("POST /verify", func(w http.ResponseWriter, r *http.Request) {
		var body struct{ StreamID, State string }
		_ = json.NewDecoder(r.Body).Decode(&body)
		p.mu.Lock()
		p.states = append(p.states, body.State)
		p.mu.Unlock()
		p.enqueue("v-1", "st-old", ssf.Verification, map[string]any{"state": body.State})
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST /poll", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Ack     []string                     `json:"ack"`
			SetErrs map[string]map[string]string `json:"setErrs"`
		}
		_ = json.NewDecoder(r.Body).Decode(&req)
		p.mu.Lock()
		defer p.mu.Unlock()
		for _, j := range req.Ack {
			delete(p.queue, j)
		}
		for j, e := range req.SetErrs {
			delete(p.queue, j)
			p.setErrs[j] = e
		}
		write(w, map[string]any{"sets": p.queue, "moreAvailable": false})
	})
	p.srv = httptest.NewServer(mux)
	t.Cleanup(p.srv.Close)
	return p
}

func (p *pollTransmitter) enqueue(jti, stream, typ string, ev map[string]any) {
	raw, err := p.signer.Mint(map[string]any{"iss": pollIss, "aud": "https://scopegate.test/", "iat": time.Now().Unix(), "jti": jti,
		"sub_id": map[string]any{"format": "opaque", "id": stream}, "events": map[string]any{typ: ev}}, map[string]any{"typ": "secevent+jwt"})
	if err != nil {
		p.t.Fatal(err)
	}
	p.mu.Lock()
	p.queue[jti] = raw
	p.mu.Unlock()
}

func mustWait(t *testing.T, what string, cond func() bool) {
	t.Helper()
	if !waitUntil(5*time.Second, cond) {
		t.Fatalf("not within 5s: %s", what)
	}
}

// A managed poll stream at a transmitter that has one stream per receiver
// already: the 409 makes the receiver take that stream and update it; it
// polls the URL the stream gives, the polled verification event verifies
// it; one with a state nobody asked for is refused invalid_state; a
// stream-updated event pausing it shows at once.
func TestSSFManagedPollStream(t *testing.T) {
	p := newPollTransmitter(t)
	streams := store.NewMemorySSFStreams()
	keys := decision.StaticKeys{{Kid: p.signer.Kid, Alg: p.signer.Alg, Public: p.signer.Key.Public()}}
	e := startE2E(t, func(c *Config) {
		c.Revocation.Store = store.NewMemoryRevocations(nil)
		c.SSF = SSFConfig{Streams: streams, Transmitters: []SSFTransmitter{{Name: "idp", ConfigurationURL: p.srv.URL + "/.well-known/ssf-configuration",
			Token: "t", PollToken: "t", PollInterval: 5 * time.Millisecond,
			Transmitter: ssf.Transmitter{Issuer: pollIss, Audience: []string{"https://scopegate.test/"}, Keys: keys},
			Stream:      SSFStream{Manage: true, Delivery: "poll", Description: "scopegate", StatusInterval: time.Hour}}}}
	})
	rx := e.srv.SSF()
	status := func() SSFStatus { return rx.Status()[0] }
	mustWait(t, "the stream verified by poll, and its status read", func() bool {
		s := status()
		return s.Stream != nil && s.Stream.Verified && s.Stream.Status != ""
	})
	s := status()
	if s.Stream.ID != "st-old" || !s.Poll || !s.Up || s.Stream.Status != SSFStreamEnabled {
		t.Errorf("status %+v, stream %+v", s, s.Stream)
	}
	p.mu.Lock()
	creates, patched := p.creates, p.patched
	p.mu.Unlock()
	if creates != 1 || patched["stream_id"] != "st-old" || patched["description"] != "scopegate" {
		t.Errorf("creates %d, patch %v; want one refused create, then an update of st-old", creates, patched)
	}
	if rec, ok, _ := streams.LoadSSFStream(t.Context(), "idp"); !ok || rec.StreamID != "st-old" || rec.PollURL != p.srv.URL+"/poll" || rec.VerifiedAt.IsZero() {
		t.Errorf("stored %+v %v", rec, ok)
	}

	p.enqueue("v-forged", "st-old", ssf.Verification, map[string]any{"state": "guessed"})
	mustWait(t, "the unknown state refused", func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.setErrs["v-forged"]["err"] == "invalid_state"
	})

	// The status endpoint is read once an hour here: what follows comes
	// from the events alone.
	p.enqueue("su-1", "st-old", ssf.StreamUpdated, map[string]any{"status": "paused", "reason": "maintenance"})
	mustWait(t, "the pause shown", func() bool { s := status(); return s.Stream.Status == SSFStreamPaused && !s.Up })
	if s := status(); !strings.Contains(s.Error, `"paused" at the transmitter (maintenance)`) {
		t.Errorf("error %q; want the pause and its reason", s.Error)
	}
	p.enqueue("su-other", "st-elsewhere", ssf.StreamUpdated, map[string]any{"status": "enabled"})
	p.enqueue("su-2", "st-old", ssf.StreamUpdated, map[string]any{"status": "enabled"})
	mustWait(t, "enabled again", func() bool { s := status(); return s.Stream.Status == SSFStreamEnabled && s.Up })
}

func TestSSFStreamConfigChecked(t *testing.T) {
	base := func() SSFTransmitter {
		return SSFTransmitter{Name: "idp", ConfigurationURL: "https://idp.test/.well-known/ssf-configuration", PushToken: "p",
			Stream: SSFStream{Manage: true, EndpointURL: "https://scopegate.example/ssf/events"}}
	}
	for name, c := range map[string]struct {
		edit func(*SSFTransmitter)
		want string
	}{
		"no configuration url": {func(t *SSFTransmitter) { t.ConfigurationURL = "" }, "manage needs configuration_url"},
		"push without url":     {func(t *SSFTransmitter) { t.Stream.EndpointURL = "" }, "push delivery needs endpoint_url"},
		"push without push":    {func(t *SSFTransmitter) { t.PushToken = ""; t.Stream.Delivery = "push" }, "push delivery needs push"},
		"poll with url":        {func(t *SSFTransmitter) { t.Stream.Delivery = "poll" }, "endpoint_url is for push delivery"},
		"odd delivery":         {func(t *SSFTransmitter) { t.Stream.Delivery = "carrier pigeon" }, `delivery "carrier pigeon"`},
		"subject sans format":  {func(t *SSFTransmitter) { t.Stream.Subjects = []json.RawMessage{[]byte(`{"email":"a@b"}`)} }, "subjects[0]"},
		"tiny interval":        {func(t *SSFTransmitter) { t.Stream.StatusInterval = time.Microsecond }, "status_interval"},
	} {
		tr := base()
		c.edit(&tr)
		if err := checkSSFStream(&tr); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v; want %q", name, err, c.want)
		}
	}
	tr := base()
	if err := checkSSFStream(&tr); err != nil {
		t.Fatal(err)
	}
	if tr.Stream.Delivery != "push" || tr.Stream.AuthorizationHeader != "Bearer p" || len(tr.Stream.EventsRequested) != len(ssf.ActedOn) || tr.Stream.StatusInterval != DefaultSSFStreamStatusInterval {
		t.Errorf("defaults %+v", tr.Stream)
	}
}
