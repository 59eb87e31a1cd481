package jwks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/scopegate/scopegate/decision"
)

// MaxDocumentBytes bounds a discovery document.
const MaxDocumentBytes = 1 << 20

// Document is what scopegate uses of an issuer's discovery document
// (OpenID Connect Discovery 1.0, RFC 8414).
type Document struct {
	// URL is where the document was fetched from.
	URL string
	// Issuer equals the configured issuer exactly: a document naming
	// another one is refused.
	Issuer  string
	JWKSURI string
	// IntrospectionEndpoint is "" when the document names none.
	IntrospectionEndpoint string
	// RevocationEndpoint and TokenEndpoint are informational.
	RevocationEndpoint string
	TokenEndpoint      string
}

// Discovery serves an issuer's keys from the jwks_uri of its discovery
// document, and the document itself to whoever needs its endpoints (the
// introspection client). The document is refetched in the background like a
// JWKS URL (Cache-Control max-age within [MinRefreshInterval,
// RefreshInterval]); a fetch that fails, or a document that names another
// issuer (a mix-up attack, RFC 8414 section 3.3), keeps the last good one. A
// jwks_uri that changes gets a new URL source, swapped in once it has keys.
type Discovery struct {
	issuer     string
	candidates []string // document URLs, tried in order
	opts       URLOptions
	client     *http.Client
	ctx        context.Context
	cancel     context.CancelFunc

	doc  atomic.Pointer[Document]
	keys atomic.Pointer[discoveredKeys]

	mu          sync.Mutex // guards lastErr, lastSuccess
	lastErr     error
	lastSuccess time.Time
	refreshes   atomic.Uint64
	failures    atomic.Uint64

	first     chan struct{} // closed after the first document fetch and key load
	firstErr  error
	closeOnce sync.Once
	done      chan struct{}
}

// discoveredKeys is the URL source of one jwks_uri; gen counts the
// jwks_uri changes, so the epoch moves when the source is replaced.
type discoveredKeys struct {
	u   *URL
	gen uint64
}

var _ Source = (*Discovery)(nil)

// DiscoveryCandidates returns the document URLs of issuer, in the order
// they are tried: configURL alone when set, else OpenID Connect's
// {issuer}/.well-known/openid-configuration, then RFC 8414's
// oauth-authorization-server document, whose well-known segment goes
// between the host and the issuer's path (RFC 8414 section 3.1).
func DiscoveryCandidates(issuer, configURL string) []string {
	if configURL != "" {
		return []string{configURL}
	}
	out := []string{strings.TrimSuffix(issuer, "/") + "/.well-known/openid-configuration"}
	if p, err := url.Parse(issuer); err == nil && p.Host != "" {
		p.Path = "/.well-known/oauth-authorization-server" + strings.TrimSuffix(p.Path, "/")
		p.RawPath, p.RawQuery, p.Fragment = "", "", ""
		out = append(out, p.String())
	}
	return out
}

// StartDiscovery starts fetching the discovery document of issuer (at
// configURL, or the well-known locations when it is "") and then its key
// set, in the background; like StartURL it does not wait, and until both
// have loaded Keys is empty.
func StartDiscovery(ctx context.Context, issuer, configURL string, opts URLOptions) (*Discovery, error) {
	opts.defaults()
	cands := DiscoveryCandidates(issuer, configURL)
	for _, c := range cands {
		if err := checkURL(c); err != nil {
			return nil, fmt.Errorf("discovery document %s: %w", redactURL(c), err)
		}
	}
	client := opts.HTTPClient
	if client == nil {
		var err error
		if client, err = newHTTPClient(opts); err != nil {
			return nil, err
		}
		opts.HTTPClient = client // the key set is fetched with the same trust
	}
	dctx, cancel := context.WithCancel(ctx)
	d := &Discovery{issuer: issuer, candidates: cands, opts: opts, client: client, ctx: dctx, cancel: cancel,
		first: make(chan struct{}), done: make(chan struct{})}
	go d.run()
	return d, nil
}

// Ready returns a channel closed once the first document fetch (and, when
// it succeeded, the first key set fetch) has finished.
func (d *Discovery) Ready() <-chan struct{} { return d.first }

// FirstError is the error of the first load, once Ready is closed.
func (d *Discovery) FirstError() error { return d.firstErr }

// Document returns the last good document, or false before the first.
func (d *Discovery) Document() (Document, bool) {
	if p := d.doc.Load(); p != nil {
		return *p, true
	}
	return Document{}, false
}

