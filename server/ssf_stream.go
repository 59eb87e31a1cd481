package server

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/scopegate/scopegate/decision/ssf"
	"github.com/scopegate/scopegate/store"
)

// Stream management (SSF 1.0 §8.1): with Stream.Manage set, scopegate is a
// client of the transmitter's Stream Management API. On start, under a
// lease in the shared store (so that two replicas starting together do
// not create two streams), it reads the stream whose id the store keeps,
// creates one when there is none (or the transmitter lost it), and
// updates it when the configuration differs from what it was last set
// to; it adds the configured subjects and requests a verification event,
// whose state it keeps in the store so that whichever replica receives
// the event, by push or poll, can match it. Every replica then reads the
// stream's status every StatusInterval and shows it in /ssf/status, the
// SSF health service (NOT_SERVING while the stream is paused or disabled,
// or the transmitter cannot be reached) and scopegate_ssf_stream_status.
// None of this changes a decision: revocations already made stay in force.

// Stream management defaults.
const (
	DefaultSSFStreamStatusInterval = time.Minute
	ssfStreamLeasePrefix           = "ssf-stream:"
	ssfMethodPush                  = "urn:ietf:rfc:8935"
	ssfMethodPoll                  = "urn:ietf:rfc:8936"
	ssfMgmtMaxBody                 = 1 << 20
)

// Stream statuses (SSF 1.0 §8.1.2), and the gauge's label for a stream
// whose status has not been read.
const (
	SSFStreamEnabled  = "enabled"
	SSFStreamPaused   = "paused"
	SSFStreamDisabled = "disabled"
	ssfStreamUnknown  = "unknown"
)

var ssfStreamStatuses = []string{SSFStreamEnabled, SSFStreamPaused, SSFStreamDisabled, ssfStreamUnknown}

// SSFStream configures the stream scopegate manages at a transmitter.
type SSFStream struct {
	// Manage turns stream management on; it needs the transmitter's
	// ConfigurationURL (its configuration document names the endpoints).
	// The calls authenticate with the transmitter's Token.
	Manage bool
	// Delivery is "push" (the transmitter POSTs to EndpointURL) or "poll"
	// (the transmitter gives the poll URL); "" is push when push is
	// configured, else poll.
	Delivery string
	// EndpointURL is this receiver's push endpoint as the transmitter
	// reaches it (https://.../ssf/events).
	EndpointURL string
	// AuthorizationHeader is what the transmitter sends with each push;
	// default "Bearer " and the transmitter's PushToken.
	AuthorizationHeader string
	// EventsRequested defaults to ssf.ActedOn.
	EventsRequested []string
	Description     string
	// Subjects are added to the stream (SSF 1.0 §8.1.3.2), each a JSON
	// subject identifier (RFC 9493).
	Subjects []json.RawMessage
	// StatusInterval is how often the stream's status is read; default
	// DefaultSSFStreamStatusInterval.
	StatusInterval time.Duration
}

// ssfEndpoints are the Stream Management API's endpoints, from the
// transmitter configuration document (SSF 1.0 §7.1).
type ssfEndpoints struct {
	Configuration string `json:"configuration_endpoint"`
	Status        string `json:"status_endpoint"`
	AddSubject    string `json:"add_subject_endpoint"`
	RemoveSubject string `json:"remove_subject_endpoint"`
	Verification  string `json:"-"` // verification_endpoint, read by ssfConfiguration
}

// ssfStreamState is a stream as this replica knows it; guarded by ssfTx.mu.
type ssfStreamState struct {
	id, pollURL    string
	status, reason string
	verifiedAt     time.Time
	verifyFailed   bool // the last verification request failed: retry it
}

