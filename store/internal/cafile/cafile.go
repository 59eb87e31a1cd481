// Package cafile builds the TLS client configuration of the stores that
// fetch from identity providers (key sets, discovery documents,
// introspection): TLS 1.2 at least, and the policy's jwks_ca_file bundle
// instead of the system roots when one is set.
package cafile

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
)

// TLSConfig returns the client TLS configuration trusting the PEM bundle
// at path, or the system roots when path is "".
func TLSConfig(path string) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if path == "" {
		return cfg, nil
	}
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("jwks_ca_file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("jwks_ca_file %s holds no PEM certificate", path)
	}
	cfg.RootCAs = pool
	return cfg, nil
}
