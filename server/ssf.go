package server

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/scopegate/scopegate/decision"
	"github.com/scopegate/scopegate/decision/ssf"
	"github.com/scopegate/scopegate/store"
	"github.com/scopegate/scopegate/store/audit"
	"github.com/scopegate/scopegate/store/jwks"
)

// The Shared Signals receiver: Security Event Tokens from configured
// transmitters, pushed (RFC 8935) to the SSF listener or polled (RFC 8936)
// from the transmitter, verified and mapped by decision/ssf, stored as
// revocations in the shared revocation store and put in force here at
// once; the other replicas learn them the way they learn an admin's
// revocation (PostgreSQL LISTEN/NOTIFY), within the same bound.
//
// A transmitter that cannot be reached changes no decision: the
// revocations already made stay in force, and its status shows in the
// health service HealthServiceSSF (NOT_SERVING while any configured
// transmitter is down; the decision services stay SERVING), in
// /ssf/status on the SSF listener, and in scopegate_ssf_transmitter_up.

// HealthServiceSSF is the health-service name that reports the SSF
// transmitters' status.
const HealthServiceSSF = "scopegate.ssf"

// SSF receiver defaults.
const (
	DefaultSSFPollInterval = time.Second
	DefaultSSFMaxEvents    = 100
	ssfSeenMax             = 1 << 16
	ssfRetry               = 5 * time.Second
	ssfPushPath            = "/ssf/events"
	ssfStatusPath          = "/ssf/status"
)

// SSFConfig configures the receiver; it is off without transmitters.
type SSFConfig struct {
	// Addr is the host:port of the push listener (POST /ssf/events,
	// GET /ssf/status); "" serves no push endpoint (poll only).
	Addr string
	// Transmitters are the transmitters this receiver trusts.
	Transmitters []SSFTransmitter
	// Leaser gives the poll leases (ssf_lease.go): the shared store's, so
	// one replica polls each transmitter; nil is store.SingleProcessLeaser
	// (this process alone polls).
	Leaser store.Leaser
	// TLSCertFile and TLSKeyFile serve the push listener over TLS (both
	// or neither); ClientCAFile verifies the client certificates pushers
	// present (ssf_tls.go), and needs them.
	TLSCertFile, TLSKeyFile, ClientCAFile string
	// Holder names this replica to the leaser; default host, pid and a
	// random suffix.
	Holder string
	// Streams keeps the records of the streams the receiver manages
	// (ssf_stream.go): the shared store's, so that every replica uses one
	// stream; nil keeps them in memory (one process, lost at exit).
	Streams store.SSFStreamStore
}

// SSFTransmitter is one transmitter's configuration.
type SSFTransmitter struct {
	// Name labels metrics and logs.
	Name string
	// Transmitter holds issuer, audience and mapping; Keys is filled from
	// JWKSURI (or the configuration document) unless set.
	ssf.Transmitter
	// ConfigurationURL is the transmitter's /.well-known/ssf-configuration;
	// it gives jwks_uri and verification_endpoint when they are not set.
	ConfigurationURL string
	JWKSURI          string
	// PushToken is the bearer token the transmitter presents on push, and
	// PushClientCert the client certificate (needs SSFConfig.ClientCAFile);
	// with neither, pushes from it are refused, with both both are needed.
	PushToken      string
	PushClientCert SSFClientCert
	// PollURL is the RFC 8936 poll endpoint; "" does not poll. PollToken
	// authenticates scopegate to it.
	PollURL, PollToken string
	PollInterval       time.Duration
	MaxEvents          int
	// LeaseTTL is the poll lease's time to live (renewed every third of
	// it); default DefaultSSFLeaseTTL.
	LeaseTTL time.Duration
	// VerificationURL and StreamID: when set (or found in the configuration
	// document), a verification event is requested on start.
	VerificationURL, StreamID string
	// Token authenticates calls to the configuration and verification
	// endpoints (often the same as PollToken).
	Token string
	// HTTPClient makes the outgoing calls; default a client with a 10s
	// timeout.
	HTTPClient *http.Client
	// Stream, when Manage is set, is the stream scopegate creates or
	// updates at the transmitter through its Stream Management API
	// (ssf_stream.go).
	Stream SSFStream
}

