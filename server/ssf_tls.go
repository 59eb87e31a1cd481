package server

import (
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"
)

// Push authentication (RFC 8935 §2: the transmitter authenticates "as the
// stream was configured"): a bearer token, a client certificate, or both.
// The SSF listener serves TLS with SSFConfig.TLSCertFile; with
// ClientCAFile it verifies the client certificates pushers present. A
// transmitter with PushClientCert is recognised only by a verified
// certificate that names it; one with a PushToken only by the token; one
// with both needs both.

// SSFClientCert is what a transmitter's push client certificate must
// present. Every field given must match; at least one must be given.
type SSFClientCert struct {
	// Subject is the certificate's subject distinguished name as Go prints
	// it (RFC 2253 order, e.g. "CN=idp.example.com,O=Example").
	Subject string
	// SAN is one of its subject alternative names: a DNS name, URI, email
	// address or IP address.
	SAN string
}

// IsZero reports whether no client certificate is required.
func (c SSFClientCert) IsZero() bool { return c.Subject == "" && c.SAN == "" }

func (c SSFClientCert) String() string {
	var parts []string
	if c.Subject != "" {
		parts = append(parts, "subject "+c.Subject)
	}
	if c.SAN != "" {
		parts = append(parts, "SAN "+c.SAN)
	}
	return strings.Join(parts, ", ")
}

// matches reports whether cert presents everything c asks for.
func (c SSFClientCert) matches(cert *x509.Certificate) bool {
	if c.IsZero() || cert == nil {
		return false
	}
	if c.Subject != "" && cert.Subject.String() != c.Subject {
		return false
	}
	if c.SAN == "" {
		return true
	}
	if slices.Contains(cert.DNSNames, c.SAN) || slices.Contains(cert.EmailAddresses, c.SAN) {
		return true
	}
	for _, u := range cert.URIs {
		if u.String() == c.SAN {
			return true
		}
	}
	for _, ip := range cert.IPAddresses {
		if ip.String() == c.SAN {
			return true
		}
	}
	return false
}

// verifiedPeer returns the client certificate of req when the TLS
// handshake verified it against the client CA, else nil.
func verifiedPeer(req *http.Request) *x509.Certificate {
	if req.TLS == nil || len(req.TLS.VerifiedChains) == 0 || len(req.TLS.PeerCertificates) == 0 {
		return nil
	}
	return req.TLS.PeerCertificates[0]
}

// pushTransmitter returns the transmitter req authenticates as, or nil.
// Tokens are compared in constant time, against every transmitter.
func (r *SSFReceiver) pushTransmitter(req *http.Request) *ssfTx {
	tok, hasTok := strings.CutPrefix(req.Header.Get("Authorization"), "Bearer ")
	hasTok = hasTok && tok != ""
	peer := verifiedPeer(req)
	var found *ssfTx
	foundByToken := false
	for _, tx := range r.txs {
		c := &tx.cfg
		if c.PushToken == "" && c.PushClientCert.IsZero() {
			continue // does not push
		}
		byToken := hasTok && c.PushToken != "" && subtle.ConstantTimeCompare([]byte(tok), []byte(c.PushToken)) == 1
		tokenOK := c.PushToken == "" || byToken
		certOK := c.PushClientCert.IsZero() || c.PushClientCert.matches(peer)
		if tokenOK && certOK && (found == nil || byToken && !foundByToken) {
			found, foundByToken = tx, byToken
		}
	}
	return found
}

// checkSSFPush checks the push authentication settings of cfg.
func checkSSFPush(cfg *SSFConfig) error {
	if (cfg.TLSCertFile == "") != (cfg.TLSKeyFile == "") {
		return errors.New("server config: SSF.TLSCertFile and SSF.TLSKeyFile go together: give both, or neither")
	}
	if cfg.ClientCAFile != "" && cfg.TLSCertFile == "" {
		return errors.New("server config: SSF.ClientCAFile needs SSF.TLSCertFile and SSF.TLSKeyFile: client certificates are only asked for over TLS")
	}
	seen := map[SSFClientCert]string{}
	for _, t := range cfg.Transmitters {
		cc := t.PushClientCert
		if cc.IsZero() {
			continue
		}
		if cfg.ClientCAFile == "" {
			return fmt.Errorf("server config: SSF transmitter %q authenticates pushes by client certificate (%s), which needs SSF.ClientCAFile (and SSF.TLSCertFile): give the CA that issues the transmitter's certificate", t.Name, cc)
		}
		if t.PushToken == "" {
			if other, dup := seen[cc]; dup {
				return fmt.Errorf("server config: SSF transmitters %q and %q push with the same client certificate (%s) and no token: give each its own certificate or a token", other, t.Name, cc)
			}
			seen[cc] = t.Name
		}
	}
	return nil
}

// listenerTLS builds a listener's TLS configuration from PEM files, or nil
// for plain text. A client certificate is verified when presented, not
// required, so that callers authenticated otherwise (a bearer token) may
// connect without one. who names the listener in errors, and whom the CA
// issues certificates to.
func listenerTLS(what, certFile, keyFile, caFile, whose string) (*tls.Config, error) {
	if certFile == "" {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("%s TLS certificate %s / key %s: %w", what, certFile, keyFile, err)
	}
	conf := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("%s client CA: %w", what, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s client CA %s holds no PEM certificate: give the CA that issues %s certificates", what, caFile, whose)
		}
		conf.ClientCAs = pool
		conf.ClientAuth = tls.VerifyClientCertIfGiven
	}
	return conf, nil
}
