package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"encoding/xml"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/scopegate/scopegate/decision/decisiontest"
	"github.com/scopegate/scopegate/decision/policytest"
	"github.com/scopegate/scopegate/server/servertest"
)

// syntheticPolicy is the deployed policy: a production issuer whose key
// the tests never hold, and a dedicated test issuer with its own audience
// (the recipe of docs/governance-tools.md). WRITE_SCOPE is what policy B
// changes.
const syntheticPolicy = `issuers:
  - issuer: https://id.example.com/
    audiences: [orders-api]
    jwks_file: prod-jwks.json
    algorithms: [ES256]
  - issuer: https://synthetic.example.com/
    audiences: [orders-api-synthetic]
    jwks_file: synthetic-jwks.json
    algorithms: [ES256]
routes:
  - name: read-order
    match: {methods: [GET], path: "/orders/{id}"}
    require: {all_of: [orders:read]}
  - name: write-order
    match: {methods: [POST], path: "/orders/{id}"}
    require: {all_of: [WRITE_SCOPE]}
  - name: office-report
    match: {methods: [GET], path: "/reports/{id}"}
    require: {all_of: [orders:read]}
    when:
      source_ip: {allow: [10.0.0.0/8]}
  - name: cutover
    match: {methods: [GET], path: "/cutover/{id}"}
    require: {all_of: [orders:read]}
    when: {time: {within: [cutover]}}
windows:
  cutover: {dates: {from: "2026-11-23T09:00:00Z", to: "2026-11-23T11:00:00Z"}}
default: deny
`

// syntheticTests are the tests of a policy whose write-order route needs
// WRITE_SCOPE and not OTHER_SCOPE.
const syntheticTests = `tests:
  - name: reads with orders:read
    request: {method: GET, path: /orders/1}
    token: {scope: orders:read, sub: synthetic-probe, client_id: synthetic}
    expect: {allow: true, route: read-order, scopes_used: [orders:read]}
  - name: writes with WRITE_SCOPE
    request: {method: POST, path: /orders/1}
    token: {scope: WRITE_SCOPE, sub: synthetic-probe, client_id: synthetic}
    expect: {allow: true, route: write-order}
  - name: writes with OTHER_SCOPE are refused
    request: {method: POST, path: /orders/1}
    token: {scope: OTHER_SCOPE, sub: synthetic-probe, client_id: synthetic}
    expect: {reason: insufficient_scope, status: 403}
  - name: no token
    request: {method: GET, path: /orders/1}
    token: none
    expect: {reason: token_missing, status: 401}
  - name: a supplied token that does not verify
    request: {method: GET, path: /orders/1, headers: {authorization: "Bearer not.a.token"}}
    expect: {reason: token_invalid}
  - name: reports from the office network
    request: {method: GET, path: /reports/1, source_ip: 10.1.2.3}
    token: {scope: orders:read, sub: synthetic-probe, client_id: synthetic}
    expect: {allow: true, route: office-report}
  - name: at a fixed time
    now: 2026-11-23T10:00:00Z
    request: {method: GET, path: /cutover/1}
    token: {scope: orders:read, sub: synthetic-probe, client_id: synthetic}
    expect: {allow: true}
`

// deployment is a scopegate serving a policy on loopback, with the
// private key of its test issuer.
type deployment struct {
	grpcAddr, httpURL string
	keyFile, policy   string
}