// ssfTx is one transmitter at run time.
type ssfTx struct {
	cfg               SSFTransmitter
	tr                atomic.Pointer[ssf.Transmitter] // nil until its keys are loaded
	up                atomic.Bool
	leaseHeld         atomic.Bool
	ep                ssfEndpoints // from the configuration document; written by load only
	mu                sync.Mutex
	errs              map[string]string // the current failure by source (load, poll, stream, ...)
	last              time.Time         // the last SET received
	verificationState string
	stream            ssfStreamState
}

// SSFReceiver receives, verifies and applies Security Event Tokens.
type SSFReceiver struct {
	log     *slog.Logger
	tls     *tls.Config // the push listener's; nil for plain text
	store   store.RevocationStore
	syncer  *store.RevocationSyncer
	audit   AdminAuditor
	txs     []*ssfTx
	leaser  store.Leaser
	holder  string
	streams store.SSFStreamStore
	// policy is the policy in force, to warn of a revocation it could
	// never match (nil: no check).
	policy func() *decision.Policy
	seen   *ssf.Seen
	clock  func() time.Time
	health func(up bool)
	m      ssfMetrics
	httpMu sync.Mutex // guards http and closed: Serve and Close race at start-up
	http   *http.Server
	closed bool
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

type ssfMetrics struct {
	received, applied *prometheus.CounterVec
	refused           *prometheus.CounterVec
	lag               *ssfLag // enforcement lag by via, shared with the syncer (ssf_lag.go)
	up                *prometheus.GaugeVec
	leaseHeld         *prometheus.GaugeVec
	stream            ssfStreamMetrics // ssf_stream.go
}

func newSSFMetrics(reg prometheus.Registerer) ssfMetrics {
	m := ssfMetrics{
		received: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "scopegate_ssf_events_received_total",
			Help: "Security events received, by transmitter and event type (SETs refused before their events were read count as type none)."}, []string{"transmitter", "type"}),
		applied: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "scopegate_ssf_events_applied_total",
			Help: "Security events that created revocations, by transmitter and event type."}, []string{"transmitter", "type"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "scopegate_ssf_events_refused_total",
			Help: "SETs refused or events not acted on, by transmitter and reason (signature, issuer, audience, stale, replay, unknown, unmappable, ...)."}, []string{"transmitter", "reason"}),
		up: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "scopegate_ssf_transmitter_up",
			Help: "1 when the transmitter's keys are loaded and its last poll or verification succeeded."}, []string{"transmitter"}),
		leaseHeld: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "scopegate_ssf_poll_lease_held",
			Help: "1 on the replica that holds the transmitter's poll lease and polls it, 0 on the others."}, []string{"transmitter"}),
	}
	if reg != nil {
		reg.MustRegister(m.received, m.applied, m.refused, m.up, m.leaseHeld)
	}
	m.stream = newSSFStreamMetrics(reg)
	return m
}

