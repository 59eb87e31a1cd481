package introspect

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jws"
	"golang.org/x/sync/singleflight"

	"github.com/scopegate/scopegate/decision"
	"github.com/scopegate/scopegate/store/internal/backoff"
	"github.com/scopegate/scopegate/store/internal/cafile"
)

// Defaults.
const (
	// DefaultBreakerThreshold is how many calls in a row must fail before
	// the breaker opens.
	DefaultBreakerThreshold = 5
	// DefaultBreakerMinOpen and DefaultBreakerMaxOpen bound how long an
	// open breaker refuses calls; the time doubles while probes fail.
	DefaultBreakerMinOpen = time.Second
	DefaultBreakerMaxOpen = 30 * time.Second
	// MaxResponseBytes bounds an introspection answer.
	MaxResponseBytes = 64 << 10
	// assertionLifetime is the life of a private_key_jwt client assertion.
	assertionLifetime = 60 * time.Second
)

// The content type of an RFC 9701 answer.
const jwtContentType = "application/token-introspection+jwt"

// Failure kinds, as metrics label them.
const (
	KindTimeout     = "timeout"
	KindUnreachable = "unreachable"
	KindStatus      = "status"
	KindCircuitOpen = "circuit_open"
	KindBadResponse = "bad_response"
	KindNoEndpoint  = "no_endpoint"
)

// Error is a failed introspection call. Its message never holds the token
// or the client's secret.
type Error struct {
	Kind string
	Err  error
}

func (e *Error) Error() string { return e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// Options configure a Client.
type Options struct {
	// Endpoint returns the introspection endpoint of a discovery issuer's
	// last good document (store/jwks.Registry); nil when no issuer uses
	// discovery.
	Endpoint func(ref *decision.KeyRef) (string, bool)
	// HTTPClient replaces the client built per issuer (its jwks_ca_file).
	HTTPClient *http.Client
	// Getenv reads client_secret_env; default os.Getenv.
	Getenv func(string) string
	// Observe, when set, is called after every call with the issuer, the
	// failure kind ("" for an answer) and the call's duration (metrics).
	Observe func(issuer, kind string, d time.Duration)
	// BreakerThreshold, BreakerMinOpen and BreakerMaxOpen tune the circuit
	// breaker; zero means the default.
	BreakerThreshold               int
	BreakerMinOpen, BreakerMaxOpen time.Duration
	Logger                         *slog.Logger
}

// Client calls the introspection endpoints of a policy's issuers. It is
// safe for concurrent use.
type Client struct {
	opts Options
	// hashKey keys the HMAC that names a token in flight (singleflight), so
	// that not even the coalescing table holds a token's bytes.
	hashKey [32]byte

	mu      sync.Mutex
	clients map[string]*issuerClient
	view    atomic.Pointer[map[string]*issuerClient]
}

var _ decision.Introspector = (*Client)(nil)

// New returns a client; Open readies it for a policy's issuers.
func New(opts Options) *Client {
	if opts.Getenv == nil {
		opts.Getenv = os.Getenv
	}
	if opts.BreakerThreshold <= 0 {
		opts.BreakerThreshold = DefaultBreakerThreshold
	}
	if opts.BreakerMinOpen <= 0 {
		opts.BreakerMinOpen = DefaultBreakerMinOpen
	}
	if opts.BreakerMaxOpen <= 0 {
		opts.BreakerMaxOpen = DefaultBreakerMaxOpen
	}
	c := &Client{opts: opts, clients: map[string]*issuerClient{}}
	if _, err := rand.Read(c.hashKey[:]); err != nil {
		panic("crypto/rand failed: " + err.Error()) // never on a supported OS
	}
	c.publish()
	return c
}

// issuerClient calls one issuer's endpoint as one client.
type issuerClient struct {
	in     decision.Introspection // a copy, as opened
	http   *http.Client
	secret string
	signer crypto.Signer
	alg    jwa.SignatureAlgorithm

	flights singleflight.Group
	breaker breaker
}

// Open reads the client credentials of every introspecting issuer of pol
// that has no client yet. A secret or key that cannot be read fails the
// policy (nothing is opened), naming the issuer and the field.
func (c *Client) Open(pol *decision.Policy) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	added := map[string]*issuerClient{}
	for name, iss := range pol.Issuers {
		in := iss.Introspection
		if in == nil {
			continue
		}
		id := in.ID()
		if _, ok := c.clients[id]; ok {
			continue
		}
		ic, err := c.newIssuerClient(in)
		if err != nil {
			return fmt.Errorf("issuer %s: introspection: %w", name, err)
		}
		added[id] = ic
	}
	for id, ic := range added {
		c.clients[id] = ic
	}
	c.publish()
	return nil
}