// writePolicy writes the policy (write-order needing writeScope), its
// tests and both key sets into dir, and returns the policy's path.
func writePolicy(t *testing.T, dir, writeScope string, synthetic, prod *decisiontest.Signer) string {
	t.Helper()
	other := "orders:write"
	if writeScope == other {
		other = "orders:admin"
	}
	files := map[string]string{
		"policy.yaml":         strings.ReplaceAll(syntheticPolicy, "WRITE_SCOPE", writeScope),
		"policy_test.yaml":    strings.NewReplacer("WRITE_SCOPE", writeScope, "OTHER_SCOPE", other).Replace(syntheticTests),
		"prod-jwks.json":      string(decisiontest.JWKS(prod)),
		"synthetic-jwks.json": string(decisiontest.JWKS(synthetic)),
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return filepath.Join(dir, "policy.yaml")
}

// startDeployment serves the policy whose write-order route needs
// orders:write over gRPC and HTTP on loopback.
func startDeployment(t *testing.T) *deployment {
	t.Helper()
	synthetic, err := decisiontest.NewECSigner("synthetic-1")
	if err != nil {
		t.Fatal(err)
	}
	prod, err := decisiontest.NewECSigner("prod-1")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	policy := writePolicy(t, dir, "orders:write", synthetic, prod)
	der, err := x509.MarshalPKCS8PrivateKey(synthetic.Key)
	if err != nil {
		t.Fatal(err)
	}
	d := &deployment{keyFile: filepath.Join(dir, "synthetic.key.pem"), policy: policy}
	if err := os.WriteFile(d.keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	addrs := servertest.Serve(t, policy, nil)
	d.grpcAddr = addrs.GRPC
	d.httpURL = "http://" + addrs.HTTP + "/auth"
	return d
}

// localCopy writes the policy under test (write-order needing
// writeScope) with its tests, signed for by throwaway keys: the file a
// team keeps in its repository.
func localCopy(t *testing.T, writeScope string) string {
	t.Helper()
	a, err := decisiontest.NewECSigner("a")
	if err != nil {
		t.Fatal(err)
	}
	return writePolicy(t, t.TempDir(), writeScope, a, a)
}

func (d *deployment) args(policy, target string, extra ...string) []string {
	return append([]string{"test", policy, "--target", target,
		"--target-key", d.keyFile, "--target-kid", "synthetic-1",
		"--target-iss", "https://synthetic.example.com/", "--target-aud", "orders-api-synthetic"}, extra...)
}

// TestTestTargetEndToEnd: the policy's own cases sent to a running
// deployment over each transport pass when the deployment runs that
// policy, and fail, naming the differing cases, when it runs another.
func TestTestTargetEndToEnd(t *testing.T) {
	d := startDeployment(t)
	same, changed := localCopy(t, "orders:write"), localCopy(t, "orders:admin")
	for _, tc := range []struct {
		name, target, api string
		// sent and skipped are the case counts of the same policy.
		sent, skipped int
	}{
		{"ext_authz", "grpc://" + d.grpcAddr, "envoy", 6, 1},
		{"check rpc", d.grpcAddr, "scopegate", 6, 1},
		// Forward-auth cannot carry the source address.
		{"forward-auth", d.httpURL, "", 5, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var api []string
			if tc.api != "" {
				api = []string{"--target-api", tc.api}
			}
			code, out, errs := runCLI(t, "", d.args(same, tc.target, append(api, "-v")...)...)
			want := strings.Join([]string{strconv.Itoa(tc.sent), " passed, 0 failed, ", strconv.Itoa(tc.skipped), " skipped\n"}, "")
			if code != exitOK || !strings.HasSuffix(out, want) {
				t.Fatalf("same policy: exit %d, want 0 and %q\n%s%s", code, want, out, errs)
			}
			if !strings.Contains(out, "SKIP at a fixed time: the case fixes now") {
				t.Errorf("the skipped case is not listed with its reason:\n%s", out)
			}

			code, out, errs = runCLI(t, "", d.args(changed, tc.target, api...)...)
			if code != exitError {
				t.Fatalf("changed policy: exit %d, want 1\n%s%s", code, out, errs)
			}
			for _, name := range []string{"FAIL writes with orders:admin", "FAIL writes with orders:write are refused"} {
				if !strings.Contains(out, name) {
					t.Errorf("the differing case %q is not named:\n%s", name, out)
				}
			}
			if want := strconv.Itoa(tc.sent-2) + " passed, 2 failed, " + strconv.Itoa(tc.skipped) + " skipped\n"; !strings.HasSuffix(out, want) {
				t.Errorf("summary: want %q\n%s", want, out)
			}
		})
	}

	t.Run("junit", func(t *testing.T) {
		code, out, errs := runCLI(t, "", d.args(changed, d.grpcAddr, "--format", "junit")...)
		if code != exitError {
			t.Fatalf("exit %d\n%s", code, errs)
		}
		var got junitSuites
		if err := xml.Unmarshal([]byte(out), &got); err != nil {
			t.Fatalf("not XML: %v\n%s", err, out)
		}
		if got.Tests != 7 || got.Failures != 2 || got.Errors != 0 || got.Skipped != 1 {
			t.Fatalf("totals = tests %d failures %d errors %d skipped %d, want 7 2 0 1", got.Tests, got.Failures, got.Errors, got.Skipped)
		}
		failed, skipped := map[string]bool{}, map[string]bool{}
		for _, c := range got.Suites[0].Cases {
			if c.Failure != nil {
				failed[c.Name] = true
			}
			if c.Skipped != nil {
				skipped[c.Name] = strings.Contains(c.Skipped.Message, "fixes now")
			}
		}
		if !failed["writes with orders:admin"] || !failed["writes with orders:write are refused"] || len(failed) != 2 {
			t.Errorf("failures %v", failed)
		}
		if !skipped["at a fixed time"] || len(skipped) != 1 {
			t.Errorf("skipped %v", skipped)
		}
	})

	t.Run("without the test key only tokenless cases run", func(t *testing.T) {
		code, out, errs := runCLI(t, "", "test", same, "--target", d.grpcAddr)
		if code != exitOK || !strings.HasSuffix(out, "2 passed, 0 failed, 5 skipped\n") {
			t.Fatalf("exit %d\n%s%s", code, out, errs)
		}
	})

	t.Run("a production default issuer fails, not passes", func(t *testing.T) {
		// Without --target-iss the cases' tokens claim the production
		// issuer, whose key the test key is not: the deployment refuses
		// them, and the cases that expect an allow fail.
		code, out, _ := runCLI(t, "", "test", same, "--target", d.grpcAddr, "--target-key", d.keyFile, "--target-kid", "synthetic-1")
		if code != exitError || !strings.Contains(out, "FAIL reads with orders:read") {
			t.Fatalf("exit %d\n%s", code, out)
		}
	})

	t.Run("a token supplied from the environment", func(t *testing.T) {
		signer, err := decisiontest.LoadSignerPEM(d.keyFile, "synthetic-1", "")
		if err != nil {
			t.Fatal(err)
		}
		tok, err := signer.Mint(decisiontest.StandardClaims("https://synthetic.example.com/", "orders-api-synthetic", "ci", "synthetic", "orders:read", time.Minute, time.Now()), map[string]any{"typ": "at+jwt"})
		if err != nil {
			t.Fatal(err)
		}
		tests := filepath.Join(t.TempDir(), "supplied_test.yaml")
		if err := os.WriteFile(tests, []byte(`tests:
  - name: a token from CI
    request: {method: GET, path: /orders/1, headers: {authorization: "Bearer ${SCOPEGATE_TEST_TOKEN}"}}
    expect: {allow: true, route: read-order}
`), 0o600); err != nil {
			t.Fatal(err)
		}
		var out, errb bytes.Buffer
		c := &cli{stdout: &out, stderr: &errb, lookupEnv: func(n string) (string, bool) {
			if n == "SCOPEGATE_TEST_TOKEN" {
				return tok, true
			}
			return "", false
		}}
		code := c.run(context.Background(), []string{"test", same, tests, "--target", d.grpcAddr})
		if code != exitOK || !strings.HasSuffix(out.String(), "1 passed, 0 failed, 0 skipped\n") {
			t.Fatalf("exit %d\n%s%s", code, out.String(), errb.String())
		}
	})

	t.Run("unreachable deployment", func(t *testing.T) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		l.Close()
		code, out, _ := runCLI(t, "", d.args(same, "grpc://"+addr, "--target-timeout", "2s")...)
		if code != exitError || !strings.HasSuffix(out, "0 passed, 6 failed, 1 skipped\n") || !strings.Contains(out, "error:   ext_authz Check:") {
			t.Fatalf("exit %d\n%s", code, out)
		}
	})
}

