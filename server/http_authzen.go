package server

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/scopegate/scopegate/decision"
	"github.com/scopegate/scopegate/envoy"
	"github.com/scopegate/scopegate/store/audit"
)

// MaxAuthZENEvaluations bounds the items of one access evaluations request.
const MaxAuthZENEvaluations = 1024

var (
	jsonContentType = []string{"application/json"}
	noStore         = []string{"no-store"}
)

// authzenEvaluation serves POST /access/v1/evaluation. A decision, allow
// or deny, is a 200 with {"decision": …}; a request scopegate cannot
// evaluate is a 400 naming the field; an internal error is a 500.
func (h *HTTPHandler) authzenEvaluation(w http.ResponseWriter, r *http.Request) {
	body, ok := readAuthZENBody(w, r)
	if !ok {
		return
	}
	ev, perr := envoy.ParseAuthZENEvaluation(body)
	if perr != nil {
		writeAuthZENError(w, r, http.StatusBadRequest, perr)
		return
	}
	h.authzenSingle(w, r, ev)
}

func (h *HTTPHandler) authzenSingle(w http.ResponseWriter, r *http.Request, ev *envoy.AuthZENEvaluation) {
	res, ierr := h.evaluate(r, ev, "")
	if ierr != nil {
		writeAuthZENError(w, r, http.StatusBadRequest, ierr)
		return
	}
	if res.Context != nil && res.Context.Error != nil && res.Context.Error.Status >= 500 {
		writeAuthZENError(w, r, res.Context.Error.Status, &envoy.AuthZENError{Message: res.Context.Error.Message})
		return
	}
	writeAuthZENJSON(w, r, http.StatusOK, res)
}

// authzenEvaluations serves POST /access/v1/evaluations. Without an
// evaluations array it answers as a single evaluation. Each item inherits
// the top-level subject, action, resource and context it does not set; an
// item scopegate cannot evaluate gets decision false with context.error
// naming the field, and counts as a deny for the short-circuit semantics.
func (h *HTTPHandler) authzenEvaluations(w http.ResponseWriter, r *http.Request) {
	body, ok := readAuthZENBody(w, r)
	if !ok {
		return
	}
	evs, perr := envoy.ParseAuthZENEvaluations(body)
	if perr != nil {
		writeAuthZENError(w, r, http.StatusBadRequest, perr)
		return
	}
	if len(evs.Evaluations) == 0 {
		h.authzenSingle(w, r, &evs.AuthZENEvaluation)
		return
	}
	if len(evs.Evaluations) > MaxAuthZENEvaluations {
		writeAuthZENError(w, r, http.StatusBadRequest, &envoy.AuthZENError{Field: "evaluations",
			Message: "holds " + strconv.Itoa(len(evs.Evaluations)) + " items; send at most " + strconv.Itoa(MaxAuthZENEvaluations) + " per request"})
		return
	}
	sem := evs.Semantic()
	out := envoy.AuthZENEvaluationsResponse{Evaluations: make([]envoy.AuthZENResponse, 0, len(evs.Evaluations))}
	for i := range evs.Evaluations {
		it := evs.Item(i)
		res, ierr := h.evaluate(r, &it, "evaluations["+strconv.Itoa(i)+"].")
		if ierr != nil {
			res = envoy.AuthZENInvalid(ierr)
		}
		out.Evaluations = append(out.Evaluations, res)
		if (sem == envoy.AuthZENDenyOnFirstDeny && !res.Decision) || (sem == envoy.AuthZENPermitOnFirstPermit && res.Decision) {
			break
		}
	}
	writeAuthZENJSON(w, r, http.StatusOK, out)
}

// evaluate decides one evaluation. The HTTP call's Authorization header is
// the subject's token when subject.properties.token is absent.
func (h *HTTPHandler) evaluate(r *http.Request, ev *envoy.AuthZENEvaluation, field string) (envoy.AuthZENResponse, *envoy.AuthZENError) {
	start := time.Now()
	var req decision.Request
	if err := ev.Request(field, r.Header["Authorization"], &req); err != nil {
		return envoy.AuthZENResponse{}, err
	}
	if v := r.Header[envoy.HeaderRequestID]; len(v) > 0 {
		req.RequestID = v[0]
	}
	d := h.engine.Decide(r.Context(), &req)
	if d.Allow {
		if msg := ev.SubjectMismatch(&d); msg != "" {
			d = decision.Decision{Code: decision.RequestInvalid, Detail: msg, Path: d.Path, Route: d.Route, Policy: d.Policy}
		}
	}
	h.auditLog.Record(r.Context(), audit.AuthZEN, &req, &d, start, "")
	if h.debug {
		h.log.Debug("AuthZEN evaluation", "method", req.Method, "allow", d.Allow, "reason", d.Code.String(), "request_id", req.RequestID)
	}
	return envoy.AuthZENResult(&d, h.responder.WWWAuthenticate(&d)), nil
}

// authzenMetadata serves GET /.well-known/authzen-configuration. The base
// URL is the one the caller used (its Host, https when the connection is
// TLS).
func (h *HTTPHandler) authzenMetadata(w http.ResponseWriter, r *http.Request) {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	writeAuthZENJSON(w, r, http.StatusOK, envoy.NewAuthZENMetadata(scheme+"://"+r.Host))
}

// readAuthZENBody reads a body of at most MaxAuthZENBodyBytes, answering
// 413 or 400 itself when it cannot.
func readAuthZENBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxAuthZENBodyBytes))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeAuthZENError(w, r, http.StatusRequestEntityTooLarge, &envoy.AuthZENError{
				Message: "the body is larger than " + strconv.Itoa(MaxAuthZENBodyBytes) + " bytes: split the evaluations over several requests"})
			return nil, false
		}
		writeAuthZENError(w, r, http.StatusBadRequest, &envoy.AuthZENError{Message: "the body could not be read: " + err.Error()})
		return nil, false
	}
	return body, true
}

// writeAuthZENError answers a request-level error with a JSON body naming
// the field at fault.
func writeAuthZENError(w http.ResponseWriter, r *http.Request, status int, e *envoy.AuthZENError) {
	code := decision.RequestInvalid.String()
	if status >= 500 {
		code = decision.Internal.String()
	}
	writeAuthZENJSON(w, r, status, envoy.AuthZENErrorBody{Status: status, Error: code, Field: e.Field, Message: e.Message})
}

func writeAuthZENJSON(w http.ResponseWriter, r *http.Request, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		// The response types hold strings, numbers and booleans only.
		status, b = http.StatusInternalServerError, []byte(`{"status":500,"error":"internal","message":"the response could not be encoded"}`)
	}
	hdr := w.Header()
	hdr["Content-Type"] = jsonContentType
	hdr["Cache-Control"] = noStore
	if v := r.Header[envoy.HeaderRequestID]; len(v) > 0 {
		hdr[envoy.HeaderRequestID] = v[:1:1]
	}
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}