// Retain drops the clients none of pols uses.
func (c *Client) Retain(pols ...*decision.Policy) {
	used := map[string]bool{}
	for _, p := range pols {
		if p == nil {
			continue
		}
		for _, iss := range p.Issuers {
			if iss.Introspection != nil {
				used[iss.Introspection.ID()] = true
			}
		}
	}
	c.mu.Lock()
	for id := range c.clients {
		if !used[id] {
			delete(c.clients, id)
		}
	}
	c.publish()
	c.mu.Unlock()
}

func (c *Client) publish() {
	m := make(map[string]*issuerClient, len(c.clients))
	for id, ic := range c.clients {
		m[id] = ic
	}
	c.view.Store(&m)
}

func (c *Client) newIssuerClient(in *decision.Introspection) (*issuerClient, error) {
	ic := &issuerClient{in: *in}
	switch in.ClientAuth {
	case decision.ClientSecretBasic, decision.ClientSecretPost:
		switch {
		case in.SecretFile != "":
			b, err := os.ReadFile(in.SecretFile)
			if err != nil {
				return nil, fmt.Errorf("client_secret_file: %w", err)
			}
			ic.secret = strings.TrimRight(string(b), "\r\n")
			if ic.secret == "" {
				return nil, fmt.Errorf("client_secret_file %s is empty", in.SecretFile)
			}
		default:
			ic.secret = c.opts.Getenv(in.SecretEnv)
			if ic.secret == "" {
				return nil, fmt.Errorf("client_secret_env: the environment variable %s is not set or empty", in.SecretEnv)
			}
		}
	case decision.PrivateKeyJWT:
		signer, alg, err := readPrivateKey(in.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("private_key_file: %w", err)
		}
		ic.signer, ic.alg = signer, alg
	default:
		return nil, fmt.Errorf("unknown client_auth %q", in.ClientAuth)
	}
	ic.http = c.opts.HTTPClient
	if ic.http == nil {
		hc, err := newHTTPClient(in.CAFile, in.Timeout)
		if err != nil {
			return nil, err
		}
		ic.http = hc
	}
	return ic, nil
}

// readPrivateKey reads a PEM private key for private_key_jwt and picks
// the algorithm its type signs with.
func readPrivateKey(path string) (crypto.Signer, jwa.SignatureAlgorithm, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, jwa.SignatureAlgorithm{}, err
	}
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, jwa.SignatureAlgorithm{}, fmt.Errorf("%s holds no PEM block", path)
	}
	var key any
	switch block.Type {
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	default:
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	}
	if err != nil {
		return nil, jwa.SignatureAlgorithm{}, fmt.Errorf("%s: %w", path, err)
	}
	switch k := key.(type) {
	case *rsa.PrivateKey:
		if k.N.BitLen() < 2048 {
			return nil, jwa.SignatureAlgorithm{}, fmt.Errorf("%s is a %d-bit RSA key; use at least 2048 bits", path, k.N.BitLen())
		}
		return k, jwa.RS256(), nil
	case *ecdsa.PrivateKey:
		if k.Curve != elliptic.P256() {
			return nil, jwa.SignatureAlgorithm{}, fmt.Errorf("%s is an EC key on %s; use P-256 (ES256)", path, k.Curve.Params().Name)
		}
		return k, jwa.ES256(), nil
	case ed25519.PrivateKey:
		return k, jwa.EdDSA(), nil
	}
	return nil, jwa.SignatureAlgorithm{}, fmt.Errorf("%s holds a %T; use an RSA, EC P-256 or Ed25519 key", path, key)
}