// SSFStreamStatus is a stream's state in /ssf/status.
type SSFStreamStatus struct {
	ID string `json:"id"`
	// Managed is set when scopegate manages the stream.
	Managed bool `json:"managed"`
	// Status is enabled, paused or disabled as the transmitter last said
	// (status endpoint or stream-updated event); "" before it has.
	Status string `json:"status,omitempty"`
	Reason string `json:"reason,omitempty"`
	// Verified is set once a verification event answered a request of
	// this receiver (any replica's); VerifiedAt is when.
	Verified   bool      `json:"verified"`
	VerifiedAt time.Time `json:"verified_at,omitzero"`
}

// streamStatusLocked returns the stream's status; tx.mu held.
func (tx *ssfTx) streamStatusLocked() *SSFStreamStatus {
	st := tx.stream
	if st.id == "" && tx.cfg.StreamID == "" && !tx.cfg.Stream.Manage {
		return nil
	}
	id := st.id
	if id == "" {
		id = tx.cfg.StreamID
	}
	return &SSFStreamStatus{ID: id, Managed: tx.cfg.Stream.Manage, Status: st.status, Reason: st.reason,
		Verified: !st.verifiedAt.IsZero(), VerifiedAt: st.verifiedAt}
}

type ssfStreamMetrics struct {
	status     *prometheus.GaugeVec
	verified   *prometheus.GaugeVec
	verifiedAt *prometheus.GaugeVec
	errors     *prometheus.CounterVec
}

func newSSFStreamMetrics(reg prometheus.Registerer) ssfStreamMetrics {
	m := ssfStreamMetrics{
		status: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "scopegate_ssf_stream_status",
			Help: "1 for the stream's status at the transmitter (enabled, paused, disabled; unknown before it is read), 0 for the others."}, []string{"transmitter", "status"}),
		verified: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "scopegate_ssf_stream_verified",
			Help: "1 once a verification event answered a verification request of this receiver."}, []string{"transmitter"}),
		verifiedAt: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "scopegate_ssf_stream_last_verification_timestamp_seconds",
			Help: "Unix time of the last verification event that answered a request of this receiver."}, []string{"transmitter"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "scopegate_ssf_stream_management_errors_total",
			Help: "Failed Stream Management API calls, by transmitter, call (create, read, update, status, add_subject, remove_subject, verify, store, lease) and kind (unreachable, unauthorized, not_found, conflict, http_status, response, store)."}, []string{"transmitter", "call", "kind"}),
	}
	if reg != nil {
		reg.MustRegister(m.status, m.verified, m.verifiedAt, m.errors)
	}
	return m
}

// init shows a managed stream's metrics before its status is known.
func (m ssfStreamMetrics) init(name string, managed bool) {
	if !managed || m.status == nil {
		return
	}
	m.setStatus(name, ssfStreamUnknown)
	m.verified.WithLabelValues(name).Set(0)
}

func (m ssfStreamMetrics) setStatus(name, status string) {
	if !slices.Contains(ssfStreamStatuses, status) {
		status = ssfStreamUnknown
	}
	for _, s := range ssfStreamStatuses {
		v := 0.0
		if s == status {
			v = 1
		}
		m.status.WithLabelValues(name, s).Set(v)
	}
}

