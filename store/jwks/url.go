package jwks

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/scopegate/scopegate/decision"
)

// URL defaults.
const (
	// DefaultRefreshInterval is how often a JWKS URL is refetched when its
	// response sets no shorter Cache-Control max-age.
	DefaultRefreshInterval = 5 * time.Minute
	// DefaultMinRefreshInterval is the least time between two fetches
	// triggered by unknown kids, and the floor of a max-age.
	DefaultMinRefreshInterval = 10 * time.Second
	// DefaultFetchTimeout bounds a background fetch.
	DefaultFetchTimeout = 10 * time.Second
	// DefaultUnknownKidTimeout bounds a fetch a request waits for.
	DefaultUnknownKidTimeout = 3 * time.Second
	// MaxBodyBytes bounds a JWKS response.
	MaxBodyBytes = 1 << 20
)

// URLOptions tune a URL source.
type URLOptions struct {
	// RefreshInterval is the background refetch period, and the ceiling
	// of a response's Cache-Control max-age; default DefaultRefreshInterval.
	RefreshInterval time.Duration
	// MinRefreshInterval is the least time between a fetch and a fetch an
	// unknown kid triggers, and the floor of max-age; default
	// DefaultMinRefreshInterval.
	MinRefreshInterval time.Duration
	// Timeout bounds a background fetch; default DefaultFetchTimeout.
	Timeout time.Duration
	// UnknownKidTimeout bounds a fetch a request waits for; default
	// DefaultUnknownKidTimeout.
	UnknownKidTimeout time.Duration
	// CAFile is a PEM bundle of the CAs to trust instead of the system
	// roots (a private identity provider).
	CAFile string
	// HTTPClient replaces the default client (CAFile is then ignored).
	HTTPClient *http.Client
}

func (o *URLOptions) defaults() {
	if o.RefreshInterval <= 0 {
		o.RefreshInterval = DefaultRefreshInterval
	}
	if o.MinRefreshInterval <= 0 {
		o.MinRefreshInterval = DefaultMinRefreshInterval
	}
	if o.MinRefreshInterval > o.RefreshInterval {
		o.MinRefreshInterval = o.RefreshInterval
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultFetchTimeout
	}
	if o.UnknownKidTimeout <= 0 {
		o.UnknownKidTimeout = DefaultUnknownKidTimeout
	}
}

// URL serves the keys of a JWKS endpoint, refetched in the background.
//
// It is a small hand-written loop around ParseSet rather than jwx's
// jwk.Cache: the engine needs a key-set epoch that moves only when the keys
// change, a rate limit shared by background and kid-triggered fetches,
// last-good serving with the error and age exposed for health checks, and
// no network call on the request path; jwk.Cache exposes none of these
// directly, and wrapping it would leave two schedulers to reason about.
type URL struct {
	keyState
	url    string
	opts   URLOptions
	client *http.Client
	ctx    context.Context // parent of every fetch; ends at Close
	cancel context.CancelFunc

	mu          sync.Mutex // guards inflight and lastAttempt
	inflight    *fetchCall
	lastAttempt time.Time
	rateLimited uint64

	closeOnce sync.Once
	done      chan struct{}
}

var _ decision.KeySource = (*URL)(nil)

// fetchCall is one fetch that concurrent callers share.
type fetchCall struct {
	done   chan struct{}
	err    error
	maxAge time.Duration // from Cache-Control, 0 if none
}

// NewURL fetches the JWKS at rawURL and keeps refetching it until ctx ends
// or Close is called. It fails if the first fetch fails, so a server never
// starts without keys.
func NewURL(ctx context.Context, rawURL string, opts URLOptions) (*URL, error) {
	opts.defaults()
	if err := checkURL(rawURL); err != nil {
		return nil, err
	}
	client := opts.HTTPClient
	if client == nil {
		var err error
		if client, err = newHTTPClient(opts); err != nil {
			return nil, err
		}
	}
	uctx, cancel := context.WithCancel(ctx)
	u := &URL{url: rawURL, opts: opts, client: client, ctx: uctx, cancel: cancel, done: make(chan struct{})}
	c := u.start(opts.Timeout)
	<-c.done
	if c.err != nil {
		cancel()
		return nil, c.err
	}
	go u.run(u.nextDelay(c, 0))
	return u, nil
}

