package jwks

import (
	"context"
	"net/http"
	"net/url"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// TestURLUnknownKidSpan: a fetch a traced request waits on is a child span
// of the request's span, naming the JWKS host only; an untraced request
// makes no span.
func TestURLUnknownKidSpan(t *testing.T) {
	s := newJWKSServer(t, jwksOf(t, key(t, "k1")))
	u := newTestURL(t, s, URLOptions{RefreshInterval: time.Hour, MinRefreshInterval: time.Millisecond})
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })

	s.serve(http.StatusOK, jwksOf(t, key(t, "k2")))
	time.Sleep(5 * time.Millisecond)
	if keys, ok := u.RefreshUnknownKid(context.Background(), "k2"); !ok || !hasKid(keys, "k2") {
		t.Fatal("k2 not fetched")
	}
	if n := len(exp.GetSpans()); n != 0 {
		t.Fatalf("%d spans for an untraced request", n)
	}
	s.serve(http.StatusOK, jwksOf(t, key(t, "k3")))
	time.Sleep(5 * time.Millisecond)
	ctx, check := tp.Tracer("test").Start(context.Background(), "check")
	if keys, ok := u.RefreshUnknownKid(ctx, "k3"); !ok || !hasKid(keys, "k3") {
		t.Fatal("k3 not fetched")
	}
	check.End()
	var fetch *tracetest.SpanStub
	for _, sp := range exp.GetSpans() {
		if sp.Name == "scopegate.jwks_fetch" {
			fetch = &sp
		}
	}
	if fetch == nil {
		t.Fatalf("no fetch span in %v", exp.GetSpans())
	}
	if fetch.Parent.SpanID() != check.SpanContext().SpanID() {
		t.Errorf("fetch span's parent %s, want the request's %s", fetch.Parent.SpanID(), check.SpanContext().SpanID())
	}
	host, _ := url.Parse(s.url())
	if len(fetch.Attributes) != 1 || fetch.Attributes[0].Value.AsString() != host.Hostname() {
		t.Errorf("attributes %v, want only server.address=%s", fetch.Attributes, host.Hostname())
	}
}
