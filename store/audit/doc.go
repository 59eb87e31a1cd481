// Package audit writes one JSON record per decision to the audit sinks
// (stdout, a file, PostgreSQL) and feeds the decisions to observers such as
// the scope usage aggregator.
//
// The decision path only copies a fixed-size Event into a bounded buffer;
// one goroutine drains it, encodes the JSON and writes the sinks. A slow or
// dead sink therefore never slows a decision: when the buffer is full the
// event is dropped and counted (or, when the operator asks for it, the
// decision waits for room). An unbounded buffer is how a decision logger
// runs a service out of memory, so there is none here.
//
// A record never carries a raw token, an Authorization header, a cookie or
// a query string: only the verified claims that identify the caller (iss,
// sub, client_id, jti) and the normalized path.
package audit
