package jwks

import (
	"context"
	"net/url"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
)

// fetchSpan starts a span for a fetch a request waits on (an unknown
// kid), as a child of the request's span when the request is traced:
// the tracer comes from that span, so this package needs no setup. The
// span returned is a no-op when the request is not traced. Its one
// attribute is the key set's host; the URL's path and query may carry
// what is not ours to record.
func fetchSpan(ctx context.Context, rawURL string) trace.Span {
	parent := trace.SpanFromContext(ctx)
	if !parent.IsRecording() {
		return trace.SpanFromContext(context.Background()) // a no-op span
	}
	_, sp := parent.TracerProvider().Tracer("github.com/scopegate/scopegate/store/jwks").Start(ctx, "scopegate.jwks_fetch", trace.WithSpanKind(trace.SpanKindClient))
	if u, err := url.Parse(rawURL); err == nil {
		sp.SetAttributes(attribute.String("server.address", u.Hostname()))
	}
	return sp
}