// TestTestTargetEvery: --every runs rounds until stopped and serves the
// last round's result as metrics.
func TestTestTargetEvery(t *testing.T) {
	d := startDeployment(t)
	changed := localCopy(t, "orders:admin")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var metricsAddr string
	rounds := 0
	var scraped map[string]string
	k := &testCmd{policy: changed, format: "text", target: targetFlags{
		addr: "grpc://" + d.grpcAddr, key: d.keyFile, kid: "synthetic-1",
		iss: "https://synthetic.example.com/", aud: "orders-api-synthetic",
		timeout: 5 * time.Second, every: time.Second, metricsAddr: "127.0.0.1:0",
		listeningOnMetrics: func(addr string) { metricsAddr = addr },
		ranRound: func(rep *policytest.Report) {
			rounds++
			if rep == nil || rep.Failed != 2 {
				t.Errorf("round %d: report %+v", rounds, rep)
			}
			if rounds == 2 {
				scraped = scrapeText(t, "http://"+metricsAddr+"/metrics")
				cancel()
			}
		},
	}}
	var out, errb bytes.Buffer
	code := k.run(ctx, &cli{stdout: &out, stderr: &errb})
	if code != exitError || rounds != 2 {
		t.Fatalf("exit %d after %d rounds\n%s%s", code, rounds, out.String(), errb.String())
	}
	target := `target="grpc://` + d.grpcAddr + `"`
	for series, want := range map[string]string{
		`scopegate_synthetic_cases{api="envoy",result="failed",` + target + `}`:                                   "2",
		`scopegate_synthetic_cases{api="envoy",result="passed",` + target + `}`:                                   "4",
		`scopegate_synthetic_cases{api="envoy",result="skipped",` + target + `}`:                                  "1",
		`scopegate_synthetic_case_failed{api="envoy",` + target + `,test="writes with orders:admin"}`:             "1",
		`scopegate_synthetic_case_failed{api="envoy",` + target + `,test="writes with orders:write are refused"}`: "1",
		`scopegate_synthetic_rounds_total{api="envoy",result="failed",` + target + `}`:                            "2",
		`scopegate_synthetic_interval_seconds{api="envoy",` + target + `}`:                                        "1",
		`scopegate_synthetic_last_success_timestamp_seconds{api="envoy",` + target + `}`:                          "0",
	} {
		if got, ok := scraped[series]; !ok || got != want {
			t.Errorf("%s = %q (present %v), want %s", series, got, ok, want)
		}
	}
	if v := scraped[`scopegate_synthetic_last_run_timestamp_seconds{api="envoy",`+target+`}`]; v == "" || v == "0" {
		t.Errorf("last run timestamp %q", v)
	}
}

