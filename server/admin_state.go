package server

import (
	"context"
	"fmt"
	"net"
	"slices"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/reflection"

	"github.com/scopegate/scopegate/decision"
	scopegatev1 "github.com/scopegate/scopegate/proto/scopegate/v1"
	"github.com/scopegate/scopegate/store"
)

// adminState is the server's revocation syncing and Admin listener.
type adminState struct {
	syncer *store.RevocationSyncer
	grpc   *grpc.Server // nil when Config.Admin.Addr is ""

	mu        sync.Mutex
	loadedPol *decision.Policy
	loadedAt  time.Time
}

// policyLoaded records when pol was put in force (GetPolicyVersion).
func (a *adminState) policyLoaded(pol *decision.Policy) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if pol != a.loadedPol {
		a.loadedPol, a.loadedAt = pol, time.Now()
	}
}

func (a *adminState) loadedTime(pol *decision.Policy) time.Time {
	a.mu.Lock()
	defer a.mu.Unlock()
	if pol != a.loadedPol {
		return time.Time{}
	}
	return a.loadedAt
}

// startAdmin starts syncing revocations into the engine and builds the
// Admin gRPC server (when Config.Admin.Addr is set). NewServer calls it
// once the engine, the metrics and the audit log exist. A revocation store
// that cannot be reached does not stop the server: it starts with an empty,
// never-synced list (high-risk routes fail closed) and keeps retrying.
func (s *Server) startAdmin(ctx context.Context) error {
	s.admin.policyLoaded(s.engine.Policy())
	ac := &s.cfg.Admin
	tlsConf, err := adminTLS(ac)
	if err != nil {
		return err
	}
	src := s.cfg.Revocation.Store
	if src == nil {
		src = store.NewMemoryRevocations(nil)
		if ac.Addr != "" {
			s.log.Warn("revocations are kept in memory only: lost on restart and not shared with other replicas; give a revocation store to keep them")
		}
	}
	opts := store.SyncOptions{Resync: s.cfg.Revocation.Resync, Logger: s.log}
	if s.cfg.Revocation.Store != nil {
		// Events reach the other replicas through the store: each records
		// its enforcement lag.
		s.ssfLag = newSSFLag(s.metrics.Registry())
		opts.OnPut = s.syncedRevocationLag
	}
	syncer, err := store.NewRevocationSyncer(src, s.engine, opts)
	if err != nil {
		return err
	}
	_ = syncer.Start(ctx) // a failed first load is logged and retried
	s.admin.syncer = syncer
	if s.cfg.Revocation.Store != nil {
		// In memory the list is always current: no age to export.
		s.metrics.SetRevocationSyncAge(func() float64 { return syncer.SyncAge().Seconds() })
	}
	if ac.Addr == "" {
		return nil
	}

	creds := insecure.NewCredentials()
	if tlsConf != nil {
		creds = credentials.NewTLS(tlsConf)
	} else if host, _, _ := net.SplitHostPort(ac.Addr); !isLoopbackHost(host) {
		s.log.Warn("the Admin API listens in plain text beyond loopback: bearer tokens cross the network unencrypted; give it a TLS certificate", "addr", ac.Addr)
	}
	aud := &adminAuditor{log: s.log, sink: ac.Auditor, pol: s.engine.Policy}
	if aud.sink == nil && s.auditing.log != nil {
		aud.sink = s.auditing.log
	}
	pol := s.engine.Policy()
	if err := ac.checkIssuers(pol); err != nil {
		return err
	}
	if len(ac.Issuers) == 0 && len(pol.Issuers) > 1 {
		s.log.Warn("admin tokens are accepted from every issuer of the policy: any of them can mint a token with the admin scope; pin the admin issuers with --admin-issuer (AdminConfig.Issuers)",
			"issuers", len(pol.Issuers), "scope", ac.scope())
	}
	authn := &adminAuth{engine: s.engine, scope: ac.scope(), issuers: slices.Clone(ac.Issuers), mtls: tlsConf != nil && tlsConf.ClientCAs != nil}
	unary, stream := s.adminInterceptors(authn, aud)
	s.admin.grpc = grpc.NewServer(
		grpc.Creds(creds),
		grpc.ChainUnaryInterceptor(unary...),
		grpc.ChainStreamInterceptor(stream...),
		grpc.MaxRecvMsgSize(s.cfg.MaxRecvMsgSize),
	)
	svc := &Admin{
		engine: s.engine,
		reload: func() (*decision.Policy, error) {
			pol, err := s.reload("admin", true)
			if err != nil {
				return nil, err
			}
			return pol, nil
		},
		loaded: func() time.Time { return s.admin.loadedTime(s.engine.Policy()) },
		store:  src,
		syncer: syncer,
		clock:  time.Now,
		scope:  ac.scope(),
	}
	if ac.UsageReporter != nil {
		svc.usage = ac.UsageReporter
	} else if agg := s.auditing.usage; agg != nil {
		svc.usage = NewUsageReporter(agg.Report)
	}
	scopegatev1.RegisterAdminServer(s.admin.grpc, svc)
	reflection.Register(s.admin.grpc)
	return nil
}

func isLoopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// RevocationSyncer returns the syncer that feeds the engine's revocations,
// for embedders and tests (its SyncAge is the staleness the metrics show).
func (s *Server) RevocationSyncer() *store.RevocationSyncer { return s.admin.syncer }

// ServeAdmin serves the Admin API on lis until Stop. It returns nil after
// Stop, and an error when the Admin API is off (Config.Admin.Addr empty).
func (s *Server) ServeAdmin(lis net.Listener) error {
	if s.admin.grpc == nil {
		return fmt.Errorf("the Admin API is off: set Config.Admin.Addr")
	}
	s.log.Info("serving the Admin API", "addr", lis.Addr().String(), "tls", s.cfg.Admin.TLSCertFile != "", "client_certificates", s.cfg.Admin.ClientCAFile != "")
	return s.admin.grpc.Serve(lis)
}

// stopAdmin stops the admin listener (calls in flight get the shutdown
// timeout) and the revocation syncing.
func (s *Server) stopAdmin() {
	if g := s.admin.grpc; g != nil {
		done := make(chan struct{})
		go func() {
			g.GracefulStop()
			close(done)
		}()
		select {
		case <-done:
		case <-time.After(s.cfg.ShutdownTimeout):
			g.Stop()
			<-done
		}
	}
	if s.ssf != nil {
		s.ssf.Close()
	}
	if s.admin.syncer != nil {
		s.admin.syncer.Stop()
	}
}