func (d *Discovery) run() {
	defer close(d.done)
	var t *time.Timer
	failuresInRow := 0
	for first := true; ; first = false {
		maxAge, err := d.refresh()
		if first {
			if err == nil {
				if k := d.keys.Load(); k != nil {
					select {
					case <-k.u.Ready():
						err = k.u.firstErr
					case <-d.ctx.Done():
					}
				}
			}
			d.firstErr = err
			close(d.first)
		}
		if d.ctx.Err() != nil {
			d.closeKeys()
			return
		}
		if err != nil {
			failuresInRow++
		} else {
			failuresInRow = 0
		}
		delay := refreshDelay(&d.opts, maxAge, failuresInRow, d.doc.Load() != nil)
		if t == nil {
			t = time.NewTimer(delay)
			defer t.Stop()
		} else {
			t.Reset(delay)
		}
		select {
		case <-d.ctx.Done():
			d.closeKeys()
			return
		case <-t.C:
		}
	}
}

// refresh fetches the document, and starts a key source for a new
// jwks_uri. It returns the document's max-age.
func (d *Discovery) refresh() (time.Duration, error) {
	doc, maxAge, err := d.fetchDocument()
	if err != nil {
		d.fail(err)
		return 0, err
	}
	if err := d.useKeys(doc.JWKSURI); err != nil {
		d.fail(err)
		return 0, err
	}
	d.doc.Store(doc)
	d.mu.Lock()
	recovered := d.lastErr != nil
	d.lastErr, d.lastSuccess = nil, time.Now()
	d.mu.Unlock()
	d.refreshes.Add(1)
	if recovered && d.opts.Logger != nil {
		d.opts.Logger.Info("discovery document loaded again after a failure", "issuer", d.issuer, "location", redactURL(doc.URL))
	}
	return maxAge, nil
}

// useKeys makes jwksURI the key source. The first source is used at once;
// a changed jwks_uri replaces the running source only once the new one
// has fetched its keys, so a rotation of the endpoint never leaves the
// issuer without keys.
func (d *Discovery) useKeys(jwksURI string) error {
	cur := d.keys.Load()
	if cur != nil && cur.u.URL() == jwksURI {
		return nil
	}
	u, err := StartURL(d.ctx, jwksURI, d.opts)
	if err != nil {
		return fmt.Errorf("the discovery document's jwks_uri: %w", err)
	}
	if cur == nil {
		d.keys.Store(&discoveredKeys{u: u, gen: 1})
		return nil
	}
	select {
	case <-u.Ready():
	case <-d.ctx.Done():
		u.Close()
		return errClosed
	}
	if len(u.Keys()) == 0 {
		u.Close()
		return fmt.Errorf("the discovery document names a new jwks_uri %s, whose key set did not load: %v; the key set of %s stays in use", redactURL(jwksURI), u.firstErr, redactURL(cur.u.URL()))
	}
	d.keys.Store(&discoveredKeys{u: u, gen: cur.gen + 1})
	cur.u.Close()
	if d.opts.OnChange != nil {
		d.opts.OnChange()
	}
	return nil
}

func (d *Discovery) closeKeys() {
	if k := d.keys.Load(); k != nil {
		k.u.Close()
	}
}

// errNotFound marks a document location that answered 404: the next
// location is tried.
var errNotFound = errors.New("not found")

// fetchDocument tries the candidate locations in order; a location that
// answers 404 passes to the next, any other failure ends the attempt.
func (d *Discovery) fetchDocument() (*Document, time.Duration, error) {
	var errs []string
	for _, loc := range d.candidates {
		doc, maxAge, err := d.fetchOne(loc)
		if err == nil {
			return doc, maxAge, nil
		}
		errs = append(errs, err.Error())
		if !errors.Is(err, errNotFound) {
			break
		}
	}
	return nil, 0, errors.New(strings.Join(errs, "; "))
}

func (d *Discovery) fetchOne(loc string) (*Document, time.Duration, error) {
	ctx, cancel := context.WithTimeout(d.ctx, d.opts.Timeout)
	defer cancel()
	shown := redactURL(loc)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, loc, nil)
	if err != nil {
		return nil, 0, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := d.client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, 0, fmt.Errorf("GET %s: %w", shown, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		return nil, 0, fmt.Errorf("GET %s: status %s: %w", shown, resp.Status, errNotFound)
	}
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		return nil, 0, fmt.Errorf("GET %s: status %s", shown, resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxDocumentBytes+1))
	if err != nil {
		return nil, 0, fmt.Errorf("GET %s: reading the body: %w", shown, err)
	}
	if len(body) > MaxDocumentBytes {
		return nil, 0, fmt.Errorf("GET %s: the document is larger than 1 MiB", shown)
	}
	doc, err := parseDocument(body, d.issuer)
	if err != nil {
		return nil, 0, fmt.Errorf("GET %s: %w", shown, err)
	}
	doc.URL = loc
	return doc, maxAge(resp.Header.Get("Cache-Control")), nil
}