// scrapeText fetches a Prometheus text exposition and returns each
// series (name{labels sorted}) with its value.
func scrapeText(t *testing.T, url string) map[string]string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for name, f := range fams {
		for _, m := range f.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+`="`+l.GetValue()+`"`)
			}
			slices.Sort(labels)
			key := name
			if len(labels) > 0 {
				key += "{" + strings.Join(labels, ",") + "}"
			}
			var v float64
			switch {
			case m.Gauge != nil:
				v = m.GetGauge().GetValue()
			case m.Counter != nil:
				v = m.GetCounter().GetValue()
			}
			out[key] = model.SampleValue(v).String()
		}
	}
	return out
}

// TestTestTargetUsage: target flags that cannot work are refused before
// anything is sent.
func TestTestTargetUsage(t *testing.T) {
	policy := localCopy(t, "orders:write")
	for name, tc := range map[string]struct {
		args []string
		want string
	}{
		"key without target":    {[]string{"--target-key", "k.pem"}, "--target-key needs --target"},
		"every without target":  {[]string{"--every", "5m"}, "--every needs --target"},
		"watch":                 {[]string{"--target", "localhost:1", "-w"}, "--watch and --target do not go together"},
		"coverage":              {[]string{"--target", "localhost:1", "--require-full-coverage"}, "--require-full-coverage and --target"},
		"now":                   {[]string{"--target", "localhost:1", "--now", "2026-01-01T00:00:00Z"}, "--now and --target"},
		"tiny interval":         {[]string{"--target", "localhost:1", "--every", "10ms"}, "at least 1s"},
		"metrics without every": {[]string{"--target", "localhost:1", "--metrics-addr", ":0"}, "--metrics-addr needs --every"},
		"half a tls pair":       {[]string{"--target", "localhost:1", "--target-tls-cert", "c.pem"}, "go together"},
		"bad api":               {[]string{"--target", "localhost:1", "--target-api", "rest"}, `--target-api "rest"`},
		"http with grpc api":    {[]string{"--target", "http://localhost:1/", "--target-api", "envoy"}, "reached through forward-auth"},
		"path on grpc":          {[]string{"--target", "grpc://localhost:1/x"}, "without a path"},
		"no port":               {[]string{"--target", "localhost"}, "want host:port"},
		"unknown scheme":        {[]string{"--target", "ftp://localhost:1"}, `unknown scheme "ftp"`},
		"missing key":           {[]string{"--target", "localhost:1", "--target-key", "nope.pem"}, "--target-key nope.pem"},
	} {
		t.Run(name, func(t *testing.T) {
			code, _, errs := runCLI(t, "", append([]string{"test", policy}, tc.args...)...)
			if code != exitUsage || !strings.Contains(errs, tc.want) {
				t.Errorf("exit %d, want 2 and %q in\n%s", code, tc.want, errs)
			}
		})
	}
}

