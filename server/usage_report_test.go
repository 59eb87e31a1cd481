package server

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	scopegatev1 "github.com/scopegate/scopegate/proto/scopegate/v1"
	"github.com/scopegate/scopegate/store/usage"
)

func TestUsageReporterRPC(t *testing.T) {
	used := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	var gotQ usage.Query
	rep := NewUsageReporter(func(_ context.Context, q usage.Query) ([]usage.ClientUsage, error) {
		gotQ = q
		return []usage.ClientUsage{{ClientID: "cli", Scopes: []usage.ScopeUsage{
			{Scope: "billing:read", Granted: true},
			{Scope: "orders:read", Granted: true, Used: true, LastUsed: used, Count: 3},
		}}}, nil
	})
	ctx := context.Background()
	resp, err := rep.UsageReport(ctx, &scopegatev1.UsageReportRequest{ClientId: "cli", UnusedFor: durationpb.New(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if gotQ != (usage.Query{ClientID: "cli", UnusedFor: time.Hour}) {
		t.Errorf("query %+v, want client cli, unused for 1h", gotQ)
	}
	if len(resp.Clients) != 1 || resp.Clients[0].ClientId != "cli" || len(resp.Clients[0].Scopes) != 2 {
		t.Fatalf("response %v", resp)
	}
	br, or := resp.Clients[0].Scopes[0], resp.Clients[0].Scopes[1]
	if br.Scope != "billing:read" || !br.Granted || br.Used || br.LastUsed != nil || br.Count != 0 {
		t.Errorf("billing:read = %v", br)
	}
	if or.Scope != "orders:read" || !or.Granted || !or.Used || !or.LastUsed.AsTime().Equal(used) || or.Count != 3 {
		t.Errorf("orders:read = %v", or)
	}

	for name, req := range map[string]*scopegatev1.UsageReportRequest{
		"negative window": {UnusedFor: durationpb.New(-time.Hour)},
		"invalid window":  {UnusedFor: &durationpb.Duration{Seconds: 1, Nanos: -1}},
		"long client id":  {ClientId: strings.Repeat("x", usage.MaxClientIDBytes+1)},
	} {
		if _, err := rep.UsageReport(ctx, req); status.Code(err) != codes.InvalidArgument {
			t.Errorf("%s: error %v, want InvalidArgument", name, err)
		}
	}

	failing := NewUsageReporter(func(context.Context, usage.Query) ([]usage.ClientUsage, error) {
		return nil, errors.New("database down")
	})
	if _, err := failing.UsageReport(ctx, &scopegatev1.UsageReportRequest{}); status.Code(err) != codes.Unavailable {
		t.Errorf("store failure: error %v, want Unavailable", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := failing.UsageReport(cctx, &scopegatev1.UsageReportRequest{}); status.Code(err) != codes.Canceled {
		t.Errorf("cancelled call: error %v, want Canceled", err)
	}
}
