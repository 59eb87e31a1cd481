package harness

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// authPath is the fixed path forward-auth checks are sent to, as a proxy
// sends them (the original request is in X-Forwarded-*).
const authPath = "/_auth"

// httpTarget is an HTTP server under load.
type httpTarget struct {
	client *http.Client
	base   string // http://host:port
}

func newHTTPTarget(addr string, conns int) *httpTarget {
	tr := &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		MaxIdleConns:        conns,
		MaxIdleConnsPerHost: conns,
		IdleConnTimeout:     time.Minute,
		DisableCompression:  true,
	}
	return &httpTarget{client: &http.Client{Transport: tr}, base: "http://" + addr}
}

func (t *httpTarget) close() { t.client.CloseIdleConnections() }

// httpReply is what the harness keeps of an HTTP answer.
type httpReply struct {
	status int
	reason string // X-Scopegate-Reason
	body   []byte
}

// buildHTTP returns the request of rq for api; batch items are the
// worker's next picks.
func (w *worker) buildHTTP(ctx context.Context, t *httpTarget, api string, rq request, items []request) (*http.Request, error) {
	var req *http.Request
	var err error
	switch api {
	case APIForwardAuth:
		req, err = http.NewRequestWithContext(ctx, http.MethodGet, t.base+authPath, nil)
		if err != nil {
			return nil, err
		}
		req.Header = http.Header{
			"X-Forwarded-Method": {rq.method},
			"X-Forwarded-Uri":    {rq.path},
			"X-Forwarded-Host":   {benchHost},
			"X-Forwarded-Proto":  {"https"},
			"Authorization":      {rq.bearer},
			"User-Agent":         {"scopegate-bench"},
		}
	case APINginx:
		req, err = http.NewRequestWithContext(ctx, rq.method, t.base+rq.path, nil)
		if err != nil {
			return nil, err
		}
		req.Header = http.Header{"Authorization": {rq.bearer}, "User-Agent": {"scopegate-bench"}}
		req.Host = benchHost
	case APIAuthZEN, APIAuthZENBatch:
		var body []byte
		path := "/access/v1/evaluation"
		if api == APIAuthZENBatch {
			path = "/access/v1/evaluations"
			body = append(body, `{"evaluations":[`...)
			for i, it := range items {
				if i > 0 {
					body = append(body, ',')
				}
				body = appendEvaluation(body, it)
			}
			body = append(body, "]}"...)
		} else {
			body = appendEvaluation(body, rq)
		}
		req, err = http.NewRequestWithContext(ctx, http.MethodPost, t.base+path, bytes.NewReader(body))
		if err != nil {
			return nil, err
		}
		req.Header = http.Header{"Content-Type": {"application/json"}, "User-Agent": {"scopegate-bench"}}
	default:
		return nil, fmt.Errorf("API %q is not HTTP", api)
	}
	return req, nil
}

// appendEvaluation appends rq as an AuthZEN evaluation: the token as the
// subject's, the path as an http_path resource, the source address as
// the subject's ip_address.
func appendEvaluation(b []byte, rq request) []byte {
	b = append(b, `{"subject":{"type":"user","id":"","properties":{"token":`...)
	b = strconv.AppendQuote(b, strings.TrimPrefix(rq.bearer, "Bearer "))
	b = append(b, `,"ip_address":"`+benchSource+`"}},"action":{"name":`...)
	b = strconv.AppendQuote(b, rq.method)
	b = append(b, `},"resource":{"type":"http_path","id":`...)
	b = strconv.AppendQuote(b, rq.path)
	b = append(b, `,"properties":{"host":"`+benchHost+`"}}}`...)
	return b
}

func (w *worker) runHTTP(ctx context.Context, ep *endpoint, api string, take func() bool) {
	n := 1
	if api == APIAuthZENBatch {
		n = w.l.cfg.Batch
	}
	items := make([]request, n)
	buf := make([]byte, 0, 4096)
	for take() {
		for i := range items {
			items[i] = w.pick(ep.fresh)
		}
		rq := items[0]
		cctx, cancel := ctx, context.CancelFunc(nil)
		if timeout := w.l.cfg.Timeout; timeout > 0 {
			cctx, cancel = context.WithTimeout(ctx, timeout)
		}
		t0 := time.Now()
		var rep httpReply
		req, err := w.buildHTTP(cctx, ep.http, api, rq, items)
		if err == nil {
			var resp *http.Response
			resp, err = ep.http.client.Do(req)
			if err == nil {
				rep.status = resp.StatusCode
				rep.reason = resp.Header.Get("X-Scopegate-Reason")
				buf, err = readAll(resp.Body, buf[:0])
				resp.Body.Close()
				rep.body = buf
			}
		}
		lat := time.Since(t0)
		if cancel != nil {
			cancel()
		}
		w.record(rq, lat, err, ep.verify, func(int) (int, string) { return checkHTTP(api, &rep, items) })
	}
}