// writePKI writes a CA, a server certificate for 127.0.0.1 and a client
// certificate into dir, and returns the server's TLS configuration
// (requiring a client certificate of the CA) and the files' paths.
func writePKI(t *testing.T, dir string) (*tls.Config, map[string]string) {
	t.Helper()
	files := map[string]string{}
	writePEM := func(name, typ string, der []byte) {
		files[name] = filepath.Join(dir, name)
		if err := os.WriteFile(files[name], pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	writePEM("ca.pem", "CERTIFICATE", caDER)
	issue := func(name string, serial int64, usage x509.ExtKeyUsage) tls.Certificate {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name}, ExtKeyUsage: []x509.ExtKeyUsage{usage},
			IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		kder, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		writePEM(name+".pem", "CERTIFICATE", der)
		writePEM(name+".key.pem", "PRIVATE KEY", kder)
		return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	}
	serverCert := issue("server", 2, x509.ExtKeyUsageServerAuth)
	issue("client", 3, x509.ExtKeyUsageClientAuth)
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return &tls.Config{Certificates: []tls.Certificate{serverCert}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool, MinVersion: tls.VersionTLS12}, files
}

// TestTestTargetMTLS: a gRPC target behind mutual TLS is reached with
// --target-ca and a client certificate, and without one every case fails
// rather than passes.
func TestTestTargetMTLS(t *testing.T) {
	d := startDeployment(t)
	serverTLS, pki := writePKI(t, t.TempDir())
	addrs := servertest.ServeTLS(t, d.policy, serverTLS)
	same := localCopy(t, "orders:write")
	code, out, errs := runCLI(t, "", d.args(same, "grpcs://"+addrs.GRPC,
		"--target-ca", pki["ca.pem"], "--target-tls-cert", pki["client.pem"], "--target-tls-key", pki["client.key.pem"])...)
	if code != exitOK || !strings.HasSuffix(out, "6 passed, 0 failed, 1 skipped\n") {
		t.Fatalf("with a client certificate: exit %d\n%s%s", code, out, errs)
	}
	code, out, _ = runCLI(t, "", d.args(same, "grpcs://"+addrs.GRPC, "--target-ca", pki["ca.pem"], "--target-timeout", "2s")...)
	if code != exitError || !strings.HasSuffix(out, "0 passed, 6 failed, 1 skipped\n") {
		t.Fatalf("without a client certificate: exit %d\n%s", code, out)
	}
	code, _, errs = runCLI(t, "", d.args(same, "grpcs://"+addrs.GRPC, "--target-ca", pki["client.key.pem"])...)
	if code != exitUsage || !strings.Contains(errs, "holds no PEM certificate") {
		t.Fatalf("a CA file without certificates: exit %d\n%s", code, errs)
	}
}

// TestTestTargetFormats: a run in which every case is skipped fails (a
// green check that checked nothing would hide a broken setup); TAP and
// JSON report the skipped cases with their reason.
func TestTestTargetFormats(t *testing.T) {
	d := startDeployment(t)
	code, out, errs := runCLI(t, "", d.args(localCopy(t, "orders:write"), d.grpcAddr, "--run", "fixed time")...)
	if code != exitError || !strings.HasSuffix(out, "0 passed, 0 failed, 1 skipped\n") || !strings.Contains(errs, "no case could be sent") {
		t.Fatalf("exit %d\n%s%s", code, out, errs)
	}
	code, out, _ = runCLI(t, "", d.args(localCopy(t, "orders:write"), d.grpcAddr, "--format", "tap")...)
	if code != exitOK || !strings.Contains(out, "ok 7 - at a fixed time # SKIP the case fixes now") || !strings.HasSuffix(out, "# 6 passed, 0 failed, 1 skipped\n") {
		t.Fatalf("tap: exit %d\n%s", code, out)
	}
	code, out, _ = runCLI(t, "", d.args(localCopy(t, "orders:admin"), d.grpcAddr, "--format", "json")...)
	var rep struct {
		Results                 []struct{ Name, Skip string }
		Passed, Failed, Skipped int
		Target                  bool
		Coverage                any
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out)
	}
	if code != exitError || rep.Passed != 4 || rep.Failed != 2 || rep.Skipped != 1 || !rep.Target || rep.Coverage != nil ||
		rep.Results[6].Name != "at a fixed time" || !strings.Contains(rep.Results[6].Skip, "fixes now") {
		t.Fatalf("json: exit %d, %+v", code, rep)
	}
}
