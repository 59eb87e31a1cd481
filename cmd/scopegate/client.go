package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"sort"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/scopegate/scopegate/decision/tokenmint"
	"github.com/scopegate/scopegate/envoy"
	scopegatev1 "github.com/scopegate/scopegate/proto/scopegate/v1"
)

// The APIs `scopegate client --api` can speak.
const (
	apiEnvoy     = "envoy"
	apiScopegate = "scopegate"
)

// clientCmd sends one check to a running server, shaped like the request a
// real caller sends (Envoy's ext_authz CheckRequest, or the scopegate Check
// RPC), and prints the verdict. It is how a deployment is smoke-tested.
type clientCmd struct {
	addr        string
	api         string
	method      string
	path        string
	host        string
	token       string
	sourceIP    string
	environment string
	headers     kvFlag
	attrs       kvFlag
	timeout     time.Duration
	explain     bool
	json        bool
}

func (k *clientCmd) define(fs *flag.FlagSet) {
	fs.StringVar(&k.addr, "addr", "", "gRPC address of the server (host:port); default $SCOPEGATE_ADDR, else the current context's addr, else 127.0.0.1:9191")
	fs.StringVar(&k.api, "api", apiEnvoy, "API to call: envoy (envoy.service.auth.v3.Authorization/Check) or scopegate (scopegate.v1.Authorizer/Check)")
	fs.StringVar(&k.method, "method", "GET", "HTTP method of the request")
	fs.StringVar(&k.path, "path", "/orders/1", "request path, optionally with a query")
	fs.StringVar(&k.host, "host", "localhost", "Host / :authority of the request")
	fs.StringVar(&k.token, "token", "", `bearer access token, sent as "authorization: Bearer <token>"; "-" reads it from standard input; empty sends none`)
	fs.StringVar(&k.sourceIP, "source-ip", "", "IP address of the client (Envoy's source.address)")
	fs.StringVar(&k.environment, "environment", "", "deployment environment (envoy: context_extensions[environment])")
	fs.Var(&k.headers, "header", "extra request header name=value (repeatable); names are lower-cased and repeats joined with commas, as Envoy does")
	fs.Var(&k.attrs, "attr", "extra attribute key=value (repeatable): context_extensions for envoy, attributes for scopegate")
	fs.DurationVar(&k.timeout, "timeout", 5*time.Second, "deadline of the call")
	fs.BoolVar(&k.explain, "explain", false, "ask for the trace of every check (scopegate API only)")
	fs.BoolVar(&k.json, "json", false, "print the raw response as JSON (protojson, proto field names)")
}

// verdict is what both APIs' answers are printed as.
type verdict struct {
	allow      bool
	errored    bool // Envoy error_response: an error, not a decision
	grpcStatus string
	httpStatus int
	reason     string
	message    string
	route      string
	wwwAuth    string
	headers    [][2]string // upstream headers (allow) or client headers (deny)
	remove     []string
	body       string
	trace      []*scopegatev1.TraceStep
}

func (k *clientCmd) run(ctx context.Context, c *cli) int {
	if k.api != apiEnvoy && k.api != apiScopegate {
		return c.usageError("client", "--api %q is not one of envoy, scopegate", k.api)
	}
	if k.sourceIP != "" {
		if _, err := netip.ParseAddr(k.sourceIP); err != nil {
			return c.usageError("client", "--source-ip %q is not an IP address (write it like 203.0.113.7, without a port)", k.sourceIP)
		}
	}
	if k.explain && k.api != apiScopegate {
		return c.usageError("client", "--explain needs --api scopegate (ext_authz has no trace)")
	}
	tok := k.token
	if tok == "-" {
		b, err := io.ReadAll(io.LimitReader(c.stdin, maxStdinToken))
		if err != nil {
			return c.fail("client", fmt.Errorf("read the token from standard input: %w", err))
		}
		if tok = strings.TrimSpace(string(b)); tok == "" {
			return c.usageError("client", "--token -: standard input is empty")
		}
	}

	if k.addr == "" {
		k.addr = "127.0.0.1:9191"
		if v, ok := c.env("SCOPEGATE_ADDR"); ok && strings.TrimSpace(v) != "" {
			k.addr = strings.TrimSpace(v)
		} else if cx, err := c.currentContext(); err != nil {
			return c.usageError("client", "%v", err)
		} else if cx != nil && cx.Addr != "" {
			k.addr = cx.Addr
		}
	}
	// Plain-text gRPC: the client is a smoke-test tool for a server on a
	// trusted network (or loopback), as Envoy usually reaches its ext_authz.
	conn, err := grpc.NewClient(k.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return c.fail("client", fmt.Errorf("--addr %q: %w", k.addr, err))
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, k.timeout)
	defer cancel()

	var (
		v    verdict
		resp proto.Message
	)
	if k.api == apiEnvoy {
		r, err := authv3.NewAuthorizationClient(conn).Check(ctx, k.envoyRequest(tok))
		if err != nil {
			return c.fail("client", callError(callTarget{call: "check call", addr: k.addr, flag: "--addr", env: "SCOPEGATE_ADDR", timeout: k.timeout}, err))
		}
		v, resp = envoyVerdict(r), r
	} else {
		r, err := scopegatev1.NewAuthorizerClient(conn).Check(ctx, k.scopegateRequest(tok))
		if err != nil {
			return c.fail("client", callError(callTarget{call: "check call", addr: k.addr, flag: "--addr", env: "SCOPEGATE_ADDR", timeout: k.timeout}, err))
		}
		v, resp = scopegateVerdict(r), r
	}

	if k.json {
		b, err := protoJSON(resp)
		if err != nil {
			return c.fail("client", err)
		}
		fmt.Fprintln(c.stdout, string(b))
	} else {
		v.write(c.stdout)
	}
	switch {
	case v.errored:
		return exitError
	case v.allow:
		return exitOK
	}
	return exitDeny
}

