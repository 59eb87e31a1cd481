// Package harness is scopegate's load harness: it drives Envoy's ext_authz
// Check and scopegate's own Check over loopback gRPC with realistic
// requests (Envoy's usual headers, 800-byte RS256 tokens, a chosen mix of
// allows, scope denies and bad signatures, a chosen rate of never-seen
// tokens), against a generated policy of a chosen size, and checks every
// answer against the verdict it must have.
//
// It measures scopegate against a built-in no-op ext_authz server, a
// default gRPC server that allows everything and does nothing, in
// alternating rounds of the same run, and reports scopegate's figures as
// ratios to it: on a shared machine, absolute numbers drift with whatever
// else runs, while the ratio of two servers measured turn by turn does not.
//
// It lives in a package of its own so that `go run ./bench` and
// `scopegate bench` are the same code with the same flags.
package harness
