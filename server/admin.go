package server

import (
	"context"
	"errors"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/scopegate/scopegate/decision"
	scopegatev1 "github.com/scopegate/scopegate/proto/scopegate/v1"
	"github.com/scopegate/scopegate/store"
	"github.com/scopegate/scopegate/store/audit"
)

// UsageReporter answers the Admin UsageReport call; the usage aggregator
// adapted by NewUsageReporter is one.
type UsageReporter interface {
	UsageReport(ctx context.Context, req *scopegatev1.UsageReportRequest) (*scopegatev1.UsageReportResponse, error)
}

// AdminAuditor records admin calls; the audit log (*audit.Logger) is one.
// It returns false when the record could not be written.
type AdminAuditor interface {
	RecordAdmin(ctx context.Context, ev audit.AdminEvent) bool
}

// Admin is the scopegate.v1.Admin service: policy version and reload,
// revocations, usage. It trusts its caller: authentication and the audit
// record are the admin listener's interceptors (admin_auth.go). Revocations
// are written to the store first, then applied to this replica at once;
// the other replicas follow through the store.
type Admin struct {
	scopegatev1.UnimplementedAdminServer
	engine  *decision.Engine
	reload  func() (*decision.Policy, error)
	loaded  func() time.Time // when the policy in force was put in force
	store   store.RevocationStore
	syncer  *store.RevocationSyncer
	usage   UsageReporter
	clock   func() time.Time
	maxList int
	scope   string // the admin scope: a revocation may name it
}

var _ scopegatev1.AdminServer = (*Admin)(nil)

// maxListedRevocations bounds one ListRevocations answer, so a replica
// holding millions of jti revocations does not build a message beyond the
// gRPC size limit; the rest is counted in the status message.
const maxListedRevocations = 10_000

// GetPolicyVersion implements scopegatev1.AdminServer.
func (a *Admin) GetPolicyVersion(ctx context.Context, _ *scopegatev1.GetPolicyVersionRequest) (*scopegatev1.GetPolicyVersionResponse, error) {
	pol := a.engine.Policy()
	if pol == nil {
		return nil, status.Error(codes.FailedPrecondition, "no policy is loaded")
	}
	resp := &scopegatev1.GetPolicyVersionResponse{Version: pol.Version, Source: pol.Source}
	if t := a.loaded(); !t.IsZero() {
		resp.LoadedAt = timestamppb.New(t)
	}
	noteAudit(ctx, "version", pol.Version)
	return resp, nil
}

// ReloadPolicy implements scopegatev1.AdminServer.
func (a *Admin) ReloadPolicy(ctx context.Context, _ *scopegatev1.ReloadPolicyRequest) (*scopegatev1.ReloadPolicyResponse, error) {
	pol, err := a.reload()
	if err != nil {
		return nil, adminError(err)
	}
	resp := &scopegatev1.ReloadPolicyResponse{Version: pol.Version}
	for _, p := range pol.Warnings {
		resp.Problems = append(resp.Problems, p.String())
	}
	noteAudit(ctx, "version", pol.Version)
	return resp, nil
}

// Revoke implements scopegatev1.AdminServer.
func (a *Admin) Revoke(ctx context.Context, req *scopegatev1.RevokeRequest) (*scopegatev1.RevokeResponse, error) {
	r, err := revocationFromRequest(req)
	if err != nil {
		return nil, err
	}
	// Refuse what could never match under the policy in force (naming the
	// close match); store a path prefix in canonical form.
	if err := a.engine.Policy().CheckRevocation(&r, a.scope); err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	r.CreatedBy = callerOf(ctx)
	noteAudit(ctx, "kind", r.Kind.String(), "target", r.Target(), "issuer", r.Issuer, "issued_before", formatIssuedBefore(r.IssuedBefore), "scope", r.Scope, "segment", r.Segment, "reason", r.Reason)
	stored, err := a.store.Revoke(ctx, r)
	if err != nil {
		return nil, adminError(err)
	}
	a.syncer.Put(stored) // in force here before the call returns
	noteAudit(ctx, "id", stored.ID)
	return &scopegatev1.RevokeResponse{Revocation: revocationToProto(&stored)}, nil
}