func newHTTPClient(caFile string, timeout time.Duration) (*http.Client, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tlsCfg, err := cafile.TLSConfig(caFile)
	if err != nil {
		return nil, err
	}
	tr.TLSClientConfig = tlsCfg
	tr.ResponseHeaderTimeout = timeout
	tr.MaxIdleConnsPerHost = 32
	return &http.Client{
		Transport: tr,
		// An answer is read from the endpoint named, never from where a
		// redirect points: a redirect could carry the token elsewhere.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}, nil
}

// Introspect implements decision.Introspector.
func (c *Client) Introspect(ctx context.Context, in *decision.Introspection, token string) (decision.IntrospectionResponse, error) {
	ic := (*c.view.Load())[in.ID()]
	if ic == nil {
		return decision.IntrospectionResponse{}, &Error{Kind: KindNoEndpoint, Err: errors.New("the issuer's introspection client is not open (its credentials could not be read when the policy loaded)")}
	}
	endpoint := in.Endpoint
	if endpoint == "" {
		ok := false
		if c.opts.Endpoint != nil {
			endpoint, ok = c.opts.Endpoint(in.KeyRef)
		}
		if !ok || endpoint == "" {
			return decision.IntrospectionResponse{}, c.observed(in.Issuer, time.Now(), &Error{Kind: KindNoEndpoint, Err: errors.New("the discovery document has not loaded yet, or names no introspection_endpoint")})
		}
	}
	if !ic.breaker.allow(time.Now()) {
		return decision.IntrospectionResponse{}, c.observed(in.Issuer, time.Now(), &Error{Kind: KindCircuitOpen, Err: errors.New("the circuit breaker is open after repeated failures; calls resume shortly")})
	}
	key := c.flightKey(token)
	ch := ic.flights.DoChan(key, func() (any, error) {
		// Detached from the first caller: one giving up does not fail the
		// others waiting on the same call; the issuer's timeout bounds it.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ic.in.Timeout)
		defer cancel()
		start := time.Now()
		resp, err := ic.call(cctx, endpoint, token)
		ic.breaker.record(err == nil, time.Now(), c.opts)
		return resp, c.observed(in.Issuer, start, err)
	})
	select {
	case r := <-ch:
		if r.Err != nil {
			return decision.IntrospectionResponse{}, r.Err
		}
		return r.Val.(decision.IntrospectionResponse), nil
	case <-ctx.Done():
		return decision.IntrospectionResponse{}, &Error{Kind: KindTimeout, Err: errors.New("the request's deadline passed while waiting for the introspection endpoint")}
	}
}

// observed reports a call to Observe and returns err.
func (c *Client) observed(issuer string, start time.Time, err error) error {
	if c.opts.Observe != nil {
		kind := ""
		var e *Error
		if errors.As(err, &e) {
			kind = e.Kind
		} else if err != nil {
			kind = KindBadResponse
		}
		c.opts.Observe(issuer, kind, time.Since(start))
	}
	return err
}

// flightKey names token in the coalescing table by a keyed hash.
func (c *Client) flightKey(token string) string {
	m := hmac.New(sha256.New, c.hashKey[:])
	m.Write([]byte(token))
	return string(m.Sum(nil))
}

// call makes one POST to the endpoint.
func (ic *issuerClient) call(ctx context.Context, endpoint, token string) (decision.IntrospectionResponse, error) {
	form := url.Values{"token": {token}, "token_type_hint": {"access_token"}}
	switch ic.in.ClientAuth {
	case decision.ClientSecretPost:
		form.Set("client_id", ic.in.ClientID)
		form.Set("client_secret", ic.secret)
	case decision.PrivateKeyJWT:
		assertion, err := ic.assertion(endpoint)
		if err != nil {
			return decision.IntrospectionResponse{}, &Error{Kind: KindBadResponse, Err: fmt.Errorf("signing the client assertion: %w", err)}
		}
		form.Set("client_id", ic.in.ClientID)
		form.Set("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
		form.Set("client_assertion", assertion)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return decision.IntrospectionResponse{}, &Error{Kind: KindNoEndpoint, Err: fmt.Errorf("introspection endpoint %s: %v", redact(endpoint), err)}
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if ic.in.JWTResponse {
		req.Header.Set("Accept", jwtContentType)
	} else {
		req.Header.Set("Accept", "application/json")
	}
	if ic.in.ClientAuth == decision.ClientSecretBasic {
		// RFC 6749 section 2.3.1: both parts form-encoded first.
		req.SetBasicAuth(url.QueryEscape(ic.in.ClientID), url.QueryEscape(ic.secret))
	}
	resp, err := ic.http.Do(req)
	if err != nil {
		kind := KindUnreachable
		var ne net.Error
		if errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout() {
			kind = KindTimeout
		}
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return decision.IntrospectionResponse{}, &Error{Kind: kind, Err: fmt.Errorf("POST %s: %v", redact(endpoint), err)}
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		return decision.IntrospectionResponse{}, &Error{Kind: KindStatus, Err: fmt.Errorf("POST %s: status %s", redact(endpoint), resp.Status)}
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxResponseBytes+1))
	if err != nil {
		return decision.IntrospectionResponse{}, &Error{Kind: KindUnreachable, Err: fmt.Errorf("POST %s: reading the answer: %v", redact(endpoint), err)}
	}
	if len(body) > MaxResponseBytes {
		return decision.IntrospectionResponse{}, &Error{Kind: KindBadResponse, Err: fmt.Errorf("POST %s: the answer is larger than 64 KiB", redact(endpoint))}
	}
	ct, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	return decision.IntrospectionResponse{Body: body, JWT: strings.EqualFold(ct, jwtContentType)}, nil
}

// assertion signs a private_key_jwt client assertion (RFC 7523) for
// endpoint.
func (ic *issuerClient) assertion(endpoint string) (string, error) {
	now := time.Now()
	jti := make([]byte, 16)
	if _, err := rand.Read(jti); err != nil {
		return "", err
	}
	claims, err := json.Marshal(map[string]any{
		"iss": ic.in.ClientID, "sub": ic.in.ClientID, "aud": endpoint,
		"jti": fmt.Sprintf("%x", jti), "iat": now.Unix(), "exp": now.Add(assertionLifetime).Unix(),
	})
	if err != nil {
		return "", err
	}
	hdr := jws.NewHeaders()
	if err := hdr.Set("typ", "JWT"); err != nil {
		return "", err
	}
	if ic.in.KeyID != "" {
		if err := hdr.Set("kid", ic.in.KeyID); err != nil {
			return "", err
		}
	}
	out, err := jws.Sign(claims, jws.WithKey(ic.alg, ic.signer, jws.WithProtectedHeaders(hdr)))
	return string(out), err
}

// redact drops the user information of a URL for messages.
func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "the endpoint"
	}
	return u.Redacted()
}

