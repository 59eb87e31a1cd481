package harness

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/scopegate/scopegate/decision/tokenmint"
	"github.com/scopegate/scopegate/store/introspect/introspecttest"
)

// --opaque: the run's tokens are opaque, issued by a stub authorization
// server in this process and introspected by the in-process scopegate
// (RFC 7662), so cached and uncached opaque decisions are measured beside
// the JWT ones. The stub answers on loopback at once: an uncached decision
// costs scopegate's side of a call (HTTP client, form, JSON) and the
// stub's, not a real AS's latency.

// opaqueCacheTTL outlives any run, so reused tokens stay cached.
const opaqueCacheTTL = "1h"

// secretFile is the introspection client's secret, beside the policy.
const secretFile = "introspection-secret"

// introspectionYAML is the generated issuer's introspection block for as,
// whose secret is in dir.
func introspectionYAML(as *introspecttest.AS) string {
	return "    introspection:\n" +
		"      endpoint: " + as.IntrospectionEndpoint() + "\n" +
		"      client_id: " + introspecttest.ClientID + "\n" +
		"      client_secret_file: " + secretFile + "\n" +
		"      cache_ttl: " + opaqueCacheTTL + "\n"
}

// writeSecret writes the stub's client secret into the policy directory.
func writeSecret(dir string) error {
	return os.WriteFile(filepath.Join(dir, secretFile), []byte(introspecttest.ClientSecret), 0o600)
}

// startOpaqueAS starts the stub with the JWKS of the generated policy.
func startOpaqueAS(ss map[string]*tokenmint.Signer) *introspecttest.AS {
	var list []*tokenmint.Signer
	for _, ek := range tokenmint.ExampleKeys() {
		list = append(list, ss[ek.Kind])
	}
	return introspecttest.New(tokenmint.JWKS(list...))
}

// mintOpaque registers tokens first..first+n-1 with the stub, each with
// the claims the JWT of the same number carries.
func mintOpaque(as *introspecttest.AS, first, n, routes, clients int, now time.Time) []string {
	out := make([]string, n)
	iat := now.Unix()
	for i := range out {
		t := first + i
		r := routeOf(t, routes)
		client := clientOf(r, clients)
		out[i] = as.Mint(map[string]any{
			"iss": benchIssuer, "aud": benchAudience, "sub": "user-" + strconv.Itoa(t) + "@example.com",
			"client_id": client, "scope": fmt.Sprintf("s%d:read orders:read profile", r),
			"iat": iat, "nbf": iat, "exp": iat + int64(tokenTTL/time.Second), "jti": strconv.Itoa(t) + "-" + strconv.FormatInt(iat, 36),
			"amr": []string{"pwd", "otp"}, "tenant": "acme-corp", "roles": []string{"orders-viewer", "catalog-reader"},
		})
	}
	return out
}

// unknownOpaque returns a token the stub never issued: inactive, denied
// token_invalid like a bad signature.
func unknownOpaque(tok string) string { return tok[:len(tok)-4] + "zzzz" }