// revocationFromRequest maps the request to a Revocation; field checks are
// decision.Revocation.Validate's (through the store), except what only the
// request can get wrong.
func revocationFromRequest(req *scopegatev1.RevokeRequest) (decision.Revocation, error) {
	r := decision.Revocation{Scope: req.GetScope(), Segment: req.GetSegment(), Reason: req.GetReason(), Issuer: req.GetIssuer()}
	switch t := req.GetTarget().(type) {
	case *scopegatev1.RevokeRequest_Token:
		if req.GetIssuer() != "" && req.GetIssuer() != t.Token.GetIss() {
			return r, status.Error(codes.InvalidArgument, "issuer is not used with a token target: the token names its issuer in token.iss")
		}
		r.Kind, r.Issuer, r.JTI = decision.RevokeToken, t.Token.GetIss(), t.Token.GetJti()
		if r.JTI == "" {
			return r, status.Error(codes.InvalidArgument, "token.jti is empty: name the token by its jti claim (and token.iss)")
		}
	case *scopegatev1.RevokeRequest_Subject:
		r.Kind, r.Subject = decision.RevokeSubject, t.Subject
		if r.Subject == "" {
			return r, status.Error(codes.InvalidArgument, "subject is empty: give the sub claim of the tokens to revoke")
		}
	case *scopegatev1.RevokeRequest_ClientId:
		r.Kind, r.ClientID = decision.RevokeClient, t.ClientId
		if r.ClientID == "" {
			return r, status.Error(codes.InvalidArgument, "client_id is empty: give the client whose tokens to revoke")
		}
	case *scopegatev1.RevokeRequest_SessionId:
		r.Kind, r.SessionID = decision.RevokeSession, t.SessionId
		if r.SessionID == "" {
			return r, status.Error(codes.InvalidArgument, "session_id is empty: give the sid claim of the session to revoke (and issuer)")
		}
		if r.Issuer == "" {
			return r, status.Error(codes.InvalidArgument, "issuer is required with session_id: sid values are unique per issuer only")
		}
	case *scopegatev1.RevokeRequest_DeviceId:
		r.Kind, r.DeviceID = decision.RevokeDevice, t.DeviceId
		if r.DeviceID == "" {
			return r, status.Error(codes.InvalidArgument, "device_id is empty: give the device claim of the tokens to revoke")
		}
	case *scopegatev1.RevokeRequest_Assurance:
		r.Kind, r.Subject, r.ACRLevel = decision.RevokeAssurance, t.Assurance.GetSubject(), t.Assurance.GetAcrLevel()
		if r.Subject == "" {
			return r, status.Error(codes.InvalidArgument, "assurance.subject is empty: give the sub claim whose assurance level was lowered")
		}
	default:
		return r, status.Error(codes.InvalidArgument, "no target: set exactly one of token (iss and jti), subject, client_id, session_id, device_id or assurance")
	}
	if ib := req.GetIssuedBefore(); ib != nil {
		if err := ib.CheckValid(); err != nil {
			return r, status.Errorf(codes.InvalidArgument, "issued_before: %v", err)
		}
		r.IssuedBefore = ib.AsTime()
	}
	if u := req.GetUntil(); u != nil {
		if err := u.CheckValid(); err != nil {
			return r, status.Errorf(codes.InvalidArgument, "until: %v", err)
		}
		r.Until = u.AsTime()
	}
	return r, nil
}

