// Package servertest starts a scopegate Server on loopback listeners for
// the tests of other packages that need a real deployment to talk to
// (the synthetic checks of scopegate test --target, the alert rules of
// examples): gRPC (ext_authz and the Check RPC) and HTTP (forward-auth).
package servertest
