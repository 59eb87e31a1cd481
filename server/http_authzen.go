package server

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/scopegate/scopegate/decision"
	"github.com/scopegate/scopegate/server/authzen"
	"github.com/scopegate/scopegate/server/forwardauth"
)

// MaxAuthZENEvaluations bounds the items of one access evaluations request.
const MaxAuthZENEvaluations = 1024

var (
	jsonContentType = []string{"application/json"}
	noStore         = []string{"no-store"}
)

// authzenEvaluation serves POST /access/v1/evaluation. A decision, allow
// or deny, is a 200 with {"decision": …}; a request scopegate cannot
// evaluate (malformed, over a header limit) is a 400 naming the field; an
// internal error (the check timeout included) is a 500. Each answer is
// one decision through the funnel, metered and audited with api authzen.
func (h *HTTPHandler) authzenEvaluation(w http.ResponseWriter, r *http.Request) {
	ctx, stop := h.funnel.bound(r.Context(), time.Now())
	defer stop.stop()
	if !h.authzenAdmit(ctx, w, r) {
		return
	}
	body, ok := h.readAuthZENBody(ctx, w, r)
	if !ok {
		return
	}
	ev, perr := authzen.ParseEvaluation(*body)
	putBody(body)
	if perr != nil {
		h.authzenRefuse(ctx, w, r, http.StatusBadRequest, perr)
		return
	}
	h.authzenSingle(ctx, w, r, ev)
}

func (h *HTTPHandler) authzenSingle(ctx context.Context, w http.ResponseWriter, r *http.Request, ev *authzen.Evaluation) {
	res, ierr := h.evaluate(ctx, r, ev, -1)
	if ierr != nil {
		writeAuthZENError(w, r, http.StatusBadRequest, ierr)
		return
	}
	if res.Context != nil && res.Context.Error != nil && res.Context.Error.Status >= 500 {
		writeAuthZENError(w, r, res.Context.Error.Status, &authzen.Error{Message: res.Context.Error.Message})
		return
	}
	writeAuthZENReply(w, r, http.StatusOK, res.AppendJSON)
}

// authzenEvaluations serves POST /access/v1/evaluations. Without an
// evaluations array it answers as a single evaluation. Each item inherits
// the top-level subject, action, resource and context it does not set; an
// item scopegate cannot evaluate gets decision false with context.error
// naming the field, and counts as a deny for the short-circuit semantics.
// The check timeout bounds the whole request: items left when it passes
// are answered as internal errors without being decided.
func (h *HTTPHandler) authzenEvaluations(w http.ResponseWriter, r *http.Request) {
	ctx, stop := h.funnel.bound(r.Context(), time.Now())
	defer stop.stop()
	if !h.authzenAdmit(ctx, w, r) {
		return
	}
	body, ok := h.readAuthZENBody(ctx, w, r)
	if !ok {
		return
	}
	evs, perr := authzen.ParseEvaluations(*body)
	putBody(body)
	if perr != nil {
		h.authzenRefuse(ctx, w, r, http.StatusBadRequest, perr)
		return
	}
	if len(evs.Evaluations) == 0 {
		h.authzenSingle(ctx, w, r, &evs.Evaluation)
		return
	}
	if len(evs.Evaluations) > MaxAuthZENEvaluations {
		h.authzenRefuse(ctx, w, r, http.StatusBadRequest, &authzen.Error{Field: "evaluations",
			Message: "holds " + strconv.Itoa(len(evs.Evaluations)) + " items; send at most " + strconv.Itoa(MaxAuthZENEvaluations) + " per request"})
		return
	}
	sem := evs.Semantic()
	out := authzen.EvaluationsResponse{Evaluations: make([]authzen.Response, 0, len(evs.Evaluations))}
	for i := range evs.Evaluations {
		it := evs.Item(i)
		res, ierr := h.evaluate(ctx, r, &it, i)
		if ierr != nil {
			res = authzen.Invalid(ierr)
		}
		out.Evaluations = append(out.Evaluations, res)
		if (sem == authzen.DenyOnFirstDeny && !res.Decision) || (sem == authzen.PermitOnFirstPermit && res.Decision) {
			break
		}
	}
	writeAuthZENReply(w, r, http.StatusOK, out.AppendJSON)
}

