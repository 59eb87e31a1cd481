// Package scopegatev1 is scopegate's own gRPC API: the Authorizer service,
// whose Check answers whether a request may proceed for callers that do not
// speak Envoy ext_authz, and the Admin service for policy reloads, token
// revocation and scope usage reports.
//
// The .proto files beside this file are the source of truth; the *.pb.go
// files are generated from them (see README.md) and committed, so building
// scopegate needs no protobuf tooling.
package scopegatev1