// checkSSFStream checks a transmitter's stream configuration and fills
// its defaults.
func checkSSFStream(t *SSFTransmitter) error {
	st := &t.Stream
	if !st.Manage {
		return nil
	}
	where := fmt.Sprintf("server config: SSF transmitter %q: stream", t.Name)
	if t.ConfigurationURL == "" {
		return fmt.Errorf("%s: manage needs configuration_url: the transmitter's configuration document names its stream management endpoints", where)
	}
	push := t.PushToken != "" || !t.PushClientCert.IsZero()
	if st.Delivery == "" {
		st.Delivery = "poll"
		if push {
			st.Delivery = "push"
		}
	}
	switch st.Delivery {
	case "push":
		if !push {
			return fmt.Errorf("%s: push delivery needs push (a token or client_cert): how the transmitter's pushes are authenticated", where)
		}
		u, err := url.Parse(st.EndpointURL)
		if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
			return fmt.Errorf("%s: push delivery needs endpoint_url, the absolute https URL at which the transmitter reaches this receiver's /ssf/events", where)
		}
		if st.AuthorizationHeader == "" && t.PushToken != "" {
			st.AuthorizationHeader = "Bearer " + t.PushToken
		}
	case "poll":
		if st.EndpointURL != "" {
			return fmt.Errorf("%s: endpoint_url is for push delivery; with poll the transmitter gives the poll URL", where)
		}
	default:
		return fmt.Errorf("%s: delivery %q: give push or poll", where, st.Delivery)
	}
	if len(st.EventsRequested) == 0 {
		st.EventsRequested = slices.Clone(ssf.ActedOn)
	}
	for i, s := range st.Subjects {
		var sub ssf.Subject
		if err := json.Unmarshal(s, &sub); err != nil || sub.Format == "" {
			return fmt.Errorf("%s: subjects[%d]: a subject identifier with a format (RFC 9493: iss_sub, email, opaque, ...)", where, i)
		}
	}
	if st.StatusInterval == 0 {
		st.StatusInterval = DefaultSSFStreamStatusInterval
	} else if st.StatusInterval < 10*time.Millisecond {
		return fmt.Errorf("%s: status_interval %v is too short: give at least 10ms (default %v)", where, st.StatusInterval, DefaultSSFStreamStatusInterval)
	}
	return nil
}

// Wire forms (SSF 1.0 §8.1.1).
type ssfDelivery struct {
	Method              string `json:"method"`
	EndpointURL         string `json:"endpoint_url,omitempty"`
	AuthorizationHeader string `json:"authorization_header,omitempty"`
}

type ssfStreamRequest struct {
	StreamID        string       `json:"stream_id,omitempty"`
	Delivery        *ssfDelivery `json:"delivery,omitempty"`
	EventsRequested []string     `json:"events_requested,omitempty"`
	Description     string       `json:"description,omitempty"`
}

type ssfStreamConfig struct {
	StreamID        string          `json:"stream_id"`
	Iss             string          `json:"iss"`
	Aud             json.RawMessage `json:"aud"`
	Delivery        ssfDelivery     `json:"delivery"`
	EventsRequested []string        `json:"events_requested"`
	EventsDelivered []string        `json:"events_delivered"`
	Description     string          `json:"description"`
}

type ssfStreamStatusBody struct {
	StreamID string `json:"stream_id"`
	Status   string `json:"status"`
	Reason   string `json:"reason"`
}

// desired is the receiver-supplied configuration of tx's stream.
func (tx *ssfTx) desired() ssfStreamRequest {
	st := tx.cfg.Stream
	d := &ssfDelivery{Method: ssfMethodPoll}
	if st.Delivery == "push" {
		d = &ssfDelivery{Method: ssfMethodPush, EndpointURL: st.EndpointURL, AuthorizationHeader: st.AuthorizationHeader}
	}
	return ssfStreamRequest{Delivery: d, EventsRequested: st.EventsRequested, Description: st.Description}
}

// digest identifies the configuration the stream is set to, subjects
// included; it is kept in the store (a hash: the authorization header is
// a secret).
func (tx *ssfTx) digest() string {
	d := tx.desired()
	ev := slices.Clone(d.EventsRequested)
	slices.Sort(ev)
	d.EventsRequested = ev
	b, _ := json.Marshal(struct {
		ssfStreamRequest
		Subjects []json.RawMessage `json:"subjects"`
	}{d, tx.cfg.Stream.Subjects})
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:16])
}

// differs reports whether the transmitter's configuration c differs from
// what this receiver asks for.
func (tx *ssfTx) differs(c *ssfStreamConfig) bool {
	d := tx.desired()
	if c.Delivery.Method != d.Delivery.Method || (d.Delivery.Method == ssfMethodPush && c.Delivery.EndpointURL != d.Delivery.EndpointURL) {
		return true
	}
	a, b := slices.Clone(c.EventsRequested), slices.Clone(d.EventsRequested)
	slices.Sort(a)
	slices.Sort(b)
	return !slices.Equal(a, b) || c.Description != d.Description
}