// checkURL refuses anything but https, except plain http to this host for
// tests and local sidecars.
func checkURL(raw string) error {
	p, err := url.Parse(raw)
	if err != nil || p.Host == "" {
		return fmt.Errorf("%q is not an absolute URL", raw)
	}
	if p.Scheme == "https" || p.Scheme == "http" && isLoopback(p.Hostname()) {
		return nil
	}
	return errors.New("the JWKS URL must use https (plain http only to localhost)")
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func newHTTPClient(opts URLOptions) (*http.Client, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	if opts.CAFile != "" {
		pem, err := os.ReadFile(opts.CAFile)
		if err != nil {
			return nil, fmt.Errorf("jwks_ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("jwks_ca_file %s holds no PEM certificate", opts.CAFile)
		}
		tr.TLSClientConfig.RootCAs = pool
	}
	tr.ResponseHeaderTimeout = opts.Timeout
	return &http.Client{
		Transport: tr,
		Timeout:   opts.Timeout,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= 3 {
				return errors.New("too many redirects")
			}
			if req.URL.Scheme != "https" && !isLoopback(req.URL.Hostname()) {
				return errors.New("refusing a redirect away from https")
			}
			return nil
		},
	}, nil
}

// run refetches in the background until Close.
func (u *URL) run(first time.Duration) {
	defer close(u.done)
	t := time.NewTimer(first)
	defer t.Stop()
	failuresInRow := 0
	for {
		select {
		case <-u.ctx.Done():
			return
		case <-t.C:
		}
		c := u.start(u.opts.Timeout)
		select {
		case <-u.ctx.Done():
			return
		case <-c.done:
		}
		if c.err != nil {
			failuresInRow++
		} else {
			failuresInRow = 0
		}
		t.Reset(u.nextDelay(c, failuresInRow))
	}
}

// nextDelay is the wait before the next background fetch: the response's
// max-age bounded to [MinRefreshInterval, RefreshInterval], or after
// failures a backoff from MinRefreshInterval doubling up to RefreshInterval.
func (u *URL) nextDelay(c *fetchCall, failuresInRow int) time.Duration {
	lo, hi := u.opts.MinRefreshInterval, u.opts.RefreshInterval
	if failuresInRow > 0 {
		d := lo
		for i := 1; i < failuresInRow && d < hi; i++ {
			d *= 2
		}
		return min(d, hi)
	}
	if c.maxAge > 0 {
		return max(lo, min(c.maxAge, hi))
	}
	return hi
}

// start begins a fetch, or joins the one in flight.
func (u *URL) start(timeout time.Duration) *fetchCall {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.startLocked(timeout)
}

func (u *URL) startLocked(timeout time.Duration) *fetchCall {
	if u.inflight != nil {
		return u.inflight
	}
	c := &fetchCall{done: make(chan struct{})}
	u.inflight = c
	u.lastAttempt = time.Now()
	go func() {
		c.maxAge, c.err = u.fetch(timeout)
		if c.err != nil {
			u.fail(c.err)
		}
		u.mu.Lock()
		u.inflight = nil
		u.mu.Unlock()
		close(c.done)
	}()
	return c
}

// RefreshUnknownKid implements decision.KeySource. It refetches the set
// when the last fetch is at least MinRefreshInterval old, joins a fetch in
// flight, and waits at most UnknownKidTimeout (or until ctx ends). It
// returns ok=false when rate-limited or when the fetch failed.
func (u *URL) RefreshUnknownKid(ctx context.Context, kid string) ([]decision.Key, bool) {
	if keys := u.Keys(); hasKid(keys, kid) {
		return keys, true // another refresh brought it meanwhile
	}
	u.mu.Lock()
	if u.ctx.Err() != nil {
		u.mu.Unlock()
		return nil, false
	}
	if u.inflight == nil && time.Since(u.lastAttempt) < u.opts.MinRefreshInterval {
		u.rateLimited++
		u.mu.Unlock()
		return nil, false
	}
	c := u.startLocked(u.opts.UnknownKidTimeout)
	u.mu.Unlock()
	// A joined background fetch may have a longer timeout than a request
	// should wait.
	wait := time.NewTimer(u.opts.UnknownKidTimeout)
	defer wait.Stop()
	select {
	case <-c.done:
	case <-wait.C:
		return nil, false
	case <-ctx.Done():
		return nil, false
	}
	if c.err != nil {
		return nil, false
	}
	return u.Keys(), true
}

// fetch GETs the key set and publishes it; it returns the response's
// max-age. A context detached from any request bounds it, so one caller
// giving up does not fail the others waiting on the same fetch.
func (u *URL) fetch(timeout time.Duration) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(u.ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.url, nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Accept", "application/jwk-set+json, application/json")
	resp, err := u.client.Do(req)
	if err != nil {
		// *url.Error repeats the method and URL ("Get \"URL\": dial tcp
		// ..."); name them once.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return 0, fmt.Errorf("GET %s: %w", u.url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		return 0, fmt.Errorf("GET %s: status %s", u.url, resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxBodyBytes+1))
	if err != nil {
		return 0, fmt.Errorf("GET %s: reading the body: %w", u.url, err)
	}
	if len(body) > MaxBodyBytes {
		return 0, fmt.Errorf("GET %s: the response is larger than 1 MiB", u.url)
	}
	keys, err := ParseSet(body)
	if err != nil {
		return 0, fmt.Errorf("GET %s: %w", u.url, err)
	}
	u.publish(keys)
	return maxAge(resp.Header.Get("Cache-Control")), nil
}

// maxAge reads max-age from a Cache-Control header, 0 if absent.
func maxAge(cc string) time.Duration {
	for part := range strings.SplitSeq(cc, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok || !strings.EqualFold(k, "max-age") {
			continue
		}
		n, err := strconv.ParseInt(strings.Trim(v, `"`), 10, 64)
		if err != nil || n <= 0 {
			return 0
		}
		return time.Duration(min(n, int64(365*24*3600))) * time.Second
	}
	return 0
}

// URL returns the endpoint the keys are fetched from.
func (u *URL) URL() string { return u.url }

// RateLimited counts kid-triggered refetches refused by the rate limit.
func (u *URL) RateLimited() uint64 {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.rateLimited
}

// Status reports the source's state.
func (u *URL) Status() Status { return u.status("url", u.url) }

// Close stops the background refetch; the last keys keep serving.
func (u *URL) Close() {
	u.closeOnce.Do(u.cancel)
	<-u.done
}