// evaluate takes one evaluation through the funnel. The HTTP call's
// Authorization header is the subject's token when
// subject.properties.token is absent. An evaluation that does not
// translate is refused (request_invalid, recorded) and its error returned.
// item is the evaluation's index in a batch, or -1 for a single
// evaluation; an error names the item's members as evaluations[i]….
func (h *HTTPHandler) evaluate(ctx context.Context, r *http.Request, ev *authzen.Evaluation, item int) (authzen.Response, *authzen.Error) {
	f := h.funnel
	var x exchange
	ctx = f.begin(ctx, &x, apiAuthZEN, carrier{h: r.Header})
	ierr := ev.Request("", r.Header["Authorization"], &x.req)
	if ierr != nil && item >= 0 {
		// The prefix is built only for an error: a batch item that
		// translates costs no string.
		ierr.Field = "evaluations[" + strconv.Itoa(item) + "]." + ierr.Field
	}
	if v := r.Header[forwardauth.HeaderRequestID]; len(v) > 0 {
		x.req.RequestID = v[0]
	}
	if ierr != nil {
		f.reject(&x, decision.RequestInvalid, ierr.Error())
		f.record(ctx, &x)
		return authzen.Response{}, ierr
	}
	// The HTTP call's headers were held to the limits once, in
	// authzenAdmit; an item adds none of its own.
	f.decide(ctx, &x, "", headerSize{})
	if x.d.Allow {
		if msg := ev.SubjectMismatch(&x.d); msg != "" {
			d := decision.Reject(x.d.Policy, decision.RequestInvalid, msg)
			d.Path, d.Route = x.d.Path, x.d.Route
			x.d = d
		}
	}
	res := authzen.Result(&x.d, h.responder.WWWAuthenticate(&x.d))
	f.record(ctx, &x)
	if h.debug {
		h.log.Debug("AuthZEN evaluation", "method", x.req.Method, "allow", x.d.Allow, "reason", x.d.Code.String(), "request_id", x.req.RequestID)
	}
	return res, nil
}

// authzenAdmit holds the HTTP call's headers to the funnel's limits; over
// one, it answers 400 in AuthZEN's error shape, records the refusal and
// reports false.
func (h *HTTPHandler) authzenAdmit(ctx context.Context, w http.ResponseWriter, r *http.Request) bool {
	over := h.funnel.limits.over(httpHeaderSize(r.Header))
	if over == "" {
		return true
	}
	h.authzenRefuse(ctx, w, r, http.StatusBadRequest, &authzen.Error{Message: over})
	return false
}

// authzenRefuse answers a request refused before any evaluation was
// decided (over a limit, a body that does not read or parse), and records
// it as one request_invalid decision: the answer is also what is counted.
func (h *HTTPHandler) authzenRefuse(ctx context.Context, w http.ResponseWriter, r *http.Request, status int, e *authzen.Error) {
	f := h.funnel
	var x exchange
	ctx = f.begin(ctx, &x, apiAuthZEN, carrier{h: r.Header})
	if v := r.Header[forwardauth.HeaderRequestID]; len(v) > 0 {
		x.req.RequestID = v[0]
	}
	x.req.Host = r.Host
	f.reject(&x, decision.RequestInvalid, e.Error())
	writeAuthZENError(w, r, status, e)
	f.record(ctx, &x)
}

// authzenMetadata serves GET /.well-known/authzen-configuration. The base
// URL is the one the caller used (its Host, https when the connection is
// TLS).
func (h *HTTPHandler) authzenMetadata(w http.ResponseWriter, r *http.Request) {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	writeAuthZENJSON(w, r, http.StatusOK, authzen.NewMetadata(scheme+"://"+r.Host))
}