// ssfMgmtError is a failed management call: Call and Kind label the
// metric, the message says what to fix.
type ssfMgmtError struct {
	Call, Kind string
	Status     int
	msg        string
}

func (e *ssfMgmtError) Error() string { return e.Call + ": " + e.msg }

func mgmtErr(call, kind string, status int, format string, a ...any) *ssfMgmtError {
	return &ssfMgmtError{Call: call, Kind: kind, Status: status, msg: fmt.Sprintf(format, a...)}
}

// mgmt makes one Stream Management API call: in, when not nil, is the JSON
// body; a 2xx answer's JSON body goes into out when not nil. It returns
// the HTTP status; an error is an *ssfMgmtError, counted.
func (r *SSFReceiver) mgmt(ctx context.Context, tx *ssfTx, call, method, u string, in, out any) (int, error) {
	code, err := r.mgmtDo(ctx, tx, call, method, u, in, out)
	if me := (*ssfMgmtError)(nil); errors.As(err, &me) {
		r.m.stream.errors.WithLabelValues(tx.cfg.Name, me.Call, me.Kind).Inc()
	}
	return code, err
}

func (r *SSFReceiver) mgmtDo(ctx context.Context, tx *ssfTx, call, method, u string, in, out any) (int, error) {
	if u == "" {
		return 0, mgmtErr(call, "response", 0, "the transmitter's configuration document names no endpoint for %s", call)
	}
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return 0, mgmtErr(call, "response", 0, "encode the request: %v", err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return 0, mgmtErr(call, "response", 0, "%s %s: %v", method, u, err)
	}
	req.Header.Set("Accept", "application/json")
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if tx.cfg.Token != "" {
		req.Header.Set("Authorization", "Bearer "+tx.cfg.Token)
	}
	resp, err := tx.cfg.HTTPClient.Do(req)
	if err != nil {
		return 0, mgmtErr(call, "unreachable", 0, "%s %s: the transmitter cannot be reached: %v", method, u, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, ssfMgmtMaxBody))
	code := resp.StatusCode
	switch {
	case code == http.StatusUnauthorized || code == http.StatusForbidden:
		return code, mgmtErr(call, "unauthorized", code, "%s %s: the transmitter refused this receiver's credentials (HTTP %d): set the transmitter's token (file or env) to a bearer token its stream management API accepts for this receiver", method, u, code)
	case code == http.StatusNotFound:
		return code, mgmtErr(call, "not_found", code, "%s %s: HTTP 404: the transmitter has no such stream", method, u)
	case code == http.StatusConflict:
		return code, mgmtErr(call, "conflict", code, "%s %s: HTTP 409: the transmitter allows one stream per receiver and has one", method, u)
	case code/100 != 2:
		return code, mgmtErr(call, "http_status", code, "%s %s: HTTP %d", method, u, code)
	case err != nil:
		return code, mgmtErr(call, "unreachable", code, "%s %s: reading the answer: %v", method, u, err)
	}
	if out != nil && len(bytes.TrimSpace(raw)) > 0 && code != http.StatusAccepted {
		if err := json.Unmarshal(raw, out); err != nil {
			return code, mgmtErr(call, "response", code, "%s %s: the answer is not the JSON the SSF specification defines: %v", method, u, err)
		}
	}
	return code, nil
}

// checkConfig checks a stream configuration the transmitter returned
// (SSF 1.0 §8.1.1.1: iss is the transmitter, aud names this receiver).
func (r *SSFReceiver) checkConfig(tx *ssfTx, call string, c *ssfStreamConfig) error {
	var err error
	switch aud, ok := ssf.Audiences(c.Aud); {
	case c.StreamID == "":
		err = mgmtErr(call, "response", 0, "the stream configuration has no stream_id")
	case c.Iss != tx.cfg.Issuer:
		err = mgmtErr(call, "response", 0, "the stream configuration names iss %q, not the configured issuer %q", c.Iss, tx.cfg.Issuer)
	case !ok || (len(aud) > 0 && !slices.ContainsFunc(aud, func(a string) bool { return slices.Contains(tx.cfg.Audience, a) })):
		err = mgmtErr(call, "response", 0, "the stream's aud %s names none of this receiver's audiences %v", c.Aud, tx.cfg.Audience)
	case tx.cfg.Stream.Delivery == "poll" && c.Delivery.EndpointURL == "" && tx.cfg.PollURL == "":
		err = mgmtErr(call, "response", 0, "the poll stream's delivery has no endpoint_url to poll")
	}
	if err != nil {
		r.m.stream.errors.WithLabelValues(tx.cfg.Name, call, "response").Inc()
	}
	return err
}