// requestHeaders are the request's headers as Envoy sends them: lower-case
// names, pseudo-headers included, repeats joined with commas.
func (k *clientCmd) requestHeaders(tok, requestID string) map[string]string {
	h := map[string]string{
		":method":      k.method,
		":path":        k.path,
		":authority":   k.host,
		":scheme":      "http",
		"x-request-id": requestID,
	}
	if tok != "" {
		h["authorization"] = authorizationValue(tok)
	}
	for _, p := range k.headers {
		name := strings.ToLower(p.key)
		if old, ok := h[name]; ok && !strings.HasPrefix(name, ":") && name != "x-request-id" {
			h[name] = old + "," + p.value
		} else {
			h[name] = p.value
		}
	}
	return h
}

func (k *clientCmd) envoyRequest(tok string) *authv3.CheckRequest {
	id := tokenmint.RandomID()
	headers := k.requestHeaders(tok, id)
	ext := map[string]string{}
	if k.environment != "" {
		ext["environment"] = k.environment
	}
	for _, p := range k.attrs {
		ext[p.key] = p.value
	}
	attrs := &authv3.AttributeContext{
		Request: &authv3.AttributeContext_Request{
			Time: timestamppb.Now(),
			Http: &authv3.AttributeContext_HttpRequest{
				Id:       headers["x-request-id"],
				Method:   headers[":method"],
				Path:     headers[":path"],
				Host:     headers[":authority"],
				Scheme:   "http",
				Protocol: "HTTP/1.1",
				Headers:  headers,
			},
		},
		ContextExtensions: ext,
	}
	if k.sourceIP != "" {
		attrs.Source = &authv3.AttributeContext_Peer{Address: &corev3.Address{
			Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
				Address:       k.sourceIP,
				PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 51234},
			}},
		}}
	}
	return &authv3.CheckRequest{Attributes: attrs}
}

func (k *clientCmd) scopegateRequest(tok string) *scopegatev1.CheckRequest {
	id := tokenmint.RandomID()
	headers := map[string]string{}
	for _, p := range k.headers {
		name := strings.ToLower(p.key)
		if old, ok := headers[name]; ok {
			headers[name] = old + ", " + p.value
		} else {
			headers[name] = p.value
		}
	}
	attrs := map[string]string{}
	for _, p := range k.attrs {
		attrs[p.key] = p.value
	}
	return &scopegatev1.CheckRequest{
		Method:        k.method,
		Path:          k.path,
		Host:          k.host,
		Headers:       headers,
		Token:         tok,
		SourceAddress: k.sourceIP,
		Environment:   k.environment,
		Attributes:    attrs,
		RequestId:     id,
		Explain:       k.explain,
	}
}