// startSSF builds and starts the receiver when transmitters are configured.
func (s *Server) startSSF(ctx context.Context) error {
	cfg := &s.cfg.SSF
	if len(cfg.Transmitters) == 0 {
		return nil
	}
	src := s.cfg.Revocation.Store
	if src == nil {
		return errors.New("server config: SSF needs a revocation store (--store) so that applied events survive a restart and reach every replica")
	}
	var sink AdminAuditor = s.cfg.Admin.Auditor
	if sink == nil && s.auditing.log != nil {
		sink = s.auditing.log
	}
	r := &SSFReceiver{log: s.log.With("component", "ssf"), store: src, syncer: s.admin.syncer, audit: sink,
		seen: ssf.NewSeen(ssfSeenMax), clock: time.Now, m: newSSFMetrics(s.metrics.Registry()),
		leaser: cfg.Leaser, holder: cfg.Holder, streams: cfg.Streams, policy: s.Engine().Policy}
	r.m.lag = s.ssfLag
	if r.leaser == nil {
		r.leaser = store.SingleProcessLeaser{}
	}
	if r.holder == "" {
		r.holder = defaultSSFHolder()
	}
	if r.streams == nil {
		r.streams = store.NewMemorySSFStreams()
	}
	if s.health != nil {
		h := s.health
		r.health = func(up bool) {
			st := healthpb.HealthCheckResponse_SERVING
			if !up {
				st = healthpb.HealthCheckResponse_NOT_SERVING
			}
			h.SetServingStatus(HealthServiceSSF, st)
		}
	}
	names := map[string]bool{}
	for i := range cfg.Transmitters {
		t := cfg.Transmitters[i]
		if t.Name == "" {
			t.Name = t.Issuer
		}
		if names[t.Name] {
			return fmt.Errorf("server config: SSF transmitter %q is configured twice", t.Name)
		}
		names[t.Name] = true
		if t.Issuer == "" || len(t.Audience) == 0 {
			return fmt.Errorf("server config: SSF transmitter %q needs issuer and audience", t.Name)
		}
		if t.Keys == nil && t.JWKSURI == "" && t.ConfigurationURL == "" {
			return fmt.Errorf("server config: SSF transmitter %q needs jwks_uri or configuration_url", t.Name)
		}
		if t.HTTPClient == nil {
			t.HTTPClient = &http.Client{Timeout: 10 * time.Second}
		}
		if t.PollInterval <= 0 {
			t.PollInterval = DefaultSSFPollInterval
		}
		if t.MaxEvents <= 0 {
			t.MaxEvents = DefaultSSFMaxEvents
		}
		if t.LeaseTTL <= 0 {
			t.LeaseTTL = DefaultSSFLeaseTTL
		} else if t.LeaseTTL < 30*time.Millisecond {
			return fmt.Errorf("server config: SSF transmitter %q: poll lease_ttl %v is too short: give at least 30ms (default %v)", t.Name, t.LeaseTTL, DefaultSSFLeaseTTL)
		}
		if err := checkSSFStream(&t); err != nil {
			return err
		}
		r.txs = append(r.txs, &ssfTx{cfg: t})
		r.m.stream.init(t.Name, t.Stream.Manage)
		r.m.up.WithLabelValues(t.Name).Set(0)
		r.m.leaseHeld.WithLabelValues(t.Name).Set(0)
	}
	if err := checkSSFPush(cfg); err != nil {
		return err
	}
	var err error
	if r.tls, err = listenerTLS("SSF push", cfg.TLSCertFile, cfg.TLSKeyFile, cfg.ClientCAFile, "transmitters'"); err != nil {
		return fmt.Errorf("server config: %w", err)
	}
	r.ctx, r.cancel = context.WithCancel(ctx)
	r.updateHealth()
	for _, tx := range r.txs {
		r.wg.Add(1)
		go func() { defer r.wg.Done(); r.runTransmitter(tx) }()
	}
	s.ssf = r
	return nil
}

// SSF returns the receiver (nil when none is configured).
func (s *Server) SSF() *SSFReceiver { return s.ssf }

func (r *SSFReceiver) updateHealth() {
	all := true
	for _, tx := range r.txs {
		all = all && tx.up.Load()
	}
	if r.health != nil {
		r.health(all)
	}
}

// Sources of a transmitter's failures: it is up when none has one.
const (
	ssfErrLoad         = "load"         // configuration document and keys
	ssfErrVerification = "verification" // a verification request (unmanaged stream)
	ssfErrPoll         = "poll"
	ssfErrStream       = "stream" // stream management and status (ssf_stream.go)
)

var ssfErrSources = []string{ssfErrLoad, ssfErrStream, ssfErrVerification, ssfErrPoll}