// setupStreamUntilDone runs setupStream until it succeeds; false when the
// receiver closes first.
func (r *SSFReceiver) setupStreamUntilDone(tx *ssfTx) bool {
	for {
		err := r.setupStream(tx)
		if r.ctx.Err() != nil {
			return false
		}
		if err == nil {
			r.setStatus(tx, ssfErrStream, nil)
			return true
		}
		r.setStatus(tx, ssfErrStream, err)
		r.log.Warn("SSF stream not set up; retrying", "transmitter", tx.cfg.Name, "error", err, "retry", ssfRetry)
		select {
		case <-r.ctx.Done():
			return false
		case <-time.After(ssfRetry):
		}
	}
}

// setupStream, under the stream lease, reads, creates or updates the
// stream, adds the subjects and requests a verification event.
func (r *SSFReceiver) setupStream(tx *ssfTx) error {
	name, ttl := ssfStreamLeasePrefix+tx.cfg.Name, tx.cfg.LeaseTTL
	acquire := func() (bool, error) {
		ctx, cancel := context.WithTimeout(r.ctx, max(ttl/3, time.Second))
		defer cancel()
		return r.leaser.Acquire(ctx, name, r.holder, ttl)
	}
	for {
		held, err := acquire()
		if err != nil {
			r.m.stream.errors.WithLabelValues(tx.cfg.Name, "lease", "store").Inc()
			return fmt.Errorf("stream lease: %w", err)
		}
		if held {
			break
		}
		select { // another replica sets the stream up; ours follows
		case <-r.ctx.Done():
			return r.ctx.Err()
		case <-time.After(min(ttl/10, 500*time.Millisecond)):
		}
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(r.ctx), time.Second)
		_ = r.leaser.Release(ctx, name, r.holder)
		cancel()
	}()
	// still reports whether the lease is still ours before a change.
	still := func() error {
		if held, err := acquire(); err != nil || !held {
			return errors.New("stream lease lost during set-up: another replica takes over")
		}
		return nil
	}
	ctx := r.ctx
	rec, _, err := r.streams.LoadSSFStream(ctx, tx.cfg.Name)
	if err != nil {
		r.m.stream.errors.WithLabelValues(tx.cfg.Name, "store", "store").Inc()
		return err
	}
	rec.Transmitter = tx.cfg.Name
	if rec.StreamID == "" {
		rec.StreamID = tx.cfg.StreamID
	}
	digest := tx.digest()
	var conf ssfStreamConfig
	created, changed := false, rec.ConfigDigest != digest
	if rec.StreamID != "" {
		code, err := r.mgmt(ctx, tx, "read", http.MethodGet, tx.ep.Configuration+"?stream_id="+url.QueryEscape(rec.StreamID), nil, &conf)
		switch {
		case code == http.StatusNotFound:
			r.log.Warn("SSF stream gone at the transmitter; creating another", "transmitter", tx.cfg.Name, "stream_id", rec.StreamID)
			rec.StreamID = ""
		case err != nil:
			return err
		default:
			if err := r.checkConfig(tx, "read", &conf); err != nil {
				return err
			}
		}
	}
	if rec.StreamID == "" {
		if err := still(); err != nil {
			return err
		}
		if err := r.createStream(ctx, tx, &conf); err != nil {
			return err
		}
		rec.StreamID, created = conf.StreamID, true
		r.log.Info("SSF stream created", "transmitter", tx.cfg.Name, "stream_id", rec.StreamID, "events_delivered", conf.EventsDelivered)
	} else if changed || tx.differs(&conf) {
		if err := still(); err != nil {
			return err
		}
		req := tx.desired()
		req.StreamID = rec.StreamID
		code, err := r.mgmt(ctx, tx, "update", http.MethodPatch, tx.ep.Configuration, req, &conf)
		if err != nil {
			return err
		}
		if code != http.StatusAccepted {
			if err := r.checkConfig(tx, "update", &conf); err != nil {
				return err
			}
		}
		changed = true
		r.log.Info("SSF stream updated", "transmitter", tx.cfg.Name, "stream_id", rec.StreamID, "events_delivered", conf.EventsDelivered)
	}
	if tx.cfg.Stream.Delivery == "poll" && conf.Delivery.EndpointURL != "" {
		rec.PollURL = conf.Delivery.EndpointURL
	}
	if created || changed {
		if created {
			rec.Subjects = nil // a new stream has none of the old one's
		}
		if err := r.syncSubjects(ctx, tx, &rec); err != nil {
			return err
		}
	}
	rec.ConfigDigest = digest
	if err := r.saveStream(ctx, tx, rec); err != nil {
		return err
	}
	tx.mu.Lock()
	tx.stream.id, tx.stream.pollURL, tx.stream.verifiedAt = rec.StreamID, rec.PollURL, rec.VerifiedAt
	tx.mu.Unlock()
	r.requestStreamVerification(tx)
	return nil
}

