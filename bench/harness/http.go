package harness

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/valyala/fastjson"
)

// authPath is the fixed path forward-auth checks are sent to, as a proxy
// sends them (the original request is in X-Forwarded-*).
const authPath = "/_auth"

// httpReply is what the harness keeps of an HTTP answer.
type httpReply struct {
	status int
	reason []byte // X-Scopegate-Reason
	body   []byte
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
	var rep httpReply
	var req, scratch, body []byte
	var rc *rawConn
	var stop func() bool
	defer func() {
		if rc != nil {
			stop()
			ep.http.release(rc)
		}
	}()
	p := new(fastjson.Parser)
	for take() {
		for i := range items {
			items[i] = w.pick(ep.fresh)
		}
		rq := items[0]
		t0 := time.Now()
		var err error
		req, scratch, err = appendHTTPRequest(req[:0], ep.http, api, rq, items, scratch)
		if err == nil && rc == nil {
			if rc, err = ep.http.conn(); err == nil {
				stop = closeOnCancel(ctx, rc)
			}
		}
		if err == nil {
			deadline := time.Time{}
			if timeout := w.l.cfg.Timeout; timeout > 0 {
				deadline = t0.Add(timeout)
			}
			body, err = rc.roundTrip(req, deadline, &rep, body)
			rep.body = body
			if rc.broken {
				stop()
				ep.http.release(rc)
				rc = nil
			}
		}
		lat := time.Since(t0)
		if err == nil && !ep.verify {
			// The floor's answers are read as scopegate's are, only
			// not compared, so the client's work per answer is the same
			// on both sides.
			readAnswer(p, api, &rep)
		}
		w.record(rq, lat, err, ep.verify, func(int) (int, string) { return checkHTTP(p, api, &rep, items) })
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
func checkHTTP(p *fastjson.Parser, api string, rep *httpReply, items []request) (int, string) {
	switch api {
	case APIForwardAuth, APINginx:
		kind := items[0].kind
		ok := rep.status == kindStatus[kind]
		// scopegate names the reason of every deny; nginx passes it on
		// (auth_request_set, add_header).
		if ok && kind != 0 && string(rep.reason) != kindReason[kind] {
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
		v, err := p.ParseBytes(rep.body)
		if err != nil || rep.status != 200 || v.Type() != fastjson.TypeObject {
			return authzenFailure(rep, items[0].kind)
		}
		return checkEvaluation(v, items[0].kind, "")
	default:
		v, err := p.ParseBytes(rep.body)
		if err != nil || rep.status != 200 || v.Type() != fastjson.TypeObject {
			return authzenFailure(rep, items[0].kind)
		}
		evs := v.GetArray("evaluations")
		if len(evs) != len(items) {
			return outcomeWrong, fmt.Sprintf("batch of %d: got %d evaluations", len(items), len(evs))
		}
		for i := range items {
			if out, _ := checkEvaluation(evs[i], items[i].kind, ""); out != outcomeRight {
				// The item's prefix is built for a failure only.
				return checkEvaluation(evs[i], items[i].kind, "evaluations["+strconv.Itoa(i)+"]: ")
			}
		}
		return outcomeRight, ""
	}
}

// readAnswer reads an HTTP answer as checkHTTP does, without comparing it
// with anything: the forward-auth status and reason are read with the
// answer; an AuthZEN body is parsed and each evaluation's decision and
// context.id looked up.
func readAnswer(p *fastjson.Parser, api string, rep *httpReply) {
	if api == APIForwardAuth || api == APINginx {
		return
	}
	v, err := p.ParseBytes(rep.body)
	if err != nil || v.Type() != fastjson.TypeObject {
		return
	}
	if api == APIAuthZEN {
		readEvaluation(v)
		return
	}
	for _, ev := range v.GetArray("evaluations") {
		readEvaluation(ev)
	}
}

// readEvaluation looks up what checkEvaluation reads.
func readEvaluation(v *fastjson.Value) {
	_ = v.Get("decision")
	if c := v.Get("context", "id"); c != nil && c.Type() == fastjson.TypeString {
		_ = c.GetStringBytes()
	}
}

// checkEvaluation checks one AuthZEN evaluation's answer: decision, and
// for a deny the reason in context.id.
func checkEvaluation(v *fastjson.Value, kind int, where string) (int, string) {
	decision, idb := false, []byte(nil)
	if d := v.Get("decision"); d != nil && d.Type() == fastjson.TypeTrue {
		decision = true
	}
	if c := v.Get("context", "id"); c != nil && c.Type() == fastjson.TypeString {
		idb = c.GetStringBytes()
	}
	if decision == (kind == 0) && (kind == 0 || string(idb) == kindReason[kind]) {
		return outcomeRight, ""
	}
	id := string(idb)
	out := outcomeWrong
	if id == "internal" {
		out = outcomeInternal
	}
	return out, fmt.Sprintf("%s%s request: got decision %v reason %q, want decision %v reason %q", where, kinds[kind], decision, id, kind == 0, kindReason[kind])
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