func readAll(r io.Reader, b []byte) ([]byte, error) {
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			return b, err
		}
	}
}

// The reason codes of the kinds' denies, and the HTTP status of each kind.
var (
	kindReason = [len(kinds)]string{"", "insufficient_scope", "token_invalid"}
	kindStatus = [len(kinds)]int{200, 403, 401}
)

// checkHTTP compares an HTTP answer with what the request(s) must get.
func checkHTTP(api string, rep *httpReply, items []request) (int, string) {
	switch api {
	case APIForwardAuth, APINginx:
		kind := items[0].kind
		ok := rep.status == kindStatus[kind]
		// scopegate names the reason of every deny; nginx passes it on
		// (auth_request_set, add_header).
		if ok && kind != 0 && rep.reason != kindReason[kind] {
			ok = false
		}
		if ok {
			return outcomeRight, ""
		}
		out := outcomeWrong
		if rep.status >= 500 {
			out = outcomeInternal
		}
		return out, fmt.Sprintf("%s request: got HTTP %d reason %q, want HTTP %d reason %q", kinds[kind], rep.status, rep.reason, kindStatus[kind], kindReason[kind])
	case APIAuthZEN:
		var r authzenReply
		if err := json.Unmarshal(rep.body, &r); err != nil || rep.status != 200 {
			return authzenFailure(rep, items[0].kind)
		}
		return checkEvaluation(&r, items[0].kind, "")
	default:
		var r struct {
			Evaluations []authzenReply `json:"evaluations"`
		}
		if err := json.Unmarshal(rep.body, &r); err != nil || rep.status != 200 {
			return authzenFailure(rep, items[0].kind)
		}
		if len(r.Evaluations) != len(items) {
			return outcomeWrong, fmt.Sprintf("batch of %d: got %d evaluations", len(items), len(r.Evaluations))
		}
		for i := range items {
			if out, s := checkEvaluation(&r.Evaluations[i], items[i].kind, "evaluations["+strconv.Itoa(i)+"]: "); out != outcomeRight {
				return out, s
			}
		}
		return outcomeRight, ""
	}
}

type authzenReply struct {
	Decision bool `json:"decision"`
	Context  *struct {
		ID string `json:"id"`
	} `json:"context"`
}

func checkEvaluation(r *authzenReply, kind int, where string) (int, string) {
	id := ""
	if r.Context != nil {
		id = r.Context.ID
	}
	if r.Decision == (kind == 0) && (kind == 0 || id == kindReason[kind]) {
		return outcomeRight, ""
	}
	out := outcomeWrong
	if id == "internal" {
		out = outcomeInternal
	}
	return out, fmt.Sprintf("%s%s request: got decision %v reason %q, want decision %v reason %q", where, kinds[kind], r.Decision, id, kind == 0, kindReason[kind])
}

func authzenFailure(rep *httpReply, kind int) (int, string) {
	out := outcomeWrong
	if rep.status >= 500 {
		out = outcomeInternal
	}
	return out, fmt.Sprintf("%s request: got HTTP %d, not an AuthZEN answer", kinds[kind], rep.status)
}

// noopHTTP is the HTTP floor: a net/http server that reads the request
// and answers an allow, as anyone would write one.
type noopHTTP struct {
	srv  *http.Server
	addr string
	done chan error
}

func startNoopHTTP(batch int) (*noopHTTP, error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	one := []byte(`{"decision":true}`)
	many := []byte(`{"evaluations":[` + strings.TrimSuffix(strings.Repeat(`{"decision":true},`, batch), ",") + `]}`)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		switch r.URL.Path {
		case "/access/v1/evaluation":
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write(one)
		case "/access/v1/evaluations":
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write(many)
		default:
			w.WriteHeader(http.StatusOK)
		}
	})
	s := &noopHTTP{srv: &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}, addr: lis.Addr().String(), done: make(chan error, 1)}
	go func() { s.done <- s.srv.Serve(lis) }()
	return s, nil
}

func (s *noopHTTP) stop() {
	s.srv.Close()
	<-s.done
}