// setStatus records source's failure (nil: its success) and updates the
// transmitter's up state, metric and the health service.
func (r *SSFReceiver) setStatus(tx *ssfTx, source string, err error) {
	tx.mu.Lock()
	if tx.errs == nil {
		tx.errs = map[string]string{}
	}
	if err != nil {
		tx.errs[source] = err.Error()
	} else {
		delete(tx.errs, source)
	}
	up := len(tx.errs) == 0
	tx.mu.Unlock()
	was := tx.up.Swap(up)
	if was != up {
		if !up {
			r.log.Warn("SSF transmitter down; decisions and revocations already made are unchanged", "transmitter", tx.cfg.Name, "error", err)
		} else {
			r.log.Info("SSF transmitter up", "transmitter", tx.cfg.Name)
		}
	}
	v := 0.0
	if up {
		v = 1
	}
	r.m.up.WithLabelValues(tx.cfg.Name).Set(v)
	r.updateHealth()
}

// failing reports whether source has a failure recorded.
func (tx *ssfTx) failing(source string) bool {
	tx.mu.Lock()
	defer tx.mu.Unlock()
	_, ok := tx.errs[source]
	return ok
}

// errText is the transmitter's failures, in a fixed order; tx.mu held.
func (tx *ssfTx) errText() string {
	var parts []string
	for _, src := range ssfErrSources {
		if e, ok := tx.errs[src]; ok {
			parts = append(parts, src+": "+e)
		}
	}
	return strings.Join(parts, "; ")
}

// runTransmitter loads the transmitter's configuration and keys (retrying
// until they load), requests a verification event, then polls if
// configured.
func (r *SSFReceiver) runTransmitter(tx *ssfTx) {
	for {
		err := r.load(tx)
		if err == nil {
			break
		}
		r.setStatus(tx, ssfErrLoad, err)
		select {
		case <-r.ctx.Done():
			return
		case <-time.After(ssfRetry):
		}
	}
	r.setStatus(tx, ssfErrLoad, nil)
	if tx.cfg.Stream.Manage {
		if !r.setupStreamUntilDone(tx) {
			return
		}
		r.wg.Add(1)
		go func() { defer r.wg.Done(); r.watchStream(tx) }()
	} else if tx.cfg.VerificationURL != "" {
		if err := r.requestVerification(tx); err != nil {
			r.setStatus(tx, ssfErrVerification, fmt.Errorf("verification request: %w", err))
		}
	}
	if tx.pollURL() != "" {
		r.pollUnderLease(tx)
	}
}

// pollURL is the poll endpoint: configured, or given by the transmitter
// for the managed stream.
func (tx *ssfTx) pollURL() string {
	if tx.cfg.PollURL != "" {
		return tx.cfg.PollURL
	}
	tx.mu.Lock()
	defer tx.mu.Unlock()
	return tx.stream.pollURL
}

// ssfConfiguration is the part of the transmitter configuration document
// (SSF 1.0 §7.1) the receiver uses.
type ssfConfiguration struct {
	Issuer               string `json:"issuer"`
	JWKSURI              string `json:"jwks_uri"`
	VerificationEndpoint string `json:"verification_endpoint"`
	ssfEndpoints
}

func (r *SSFReceiver) load(tx *ssfTx) error {
	c := &tx.cfg
	if c.ConfigurationURL != "" && (c.JWKSURI == "" || c.VerificationURL == "" || c.Stream.Manage) {
		var doc ssfConfiguration
		if err := r.getJSON(tx, c.ConfigurationURL, &doc); err != nil {
			return fmt.Errorf("configuration %s: %w", c.ConfigurationURL, err)
		}
		if doc.Issuer != c.Issuer {
			return fmt.Errorf("configuration %s names issuer %q, not the configured %q", c.ConfigurationURL, doc.Issuer, c.Issuer)
		}
		if c.JWKSURI == "" {
			c.JWKSURI = doc.JWKSURI
		}
		if c.VerificationURL == "" && c.StreamID != "" {
			c.VerificationURL = doc.VerificationEndpoint
		}
		tx.ep = doc.ssfEndpoints
		tx.ep.Verification = doc.VerificationEndpoint
	}
	tr := c.Transmitter
	if tr.Keys == nil {
		if c.JWKSURI == "" {
			return errors.New("no jwks_uri: set it, or serve it in the configuration document")
		}
		keys, err := jwks.NewURL(r.ctx, c.JWKSURI, jwks.URLOptions{HTTPClient: c.HTTPClient})
		if err != nil {
			return fmt.Errorf("jwks %s: %w", c.JWKSURI, err)
		}
		tr.Keys = keys
	}
	if err := tr.Validate(); err != nil {
		return err
	}
	tx.tr.Store(&tr)
	return nil
}

