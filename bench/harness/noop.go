package harness

import (
	"context"
	"net"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"

	scopegatev1 "github.com/scopegate/scopegate/proto/scopegate/v1"
)

// noopServer is the floor the harness measures scopegate against: a Go
// ext_authz server (and Authorizer) that does no work at all. Its responses
// are static; it is a default grpc.Server with the default codec, as
// anyone would write it, so what gRPC itself costs per call is exactly what
// it measures.
type noopServer struct {
	grpc *grpc.Server
	addr string
	done chan error
}

type noopExtAuthz struct {
	authv3.UnimplementedAuthorizationServer
}

var noopOK = &authv3.CheckResponse{
	Status:       &rpcstatus.Status{Code: 0},
	HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{}},
}

func (noopExtAuthz) Check(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	return noopOK, nil
}

type noopAuthorizer struct {
	scopegatev1.UnimplementedAuthorizerServer
}

var noopAllow = &scopegatev1.CheckResponse{Allow: true, HttpStatus: 200, Reasons: []*scopegatev1.Reason{{Code: "ok"}}}

func (noopAuthorizer) Check(context.Context, *scopegatev1.CheckRequest) (*scopegatev1.CheckResponse, error) {
	return noopAllow, nil
}

// startNoop serves the no-op server on a loopback port.
func startNoop() (*noopServer, error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &noopServer{grpc: grpc.NewServer(), addr: lis.Addr().String(), done: make(chan error, 1)}
	authv3.RegisterAuthorizationServer(s.grpc, noopExtAuthz{})
	scopegatev1.RegisterAuthorizerServer(s.grpc, noopAuthorizer{})
	go func() { s.done <- s.grpc.Serve(lis) }()
	return s, nil
}

func (s *noopServer) stop() {
	s.grpc.Stop()
	<-s.done
}