// Unrevoke implements scopegatev1.AdminServer.
func (a *Admin) Unrevoke(ctx context.Context, req *scopegatev1.UnrevokeRequest) (*scopegatev1.UnrevokeResponse, error) {
	id := req.GetId()
	noteAudit(ctx, "id", id)
	if id == "" {
		return nil, status.Error(codes.InvalidArgument, "id is empty: give the id Revoke or ListRevocations returned")
	}
	if old, ok := a.syncer.Set().Get(id); ok {
		noteAudit(ctx, "kind", old.Kind.String(), "target", old.Target())
	}
	if err := a.store.Unrevoke(ctx, id); err != nil {
		return nil, adminError(err)
	}
	a.syncer.Remove(id)
	return &scopegatev1.UnrevokeResponse{}, nil
}

// ListRevocations implements scopegatev1.AdminServer: the revocations this
// replica enforces, as of its last sync.
func (a *Admin) ListRevocations(ctx context.Context, _ *scopegatev1.ListRevocationsRequest) (*scopegatev1.ListRevocationsResponse, error) {
	all := a.syncer.Set().All(a.clock())
	resp := &scopegatev1.ListRevocationsResponse{}
	if t := a.syncer.SyncedAt(); !t.IsZero() {
		resp.SyncedAt = timestamppb.New(t)
	}
	limit := a.maxList
	if limit <= 0 {
		limit = maxListedRevocations
	}
	if len(all) > limit {
		noteAudit(ctx, "truncated", "true")
		all = all[len(all)-limit:] // the newest
	}
	resp.Revocations = make([]*scopegatev1.Revocation, len(all))
	for i := range all {
		resp.Revocations[i] = revocationToProto(&all[i])
	}
	return resp, nil
}

// UsageReport implements scopegatev1.AdminServer by delegating to the
// usage aggregator.
func (a *Admin) UsageReport(ctx context.Context, req *scopegatev1.UsageReportRequest) (*scopegatev1.UsageReportResponse, error) {
	if a.usage == nil {
		return nil, status.Error(codes.Unimplemented, "usage reporting is off on this server: start it with usage aggregation enabled")
	}
	resp, err := a.usage.UsageReport(ctx, req)
	if err != nil {
		return nil, adminError(err)
	}
	return resp, nil
}

func revocationToProto(r *decision.Revocation) *scopegatev1.Revocation {
	out := &scopegatev1.Revocation{
		Id: r.ID, Kind: r.Kind.String(), Issuer: r.Issuer, Jti: r.JTI, Subject: r.Subject, ClientId: r.ClientID,
		Scope: r.Scope, Segment: r.Segment, Reason: r.Reason, CreatedBy: r.CreatedBy, SessionId: r.SessionID,
		DeviceId: r.DeviceID, AcrLevel: r.ACRLevel,
	}
	if !r.IssuedBefore.IsZero() {
		out.IssuedBefore = timestamppb.New(r.IssuedBefore)
	}
	if !r.CreatedAt.IsZero() {
		out.CreatedAt = timestamppb.New(r.CreatedAt)
	}
	if !r.Until.IsZero() {
		out.Until = timestamppb.New(r.Until)
	}
	return out
}

// adminError is the one place admin errors become gRPC statuses: what the
// caller got wrong is INVALID_ARGUMENT or NOT_FOUND with the fix; a store
// that cannot answer is UNAVAILABLE (the call may be retried).
func adminError(err error) error {
	if _, ok := status.FromError(err); ok {
		return err
	}
	var le *decision.LoadError
	switch {
	case errors.As(err, &le):
		return status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, store.ErrInvalidRevocation):
		return status.Error(codes.InvalidArgument, strings.TrimPrefix(err.Error(), store.ErrInvalidRevocation.Error()+": "))
	case errors.Is(err, store.ErrRevocationNotFound):
		return status.Error(codes.NotFound, err.Error())
	case errors.Is(err, store.ErrRevocationExists):
		return status.Error(codes.AlreadyExists, err.Error())
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, err.Error())
	}
	return status.Error(codes.Unavailable, err.Error())
}

// formatIssuedBefore is the audit form of Revocation.IssuedBefore ("" when
// unset).
func formatIssuedBefore(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}
