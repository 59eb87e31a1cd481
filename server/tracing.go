package server

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"github.com/scopegate/scopegate/envoy"
	"go.opentelemetry.io/contrib/propagators/b3"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/scopegate/scopegate/decision"
)

// OpenTelemetry tracing. Off unless Config.Tracing has an exporter (the
// command's --otlp-endpoint): the funnel then starts one span per check, a child of the
// caller's trace context, and ends it when the decision is recorded, with
// the attributes below. Work that leaves the process (an ownership lookup
// on a cache miss, an introspection call, a JWKS fetch for an unknown kid)
// gets a child span.
//
// Most checks are not sampled, so the sampling decision is taken before
// anything is built: the carrier is read for a traceparent (or B3 header)
// with plain map look-ups, the parent's sampled flag or the ratio decides,
// and an unsampled check starts no span, extracts no context and
// allocates nothing. Only a sampled check pays for the propagator, the
// span and its attributes.

// Span attribute keys. Every value is also in the check's audit record;
// no token, claim value or header other than the trace context is read.
const (
	AttrAPI           = "scopegate.api"            // ext_authz, authorizer, http, authzen (the audit record's api)
	AttrDecision      = "scopegate.decision"       // allow or deny
	AttrReason        = "scopegate.reason"         // the reason code, e.g. insufficient_scope
	AttrRoute         = "scopegate.route"          // the matched route's name; absent when none matched
	AttrPolicyVersion = "scopegate.policy_version" // the version of the policy that decided
	AttrClientID      = "scopegate.client_id"      // the token's client_id (else azp); absent without a token
)

// checkSpanName is the name of every check's span.
const checkSpanName = "scopegate.check"

// instrumentation is the tracer's name: the package that makes the spans.
const instrumentation = "github.com/scopegate/scopegate/server"

// Tracing configures OpenTelemetry tracing. The zero value is off.
type Tracing struct {
	// Exporter receives the spans; nil turns tracing off. The command
	// gives an OTLP/gRPC exporter (--otlp-endpoint); it is shut down, its
	// last spans flushed, when the server stops.
	Exporter sdktrace.SpanExporter
	// Sampler is an OTEL_TRACES_SAMPLER value: always_on, always_off,
	// traceidratio, parentbased_always_on, parentbased_always_off or
	// parentbased_traceidratio. "" is parentbased_always_on, the
	// standard's default.
	Sampler string
	// SamplerArg is OTEL_TRACES_SAMPLER_ARG: the ratio (0 to 1) of the
	// traceidratio samplers. "" is 1.
	SamplerArg string
	// ServiceName is OTEL_SERVICE_NAME; "" is "scopegate".
	ServiceName string
	// ResourceAttributes is OTEL_RESOURCE_ATTRIBUTES: key=value pairs
	// separated by commas, values percent-encoded.
	ResourceAttributes string
	// Propagators is OTEL_PROPAGATORS: tracecontext (W3C traceparent and
	// tracestate), b3 (the single b3 header), b3multi (x-b3-* headers),
	// baggage (accepted; scopegate reads no baggage) or none, separated by
	// commas. "" is tracecontext.
	Propagators string
}

func (t *Tracing) on() bool { return t.Exporter != nil }

// tracing is the funnel's tracer; nil when tracing is off.
type tracing struct {
	tp     *sdktrace.TracerProvider
	tracer trace.Tracer
	prop   propagation.TextMapPropagator
	// w3c, b3single and b3multi: which headers the propagators read.
	w3c, b3single, b3multi bool
	// parentBased: a remote parent's sampled flag decides; otherwise the
	// ratio does, on the parent's trace id when there is one.
	parentBased bool
	// bound: a trace is sampled when the high 63 bits of its trace id's
	// low half, or of a random draw for a new trace, are below bound (as
	// the SDK's TraceIDRatioBased). 0 samples nothing.
	bound uint64
	// always: the ratio is 1 (bound would overflow).
	always bool
}

// samplerSpec is a parsed Tracing.Sampler and SamplerArg.
type samplerSpec struct {
	parentBased bool
	ratio       float64
}