func (r *SSFReceiver) getJSON(tx *ssfTx, url string, v any) error {
	req, err := http.NewRequestWithContext(r.ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	if tx.cfg.Token != "" {
		req.Header.Set("Authorization", "Bearer "+tx.cfg.Token)
	}
	resp, err := tx.cfg.HTTPClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(v)
}

// requestVerification asks the transmitter for a verification event
// (SSF 1.0 §8.1.4); the event itself arrives by push or poll.
func (r *SSFReceiver) requestVerification(tx *ssfTx) error {
	state := ssf.RevocationID(tx.cfg.Issuer, time.Now().String(), "state", 0)
	tx.mu.Lock()
	tx.verificationState = state
	tx.mu.Unlock()
	body, _ := json.Marshal(map[string]string{"stream_id": tx.cfg.StreamID, "state": state})
	req, err := http.NewRequestWithContext(r.ctx, http.MethodPost, tx.cfg.VerificationURL, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if tx.cfg.Token != "" {
		req.Header.Set("Authorization", "Bearer "+tx.cfg.Token)
	}
	resp, err := tx.cfg.HTTPClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return nil
}

// Receive verifies and applies one SET from tx. It returns nil when the
// SET is applied or was applied before (a redelivery), an *ssf.Error when
// it is refused, and another error when the store could not take it (the
// transmitter should deliver it again).
func (r *SSFReceiver) receive(ctx context.Context, tx *ssfTx, via string, raw []byte) error {
	name := tx.cfg.Name
	tr := tx.tr.Load()
	if tr == nil {
		r.m.refused.WithLabelValues(name, "keys_unavailable").Inc()
		return &ssf.Error{Code: ssf.ErrInvalidKey, Reason: "keys_unavailable", Description: "the transmitter's keys are not loaded yet; deliver again later"}
	}
	now := r.clock()
	set, verr := tr.Verify(raw, now)
	if verr != nil {
		r.m.received.WithLabelValues(name, "none").Inc()
		r.m.refused.WithLabelValues(name, verr.Reason).Inc()
		r.log.Warn("SET refused", "transmitter", name, "err", verr.Code, "reason", verr.Reason, "description", verr.Description)
		return verr
	}
	tx.mu.Lock()
	tx.last = now
	tx.mu.Unlock()
	key := tr.Issuer + "\x00" + set.JTI
	maxAge := tr.MaxAge
	if maxAge <= 0 {
		maxAge = ssf.DefaultMaxAge
	}
	if !r.seen.Add(key, set.IssuedAt.Add(maxAge+time.Minute), now) {
		r.m.refused.WithLabelValues(name, "replay").Inc()
		return nil // applied already: acknowledge, change nothing
	}
	for _, o := range tr.Map(set, now) {
		typ := ssf.ShortType(o.EventType)
		r.m.received.WithLabelValues(name, typ).Inc()
		switch o.Result {
		case "applied":
		case "verification":
			if err := r.verificationEvent(ctx, tx, &o); err != nil {
				r.seen.Forget(key)
				reason := "store"
				if se := (*ssf.Error)(nil); errors.As(err, &se) {
					reason = se.Reason
				}
				r.m.refused.WithLabelValues(name, reason).Inc()
				return err
			}
			continue
		case "stream_updated":
			r.streamUpdatedEvent(tx, &o)
			continue
		default:
			r.m.refused.WithLabelValues(name, o.Result).Inc()
			r.log.Info("SSF event not acted on", "transmitter", name, "type", o.EventType, "result", o.Result, "detail", o.Detail)
			continue
		}
		var ids []string
		for _, rev := range o.Revocations {
			r.warnUnmatched(name, typ, rev)
			rev.SourceEventTime = o.EventTime
			stored, err := r.store.Revoke(ctx, rev)
			switch {
			case errors.Is(err, store.ErrRevocationExists):
				ids = append(ids, rev.ID) // a redelivery or another replica: applied once
				continue
			case err != nil:
				r.seen.Forget(key)
				r.m.refused.WithLabelValues(name, "store").Inc()
				return fmt.Errorf("store the revocation of %s: %w", typ, err)
			}
			if r.syncer != nil {
				r.syncer.Put(stored)
			}
			ids = append(ids, stored.ID)
		}
		r.m.applied.WithLabelValues(name, typ).Inc()
		r.m.lag.observe(via, o.EventTime, r.clock())
		r.auditEvent(ctx, tr, set, &o, ids)
	}
	return nil
}

// warnUnmatched logs a revocation an event made that the policy in force
// could never match (a device revocation with no device_claim, an issuer
// the policy lacks). It is stored all the same: a later policy may match
// it, and refusing the event would lose it.
func (r *SSFReceiver) warnUnmatched(transmitter, typ string, rev decision.Revocation) {
	if r.policy == nil {
		return
	}
	pol := r.policy()
	if pol == nil {
		return
	}
	if err := pol.CheckRevocation(&rev); err != nil {
		r.log.Warn("SSF event makes a revocation the policy in force cannot match; stored anyway", "transmitter", transmitter, "type", typ, "error", err)
	}
}

// auditEvent records an applied event like an admin call.
func (r *SSFReceiver) auditEvent(ctx context.Context, tr *ssf.Transmitter, set *ssf.SET, o *ssf.Outcome, ids []string) {
	details := map[string]string{"transmitter": tr.Issuer, "event_type": o.EventType, "subject": o.Subject,
		"jti": set.JTI, "revocations": strings.Join(ids, ","), "event_time": o.EventTime.UTC().Format(time.RFC3339)}
	if len(o.Revocations) > 0 {
		rv := o.Revocations[0]
		details["kind"], details["target"], details["issuer"] = rv.Kind.String(), rv.Target(), rv.Issuer
		details["issued_before"] = formatIssuedBefore(rv.IssuedBefore)
		if rv.Kind == decision.RevokeAssurance {
			details["acr_level"] = rv.ACRLevel
		}
	}
	r.log.Info("SSF event applied", "transmitter", tr.Issuer, "type", o.EventType, "subject", o.Subject, "revocations", details["revocations"])
	if r.audit != nil {
		ev := audit.AdminEvent{Time: r.clock(), Method: "SSF/" + ssf.ShortType(o.EventType), Principal: "ssf:" + tr.Issuer, Details: details}
		if !r.audit.RecordAdmin(context.WithoutCancel(ctx), ev) {
			r.log.Error("SSF event not written to the audit log", "transmitter", tr.Issuer, "jti", set.JTI)
		}
	}
}

// ServeHTTP is the push endpoint (RFC 8935) and the status page.
func (r *SSFReceiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	switch req.URL.Path {
	case ssfStatusPath:
		r.serveStatus(w)
		return
	case ssfPushPath:
	default:
		http.NotFound(w, req)
		return
	}
	if req.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "POST a SET", http.StatusMethodNotAllowed)
		return
	}
	tx := r.pushTransmitter(req)
	if tx == nil {
		r.m.refused.WithLabelValues("unknown", "authentication").Inc()
		w.Header().Set("WWW-Authenticate", `Bearer realm="ssf"`)
		writeSETError(w, http.StatusUnauthorized, ssf.ErrAuthenticationFailed, "present the bearer token, or the client certificate, configured for the transmitter's push delivery")
		return
	}
	if ct := req.Header.Get("Content-Type"); !strings.HasPrefix(strings.ToLower(ct), ssf.SETMediaType) {
		writeSETError(w, http.StatusBadRequest, ssf.ErrInvalidRequest, "Content-Type must be "+ssf.SETMediaType)
		return
	}
	body, err := io.ReadAll(io.LimitReader(req.Body, ssf.MaxSETBytes+1))
	if err != nil {
		writeSETError(w, http.StatusBadRequest, ssf.ErrInvalidRequest, "the body could not be read")
		return
	}
	err = r.receive(req.Context(), tx, ssfViaPush, body)
	var se *ssf.Error
	switch {
	case err == nil:
		w.WriteHeader(http.StatusAccepted)
	case errors.As(err, &se):
		writeSETError(w, http.StatusBadRequest, se.Code, se.Description)
	default:
		r.log.Error("SET not applied; the transmitter should deliver it again", "transmitter", tx.cfg.Name, "error", err)
		http.Error(w, "the revocation store is unavailable; deliver the SET again", http.StatusServiceUnavailable)
	}
}

