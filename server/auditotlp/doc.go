// Package auditotlp is the otlp audit sink: it sends every audit record,
// as an OpenTelemetry log record, to an OpenTelemetry Collector (or any
// OTLP/gRPC logs endpoint), so that a deployment routes its decision log
// wherever its collector can (Loki, Kafka, Elasticsearch, S3) without
// scopegate carrying a client for each.
//
// It speaks the OTLP logs service directly, with the generated messages
// of go.opentelemetry.io/proto/otlp over the gRPC client scopegate
// already has, rather than through the OpenTelemetry logs SDK: the SDK's
// batch processor drops the oldest records when its queue is full and
// reports only a total through its global error handler, and its
// exporter gives up on a batch after its retry time, so neither the
// per-kind drop accounting of the audit pipeline nor "no record lost
// while the collector is down, within the buffer" could be kept with it.
//
// The sink holds records in a bounded buffer of its own (allows apart
// from denies and admin calls, as the audit pipeline does) and one
// goroutine exports them in order, retrying with a backoff while the
// collector is unreachable. Write, on the audit goroutine, only copies;
// a dead collector therefore never delays the other sinks.
package auditotlp