// parseDocument reads a discovery document and checks it for issuer.
func parseDocument(body []byte, issuer string) (*Document, error) {
	var raw struct {
		Issuer                string `json:"issuer"`
		JWKSURI               string `json:"jwks_uri"`
		IntrospectionEndpoint string `json:"introspection_endpoint"`
		RevocationEndpoint    string `json:"revocation_endpoint"`
		TokenEndpoint         string `json:"token_endpoint"`
	}
	if err := json.Unmarshal(body, &raw); err != nil {
		return nil, fmt.Errorf("the discovery document is not a JSON object of the expected members: %v", err)
	}
	if raw.Issuer != issuer {
		// RFC 8414 section 3.3 / OpenID Connect Discovery section 4.3.
		return nil, fmt.Errorf("the discovery document names issuer %q, not %q; refused (an issuer must publish its own metadata: a mismatch is a mix-up attack or a misconfiguration)", clip(raw.Issuer), issuer)
	}
	if raw.JWKSURI == "" {
		return nil, errors.New("the discovery document has no jwks_uri")
	}
	if err := checkURL(raw.JWKSURI); err != nil {
		return nil, fmt.Errorf("the discovery document's jwks_uri: %w", err)
	}
	if raw.IntrospectionEndpoint != "" {
		if err := checkURL(raw.IntrospectionEndpoint); err != nil {
			return nil, fmt.Errorf("the discovery document's introspection_endpoint: %w", err)
		}
	}
	return &Document{Issuer: raw.Issuer, JWKSURI: raw.JWKSURI, IntrospectionEndpoint: raw.IntrospectionEndpoint,
		RevocationEndpoint: raw.RevocationEndpoint, TokenEndpoint: raw.TokenEndpoint}, nil
}

// clip shortens an untrusted value for a message.
func clip(s string) string {
	if len(s) > 128 {
		return s[:128] + "..."
	}
	return s
}

func (d *Discovery) fail(err error) {
	d.mu.Lock()
	d.lastErr = err
	d.mu.Unlock()
	d.failures.Add(1)
	if d.opts.Logger == nil {
		return
	}
	if d.doc.Load() != nil {
		d.opts.Logger.Warn("discovery document reload failed; the last good document keeps serving", "issuer", d.issuer, "error", err.Error())
		return
	}
	d.opts.Logger.Warn("discovery document not loaded yet; the issuer's tokens are refused (key_set_unavailable) until it loads", "issuer", d.issuer, "error", err.Error())
}

// Keys implements decision.KeySource.
func (d *Discovery) Keys() []decision.Key {
	if k := d.keys.Load(); k != nil {
		return k.u.Keys()
	}
	return nil
}

// Epoch implements decision.KeySource: it moves when the key set changes,
// and when a new jwks_uri replaces the source.
func (d *Discovery) Epoch() uint64 {
	if k := d.keys.Load(); k != nil {
		return k.gen<<40 | k.u.Epoch()
	}
	return 0
}

// RefreshUnknownKid implements decision.KeySource.
func (d *Discovery) RefreshUnknownKid(ctx context.Context, kid string) ([]decision.Key, bool) {
	if k := d.keys.Load(); k != nil {
		return k.u.RefreshUnknownKid(ctx, kid)
	}
	return nil, false
}

// Status reports the document and key set: Keys, Epoch and Age are the
// key set's, LastError the document's when its last fetch failed, else the
// key set's.
func (d *Discovery) Status() Status {
	loc := d.candidates[0]
	st := Status{Kind: "discovery", Location: redactURL(loc), Refreshes: d.refreshes.Load(), Failures: d.failures.Load()}
	d.mu.Lock()
	st.LastError = d.lastErr
	d.mu.Unlock()
	if k := d.keys.Load(); k != nil {
		ks := k.u.Status()
		st.Keys, st.Age, st.Epoch = ks.Keys, ks.Age, d.Epoch()
		st.Failures += ks.Failures
		if st.LastError == nil {
			st.LastError = ks.LastError
		}
	}
	return st
}

// Close stops the refreshes; the last keys keep serving.
func (d *Discovery) Close() {
	d.closeOnce.Do(d.cancel)
	<-d.done
}
