package server

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/scopegate/scopegate/decision"
	scopegatev1 "github.com/scopegate/scopegate/proto/scopegate/v1"
	"github.com/scopegate/scopegate/store"
	"github.com/scopegate/scopegate/store/audit"
)

// adminE2E is an e2e server with its Admin API on a loopback listener.
type adminE2E struct {
	*e2e
	addr  string
	admin scopegatev1.AdminClient
	token string // a valid admin token
}

// recordingAuditor keeps the admin events it receives.
type recordingAuditor struct {
	mu     sync.Mutex
	events []audit.AdminEvent
}

func (r *recordingAuditor) RecordAdmin(_ context.Context, ev audit.AdminEvent) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, ev)
	return true
}

func (r *recordingAuditor) last() audit.AdminEvent {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.events) == 0 {
		return audit.AdminEvent{}
	}
	return r.events[len(r.events)-1]
}

func startAdminE2E(t *testing.T, edit func(*Config)) *adminE2E {
	t.Helper()
	e := startE2E(t, func(c *Config) {
		c.Admin.Addr = "127.0.0.1:0"
		if edit != nil {
			edit(c)
		}
	})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = e.srv.ServeAdmin(lis) }()
	a := &adminE2E{e2e: e, addr: lis.Addr().String()}
	if e.srv.cfg.Admin.TLSCertFile == "" {
		conn, err := grpc.NewClient(a.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		a.admin = scopegatev1.NewAdminClient(conn)
	}
	a.token = mint(t, e.signer, "ops", "ops-cli", DefaultAdminScope, time.Now(), time.Hour)
	return a
}

// as returns ctx carrying "authorization: Bearer tok".
func as(t *testing.T, tok string) context.Context {
	return metadata.AppendToOutgoingContext(ctxT(t), "authorization", "Bearer "+tok)
}

func wantCode(t *testing.T, err error, want codes.Code, msg string) {
	t.Helper()
	st := status.Convert(err)
	if st.Code() != want || !strings.Contains(st.Message(), msg) {
		t.Fatalf("status = %s %q; want %s containing %q", st.Code(), st.Message(), want, msg)
	}
}