// syncSubjects adds the configured subjects to the stream (SSF 1.0
// §8.1.3.2) and removes those added before and no longer configured
// (§8.1.3.3); rec.Subjects is left as the stream has them.
func (r *SSFReceiver) syncSubjects(ctx context.Context, tx *ssfTx, rec *store.SSFStream) error {
	want := make([]string, 0, len(tx.cfg.Stream.Subjects))
	for _, sub := range tx.cfg.Stream.Subjects {
		var b bytes.Buffer
		if err := json.Compact(&b, sub); err != nil {
			return err
		}
		want = append(want, b.String())
	}
	for _, sub := range want {
		body := map[string]any{"stream_id": rec.StreamID, "subject": json.RawMessage(sub), "verified": true}
		if _, err := r.mgmt(ctx, tx, "add_subject", http.MethodPost, tx.ep.AddSubject, body, nil); err != nil {
			return err
		}
	}
	for _, sub := range rec.Subjects {
		if slices.Contains(want, sub) {
			continue
		}
		body := map[string]any{"stream_id": rec.StreamID, "subject": json.RawMessage(sub)}
		if _, err := r.mgmt(ctx, tx, "remove_subject", http.MethodPost, tx.ep.RemoveSubject, body, nil); err != nil {
			return err
		}
	}
	rec.Subjects = want
	return nil
}

// createStream creates the stream; a transmitter that allows one stream
// per receiver answers 409, and the receiver takes the one it has
// (SSF 1.0 §8.1.1.1).
func (r *SSFReceiver) createStream(ctx context.Context, tx *ssfTx, conf *ssfStreamConfig) error {
	code, err := r.mgmt(ctx, tx, "create", http.MethodPost, tx.ep.Configuration, tx.desired(), conf)
	if code == http.StatusConflict {
		var list []ssfStreamConfig
		if _, err := r.mgmt(ctx, tx, "read", http.MethodGet, tx.ep.Configuration, nil, &list); err != nil {
			return err
		}
		if len(list) != 1 {
			return mgmtErr("create", "conflict", code, "the transmitter refused a new stream (409) and lists %d streams for this receiver: delete the extra ones, or set stream_id", len(list))
		}
		req := tx.desired()
		req.StreamID = list[0].StreamID
		if _, err := r.mgmt(ctx, tx, "update", http.MethodPatch, tx.ep.Configuration, req, conf); err != nil {
			return err
		}
	} else if err != nil {
		return err
	}
	return r.checkConfig(tx, "create", conf)
}

