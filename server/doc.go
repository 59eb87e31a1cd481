// Package server runs scopegate's gRPC process: one listener serving Envoy
// ext_authz v3 (envoy.service.auth.v3.Authorization), the scopegate
// Authorizer API (scopegate.v1.Authorizer), gRPC health and server
// reflection, all answered by one decision engine.
//
// It is the only package that wires the network to the engine: the
// translators (envoy/ for ext_authz, server/forwardauth, server/authzen)
// turn messages into requests and decisions into replies, decision/
// decides, store/jwks serves keys. Keeping
// the wiring here means a new listener (HTTP forward-auth, admin, metrics)
// attaches to the same Server and engine instead of growing its own copy of
// the policy.
//
// The server takes a plain, validated Config and no flags, environment or
// signals: cmd/scopegate layers those (cmd/scopegate/settings), calls
// ReloadFrom on SIGHUP and cancels Run's context on SIGTERM. Listen builds
// the server and binds every listener (releasing all it opened if one
// step fails); Bound.Run serves them under one lifecycle until the context
// ends.
package server