func writeSETError(w http.ResponseWriter, status int, code, desc string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"err": code, "description": desc})
}

// SSFStatus is one transmitter's status, as /ssf/status shows it.
type SSFStatus struct {
	Name      string    `json:"name"`
	Issuer    string    `json:"issuer"`
	Up        bool      `json:"up"`
	Error     string    `json:"error,omitempty"`
	LastEvent time.Time `json:"last_event,omitzero"`
	Push      bool      `json:"push"`
	Poll      bool      `json:"poll"`
	// LeaseHeld is set on the replica that holds the poll lease (and so
	// polls); Replica names this replica to the leaser.
	LeaseHeld bool   `json:"lease_held"`
	Replica   string `json:"replica"`
	// Stream is the stream's state: its id, status at the transmitter and
	// verification (ssf_stream.go); nil when there is no stream id.
	Stream *SSFStreamStatus `json:"stream,omitempty"`
}

// Status returns every transmitter's status.
func (r *SSFReceiver) Status() []SSFStatus {
	out := make([]SSFStatus, 0, len(r.txs))
	for _, tx := range r.txs {
		tx.mu.Lock()
		out = append(out, SSFStatus{Name: tx.cfg.Name, Issuer: tx.cfg.Issuer, Up: tx.up.Load(), Error: tx.errText(), LastEvent: tx.last,
			Push: tx.cfg.PushToken != "" || !tx.cfg.PushClientCert.IsZero(), Poll: tx.cfg.PollURL != "" || tx.stream.pollURL != "",
			LeaseHeld: tx.leaseHeld.Load(), Replica: r.holder, Stream: tx.streamStatusLocked()})
		tx.mu.Unlock()
	}
	return out
}

func (r *SSFReceiver) serveStatus(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"transmitters": r.Status()})
}

// Serve serves the push endpoint on lis until Close.
func (r *SSFReceiver) Serve(lis net.Listener) error {
	r.httpMu.Lock()
	if r.closed {
		r.httpMu.Unlock()
		lis.Close()
		return nil
	}
	srv := &http.Server{Handler: r, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second, MaxHeaderBytes: 16 << 10}
	r.http = srv
	r.httpMu.Unlock()
	if r.tls != nil {
		lis = tls.NewListener(lis, r.tls)
	}
	err := srv.Serve(lis)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Close stops polling and the push listener.
func (r *SSFReceiver) Close() {
	r.cancel()
	r.httpMu.Lock()
	r.closed = true
	srv := r.http
	r.httpMu.Unlock()
	if srv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = srv.Shutdown(ctx)
		cancel()
	}
	r.wg.Wait()
}

var _ = decision.RevokeSession