func (r *SSFReceiver) saveStream(ctx context.Context, tx *ssfTx, rec store.SSFStream) error {
	if err := r.streams.SaveSSFStream(ctx, rec); err != nil {
		r.m.stream.errors.WithLabelValues(tx.cfg.Name, "store", "store").Inc()
		return fmt.Errorf("save the stream record: %w", err)
	}
	return nil
}

// requestStreamVerification asks for a verification event with a fresh
// state, kept in the store first so that the event matches whichever
// replica it reaches.
func (r *SSFReceiver) requestStreamVerification(tx *ssfTx) {
	fail := func(err error) {
		tx.mu.Lock()
		tx.stream.verifyFailed = true
		tx.mu.Unlock()
		r.setStatus(tx, ssfErrVerification, err)
	}
	if tx.ep.Verification == "" {
		return // nothing to ask: the transmitter offers no verification
	}
	ctx := r.ctx
	var b [16]byte
	_, _ = rand.Read(b[:])
	state := hex.EncodeToString(b[:])
	rec, ok, err := r.streams.LoadSSFStream(ctx, tx.cfg.Name)
	if err != nil || !ok {
		r.m.stream.errors.WithLabelValues(tx.cfg.Name, "store", "store").Inc()
		fail(fmt.Errorf("load the stream record: %v (found %v)", err, ok))
		return
	}
	rec.AddState(state)
	if err := r.saveStream(ctx, tx, rec); err != nil {
		fail(err)
		return
	}
	if _, err := r.mgmt(ctx, tx, "verify", http.MethodPost, tx.ep.Verification, map[string]string{"stream_id": rec.StreamID, "state": state}, nil); err != nil {
		fail(err)
		return
	}
	tx.mu.Lock()
	tx.stream.verifyFailed = false
	tx.mu.Unlock()
	r.setStatus(tx, ssfErrVerification, nil)
}

// watchStream reads the stream's status every StatusInterval, follows the
// store's record (another replica's verification, a stream recreated) and
// retries a failed verification request, until the receiver closes.
func (r *SSFReceiver) watchStream(tx *ssfTx) {
	for {
		r.checkStream(tx)
		select {
		case <-r.ctx.Done():
			return
		case <-time.After(tx.cfg.Stream.StatusInterval):
		}
	}
}

func (r *SSFReceiver) checkStream(tx *ssfTx) {
	ctx := r.ctx
	if rec, ok, err := r.streams.LoadSSFStream(ctx, tx.cfg.Name); err == nil && ok {
		tx.mu.Lock()
		tx.stream.id, tx.stream.pollURL = rec.StreamID, rec.PollURL
		if rec.VerifiedAt.After(tx.stream.verifiedAt) {
			tx.stream.verifiedAt = rec.VerifiedAt
		}
		at := tx.stream.verifiedAt
		tx.mu.Unlock()
		r.showVerified(tx, at)
	}
	tx.mu.Lock()
	id, retry := tx.stream.id, tx.stream.verifyFailed
	tx.mu.Unlock()
	if tx.ep.Status != "" {
		var st ssfStreamStatusBody
		code, err := r.mgmt(ctx, tx, "status", http.MethodGet, tx.ep.Status+"?stream_id="+url.QueryEscape(id), nil, &st)
		switch {
		case ctx.Err() != nil:
			return
		case code == http.StatusNotFound:
			// The transmitter lost the stream: set one up again (under
			// the lease; the replica that comes second finds it made).
			r.setStatus(tx, ssfErrStream, err)
			r.setupStreamUntilDone(tx)
			return
		case err != nil:
			r.setStatus(tx, ssfErrStream, err)
			return
		case st.Status == "":
			r.m.stream.errors.WithLabelValues(tx.cfg.Name, "status", "response").Inc()
			r.setStatus(tx, ssfErrStream, mgmtErr("status", "response", code, "the status endpoint's answer has no status"))
			return
		}
		r.setStreamStatus(tx, st.Status, st.Reason)
	}
	if retry {
		r.requestStreamVerification(tx)
	}
}

