package probe

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/scopegate/scopegate/decision"
	"github.com/scopegate/scopegate/decision/policytest"
	"github.com/scopegate/scopegate/envoy"
	"github.com/scopegate/scopegate/server/forwardauth"
)

// maxAnswerBytes bounds the forward-auth answer body read: scopegate's
// deny body is a few hundred bytes.
const maxAnswerBytes = 64 << 10

// forwardAuth sends cases as forward-auth checks, the way nginx, Caddy
// and Traefik do: the original method, URI and host in X-Forwarded-*
// headers, the Authorization header as the client sent it.
type forwardAuth struct {
	url    string
	client *http.Client
}

func newForwardAuth(u *url.URL, opts Options) *forwardAuth {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if opts.TLS != nil {
		tr.TLSClientConfig = opts.TLS
	}
	return &forwardAuth{
		url: u.String(),
		client: &http.Client{
			Transport: tr,
			Timeout:   opts.Timeout,
			// A forward-auth answer is final: a redirect is a deny.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}
}

func (*forwardAuth) API() string { return APIForwardAuth }

func (t *forwardAuth) Close() error {
	t.client.CloseIdleConnections()
	return nil
}

// Carries refuses what a forward-auth check has no trusted place for: the
// client address is the TCP peer (this command), and the environment,
// attributes and client certificate come from the deployment's own
// configuration or connection, never from a header a client could set.
func (*forwardAuth) Carries(req *decision.Request) string {
	const why = " cannot be sent over forward-auth (scopegate takes it from the connection or its configuration, not a header); use a grpc:// target"
	switch {
	case req.SourceIP.IsValid():
		return "request.source_ip" + why
	case req.ForwardedFor != "":
		return "the X-Forwarded-For chain is walked from the TCP peer, which is this command, not the case's client; use a grpc:// target"
	case req.Environment != "":
		return "request.environment" + why
	case len(req.Attributes) > 0:
		return "request.attributes" + why
	case req.ClientCertificate != "":
		return "request.client_certificate" + why
	}
	return ""
}

func (t *forwardAuth) Check(ctx context.Context, req *decision.Request) (policytest.Verdict, error) {
	hr, err := http.NewRequestWithContext(ctx, http.MethodGet, t.url, nil)
	if err != nil {
		return policytest.Verdict{}, err
	}
	hr.Header.Set(forwardauth.HeaderForwardedMethod, req.Method)
	hr.Header.Set(forwardauth.HeaderForwardedURI, req.Path)
	// Always, empty too: without it scopegate would take the Host of this
	// check request, which is the deployment's address, not the case's.
	hr.Header.Set(forwardauth.HeaderForwardedHost, req.Host)
	if req.AuthorizationCount > 0 {
		hr.Header.Set("Authorization", req.Authorization)
	}
	if req.RequestID != "" {
		hr.Header.Set(forwardauth.HeaderRequestID, req.RequestID)
	}
	start := time.Now()
	resp, err := t.client.Do(hr)
	if err != nil {
		return policytest.Verdict{}, fmt.Errorf("forward-auth check: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswerBytes))
	if err != nil {
		return policytest.Verdict{}, fmt.Errorf("forward-auth check: read the answer after %s: %w", time.Since(start).Round(time.Millisecond), err)
	}
	if resp.StatusCode >= 500 && resp.Header.Get(envoy.HeaderReason) == "" {
		// Not scopegate's answer (a proxy in front failed): no verdict.
		return policytest.Verdict{}, fmt.Errorf("forward-auth check: %s without an %s header", resp.Status, envoy.HeaderReason)
	}
	return forwardAuthVerdict(resp.StatusCode, resp.Header, body), nil
}

// forwardAuthVerdict reads a forward-auth answer: 2xx allows (the
// contract of nginx auth_request and Traefik), X-Scopegate-Reason names
// the reason, a deny's JSON body its route and message.
func forwardAuthVerdict(status int, h http.Header, body []byte) policytest.Verdict {
	v := policytest.Verdict{Allow: status >= 200 && status < 300, Status: status, Reason: h.Get(envoy.HeaderReason)}
	if !v.Allow {
		readDenyBody(&v, body)
	}
	return v
}
