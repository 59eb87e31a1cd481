// Package decision is scopegate's core: the policy model, its compiler and
// the engine that decides whether a request's OAuth access token may call
// a route. It knows no protocol, transport, listener or database: the
// translators (envoy, server/forwardauth, server/authzen) build its
// Request and read its Decision, and what it needs from outside (signing
// keys, resource ownership) it asks through the interfaces in Options
// (KeyResolver, OwnershipStore). The package graph test at the module
// root keeps it that way.
//
// A policy file is compiled once (Compile, or Load and LoadFile, which
// also read the jwks_file key sets) into lookup tables: routes in a
// router keyed by literal segments, scopes interned to bits, CIDR sets,
// time windows. An Engine decides against the current *Policy; a reload
// compiles a new one and swaps it in with SetPolicy, and caches are keyed
// by versions rather than flushed.
//
// Engine.Decide runs its checks in a fixed order, cheap request-only
// checks first and lookups that leave the process last, and stops at the
// first that fails, so every deny has exactly one reason Code:
//
//  1. path and route: the path is normalized (or refused path_invalid)
//     and matched against the route table; a public route is allowed here;
//  2. token: the bearer token is extracted and verified once, then served
//     from the token cache until it expires;
//  3. revocation: the token, its subject or its client against the
//     in-memory revocation set;
//  4. scopes: the route's requirement against the granted scopes as
//     bitsets, after narrowed revocations took theirs away (SMART on FHIR
//     routes also against the request's interaction);
//  5. constraints: source IP, environment, time, claims, step-up, token
//     lifetime, certificate binding, and resource ownership last;
//  6. drift: the token's scopes against its client's grants.
//
// A request refused before it reaches the engine (malformed, over a limit,
// out of time) gets its Decision from Reject, so every answer has the same
// shape. Decide's Trace records each step for `scopegate check --explain`.
//
// Sub-packages:
//
//   - lint: checks what loads but is still wrong (`scopegate lint`);
//   - policytest: runs YAML policy test cases (`scopegate test`);
//   - policydiff: what a policy change does to access (`scopegate diff`);
//   - policyfmt: canonical formatting of policy files (`scopegate fmt`);
//   - catalogdoc: the scope catalog as Markdown (`scopegate catalog`);
//   - ssf: Shared Signals Framework events turned into revocations;
//   - tokenmint: signs access tokens and JWK sets (`scopegate token`, the
//     bench harness, the example keys);
//   - decisiontest: helpers for tests only.
package decision