// setStreamStatus records the stream's status; a stream that is not
// enabled delivers no events, and shows in health.
func (r *SSFReceiver) setStreamStatus(tx *ssfTx, status, reason string) {
	tx.mu.Lock()
	was := tx.stream.status
	tx.stream.status, tx.stream.reason = status, reason
	tx.mu.Unlock()
	r.m.stream.setStatus(tx.cfg.Name, status)
	if was != status {
		r.log.Info("SSF stream status", "transmitter", tx.cfg.Name, "status", status, "reason", reason)
	}
	if status == SSFStreamEnabled {
		r.setStatus(tx, ssfErrStream, nil)
		return
	}
	why := ""
	if reason != "" {
		why = " (" + reason + ")"
	}
	r.setStatus(tx, ssfErrStream, fmt.Errorf("the stream is %q at the transmitter%s: no events are delivered until it is enabled; revocations already made stay in force", status, why))
}

func (r *SSFReceiver) showVerified(tx *ssfTx, at time.Time) {
	if at.IsZero() {
		return
	}
	r.m.stream.verified.WithLabelValues(tx.cfg.Name).Set(1)
	r.m.stream.verifiedAt.WithLabelValues(tx.cfg.Name).Set(float64(at.UnixNano()) / 1e9)
}

// verificationEvent handles a verification event (SSF 1.0 §8.1.4.1): it
// must name this receiver's stream, and its state one of the receiver's
// requests; one that does not is refused invalid_state. A state-less one
// (the transmitter's own initiative) is acknowledged.
func (r *SSFReceiver) verificationEvent(ctx context.Context, tx *ssfTx, o *ssf.Outcome) error {
	tx.mu.Lock()
	id, local := tx.stream.id, tx.verificationState
	tx.mu.Unlock()
	if id == "" {
		id = tx.cfg.StreamID
	}
	name := tx.cfg.Name
	if id != "" && o.StreamID != "" && o.StreamID != id {
		return &ssf.Error{Code: ssf.ErrInvalidRequest, Reason: "stream", Description: "the verification event names another stream than this receiver's"}
	}
	if o.State == "" {
		r.log.Info("SSF verification event without state (the transmitter's own)", "transmitter", name)
		return nil
	}
	now := r.clock()
	if !tx.cfg.Stream.Manage {
		if o.State == local {
			r.verified(tx, now)
		}
		r.log.Info("SSF verification event received", "transmitter", name, "matches", o.State == local)
		return nil
	}
	ok, err := r.streams.MarkSSFStreamVerified(ctx, name, o.State, now)
	if err != nil {
		r.m.stream.errors.WithLabelValues(name, "store", "store").Inc()
		return fmt.Errorf("record the verification: %w", err)
	}
	if !ok {
		return &ssf.Error{Code: "invalid_state", Reason: "state", Description: "the verification event's state answers no verification request of this receiver"}
	}
	r.verified(tx, now)
	r.log.Info("SSF stream verified", "transmitter", name, "stream_id", id)
	return nil
}

func (r *SSFReceiver) verified(tx *ssfTx, at time.Time) {
	tx.mu.Lock()
	tx.stream.verifiedAt = at
	tx.mu.Unlock()
	r.showVerified(tx, at)
}

// streamUpdatedEvent applies a stream-updated event (SSF 1.0 §8.1.5): the
// transmitter changed the stream's status.
func (r *SSFReceiver) streamUpdatedEvent(tx *ssfTx, o *ssf.Outcome) {
	tx.mu.Lock()
	id := tx.stream.id
	tx.mu.Unlock()
	if id != "" && o.StreamID != id {
		r.log.Warn("SSF stream-updated event for another stream ignored", "transmitter", tx.cfg.Name)
		return
	}
	r.setStreamStatus(tx, o.Status, o.Reason)
}