func parseSampler(name, arg string) (samplerSpec, error) {
	var s samplerSpec
	ratio := func() (float64, error) {
		if arg == "" {
			return 1, nil
		}
		r, err := strconv.ParseFloat(strings.TrimSpace(arg), 64)
		if err != nil || r < 0 || r > 1 {
			return 0, fmt.Errorf("server config: Tracing.SamplerArg (OTEL_TRACES_SAMPLER_ARG) %q is not a ratio: give a number from 0 to 1, e.g. 0.01 for 1%% of traces", arg)
		}
		return r, nil
	}
	var err error
	switch strings.TrimSpace(name) {
	case "", "parentbased_always_on":
		s = samplerSpec{parentBased: true, ratio: 1}
	case "parentbased_always_off":
		s = samplerSpec{parentBased: true, ratio: 0}
	case "parentbased_traceidratio":
		s.parentBased = true
		s.ratio, err = ratio()
	case "always_on":
		s.ratio = 1
	case "always_off":
		s.ratio = 0
	case "traceidratio":
		s.ratio, err = ratio()
	default:
		err = fmt.Errorf("server config: Tracing.Sampler (OTEL_TRACES_SAMPLER) %q is not supported: use always_on, always_off, traceidratio, parentbased_always_on, parentbased_always_off or parentbased_traceidratio", name)
	}
	return s, err
}

// parsePropagators reads Tracing.Propagators.
func parsePropagators(list string) (w3c, single, multi bool, err error) {
	if strings.TrimSpace(list) == "" {
		return true, false, false, nil
	}
	for p := range strings.SplitSeq(list, ",") {
		switch strings.TrimSpace(p) {
		case "tracecontext":
			w3c = true
		case "b3":
			single = true
		case "b3multi":
			multi = true
		case "baggage", "none", "":
		default:
			return false, false, false, fmt.Errorf("server config: Tracing.Propagators (OTEL_PROPAGATORS) names %q: scopegate reads tracecontext, b3 and b3multi (baggage and none are accepted)", strings.TrimSpace(p))
		}
	}
	return w3c, single, multi, nil
}

// parseResourceAttributes reads OTEL_RESOURCE_ATTRIBUTES' format.
func parseResourceAttributes(s string) ([]attribute.KeyValue, error) {
	var out []attribute.KeyValue
	for kv := range strings.SplitSeq(s, ",") {
		if strings.TrimSpace(kv) == "" {
			continue
		}
		k, v, ok := strings.Cut(kv, "=")
		k = strings.TrimSpace(k)
		if !ok || k == "" {
			return nil, fmt.Errorf("server config: Tracing.ResourceAttributes (OTEL_RESOURCE_ATTRIBUTES) has %q, which is not key=value: separate pairs with commas, e.g. deployment.environment=prod,service.namespace=mesh", kv)
		}
		dv, err := url.PathUnescape(strings.TrimSpace(v))
		if err != nil {
			return nil, fmt.Errorf("server config: Tracing.ResourceAttributes (OTEL_RESOURCE_ATTRIBUTES): the value of %s is not percent-encoded correctly: encode ',' as %%2C and '%%' as %%25", k)
		}
		out = append(out, attribute.String(k, dv))
	}
	return out, nil
}