// bodyBuffers hold AuthZEN request bodies while they are parsed: both
// decoders copy what they keep, so a buffer is reused once the body is
// parsed.
var bodyBuffers = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

// readAuthZENBody reads a body of at most MaxAuthZENBodyBytes into a
// pooled buffer, answering 413 or 400 itself (and recording the refusal)
// when it cannot. The caller gives the buffer back (putBody) once the
// body is parsed.
func (h *HTTPHandler) readAuthZENBody(ctx context.Context, w http.ResponseWriter, r *http.Request) (*[]byte, bool) {
	bp := bodyBuffers.Get().(*[]byte)
	body, err := readAll(http.MaxBytesReader(w, r.Body, MaxAuthZENBodyBytes), (*bp)[:0], r.ContentLength)
	*bp = body
	if err != nil {
		putBody(bp)
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			h.authzenRefuse(ctx, w, r, http.StatusRequestEntityTooLarge, &authzen.Error{
				Message: "the body is larger than " + strconv.Itoa(MaxAuthZENBodyBytes) + " bytes: split the evaluations over several requests"})
			return nil, false
		}
		h.authzenRefuse(ctx, w, r, http.StatusBadRequest, &authzen.Error{Message: "the body could not be read: " + err.Error()})
		return nil, false
	}
	return bp, true
}

// putBody gives a body buffer back to the pool.
func putBody(bp *[]byte) {
	if cap(*bp) > MaxAuthZENBodyBytes+1024 {
		return
	}
	*bp = (*bp)[:0]
	bodyBuffers.Put(bp)
}

// readAll is io.ReadAll appending to b, which it first grows to the
// announced length (bounded by the body limit).
func readAll(rd io.Reader, b []byte, announced int64) ([]byte, error) {
	if announced > 0 && int64(cap(b)) < announced+1 {
		b = make([]byte, 0, min(announced, MaxAuthZENBodyBytes)+1)
	}
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		n, err := rd.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			return b, err
		}
	}
}

// writeAuthZENError answers a request-level error with a JSON body naming
// the field at fault.
func writeAuthZENError(w http.ResponseWriter, r *http.Request, status int, e *authzen.Error) {
	code := decision.RequestInvalid.String()
	if status >= 500 {
		code = decision.Internal.String()
	}
	eb := authzen.ErrorBody{Status: status, Error: code, Field: e.Field, Message: e.Message}
	writeAuthZENReply(w, r, status, eb.AppendJSON)
}

func writeAuthZENJSON(w http.ResponseWriter, r *http.Request, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		// The response types hold strings, numbers and booleans only.
		status, b = http.StatusInternalServerError, []byte(`{"status":500,"error":"internal","message":"the response could not be encoded"}`)
	}
	writeAuthZENReply(w, r, status, func(dst []byte) []byte { return append(dst, b...) })
}

// replyBuffers hold AuthZEN answers while they are written.
var replyBuffers = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// maxPooledReply bounds the buffer a pooled answer keeps.
const maxPooledReply = 64 << 10

// writeAuthZENReply answers with the JSON body encode appends, and a
// Content-Length, so that net/http needs no chunked framing.
func writeAuthZENReply(w http.ResponseWriter, r *http.Request, status int, encode func([]byte) []byte) {
	bp := replyBuffers.Get().(*[]byte)
	b := append(encode((*bp)[:0]), '\n')
	hdr := w.Header()
	hdr["Content-Type"] = jsonContentType
	hdr["Cache-Control"] = noStore
	hdr["Content-Length"] = []string{strconv.Itoa(len(b))}
	if v := r.Header[forwardauth.HeaderRequestID]; len(v) > 0 {
		hdr[forwardauth.HeaderRequestID] = v[:1:1]
	}
	w.WriteHeader(status)
	_, _ = w.Write(b)
	if cap(b) <= maxPooledReply {
		*bp = b[:0]
		replyBuffers.Put(bp)
	}
}
