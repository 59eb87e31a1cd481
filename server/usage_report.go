package server

import (
	"context"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	scopegatev1 "github.com/scopegate/scopegate/proto/scopegate/v1"
	"github.com/scopegate/scopegate/store/usage"
)

// UsageReportFunc is the usage report as the domain computes it:
// (*usage.Aggregator).Report is one.
type UsageReportFunc func(ctx context.Context, q usage.Query) ([]usage.ClientUsage, error)

// NewUsageReporter adapts a usage report (the aggregator's Report) to the
// Admin service's UsageReport RPC: the request is checked and turned into
// a usage.Query, the report into the response, and errors into gRPC
// status codes. The usage package itself knows nothing of gRPC.
func NewUsageReporter(report UsageReportFunc) UsageReporter { return usageReporter(report) }

type usageReporter UsageReportFunc

// UsageReport implements UsageReporter.
func (f usageReporter) UsageReport(ctx context.Context, req *scopegatev1.UsageReportRequest) (*scopegatev1.UsageReportResponse, error) {
	q := usage.Query{ClientID: req.GetClientId()}
	if d := req.GetUnusedFor(); d != nil {
		if err := d.CheckValid(); err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "unused_for: %v", err)
		}
		q.UnusedFor = d.AsDuration()
	}
	if q.UnusedFor < 0 {
		return nil, status.Errorf(codes.InvalidArgument, "unused_for is negative (%v): give a positive duration, or leave it unset for every scope", q.UnusedFor)
	}
	if len(q.ClientID) > usage.MaxClientIDBytes {
		return nil, status.Errorf(codes.InvalidArgument, "client_id is %d bytes long: client ids are at most %d", len(q.ClientID), usage.MaxClientIDBytes)
	}
	report, err := f(ctx, q)
	if err != nil {
		if ctx.Err() != nil {
			return nil, status.FromContextError(ctx.Err()).Err()
		}
		return nil, status.Error(codes.Unavailable, err.Error())
	}
	resp := &scopegatev1.UsageReportResponse{Clients: make([]*scopegatev1.ClientUsage, 0, len(report))}
	for _, c := range report {
		cu := &scopegatev1.ClientUsage{ClientId: c.ClientID, Scopes: make([]*scopegatev1.ScopeUsage, 0, len(c.Scopes))}
		for _, s := range c.Scopes {
			su := &scopegatev1.ScopeUsage{Scope: s.Scope, Granted: s.Granted, Used: s.Used, Count: s.Count}
			if !s.LastUsed.IsZero() {
				su.LastUsed = timestamppb.New(s.LastUsed)
			}
			cu.Scopes = append(cu.Scopes, su)
		}
		resp.Clients = append(resp.Clients, cu)
	}
	return resp, nil
}