// breaker is a consecutive-failure circuit breaker: after threshold
// failures in a row it refuses calls for a backoff that doubles while the
// probe let through after it fails, and closes on the first success.
type breaker struct {
	mu        sync.Mutex
	failures  int
	openUntil time.Time
	probing   bool
	trips     int
}

func (b *breaker) allow(now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.openUntil.IsZero() {
		return true
	}
	if now.Before(b.openUntil) || b.probing {
		return false
	}
	b.probing = true // half-open: one call probes
	return true
}

func (b *breaker) record(ok bool, now time.Time, opts Options) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.probing = false
	if ok {
		b.failures, b.trips, b.openUntil = 0, 0, time.Time{}
		return
	}
	b.failures++
	if b.failures >= opts.BreakerThreshold {
		b.trips++
		b.openUntil = now.Add(backoff.Policy{Min: opts.BreakerMinOpen, Max: opts.BreakerMaxOpen}.Delay(b.trips))
	}
}

// BreakerOpen reports whether the breaker of the issuer in names refuses calls
// now (health and metrics).
func (c *Client) BreakerOpen(in *decision.Introspection) bool {
	ic := (*c.view.Load())[in.ID()]
	if ic == nil {
		return false
	}
	ic.breaker.mu.Lock()
	defer ic.breaker.mu.Unlock()
	return !ic.breaker.openUntil.IsZero() && time.Now().Before(ic.breaker.openUntil)
}
