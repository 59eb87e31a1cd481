// Package ssf turns Shared Signals Framework (OpenID SSF 1.0) events into
// revocations: it verifies Security Event Tokens (RFC 8417) from a
// configured transmitter and maps the CAEP 1.0 and RISC 1.0 events they
// carry, whose subjects are RFC 9493 subject identifiers, to
// decision.Revocation values. It does no I/O: keys come through
// decision.KeySource, the clock and the replay memory from the caller;
// delivery (RFC 8935 push, RFC 8936 poll) and storing the revocations are
// the server's.
package ssf
