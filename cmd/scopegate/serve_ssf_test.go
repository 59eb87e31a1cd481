package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/scopegate/scopegate/server"
)

func writeSSFFile(t *testing.T, push, poll string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "push.token"), []byte("secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	doc := "transmitters:\n  - name: idp\n    issuer: https://idp.test/\n    jwks_uri: https://idp.test/jwks\n    audience: [https://sg.test/]\n" + push + poll
	p := filepath.Join(dir, "ssf.yaml")
	if err := os.WriteFile(p, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestSSFConfigPushAndPoll(t *testing.T) {
	certPush := "    push:\n      client_cert: {subject: 'CN=idp,O=Example', san: idp.example.com}\n"
	lease := "    poll:\n      url: https://idp.test/poll\n      lease_ttl: 2s\n"
	f := ssfFlags{ssfConfig: writeSSFFile(t, certPush, lease), ssfAddr: "127.0.0.1:0",
		ssfTLSCert: "c.pem", ssfTLSKey: "k.pem", ssfClientCA: "ca.pem"}
	var cfg server.Config
	if err := f.apply(&cfg); err != nil {
		t.Fatal(err)
	}
	tx := cfg.SSF.Transmitters[0]
	if tx.PushClientCert != (server.SSFClientCert{Subject: "CN=idp,O=Example", SAN: "idp.example.com"}) || tx.PushToken != "" {
		t.Errorf("push: %+v, token set %v", tx.PushClientCert, tx.PushToken != "")
	}
	if tx.LeaseTTL != 2*time.Second {
		t.Errorf("lease ttl %v; want 2s", tx.LeaseTTL)
	}
	if cfg.SSF.TLSCertFile != "c.pem" || cfg.SSF.TLSKeyFile != "k.pem" || cfg.SSF.ClientCAFile != "ca.pem" {
		t.Errorf("TLS files %+v", cfg.SSF)
	}

	for name, c := range map[string]struct {
		f    ssfFlags
		want string
	}{
		"client cert without CA": {ssfFlags{ssfConfig: writeSSFFile(t, certPush, ""), ssfAddr: "127.0.0.1:0"}, "push.client_cert needs --ssf-client-ca"},
		"empty client cert": {ssfFlags{ssfConfig: writeSSFFile(t, "    push:\n      client_cert: {}\n", ""), ssfAddr: "127.0.0.1:0", ssfClientCA: "ca"},
			"give subject or san"},
		"push unauthenticated": {ssfFlags{ssfConfig: writeSSFFile(t, "    push: {}\n", ""), ssfAddr: "127.0.0.1:0"}, "token (file or env) or client_cert is required"},
		"negative lease":       {ssfFlags{ssfConfig: writeSSFFile(t, "", "    poll:\n      url: https://idp.test/poll\n      lease_ttl: -1s\n")}, "lease_ttl -1s is negative"},
		"TLS without config":   {ssfFlags{ssfTLSCert: "c.pem"}, "need --ssf-config"},
	} {
		err := c.f.apply(&server.Config{})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v; want %q", name, err, c.want)
		}
	}
}

func TestSSFConfigStream(t *testing.T) {
	const push = "    push:\n      token: {file: push.token}\n"
	stream := `    configuration_url: https://idp.test/.well-known/ssf-configuration
    stream:
      manage: true
      endpoint_url: https://sg.example/ssf/events
      events_requested: [https://schemas.openid.net/secevent/caep/event-type/session-revoked]
      description: edge
      status_interval: 30s
      subjects:
        - {format: complex, user: {format: email, email: a@example.com}}
`
	f := ssfFlags{ssfConfig: writeSSFFile(t, push, stream), ssfAddr: "127.0.0.1:0"}
	var cfg server.Config
	if err := f.apply(&cfg); err != nil {
		t.Fatal(err)
	}
	st := cfg.SSF.Transmitters[0].Stream
	if !st.Manage || st.EndpointURL != "https://sg.example/ssf/events" || st.Description != "edge" || st.StatusInterval != 30*time.Second ||
		len(st.EventsRequested) != 1 || len(st.Subjects) != 1 || !strings.Contains(string(st.Subjects[0]), `"email":"a@example.com"`) {
		t.Errorf("stream %+v", st)
	}
	// A managed poll stream needs no poll block: the transmitter gives the URL.
	poll := strings.Replace(stream, "      endpoint_url: https://sg.example/ssf/events\n", "      delivery: poll\n", 1)
	if err := (&ssfFlags{ssfConfig: writeSSFFile(t, "", poll)}).apply(&server.Config{}); err != nil {
		t.Errorf("managed poll stream without a poll block: %v", err)
	}
	for name, c := range map[string]struct{ doc, want string }{
		"manage unset":         {strings.Replace(stream, "manage: true", "manage: false", 1), "set manage: true"},
		"no configuration url": {strings.Replace(stream, "    configuration_url: https://idp.test/.well-known/ssf-configuration\n", "", 1), "manage needs configuration_url"},
		"subject sans format":  {stream + "        - {email: b@example.com}\n", "stream.subjects[1]: a subject needs a format"},
		"negative interval":    {strings.Replace(stream, "30s", "-1s", 1), "status_interval -1s is negative"},
	} {
		err := (&ssfFlags{ssfConfig: writeSSFFile(t, push, c.doc), ssfAddr: "127.0.0.1:0"}).apply(&server.Config{})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v; want %q", name, err, c.want)
		}
	}
}
