package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"runtime/debug"
	"strings"
	"time"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/scopegate/scopegate/decision"
	"github.com/scopegate/scopegate/envoy"
	"github.com/scopegate/scopegate/server/authzen"
	"github.com/scopegate/scopegate/server/forwardauth"
)

// Paths the HTTP listener answers itself, when a request names no original
// URI (X-Forwarded-Uri / X-Original-URI). Every other request, and every
// request that names one, is a forward-auth check.
const (
	HealthzPath = "/healthz"
	ReadyzPath  = "/readyz"
)

// Timeouts of the HTTP listener. Forward-auth checks carry no body and are
// answered in microseconds; the bounds only stop slow or stuck clients
// from holding connections.
const (
	httpReadHeaderTimeout = 5 * time.Second
	httpReadTimeout       = 10 * time.Second
	httpWriteTimeout      = 10 * time.Second
	httpIdleTimeout       = 2 * time.Minute
	// MaxAuthZENBodyBytes bounds an AuthZEN request body.
	MaxAuthZENBodyBytes = 64 << 10
)

// validatePathPrefix checks Config.HTTPPathPrefix.
func validatePathPrefix(p string) error {
	if p == "" {
		return nil
	}
	if p[0] != '/' || strings.HasSuffix(p, "/") || strings.ContainsAny(p, "?#% \t") {
		return fmt.Errorf("server config: HTTPPathPrefix %q must start with '/', not end with '/', and hold no '?', '#', '%%' or space (e.g. \"/ext-authz\", as Envoy's http_service path_prefix)", p)
	}
	return nil
}

// HTTPHandler serves the HTTP listener: forward-auth checks (nginx
// auth_request, Caddy forward_auth, Traefik forwardAuth, Envoy's HTTP
// ext_authz service), AuthZEN 1.0 evaluations and metadata, and health.
// One decision engine answers every protocol.
//
// Routing, in order:
//
//  1. A request with X-Forwarded-Uri or X-Original-URI is a forward-auth
//     check, whatever its own path: its own path is the proxy's fixed auth
//     path, and may collide with a reserved one.
//  2. With a path prefix configured, a request under it is a forward-auth
//     check (Envoy's HTTP mode).
//  3. POST /access/v1/evaluation(s) with a JSON content type is AuthZEN
//     (with another content type, or none, it is answered 415 with the
//     fix);
//     GET /.well-known/authzen-configuration is its metadata; GET /healthz
//     and /readyz are health.
//  4. Anything else is a forward-auth check of its own method and path
//     (Envoy's HTTP mode without a prefix).
type HTTPHandler struct {
	funnel    *funnel
	responder *envoy.Responder
	http      *forwardauth.Responder
	opts      forwardauth.Options
	log       *slog.Logger
	ready     func() bool
	debug     bool
}

var _ http.Handler = (*HTTPHandler)(nil)

// newHTTPHandler returns the handler of s's HTTP listener.
func newHTTPHandler(s *Server) *HTTPHandler {
	return &HTTPHandler{
		funnel:    s.funnel,
		responder: s.responder,
		http:      forwardauth.NewResponder(s.responder),
		opts:      forwardauth.Options{PathPrefix: s.cfg.HTTPPathPrefix},
		log:       s.log,
		ready:     s.serving,
		debug:     s.log.Enabled(context.Background(), slog.LevelDebug),
	}
}

// ServeHTTP implements http.Handler.
func (h *HTTPHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	defer h.recoverPanic(w, r)
	path := rawPath(r)
	if !forwardauth.HasForwardedURI(r) && !h.underPrefix(path) {
		// The literal request path, not its decoded form: a client path
		// that only decodes to a reserved one is checked like any other.
		switch path {
		case authzen.EvaluationPath, authzen.EvaluationsPath:
			switch {
			case isJSONPost(r) && path == authzen.EvaluationPath:
				h.authzenEvaluation(w, r)
				return
			case isJSONPost(r):
				h.authzenEvaluations(w, r)
				return
			case r.Method == http.MethodPost:
				// An AuthZEN call that forgot its content type: a forward-auth
				// no_route deny would hide the mistake.
				h.authzenRefuse(r.Context(), w, r, http.StatusUnsupportedMediaType, &authzen.Error{
					Message: "AuthZEN requests are JSON: send the header Content-Type: application/json"})
				return
			}
		case authzen.ConfigurationURI:
			if isGet(r) {
				h.authzenMetadata(w, r)
				return
			}
		case HealthzPath:
			if isGet(r) {
				h.health(w, true)
				return
			}
		case ReadyzPath:
			if isGet(r) {
				h.health(w, h.ready == nil || h.ready())
				return
			}
		}
	}
	h.forwardAuth(w, r)
}

func (h *HTTPHandler) underPrefix(path string) bool {
	p := h.opts.PathPrefix
	if p == "" {
		return false
	}
	rest, ok := strings.CutPrefix(path, p)
	return ok && (rest == "" || rest[0] == '/')
}

// rawPath returns the request-target's path as sent, without the query.
func rawPath(r *http.Request) string {
	uri := r.RequestURI
	if uri == "" {
		return r.URL.EscapedPath()
	}
	if i := strings.IndexByte(uri, '?'); i >= 0 {
		return uri[:i]
	}
	return uri
}

