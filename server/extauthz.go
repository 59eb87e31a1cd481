package server

import (
	"context"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/scopegate/scopegate/envoy"
)

// ExtAuthz serves Envoy's ext_authz v3 Authorization service. Every request
// is answered in-band, even one it cannot parse: a deny is a CheckResponse
// with a non-OK status, never a gRPC error, so Envoy does not mistake it
// for a transport failure (and apply failure_mode_allow to it).
type ExtAuthz struct {
	authv3.UnimplementedAuthorizationServer
	funnel    *funnel
	responder *envoy.Responder
}

var _ authv3.AuthorizationServer = (*ExtAuthz)(nil)

// Check implements authv3.AuthorizationServer. The server serves the same
// decision through extAuthzCheckHandler, which leaves encoding an allow to
// the codec (extauthz_fast.go).
func (x *ExtAuthz) Check(ctx context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	var in extAuthzInput
	in.fromMessage(req)
	r, err := x.check(ctx, &in)
	if err != nil {
		return nil, err
	}
	if a, ok := r.(*allowReply); ok {
		return x.responder.Response(&a.d), nil
	}
	return r.(*authv3.CheckResponse), nil // check returns one of the two
}