func envoyVerdict(r *authv3.CheckResponse) verdict {
	code := codes.Code(r.GetStatus().GetCode())
	v := verdict{grpcStatus: code.String()}
	switch {
	case r.GetErrorResponse() != nil:
		e := r.GetErrorResponse()
		v.errored = true
		v.httpStatus = int(e.GetStatus().GetCode())
		v.headers = headerPairs(e.GetHeaders())
		v.body = e.GetBody()
	case code == codes.OK:
		v.allow = true
		v.httpStatus = 200
		ok := r.GetOkResponse()
		v.headers = headerPairs(ok.GetHeaders())
		v.remove = ok.GetHeadersToRemove()
	default:
		d := r.GetDeniedResponse()
		v.httpStatus = int(d.GetStatus().GetCode())
		if v.httpStatus == 0 {
			v.httpStatus = 403 // what Envoy answers when the status is unset
		}
		v.headers = headerPairs(d.GetHeaders())
		v.body = d.GetBody()
	}
	for _, h := range v.headers {
		switch strings.ToLower(h[0]) {
		case envoy.HeaderReason:
			v.reason = h[1]
		case "www-authenticate":
			v.wwwAuth = h[1]
		}
	}
	v.message = r.GetStatus().GetMessage()
	// scopegate's deny body is JSON with a human-readable message; prefer it
	// to the status message, which only repeats the reason code.
	var body struct {
		Message string `json:"message"`
	}
	if v.body != "" && json.Unmarshal([]byte(v.body), &body) == nil && body.Message != "" {
		v.message = body.Message
	}
	return v
}

func headerPairs(hs []*corev3.HeaderValueOption) [][2]string {
	out := make([][2]string, 0, len(hs))
	for _, h := range hs {
		val := h.GetHeader().GetValue()
		if val == "" && len(h.GetHeader().GetRawValue()) > 0 {
			val = string(h.GetHeader().GetRawValue())
		}
		out = append(out, [2]string{h.GetHeader().GetKey(), val})
	}
	return out
}

func scopegateVerdict(r *scopegatev1.CheckResponse) verdict {
	v := verdict{
		allow:      r.GetAllow(),
		grpcStatus: codes.OK.String(),
		httpStatus: int(r.GetHttpStatus()),
		route:      r.GetRoute(),
		wwwAuth:    r.GetWwwAuthenticate(),
		trace:      r.GetTrace(),
	}
	if rs := r.GetReasons(); len(rs) > 0 {
		v.reason, v.message = rs[0].GetCode(), rs[0].GetMessage()
	}
	names := make([]string, 0, len(r.GetHeaders()))
	for name := range r.GetHeaders() {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		v.headers = append(v.headers, [2]string{name, r.GetHeaders()[name]})
	}
	return v
}

// write prints the verdict:
//
//	DENY insufficient_scope: the token lacks ... (route=read-order)
//	  grpc-status: OK
//	  http-status: 403
//	  www-authenticate: Bearer realm="scopegate", error="insufficient_scope", ...
//	  header x-scopegate-reason: insufficient_scope
func (v *verdict) write(w io.Writer) {
	var b strings.Builder
	switch {
	case v.errored:
		b.WriteString("ERROR (error_response: the server could not decide)")
	case v.allow:
		b.WriteString("ALLOW")
	default:
		b.WriteString("DENY")
	}
	if v.reason != "" && !v.allow {
		b.WriteString(" " + v.reason)
	}
	if !v.allow && v.message != "" && v.message != v.reason {
		b.WriteString(": " + v.message)
	}
	if v.route != "" {
		b.WriteString(" (route=" + v.route + ")")
	}
	fmt.Fprintln(w, b.String())
	fmt.Fprintf(w, "  grpc-status: %s\n  http-status: %d\n", v.grpcStatus, v.httpStatus)
	if v.reason != "" {
		fmt.Fprintf(w, "  reason: %s\n", v.reason)
	}
	if v.wwwAuth != "" {
		fmt.Fprintf(w, "  www-authenticate: %s\n", v.wwwAuth)
	}
	where := "client"
	if v.allow {
		where = "upstream"
	}
	for _, h := range v.headers {
		if name := strings.ToLower(h[0]); name == "www-authenticate" || name == envoy.HeaderReason {
			continue // shown above
		}
		fmt.Fprintf(w, "  %s header %s: %s\n", where, h[0], h[1])
	}
	for _, h := range v.remove {
		fmt.Fprintf(w, "  upstream remove %s\n", h)
	}
	if v.body != "" {
		fmt.Fprintf(w, "  body: %s\n", strings.TrimSpace(v.body))
	}
	if len(v.trace) > 0 {
		steps := make([]traceJSON, len(v.trace))
		for i, s := range v.trace {
			steps[i] = traceJSON{Check: s.GetCheck(), Result: s.GetResult(), Detail: s.GetDetail()}
		}
		writeTrace(w, steps)
	}
}