func isGet(r *http.Request) bool { return r.Method == http.MethodGet || r.Method == http.MethodHead }

func isJSONPost(r *http.Request) bool {
	if r.Method != http.MethodPost {
		return false
	}
	ct := r.Header.Get("Content-Type")
	if strings.EqualFold(ct, "application/json") {
		// The usual value, without parameters: nothing to parse.
		return true
	}
	mt, _, err := mime.ParseMediaType(ct)
	return err == nil && mt == "application/json"
}

// forwardAuth answers one forward-auth check through the funnel
// (funnel.go). It never reads the body. Over a limit or past the check
// timeout, the answer is in-band like every deny: a JSON body naming the
// reason, with X-Scopegate-Reason.
func (h *HTTPHandler) forwardAuth(w http.ResponseWriter, r *http.Request) {
	f := h.funnel
	var x exchange
	ctx := f.begin(r.Context(), &x, apiHTTP, carrier{h: r.Header})
	ctx, stop := f.bound(ctx, x.start)
	invalid := forwardauth.RequestFromHTTP(r, &h.opts, &x.req)
	f.decide(ctx, &x, invalid, httpHeaderSize(r.Header))
	stop.stop()
	h.http.Write(w, &x.d)
	f.record(ctx, &x)
	if h.debug {
		h.log.Debug("forward-auth check", "method", x.req.Method, "allow", x.d.Allow, "reason", x.d.Code.String(), "request_id", x.req.RequestID)
	}
}

// health answers /healthz (the process answers) and /readyz (a policy is
// in force and every issuer has keys).
func (h *HTTPHandler) health(w http.ResponseWriter, ok bool) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if !ok {
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = io.WriteString(w, "not ready\n")
		return
	}
	_, _ = io.WriteString(w, "ok\n")
}

// recoverPanic turns a panic into a 500 (a deny for every proxy) and a log
// line, instead of a dropped connection.
func (h *HTTPHandler) recoverPanic(w http.ResponseWriter, r *http.Request) {
	p := recover()
	if p == nil {
		return
	}
	if p == http.ErrAbortHandler {
		panic(p)
	}
	h.log.ErrorContext(r.Context(), "panic in HTTP handler", "panic", p, "stack", string(debug.Stack()))
	d := decision.Reject(nil, decision.Internal, "internal error")
	h.http.Write(w, &d)
}

// httpListener is the HTTP side of a Server.
type httpListener struct {
	handler *HTTPHandler
	srv     *http.Server
}

// initHTTP builds the HTTP listener's handler and server (NewServer).
func (s *Server) initHTTP() {
	s.httpl.handler = newHTTPHandler(s)
	s.httpl.srv = &http.Server{
		Handler:           s.httpl.handler,
		ReadHeaderTimeout: httpReadHeaderTimeout,
		ReadTimeout:       httpReadTimeout,
		WriteTimeout:      httpWriteTimeout,
		IdleTimeout:       httpIdleTimeout,
		// The header limits are the funnel's, answered in-band like on
		// the gRPC calls (a 400 naming the limit). net/http's own bound,
		// which answers an out-of-band 431, sits above them only as the
		// ceiling on what one request may make the server buffer.
		MaxHeaderBytes: httpHeaderCeiling(s.cfg.MaxRequestHeaderBytes),
		ErrorLog:       slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
}

// httpHeaderCeiling is net/http's MaxHeaderBytes for a header-bytes limit
// of limit: twice it, plus room for the request line and the header
// framing the limit does not count (": " and CRLF per field), so that a
// request just over the limit, or carrying many small headers, reaches the
// funnel's in-band answer.
func httpHeaderCeiling(limit int) int {
	return 2*limit + 16<<10
}

// HTTPHandler returns the handler of the HTTP listener, to mount in another
// server or drive in tests.
func (s *Server) HTTPHandler() http.Handler { return s.httpl.handler }

// ServeHTTPListener serves the HTTP listener (forward-auth, AuthZEN,
// health) on lis until Stop. It returns nil after Stop.
func (s *Server) ServeHTTPListener(lis net.Listener) error {
	s.log.Info("serving HTTP", "addr", lis.Addr().String(), "path_prefix", s.cfg.HTTPPathPrefix)
	err := s.httpl.srv.Serve(lis)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// shutdownHTTP stops the HTTP listener: it stops accepting, lets requests
// in flight finish until ctx ends, then closes every connection. The
// returned channel is closed when it is done.
func (s *Server) shutdownHTTP(ctx context.Context) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := s.httpl.srv.Shutdown(ctx); err != nil {
			s.httpl.srv.Close()
		}
	}()
	return done
}

// serving reports whether the overall gRPC health status is SERVING, so
// that /readyz and the gRPC health check never disagree; after Stop began
// it is NOT_SERVING.
func (s *Server) serving() bool {
	resp, err := s.health.Check(context.Background(), &healthpb.HealthCheckRequest{})
	return err == nil && resp.GetStatus() == healthpb.HealthCheckResponse_SERVING
}
