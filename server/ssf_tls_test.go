package server

import (
	"crypto/x509"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/scopegate/scopegate/decision"
	"github.com/scopegate/scopegate/decision/decisiontest"
	"github.com/scopegate/scopegate/decision/ssf"
	"github.com/scopegate/scopegate/store"
)

// Pushes are authenticated as each transmitter's stream was configured: a
// verified client certificate naming it, a bearer token, or both. Anything
// less is 401 with the RFC 8935 error.
func TestSSFPushMutualTLS(t *testing.T) {
	pki := newTestPKI(t, "test-ca")
	srvCert, srvKey := pki.issue(t, "scopegate", true)
	certIdP, certIdPKey := pki.issue(t, "idp-robot", false)
	bothIdP, bothIdPKey := pki.issue(t, "both-robot", false)
	other, otherKey := pki.issue(t, "other-robot", false)
	rogue := newTestPKI(t, "rogue-ca")
	rogueIdP, rogueIdPKey := rogue.issue(t, "idp-robot", false)
	signer, err := decisiontest.NewECSigner("tx-1")
	if err != nil {
		t.Fatal(err)
	}
	keys := decision.StaticKeys{{Kid: signer.Kid, Alg: signer.Alg, Public: signer.Key.Public()}}
	tx := func(name string, token string, cc SSFClientCert) SSFTransmitter {
		return SSFTransmitter{Name: name, PushToken: token, PushClientCert: cc,
			Transmitter: ssf.Transmitter{Issuer: "https://" + name + ".test/", Audience: []string{"https://scopegate.test/"}, Keys: keys}}
	}
	revs := store.NewMemoryRevocations(nil)
	e := startE2E(t, func(c *Config) {
		c.Revocation.Store = revs
		c.SSF = SSFConfig{TLSCertFile: srvCert, TLSKeyFile: srvKey, ClientCAFile: pki.caFile, Transmitters: []SSFTransmitter{
			tx("cert-idp", "", SSFClientCert{Subject: "CN=idp-robot,O=Example"}),
			tx("both-idp", "both-token", SSFClientCert{Subject: "CN=both-robot,O=Example"}),
			tx("token-idp", "plain-token", SSFClientCert{}),
		}}
	})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = e.srv.SSF().Serve(lis) }()
	n := 0
	push := func(certFile, keyFile, token, issuer string) (int, string) {
		t.Helper()
		conf := pki.clientTLS(t, certFile, keyFile)
		n++
		set, err := signer.Mint(decisiontest.Claims{"iss": issuer, "aud": "https://scopegate.test/", "iat": time.Now().Unix(),
			"jti": "j" + string(rune('a'+n)), "sub_id": map[string]any{"format": "iss_sub", "iss": "https://issuer.test/", "sub": "alice"},
			"events": map[string]any{"https://schemas.openid.net/secevent/risc/event-type/account-disabled": map[string]any{}}},
			map[string]any{"typ": "secevent+jwt"})
		if err != nil {
			t.Fatal(err)
		}
		req, _ := http.NewRequest(http.MethodPost, "https://"+lis.Addr().String()+"/ssf/events", strings.NewReader(set))
		req.Header.Set("Content-Type", ssf.SETMediaType)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		client := &http.Client{Transport: &http.Transport{TLSClientConfig: conf}, Timeout: 5 * time.Second}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("push: %v", err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	const certIss, bothIss, tokenIss = "https://cert-idp.test/", "https://both-idp.test/", "https://token-idp.test/"
	cases := []struct {
		name                  string
		cert, key, token, iss string
		want                  int
	}{
		{"the transmitter's certificate", certIdP, certIdPKey, "", certIss, http.StatusAccepted},
		{"no certificate", "", "", "", certIss, http.StatusUnauthorized},
		{"same subject from another CA", rogueIdP, rogueIdPKey, "", certIss, http.StatusUnauthorized},
		{"a certificate of the CA naming another", other, otherKey, "", certIss, http.StatusUnauthorized},
		{"certificate and token", bothIdP, bothIdPKey, "both-token", bothIss, http.StatusAccepted},
		{"token without its certificate", "", "", "both-token", bothIss, http.StatusUnauthorized},
		// authenticated as the certificate's transmitter, which is not the SET's issuer
		{"token with another's certificate", certIdP, certIdPKey, "both-token", bothIss, http.StatusBadRequest},
		{"certificate without its token", bothIdP, bothIdPKey, "", bothIss, http.StatusUnauthorized},
		{"token-only stream over TLS", "", "", "plain-token", tokenIss, http.StatusAccepted},
		{"wrong token", "", "", "guess", tokenIss, http.StatusUnauthorized},
	}
	for _, c := range cases {
		code, body := push(c.cert, c.key, c.token, c.iss)
		if code != c.want {
			t.Errorf("%s: %d %s; want %d", c.name, code, body, c.want)
			continue
		}
		if code == http.StatusUnauthorized {
			var e struct{ Err, Description string }
			if err := json.Unmarshal([]byte(body), &e); err != nil || e.Err != ssf.ErrAuthenticationFailed || e.Description == "" {
				t.Errorf("%s: body %q; want the RFC 8935 error authentication_failed", c.name, body)
			}
		}
	}
	list, err := revs.ListRevocations(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 3 {
		t.Errorf("%d revocations stored; want 3, one per accepted push", len(list))
	}
}

func TestSSFClientCertMatches(t *testing.T) {
	u, _ := url.Parse("spiffe://example.org/idp")
	cert := &x509.Certificate{DNSNames: []string{"idp.example.com"}, EmailAddresses: []string{"ssf@example.com"},
		URIs: []*url.URL{u}, IPAddresses: []net.IP{net.ParseIP("10.0.0.7")}}
	cert.Subject.CommonName, cert.Subject.Organization = "idp", []string{"Example"}
	for want, cc := range map[bool][]SSFClientCert{
		true: {{Subject: "CN=idp,O=Example"}, {SAN: "idp.example.com"}, {SAN: "ssf@example.com"}, {SAN: "spiffe://example.org/idp"},
			{SAN: "10.0.0.7"}, {Subject: "CN=idp,O=Example", SAN: "idp.example.com"}},
		false: {{}, {Subject: "CN=idp"}, {SAN: "example.com"}, {Subject: "CN=idp,O=Example", SAN: "other.example.com"},
			{Subject: "CN=other,O=Example", SAN: "idp.example.com"}},
	} {
		for _, c := range cc {
			if got := c.matches(cert); got != want {
				t.Errorf("%+v matches %v; want %v", c, got, want)
			}
		}
	}
	if (SSFClientCert{SAN: "idp.example.com"}).matches(nil) {
		t.Error("no certificate matches")
	}
}

func TestSSFPushTLSConfigChecked(t *testing.T) {
	cc := SSFClientCert{SAN: "idp.example.com"}
	for name, c := range map[string]struct {
		cfg  SSFConfig
		want string
	}{
		"cert without key":      {SSFConfig{TLSCertFile: "c.pem"}, "SSF.TLSCertFile and SSF.TLSKeyFile go together"},
		"client CA without TLS": {SSFConfig{ClientCAFile: "ca.pem"}, "SSF.ClientCAFile needs SSF.TLSCertFile"},
		"client cert without CA": {SSFConfig{TLSCertFile: "c", TLSKeyFile: "k", Transmitters: []SSFTransmitter{{Name: "a", PushClientCert: cc}}},
			"needs SSF.ClientCAFile"},
		"two with one cert": {SSFConfig{TLSCertFile: "c", TLSKeyFile: "k", ClientCAFile: "ca", Transmitters: []SSFTransmitter{
			{Name: "a", PushClientCert: cc}, {Name: "b", PushClientCert: cc}}}, "the same client certificate"},
	} {
		err := checkSSFPush(&c.cfg)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v; want %q", name, err, c.want)
		}
	}
}
