package jwks

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/codes"
	"golang.org/x/sync/singleflight"

	"github.com/scopegate/scopegate/decision"
	"github.com/scopegate/scopegate/store/internal/backoff"
	"github.com/scopegate/scopegate/store/internal/cafile"
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
	MaxBodyBytes = decision.MaxKeySetBytes
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
	// OnChange, if set, is called after the key set's content changed.
	OnChange func()
	// Logger receives a warning per failed refetch once a key set has
	// loaded, and a line when fetches succeed again; nil logs nothing.
	Logger *slog.Logger
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

	// fetches coalesces concurrent fetches (the background loop and
	// requests naming unknown kids) into one.
	fetches singleflight.Group

	mu          sync.Mutex // guards fetching, lastAttempt, rateLimited
	fetching    bool
	lastAttempt time.Time
	rateLimited uint64

	first     chan struct{} // closed when the first fetch has finished
	firstErr  error         // its error, set before first is closed
	closeOnce sync.Once
	done      chan struct{}
}

var _ decision.KeySource = (*URL)(nil)

// fetchResult is what one fetch returns to everyone who waited on it.
type fetchResult struct {
	maxAge time.Duration // from Cache-Control, 0 if none
}

// Retries before the first key set has been fetched: sooner than the
// refresh backoff, because until then the issuer's tokens are denied.
const (
	startRetryMin = time.Second
	startRetryMax = 30 * time.Second
)

// StartURL starts fetching the JWKS at rawURL in the background and keeps
// refetching it until ctx ends or Close is called. It does not wait: until
// the first fetch succeeds Keys is empty (the engine denies the issuer's
// tokens with key_set_unavailable) and failed fetches are retried with a
// jittered backoff. It fails only for a URL or CA file that can never work.
func StartURL(ctx context.Context, rawURL string, opts URLOptions) (*URL, error) {
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
	u := &URL{url: rawURL, opts: opts, client: client, ctx: uctx, cancel: cancel,
		first: make(chan struct{}), done: make(chan struct{})}
	u.onChange = opts.OnChange
	u.setLog(opts.Logger, "url", rawURL, redactURL(rawURL))
	go u.run()
	return u, nil
}

// NewURL is StartURL, then waits for the first fetch: it fails if that
// fetch fails, for callers that must not run without keys.
func NewURL(ctx context.Context, rawURL string, opts URLOptions) (*URL, error) {
	u, err := StartURL(ctx, rawURL, opts)
	if err != nil {
		return nil, err
	}
	select {
	case <-u.first:
	case <-ctx.Done():
		u.Close()
		return nil, ctx.Err()
	}
	if u.firstErr != nil {
		u.Close()
		return nil, u.firstErr
	}
	return u, nil
}

// Ready returns a channel closed once the first fetch has finished, and
// whether it succeeded.
func (u *URL) Ready() <-chan struct{} { return u.first }

// redactURL is raw with the password of its user information, if any,
// replaced: for log lines.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return raw
	}
	return u.Redacted()
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
	tlsCfg, err := cafile.TLSConfig(opts.CAFile)
	if err != nil {
		return nil, err
	}
	tr.TLSClientConfig = tlsCfg
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

// run fetches at once, then refetches in the background until Close.
func (u *URL) run() {
	defer close(u.done)
	var t *time.Timer
	failuresInRow := 0
	for first := true; ; first = false {
		res, err := u.join(u.opts.Timeout)
		if first {
			u.firstErr = err
			close(u.first)
		}
		if u.ctx.Err() != nil {
			return
		}
		if err != nil {
			failuresInRow++
		} else {
			failuresInRow = 0
		}
		d := u.nextDelay(res, failuresInRow)
		if t == nil {
			t = time.NewTimer(d)
			defer t.Stop()
		} else {
			t.Reset(d)
		}
		select {
		case <-u.ctx.Done():
			return
		case <-t.C:
		}
	}
}

// nextDelay is the wait before the next background fetch: the response's
// max-age bounded to [MinRefreshInterval, RefreshInterval], less up to a
// tenth so that replicas drift apart; after failures a jittered backoff
// from MinRefreshInterval doubling up to RefreshInterval, or, while no key
// set was ever fetched, from 1s up to 30s (both at most those bounds).
func (u *URL) nextDelay(res fetchResult, failuresInRow int) time.Duration {
	return refreshDelay(&u.opts, res.maxAge, failuresInRow, u.Keys() != nil)
}

// refreshDelay is nextDelay for any source refreshed under opts: loaded
// says whether it ever loaded.
func refreshDelay(opts *URLOptions, maxAge time.Duration, failuresInRow int, loaded bool) time.Duration {
	lo, hi := opts.MinRefreshInterval, opts.RefreshInterval
	if failuresInRow > 0 {
		if !loaded {
			lo, hi = min(lo, startRetryMin), min(hi, startRetryMax)
		}
		return backoff.Policy{Min: lo, Max: hi}.Delay(failuresInRow)
	}
	d := hi
	if maxAge > 0 {
		d = max(lo, min(maxAge, hi))
	}
	return max(lo, d-backoff.Jitter(d/20, 1))
}

// join starts a fetch, or joins the one in flight, and waits for it.
func (u *URL) join(timeout time.Duration) (fetchResult, error) {
	select {
	case r := <-u.startFetch(timeout):
		if r.Err != nil {
			return fetchResult{}, r.Err
		}
		return r.Val.(fetchResult), nil
	case <-u.ctx.Done():
		return fetchResult{}, errClosed
	}
}

// startFetch begins a fetch, or joins the one in flight (singleflight).
func (u *URL) startFetch(timeout time.Duration) <-chan singleflight.Result {
	u.mu.Lock()
	u.fetching = true
	u.lastAttempt = time.Now()
	u.mu.Unlock()
	return u.fetches.DoChan("", func() (any, error) {
		maxAge, err := u.fetch(timeout)
		if err != nil {
			u.fail(err)
		}
		u.mu.Lock()
		u.fetching = false
		u.mu.Unlock()
		return fetchResult{maxAge: maxAge}, err
	})
}

// RefreshUnknownKid implements decision.KeySource. It refetches the set
// when the last fetch is at least MinRefreshInterval old, joins a fetch in
// flight, and waits at most UnknownKidTimeout (or until ctx ends). It
// returns ok=false when rate-limited or when the fetch failed.
func (u *URL) RefreshUnknownKid(ctx context.Context, kid string) ([]decision.Key, bool) {
	if keys := u.Keys(); hasKid(keys, kid) {
		return keys, true // another refresh brought it meanwhile
	}
	if u.ctx.Err() != nil {
		return nil, false
	}
	u.mu.Lock()
	limited := !u.fetching && time.Since(u.lastAttempt) < u.opts.MinRefreshInterval
	if limited {
		u.rateLimited++
	}
	u.mu.Unlock()
	if limited {
		return nil, false
	}
	sp := fetchSpan(ctx, u.url)
	defer sp.End()
	ch := u.startFetch(u.opts.UnknownKidTimeout)
	// A joined background fetch may have a longer timeout than a request
	// should wait.
	wait := time.NewTimer(u.opts.UnknownKidTimeout)
	defer wait.Stop()
	select {
	case r := <-ch:
		if r.Err != nil {
			sp.SetStatus(codes.Error, r.Err.Error())
			return nil, false
		}
	case <-wait.C:
		sp.SetStatus(codes.Error, "the key set did not arrive within the unknown-kid timeout")
		return nil, false
	case <-ctx.Done():
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
	keys, err := decision.ParseKeySet(body)
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