func TestAdminAuthentication(t *testing.T) {
	a := startAdminE2E(t, nil)
	now := time.Now()
	cases := map[string]struct {
		md   []string
		want codes.Code
		msg  string
	}{
		"admin token":          {md: []string{"authorization", "Bearer " + a.token}, want: codes.OK},
		"no credentials":       {want: codes.Unauthenticated, msg: "bearer token carrying the scope scopegate:admin"},
		"token without scope":  {md: []string{"authorization", "Bearer " + mint(t, a.signer, "ops", "ops-cli", "items:read", now, time.Hour)}, want: codes.PermissionDenied, msg: "insufficient_scope"},
		"expired admin token":  {md: []string{"authorization", "Bearer " + mint(t, a.signer, "ops", "ops-cli", DefaultAdminScope, now.Add(-3*time.Hour), time.Hour)}, want: codes.Unauthenticated, msg: "token_expired"},
		"forged admin token":   {md: []string{"authorization", "Bearer " + mint(t, a.other, "ops", "ops-cli", DefaultAdminScope, now, time.Hour)}, want: codes.Unauthenticated, msg: "token_invalid"},
		"not a bearer header":  {md: []string{"authorization", "Basic b3BzOnB3"}, want: codes.Unauthenticated, msg: "token_missing"},
		"two headers":          {md: []string{"authorization", "Bearer " + a.token, "authorization", "Bearer " + a.token}, want: codes.Unauthenticated, msg: "more than one"},
		"garbage bearer token": {md: []string{"authorization", "Bearer x"}, want: codes.Unauthenticated, msg: "token_invalid"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			ctx := metadata.AppendToOutgoingContext(ctxT(t), tc.md...)
			_, err := a.admin.GetPolicyVersion(ctx, &scopegatev1.GetPolicyVersionRequest{})
			if tc.want == codes.OK {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			wantCode(t, err, tc.want, tc.msg)
		})
	}
	// Reflection is behind the same door.
	t.Run("reflection needs credentials", func(t *testing.T) {
		conn, _ := grpc.NewClient(a.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		defer conn.Close()
		stream, err := grpcReflection(ctxT(t), conn)
		if err == nil {
			_, err = stream()
		}
		wantCode(t, err, codes.Unauthenticated, "")
		stream, err = grpcReflection(as(t, a.token), conn)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := stream()
		if err != nil || !strings.Contains(fmt.Sprint(resp.GetListServicesResponse()), AdminService) {
			t.Errorf("reflection with an admin token: %v, %v", resp, err)
		}
	})
}

func TestAdminRevokeTakesEffectAtOnce(t *testing.T) {
	a := startAdminE2E(t, nil)
	user := mint(t, a.signer, "alice", "web-app", "items:read", time.Now(), time.Hour)
	read := e2eCase{method: "GET", path: "/api/items/1", authz: "Bearer " + user}
	if v := a.viaExtAuthz(t, read); !v.allow {
		t.Fatalf("before revoke: %s", v.code)
	}
	resp, err := a.admin.Revoke(as(t, a.token), &scopegatev1.RevokeRequest{
		Target: &scopegatev1.RevokeRequest_ClientId{ClientId: "web-app"}, Reason: "INC-42 token leak",
	})
	if err != nil {
		t.Fatal(err)
	}
	rev := resp.GetRevocation()
	if rev.GetId() == "" || rev.GetKind() != "client" || rev.GetClientId() != "web-app" || rev.GetReason() != "INC-42 token leak" || rev.GetCreatedAt() == nil {
		t.Errorf("Revoke returned %v", rev)
	}
	if want := "token:sub=ops client=ops-cli iss=" + testIssuer; rev.GetCreatedBy() != want {
		t.Errorf("created_by = %q; want %q", rev.GetCreatedBy(), want)
	}
	// In force on this replica when Revoke returns: no waiting.
	v := a.viaExtAuthz(t, read)
	if v.allow || v.code != "revoked" || v.http != 401 {
		t.Fatalf("after revoke: allow=%v code=%s http=%d; want revoked 401", v.allow, v.code, v.http)
	}
	if v := a.viaAuthorizer(t, read); v.allow || v.code != "revoked" {
		t.Fatalf("Authorizer after revoke: %s", v.code)
	}
	other := mint(t, a.signer, "alice", "other-app", "items:read", time.Now(), time.Hour)
	if v := a.viaExtAuthz(t, e2eCase{method: "GET", path: "/api/items/1", authz: "Bearer " + other}); !v.allow {
		t.Errorf("another client's token: %s", v.code)
	}

	list, err := a.admin.ListRevocations(as(t, a.token), &scopegatev1.ListRevocationsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.GetRevocations()) != 1 || list.GetRevocations()[0].GetId() != rev.GetId() || list.GetSyncedAt() == nil {
		t.Errorf("ListRevocations = %v", list)
	}

	if _, err := a.admin.Unrevoke(as(t, a.token), &scopegatev1.UnrevokeRequest{Id: rev.GetId()}); err != nil {
		t.Fatal(err)
	}
	if v := a.viaExtAuthz(t, read); !v.allow {
		t.Errorf("after unrevoke: %s", v.code)
	}
	_, err = a.admin.Unrevoke(as(t, a.token), &scopegatev1.UnrevokeRequest{Id: rev.GetId()})
	wantCode(t, err, codes.NotFound, "not found")
}

func TestAdminRevokeNarrowed(t *testing.T) {
	a := startAdminE2E(t, nil)
	tok := mint(t, a.signer, "alice", "web-app", "items:read items:write", time.Now(), time.Hour)
	_, err := a.admin.Revoke(as(t, a.token), &scopegatev1.RevokeRequest{
		Target: &scopegatev1.RevokeRequest_Subject{Subject: "alice"}, Scope: "items:write", Reason: "r",
	})
	if err != nil {
		t.Fatal(err)
	}
	if v := a.viaExtAuthz(t, e2eCase{method: "GET", path: "/api/items/1", authz: "Bearer " + tok}); !v.allow {
		t.Errorf("the scope left to the token: %s", v.code)
	}
	if v := a.viaExtAuthz(t, e2eCase{method: "POST", path: "/api/items/1", authz: "Bearer " + tok}); v.allow || v.code != "revoked" {
		t.Errorf("the revoked scope: allow=%v %s", v.allow, v.code)
	}
}

func TestAdminRevokeValidation(t *testing.T) {
	a := startAdminE2E(t, nil)
	past := timestamppb.New(time.Now().Add(-time.Minute))
	cases := map[string]struct {
		req  *scopegatev1.RevokeRequest
		want codes.Code
		msg  string
	}{
		"no target":                         {req: &scopegatev1.RevokeRequest{Reason: "r"}, want: codes.InvalidArgument, msg: "no target"},
		"no reason":                         {req: &scopegatev1.RevokeRequest{Target: &scopegatev1.RevokeRequest_Subject{Subject: "alice"}}, want: codes.InvalidArgument, msg: "reason is required"},
		"until in the past":                 {req: &scopegatev1.RevokeRequest{Target: &scopegatev1.RevokeRequest_Subject{Subject: "alice"}, Reason: "r", Until: past}, want: codes.InvalidArgument, msg: "not in the future"},
		"token without jti":                 {req: &scopegatev1.RevokeRequest{Target: &scopegatev1.RevokeRequest_Token{Token: &scopegatev1.TokenTarget{Iss: testIssuer}}, Reason: "r"}, want: codes.InvalidArgument, msg: "jti"},
		"token without iss":                 {req: &scopegatev1.RevokeRequest{Target: &scopegatev1.RevokeRequest_Token{Token: &scopegatev1.TokenTarget{Jti: "j"}}, Reason: "r"}, want: codes.InvalidArgument, msg: "issuer"},
		"issuer with token":                 {req: &scopegatev1.RevokeRequest{Target: &scopegatev1.RevokeRequest_Token{Token: &scopegatev1.TokenTarget{Iss: testIssuer, Jti: "j"}}, Issuer: "https://x/", Reason: "r"}, want: codes.InvalidArgument, msg: "not used with a token"},
		"scope and segment":                 {req: &scopegatev1.RevokeRequest{Target: &scopegatev1.RevokeRequest_ClientId{ClientId: "c"}, Scope: "a", Segment: "b", Reason: "r"}, want: codes.InvalidArgument, msg: "not both"},
		"empty subject":                     {req: &scopegatev1.RevokeRequest{Target: &scopegatev1.RevokeRequest_Subject{}, Reason: "r"}, want: codes.InvalidArgument, msg: "subject is empty"},
		"path prefix with a trailing slash": {req: &scopegatev1.RevokeRequest{Target: &scopegatev1.RevokeRequest_ClientId{ClientId: "c"}, Segment: "/v1/", Reason: "r"}, want: codes.OK},
		"path prefix that never matches":    {req: &scopegatev1.RevokeRequest{Target: &scopegatev1.RevokeRequest_ClientId{ClientId: "c"}, Segment: "/api/a%2Fb", Reason: "r"}, want: codes.InvalidArgument, msg: "encoded slash"},
		"path prefix with a raw hash":       {req: &scopegatev1.RevokeRequest{Target: &scopegatev1.RevokeRequest_ClientId{ClientId: "c"}, Segment: "/api#x", Reason: "r"}, want: codes.InvalidArgument, msg: "'#'"},
		"issuer without its slash":          {req: &scopegatev1.RevokeRequest{Target: &scopegatev1.RevokeRequest_Subject{Subject: "alice"}, Issuer: "https://issuer.test", Reason: "r"}, want: codes.InvalidArgument, msg: `did you mean "https://issuer.test/"`},
		"token of an unknown issuer":        {req: &scopegatev1.RevokeRequest{Target: &scopegatev1.RevokeRequest_Token{Token: &scopegatev1.TokenTarget{Iss: "https://ISSUER.test/", Jti: "j"}}, Reason: "r"}, want: codes.InvalidArgument, msg: `did you mean "https://issuer.test/"`},
		"scope typo":                        {req: &scopegatev1.RevokeRequest{Target: &scopegatev1.RevokeRequest_ClientId{ClientId: "c"}, Scope: "item:read", Reason: "r"}, want: codes.InvalidArgument, msg: `did you mean "items:read"`},
		"scope nobody requires":             {req: &scopegatev1.RevokeRequest{Target: &scopegatev1.RevokeRequest_ClientId{ClientId: "c"}, Scope: "zzz", Reason: "r"}, want: codes.InvalidArgument, msg: "not a scope of the policy"},
		"the admin scope":                   {req: &scopegatev1.RevokeRequest{Target: &scopegatev1.RevokeRequest_ClientId{ClientId: "c"}, Scope: "scopegate:admin", Reason: "r"}, want: codes.OK},
		"segment without a catalog":         {req: &scopegatev1.RevokeRequest{Target: &scopegatev1.RevokeRequest_ClientId{ClientId: "c"}, Segment: "billing", Reason: "r"}, want: codes.InvalidArgument, msg: "declares no segments"},
		"token with until":                  {req: &scopegatev1.RevokeRequest{Target: &scopegatev1.RevokeRequest_Token{Token: &scopegatev1.TokenTarget{Iss: testIssuer, Jti: "j"}}, Reason: "r", Until: timestamppb.New(time.Now().Add(time.Hour))}, want: codes.OK},
		"unrevoke without id":               {want: codes.InvalidArgument, msg: "id is empty"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			var err error
			if tc.req == nil {
				_, err = a.admin.Unrevoke(as(t, a.token), &scopegatev1.UnrevokeRequest{})
			} else {
				_, err = a.admin.Revoke(as(t, a.token), tc.req)
			}
			if tc.want == codes.OK {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			wantCode(t, err, tc.want, tc.msg)
		})
	}
}

// A path prefix is stored, listed and enforced in the canonical path form,
// whatever spelling the operator gave.
func TestAdminRevokePathPrefixCanonical(t *testing.T) {
	a := startAdminE2E(t, nil)
	resp, err := a.admin.Revoke(as(t, a.token), &scopegatev1.RevokeRequest{
		Target: &scopegatev1.RevokeRequest_Subject{Subject: "alice"}, Segment: "/%61pi//items/", Reason: "INC-1"})
	if err != nil {
		t.Fatal(err)
	}
	if got := resp.GetRevocation().GetSegment(); got != "/api/items" {
		t.Errorf("stored segment %q, want /api/items", got)
	}
	tok := mint(t, a.signer, "alice", "app", "items:read items:write", time.Now(), time.Hour)
	for _, path := range []string{"/api/items/1", "/%61pi/items/1", "/api/%69tems/1"} {
		if v := a.viaExtAuthz(t, e2eCase{method: "GET", path: path, authz: "Bearer " + tok}); v.allow || v.code != "revoked" {
			t.Errorf("GET %s: allow=%v %s, want revoked", path, v.allow, v.code)
		}
	}
}

func TestAdminPolicyVersionAndReload(t *testing.T) {
	a := startAdminE2E(t, nil)
	v1, err := a.admin.GetPolicyVersion(as(t, a.token), &scopegatev1.GetPolicyVersionRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(v1.GetVersion(), "e2e") || v1.GetSource() == "" || v1.GetLoadedAt() == nil {
		t.Errorf("GetPolicyVersion = %v", v1)
	}
	policy := filepath.Join(a.dir, "policy.yaml")
	copyFile(t, "testdata/policy-broken.yaml", policy)
	_, err = a.admin.ReloadPolicy(as(t, a.token), &scopegatev1.ReloadPolicyRequest{})
	wantCode(t, err, codes.InvalidArgument, "policy has")
	if v, _ := a.admin.GetPolicyVersion(as(t, a.token), &scopegatev1.GetPolicyVersionRequest{}); v.GetVersion() != v1.GetVersion() {
		t.Errorf("after a failed reload the version is %q; want the old %q", v.GetVersion(), v1.GetVersion())
	}
	copyFile(t, "testdata/policy-v2.yaml", policy)
	r, err := a.admin.ReloadPolicy(as(t, a.token), &scopegatev1.ReloadPolicyRequest{})
	if err != nil {
		t.Fatal(err)
	}
	v2, _ := a.admin.GetPolicyVersion(as(t, a.token), &scopegatev1.GetPolicyVersionRequest{})
	if r.GetVersion() == v1.GetVersion() || v2.GetVersion() != r.GetVersion() || !v2.GetLoadedAt().AsTime().After(v1.GetLoadedAt().AsTime()) {
		t.Errorf("after reload: response %v, version %v (was %v)", r, v2, v1)
	}
}

type fakeUsage struct{}

func (fakeUsage) UsageReport(_ context.Context, req *scopegatev1.UsageReportRequest) (*scopegatev1.UsageReportResponse, error) {
	return &scopegatev1.UsageReportResponse{Clients: []*scopegatev1.ClientUsage{{ClientId: "for " + req.GetClientId()}}}, nil
}

func TestAdminUsageReport(t *testing.T) {
	off := startAdminE2E(t, nil)
	_, err := off.admin.UsageReport(as(t, off.token), &scopegatev1.UsageReportRequest{})
	wantCode(t, err, codes.Unimplemented, "usage reporting is off")

	on := startAdminE2E(t, func(c *Config) { c.Admin.UsageReporter = fakeUsage{} })
	resp, err := on.admin.UsageReport(as(t, on.token), &scopegatev1.UsageReportRequest{ClientId: "web-app"})
	if err != nil || len(resp.GetClients()) != 1 || resp.GetClients()[0].GetClientId() != "for web-app" {
		t.Fatalf("UsageReport = %v, %v; want the reporter's answer", resp, err)
	}
}

func TestAdminCallsAreAudited(t *testing.T) {
	rec := &recordingAuditor{}
	a := startAdminE2E(t, func(c *Config) { c.Admin.Auditor = rec })
	if _, err := a.admin.Revoke(as(t, a.token), &scopegatev1.RevokeRequest{Target: &scopegatev1.RevokeRequest_Subject{Subject: "mallory"}, Reason: "INC-9", Scope: "items:write"}); err != nil {
		t.Fatal(err)
	}
	ev := rec.last()
	if ev.Method != "Revoke" || ev.Status != "" || ev.Principal != "token:sub=ops client=ops-cli iss="+testIssuer || !strings.HasPrefix(ev.PolicyVersion, "e2e") || ev.Peer == "" {
		t.Errorf("audit of Revoke = %+v", ev)
	}
	for k, want := range map[string]string{"kind": "subject", "target": "mallory", "reason": "INC-9", "scope": "items:write"} {
		if ev.Details[k] != want {
			t.Errorf("audit detail %s = %q; want %q (details %v)", k, ev.Details[k], want, ev.Details)
		}
	}
	if ev.Details["id"] == "" {
		t.Error("audit lacks the new revocation's id")
	}
	// Refused calls are audited too, and no record holds the token.
	_, _ = a.admin.ListRevocations(ctxT(t), &scopegatev1.ListRevocationsRequest{})
	ev = rec.last()
	if ev.Method != "ListRevocations" || ev.Status != "unauthenticated" || ev.Principal != "" {
		t.Errorf("audit of a refused call = %+v", ev)
	}
	_, _ = a.admin.Unrevoke(as(t, a.token), &scopegatev1.UnrevokeRequest{Id: "nope"})
	if ev = rec.last(); ev.Status != "not_found" || ev.Details["id"] != "nope" {
		t.Errorf("audit of a failed Unrevoke = %+v", ev)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	for _, ev := range rec.events {
		if strings.Contains(fmt.Sprint(ev), a.token) {
			t.Errorf("an audit record holds the admin token: %+v", ev)
		}
	}
}

// testPKI is a CA and certificates it issued, written as PEM files.
type testPKI struct {
	dir    string
	ca     *x509.Certificate
	caKey  *ecdsa.PrivateKey
	caFile string
	serial int64
}

func newTestPKI(t *testing.T, name string) *testPKI {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(der)
	p := &testPKI{dir: t.TempDir(), ca: ca, caKey: key, serial: 1}
	p.caFile = p.write(t, "ca.pem", "CERTIFICATE", der)
	return p
}

func (p *testPKI) write(t *testing.T, name, typ string, der []byte) string {
	t.Helper()
	path := filepath.Join(p.dir, name)
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// clientTLS trusts the CA and presents certFile (none when "").
func (p *testPKI) clientTLS(t *testing.T, certFile, keyFile string) *tls.Config {
	t.Helper()
	roots := x509.NewCertPool()
	roots.AddCert(p.ca)
	conf := &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	if certFile != "" {
		c, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			t.Fatal(err)
		}
		conf.Certificates = []tls.Certificate{c}
	}
	return conf
}

// issue returns the certificate and key files of a new leaf.
func (p *testPKI) issue(t *testing.T, cn string, server bool) (certFile, keyFile string) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p.serial++
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(p.serial), Subject: pkix.Name{CommonName: cn, Organization: []string{"Example"}},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature,
	}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
	} else {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &key.PublicKey, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalPKCS8PrivateKey(key)
	return p.write(t, cn+".pem", "CERTIFICATE", der), p.write(t, cn+".key", "PRIVATE KEY", kder)
}

func TestAdminMutualTLS(t *testing.T) {
	pki := newTestPKI(t, "test-ca")
	srvCert, srvKey := pki.issue(t, "scopegate", true)
	cliCert, cliKey := pki.issue(t, "ops-robot", false)
	rogue := newTestPKI(t, "rogue-ca")
	rogueCert, rogueKey := rogue.issue(t, "intruder", false)
	rec := &recordingAuditor{}
	a := startAdminE2E(t, func(c *Config) {
		c.Admin.TLSCertFile, c.Admin.TLSKeyFile, c.Admin.ClientCAFile = srvCert, srvKey, pki.caFile
		c.Admin.Auditor = rec
	})
	client := func(certFile, keyFile string) scopegatev1.AdminClient {
		conf := pki.clientTLS(t, certFile, keyFile)
		conn, err := grpc.NewClient(a.addr, grpc.WithTransportCredentials(credentials.NewTLS(conf)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return scopegatev1.NewAdminClient(conn)
	}
	t.Run("client certificate alone", func(t *testing.T) {
		if _, err := client(cliCert, cliKey).GetPolicyVersion(ctxT(t), &scopegatev1.GetPolicyVersionRequest{}); err != nil {
			t.Fatal(err)
		}
		if p := rec.last().Principal; p != "cert:CN=ops-robot,O=Example" {
			t.Errorf("principal = %q", p)
		}
	})
	t.Run("bearer token without a certificate", func(t *testing.T) {
		if _, err := client("", "").GetPolicyVersion(as(t, a.token), &scopegatev1.GetPolicyVersionRequest{}); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("neither", func(t *testing.T) {
		_, err := client("", "").GetPolicyVersion(ctxT(t), &scopegatev1.GetPolicyVersionRequest{})
		wantCode(t, err, codes.Unauthenticated, "a client certificate or a bearer token")
	})
	t.Run("certificate with a bad token", func(t *testing.T) {
		_, err := client(cliCert, cliKey).GetPolicyVersion(as(t, "x"), &scopegatev1.GetPolicyVersionRequest{})
		wantCode(t, err, codes.Unauthenticated, "token_invalid")
	})
	t.Run("certificate of another CA", func(t *testing.T) {
		_, err := client(rogueCert, rogueKey).GetPolicyVersion(ctxT(t), &scopegatev1.GetPolicyVersionRequest{})
		if err == nil {
			t.Fatal("a certificate from an untrusted CA was accepted")
		}
	})
}

func TestAdminConfigValidate(t *testing.T) {
	cases := map[string]struct {
		admin AdminConfig
		rev   RevocationConfig
		want  string
	}{
		"off":                   {},
		"plain":                 {admin: AdminConfig{Addr: "127.0.0.1:9193"}},
		"bad address":           {admin: AdminConfig{Addr: "9193"}, want: "Admin.Addr"},
		"TLS without address":   {admin: AdminConfig{TLSCertFile: "c", TLSKeyFile: "k"}, want: "Admin.Addr is empty"},
		"cert without key":      {admin: AdminConfig{Addr: "127.0.0.1:1", TLSCertFile: "c"}, want: "go together"},
		"client CA without TLS": {admin: AdminConfig{Addr: "127.0.0.1:1", ClientCAFile: "ca"}, want: "needs Admin.TLSCertFile"},
		"scope with a space":    {admin: AdminConfig{Addr: "127.0.0.1:1", Scope: "a b"}, want: "one scope token"},
		"negative resync":       {rev: RevocationConfig{Resync: -1}, want: "Revocation.Resync"},
		"stale before resync":   {rev: RevocationConfig{Resync: time.Minute, StaleAfter: time.Second}, want: "shorter than"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			c := Config{PolicyPath: "p.yaml", Admin: tc.admin, Revocation: tc.rev}
			err := c.Validate()
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate = %v; want it to mention %q", err, tc.want)
			}
		})
	}
}

// downStore is a revocation store that never answers.
type downStore struct{ store.MemoryRevocations }

func (*downStore) ListRevocations(context.Context) ([]decision.Revocation, error) {
	return nil, errors.New("connection refused")
}

// Staleness reaches decisions: a server whose revocation store has never
// answered denies the high-risk route and keeps allowing the other.
func TestRevocationStaleServer(t *testing.T) {
	e := startE2E(t, func(c *Config) {
		copyFile(t, "testdata/policy-revocation.yaml", c.PolicyPath)
		c.Revocation.Store = &downStore{}
	})
	tok := mint(t, e.signer, "alice", "web-app", "items:read items:write", time.Now(), time.Hour)
	if v := e.viaExtAuthz(t, e2eCase{method: "GET", path: "/api/items/1", authz: "Bearer " + tok}); !v.allow {
		t.Errorf("low-risk route: %s", v.code)
	}
	if v := e.viaExtAuthz(t, e2eCase{method: "POST", path: "/api/items/1", authz: "Bearer " + tok}); v.allow || v.code != "revocation_stale" {
		t.Errorf("high-risk route: allow=%v %s; want revocation_stale", v.allow, v.code)
	}
	if age := e.srv.RevocationSyncer().SyncAge(); age <= 0 {
		t.Errorf("SyncAge = %s; want it growing", age)
	}
}

// grpcReflection opens a reflection stream and returns its first answer.
func grpcReflection(ctx context.Context, conn *grpc.ClientConn) (func() (*reflectionpb.ServerReflectionResponse, error), error) {
	stream, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
	if err != nil {
		return nil, err
	}
	// A refused stream may already be closed: Send then fails with io.EOF
	// and Recv has the status.
	_ = stream.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}})
	return stream.Recv, nil
}