// validate checks t without opening anything.
func (t *Tracing) validate() error {
	if !t.on() {
		return nil
	}
	var errs []error
	if _, err := parseSampler(t.Sampler, t.SamplerArg); err != nil {
		errs = append(errs, err)
	}
	if _, _, _, err := parsePropagators(t.Propagators); err != nil {
		errs = append(errs, err)
	}
	if _, err := parseResourceAttributes(t.ResourceAttributes); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// newTracing starts tracing as t says; nil, nil when it is off. Spans
// are exported in batches off the request path: a collector that is down
// costs dropped spans, never a check.
func newTracing(t Tracing) (*tracing, error) {
	if !t.on() {
		return nil, nil
	}
	if err := t.validate(); err != nil {
		return nil, err
	}
	spec, _ := parseSampler(t.Sampler, t.SamplerArg)
	w3c, single, multi, _ := parsePropagators(t.Propagators)
	attrs, _ := parseResourceAttributes(t.ResourceAttributes)
	name := t.ServiceName
	if name == "" {
		name = "scopegate"
	}
	// OTEL_SERVICE_NAME wins over a service.name in the attributes, as
	// the specification says.
	attrs = append(attrs, semconv.ServiceName(name))
	// The environment is the command's to read: the resource is built
	// from the settings it passed, plus the SDK's own name and version.
	res, err := resource.New(context.Background(), resource.WithTelemetrySDK(), resource.WithSchemaURL(semconv.SchemaURL), resource.WithAttributes(attrs...))
	if err != nil {
		return nil, fmt.Errorf("server config: Tracing.ResourceAttributes: %w", err)
	}
	tp := sdktrace.NewTracerProvider(
		// The funnel samples before it starts a span (sample), so a span
		// it starts is recorded, even under a caller's unsampled trace
		// when the sampler is not parent-based; child spans are started
		// only under a recording check span (childSpan).
		sdktrace.WithSampler(sdktrace.AlwaysSample()),
		sdktrace.WithBatcher(t.Exporter),
		sdktrace.WithResource(res),
	)
	tr := &tracing{tp: tp, tracer: tp.Tracer(instrumentation), w3c: w3c, b3single: single, b3multi: multi, parentBased: spec.parentBased}
	switch {
	case spec.ratio >= 1:
		tr.always, tr.bound = true, 1<<63
	case spec.ratio > 0:
		tr.bound = uint64(spec.ratio * (1 << 63))
	}
	// The composite propagator applies each in turn, the last to find a
	// context winning: W3C last, so that it wins as in parentOf.
	var props []propagation.TextMapPropagator
	if single {
		props = append(props, b3.New(b3.WithInjectEncoding(b3.B3SingleHeader)))
	} else if multi {
		props = append(props, b3.New())
	}
	if w3c {
		props = append(props, propagation.TraceContext{})
	}
	tr.prop = propagation.NewCompositeTextMapPropagator(props...)
	return tr, nil
}

// shutdown flushes the spans still buffered, within ctx.
func (t *tracing) shutdown(ctx context.Context) {
	if t == nil {
		return
	}
	_ = t.tp.Shutdown(ctx) // a collector that is gone loses the last spans
}

// carrier is where a check's trace context is read from: the headers of
// the ext_authz request (merged or raw) or the Check RPC (lower-case
// names), or those of an HTTP request. It is passed by value and read
// with map look-ups, so a check that is not sampled pays no allocation.
type carrier struct {
	m     map[string]string              // lower-case names
	raw   []*corev3.HeaderValue          // Envoy's header_map (encode_raw_headers)
	h     http.Header                    // canonical names
	trace *[envoy.NumTraceHeaders]string // envoy.TraceHeaders' values, of a scanned ext_authz request
}

// lookup returns the value of the header named lower (lower-case) and
// canon (its canonical form).
func (c carrier) lookup(lower, canon string) string {
	switch {
	case c.trace != nil:
		for i, name := range envoy.TraceHeaders {
			if name == lower {
				return c.trace[i]
			}
		}
		return ""
	case c.m != nil:
		return c.m[lower]
	case c.h != nil:
		if v := c.h[canon]; len(v) > 0 {
			return v[0]
		}
	default:
		for _, hv := range c.raw {
			if hv.GetKey() == lower {
				if hv.GetValue() != "" {
					return hv.GetValue()
				}
				return string(hv.GetRawValue())
			}
		}
	}
	return ""
}

// Get, Set and Keys make carrier a propagation.TextMapCarrier for the
// propagators, on the sampled path only.
func (c carrier) Get(key string) string {
	lower := strings.ToLower(key)
	return c.lookup(lower, http.CanonicalHeaderKey(lower))
}

func (c carrier) Set(string, string) {}

func (c carrier) Keys() []string { return nil }

// parent is what the carrier says of the caller's trace: whether it has
// one, whether the caller sampled it, and the low half of its trace id in
// hex (parsed only by a sampler that is not parent-based).
type parent struct {
	present, sampled bool
	low              string
}

// parentOf reads the caller's trace context from c, for the headers the
// propagators read, in the order the composite propagator lets them win:
// traceparent, then the b3 header, then x-b3-* (the b3 propagator reads
// both encodings whichever it is configured to send).
func (t *tracing) parentOf(c carrier) parent {
	if t.w3c {
		if p, ok := parseTraceparent(c.lookup("traceparent", "Traceparent")); ok {
			return p
		}
	}
	if t.b3single || t.b3multi {
		if p, ok := parseB3Single(c.lookup("b3", "B3")); ok {
			return p
		}
		if id := c.lookup("x-b3-traceid", "X-B3-Traceid"); id != "" {
			return b3Parent(id, c.lookup("x-b3-sampled", "X-B3-Sampled"), c.lookup("x-b3-flags", "X-B3-Flags"))
		}
	}
	return parent{}
}

// parseTraceparent reads a W3C traceparent: version-traceid-spanid-flags.
// Only the shape and the sampled bit are checked here; a traceparent the
// propagator then finds invalid makes the span a new trace's root.
func parseTraceparent(v string) (parent, bool) {
	if len(v) < 55 || v[2] != '-' || v[35] != '-' || v[52] != '-' || (len(v) > 55 && v[55] != '-') || v[:2] == "ff" {
		return parent{}, false
	}
	bit, ok := hexLowBit(v[54])
	if !ok || !isHex(v[53]) {
		return parent{}, false
	}
	return parent{present: true, sampled: bit, low: v[19:35]}, true
}

func isHex(c byte) bool { return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' }

// hexLowBit is the lowest bit of the hex digit c (lower-case, as W3C
// requires).
func hexLowBit(c byte) (bool, bool) {
	switch {
	case '0' <= c && c <= '9':
		return (c-'0')&1 == 1, true
	case 'a' <= c && c <= 'f':
		return (c-'a'+10)&1 == 1, true
	}
	return false, false
}

// parseB3Single reads the b3 header: traceid-spanid[-sampled[-parent]],
// or a lone sampling state.
func parseB3Single(v string) (parent, bool) {
	if v == "" {
		return parent{}, false
	}
	id, rest, ok := strings.Cut(v, "-")
	if !ok {
		// "0", "1" or "d" alone: a sampling state without a trace.
		return parent{}, false
	}
	_, rest, _ = strings.Cut(rest, "-")
	state, _, _ := strings.Cut(rest, "-")
	return b3Parent(id, state, ""), true
}

// b3Parent reads B3's trace id and sampling state ("1" or "d" sampled,
// "0" not, absent: deferred, which a parent-based sampler treats as not
// sampled, as the b3 propagator does).
func b3Parent(id, state, flags string) parent {
	if len(id) > 16 {
		id = id[len(id)-16:]
	}
	sampled := state == "1" || state == "d" || state == "true" || flags == "1"
	return parent{present: true, sampled: sampled, low: id}
}

// sample decides whether a check with the caller's trace p is traced.
func (t *tracing) sample(p parent) bool {
	if p.present && t.parentBased {
		return p.sampled
	}
	if t.always {
		return true
	}
	if !p.present {
		return rand.Uint64()>>1 < t.bound
	}
	x, err := strconv.ParseUint(p.low, 16, 64)
	return err == nil && x>>1 < t.bound
}

// start begins x's span when the check is sampled, and returns the
// context its lookups run under. An unsampled check gets ctx back as it
// was, and no span.
func (t *tracing) start(ctx context.Context, x *exchange, c carrier) context.Context {
	if !t.sample(t.parentOf(c)) {
		return ctx
	}
	ctx = t.prop.Extract(ctx, c)
	ctx, x.span = t.tracer.Start(ctx, checkSpanName, trace.WithSpanKind(trace.SpanKindServer), trace.WithTimestamp(x.start))
	return ctx
}

// endSpan sets the span's attributes from x's decision and ends it.
func endSpan(x *exchange) {
	sp := x.span
	d := &x.d
	attrs := make([]attribute.KeyValue, 0, 6)
	attrs = append(attrs,
		attribute.String(AttrAPI, auditAPIs[x.api].String()),
		attribute.String(AttrDecision, decisionWord(d.Allow)),
		attribute.String(AttrReason, d.Code.String()),
		attribute.String(AttrPolicyVersion, d.PolicyVersion()),
	)
	if d.Route != nil {
		attrs = append(attrs, attribute.String(AttrRoute, d.Route.Name))
	}
	if t := d.Token; t != nil && t.ClientID != "" {
		attrs = append(attrs, attribute.String(AttrClientID, t.ClientID))
	}
	sp.SetAttributes(attrs...)
	if d.Code == decision.Internal {
		// The message is the audit record's: it names no token.
		sp.SetStatus(codes.Error, d.Message())
	}
	sp.End()
}

func decisionWord(allow bool) string {
	if allow {
		return "allow"
	}
	return "deny"
}

// childSpan starts a span for work leaving the process under ctx's check
// span, e.g. "scopegate.ownership_lookup"; sp is nil when the check is not
// traced, and the caller sets attributes only on a span it got.
func childSpan(ctx context.Context, name string) (_ context.Context, sp trace.Span) {
	parent := trace.SpanFromContext(ctx)
	if !parent.IsRecording() {
		return ctx, nil
	}
	return parent.TracerProvider().Tracer(instrumentation).Start(ctx, name, trace.WithSpanKind(trace.SpanKindClient))
}

// endChild ends a child span, marking it failed with err (whose text must
// name no secret).
func endChild(sp trace.Span, err error) {
	if sp == nil {
		return
	}
	if err != nil {
		sp.SetStatus(codes.Error, err.Error())
	}
	sp.End()
}
