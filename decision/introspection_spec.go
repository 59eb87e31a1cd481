package decision

import (
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Introspection defaults.
const (
	// DefaultIntrospectionTimeout bounds one call to an introspection
	// endpoint.
	DefaultIntrospectionTimeout = 2 * time.Second
	// DefaultIntrospectionCacheTTL is the longest an active introspection
	// result is reused (never beyond the token's exp).
	DefaultIntrospectionCacheTTL = 2 * time.Minute
	// DefaultIntrospectionNegativeTTL is how long an inactive result is
	// reused.
	DefaultIntrospectionNegativeTTL = 10 * time.Second
)

// Client authentication methods at the introspection endpoint (RFC 7591
// token_endpoint_auth_method names).
const (
	ClientSecretBasic = "client_secret_basic"
	ClientSecretPost  = "client_secret_post"
	PrivateKeyJWT     = "private_key_jwt"
)

// IntrospectionSpec is an issuer's introspection block: how scopegate asks
// the issuer about opaque access tokens (RFC 7662).
type IntrospectionSpec struct {
	// Endpoint is the introspection endpoint; "" takes the discovery
	// document's introspection_endpoint.
	Endpoint string `yaml:"endpoint"`
	// ClientID is scopegate's client at the authorization server.
	ClientID string `yaml:"client_id"`
	// ClientAuth is client_secret_basic (default), client_secret_post or
	// private_key_jwt.
	ClientAuth string `yaml:"client_auth"`
	// ClientSecret is refused: a secret never sits in the policy file.
	ClientSecret string `yaml:"client_secret"`
	// ClientSecretFile and ClientSecretEnv name where the secret is read.
	ClientSecretFile string `yaml:"client_secret_file"`
	ClientSecretEnv  string `yaml:"client_secret_env"`
	// PrivateKeyFile is the PEM private key private_key_jwt signs with;
	// PrivateKeyID its kid, if the server wants one.
	PrivateKeyFile string `yaml:"private_key_file"`
	PrivateKeyID   string `yaml:"private_key_id"`
	// Audiences replaces the issuer's audiences for introspected tokens.
	Audiences []string `yaml:"audiences"`
	// TokenPrefix recognises this issuer's opaque tokens by a prefix; ""
	// takes every token that is not a JWS compact serialization.
	TokenPrefix string `yaml:"token_prefix"`
	// JWTResponse asks for the JWT-secured response of RFC 9701, verified
	// with the issuer's keys.
	JWTResponse bool `yaml:"jwt_response"`
	// Timeout bounds one call; default 2s.
	Timeout *Duration `yaml:"timeout"`
	// CacheTTL is the longest an active result is reused; default 2m.
	CacheTTL *Duration `yaml:"cache_ttl"`
	// NegativeCacheTTL is how long an inactive result is reused; default 10s.
	NegativeCacheTTL *Duration `yaml:"negative_cache_ttl"`
}

// Introspection is an issuer's compiled introspection settings. The
// engine's Introspector (store/introspect) makes the calls; the engine
// reads the answers and caches them.
type Introspection struct {
	// Issuer is the issuer's name, KeyRef its key set (and discovery
	// document, when Endpoint is "").
	Issuer string
	KeyRef *KeyRef
	// Endpoint is "" when it comes from the discovery document.
	Endpoint   string
	ClientID   string
	ClientAuth string
	// SecretFile (resolved against the policy's directory) or SecretEnv
	// holds the client secret; KeyFile the private_key_jwt key.
	SecretFile, SecretEnv string
	KeyFile, KeyID        string
	CAFile                string
	Audiences             []string
	TokenPrefix           string
	JWTResponse           bool
	Timeout               time.Duration
	CacheTTL              time.Duration
	NegativeTTL           time.Duration
}

// ID identifies the client an Introspection needs: two with the same ID
// share one.
func (in *Introspection) ID() string {
	return strings.Join([]string{in.Issuer, in.Endpoint, in.ClientID, in.ClientAuth, in.SecretFile, in.SecretEnv,
		in.KeyFile, in.KeyID, in.CAFile, strconv.FormatBool(in.JWTResponse), in.Timeout.String()}, "\x00")
}

// compileIntrospection validates spec, the introspection block of the
// issuer at field, whose other settings are in iss.
func compileIntrospection(spec *IssuerSpec, iss *Issuer, baseDir string, add, warn func(sub, msg string)) *Introspection {
	s := spec.Introspection
	if s == nil {
		return nil
	}
	const f = "introspection."
	in := &Introspection{Issuer: spec.Issuer, Endpoint: s.Endpoint, ClientID: s.ClientID, ClientAuth: s.ClientAuth,
		SecretEnv: s.ClientSecretEnv, KeyID: s.PrivateKeyID, TokenPrefix: s.TokenPrefix, JWTResponse: s.JWTResponse,
		Timeout: DefaultIntrospectionTimeout, CacheTTL: DefaultIntrospectionCacheTTL, NegativeTTL: DefaultIntrospectionNegativeTTL}
	resolve := func(p string) string {
		if p == "" || filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(baseDir, p)
	}
	in.SecretFile, in.KeyFile, in.CAFile = resolve(s.ClientSecretFile), resolve(s.PrivateKeyFile), resolve(spec.JWKSCAFile)
	discovery := spec.Discovery || spec.OpenIDConfigurationURL != ""
	switch {
	case s.Endpoint != "":
		if msg := checkFetchURL("the introspection endpoint", s.Endpoint); msg != "" {
			add(f+"endpoint", msg)
		}
	case !discovery:
		add(f+"endpoint", "set the introspection endpoint (e.g. https://login.example.com/oauth2/introspect), or discovery: true to take introspection_endpoint from the issuer's discovery document")
	}
	if s.ClientID == "" {
		add(f+"client_id", "set the client_id scopegate authenticates as at the introspection endpoint")
	}
	if s.ClientSecret != "" {
		add(f+"client_secret", "a client secret never goes in the policy file (it is versioned, diffed and shown by tools); put it in a file named by client_secret_file, or an environment variable named by client_secret_env")
	}
	if in.ClientAuth == "" {
		in.ClientAuth = ClientSecretBasic
	}
	switch in.ClientAuth {
	case ClientSecretBasic, ClientSecretPost:
		switch {
		case s.ClientSecretFile == "" && s.ClientSecretEnv == "":
			add(f+"client_secret_file", "client_auth "+in.ClientAuth+" needs the client secret: set client_secret_file (a file holding it) or client_secret_env (an environment variable holding it)")
		case s.ClientSecretFile != "" && s.ClientSecretEnv != "":
			add(f+"client_secret_env", "set only one of client_secret_file and client_secret_env")
		}
		if s.PrivateKeyFile != "" {
			warn(f+"private_key_file", "private_key_file applies only to client_auth private_key_jwt; it is ignored")
		}
	case PrivateKeyJWT:
		if s.PrivateKeyFile == "" {
			add(f+"private_key_file", "client_auth private_key_jwt needs private_key_file, a PEM private key (RSA, EC P-256 or Ed25519) whose public key the authorization server knows")
		}
		if s.ClientSecretFile != "" || s.ClientSecretEnv != "" {
			warn(f+"client_auth", "private_key_jwt sends no client secret; client_secret_file and client_secret_env are ignored")
		}
	default:
		add(f+"client_auth", "unknown client_auth "+untrusted(in.ClientAuth)+"; use client_secret_basic, client_secret_post or private_key_jwt")
	}
	in.Audiences = iss.Audiences
	if len(s.Audiences) > 0 {
		in.Audiences = slices.Clone(s.Audiences)
		for i, a := range s.Audiences {
			if a == "" {
				add(f+"audiences["+strconv.Itoa(i)+"]", "an audience must not be empty")
			}
		}
	}
	if s.TokenPrefix != "" && strings.Count(s.TokenPrefix, ".") >= 2 {
		add(f+"token_prefix", "a token prefix with two dots would take JWTs for opaque tokens")
	}
	dur := func(sub string, d *Duration, dst *time.Duration) {
		if d == nil {
			return
		}
		if d.Duration <= 0 {
			add(f+sub, sub+" must be positive, e.g. \"30s\"")
			return
		}
		*dst = d.Duration
	}
	dur("timeout", s.Timeout, &in.Timeout)
	dur("cache_ttl", s.CacheTTL, &in.CacheTTL)
	dur("negative_cache_ttl", s.NegativeCacheTTL, &in.NegativeTTL)
	if in.NegativeTTL > in.CacheTTL {
		warn(f+"negative_cache_ttl", "negative_cache_ttl is longer than cache_ttl: a token that becomes active is refused longer than a revoked one is accepted")
	}
	return in
}

// fingerprintIntrospection adds the settings that change how an
// introspected token is read to an issuer's fingerprint.
func (in *Introspection) fingerprint(str func(string)) {
	if in == nil {
		return
	}
	str("introspection")
	str(in.ID())
	str(strings.Join(in.Audiences, "\x00"))
	str(in.TokenPrefix)
	str(in.CacheTTL.String())
	str(in.NegativeTTL.String())
}

// opaqueRecognizer picks the issuer that introspects a token that is not a
// JWT: the issuer whose token_prefix it starts with (longest first), else
// the one introspection issuer without a prefix.
type opaqueRecognizer struct {
	prefixed []*Issuer
	fallback *Issuer
}

// buildOpaqueRecognizer is called once the issuers are compiled; it
// returns a problem when two issuers claim the same tokens.
func buildOpaqueRecognizer(issuers map[string]*Issuer) (opaqueRecognizer, string) {
	var r opaqueRecognizer
	names := make([]string, 0, len(issuers))
	for n := range issuers {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		iss := issuers[n]
		in := iss.Introspection
		if in == nil {
			continue
		}
		if in.TokenPrefix == "" {
			if r.fallback != nil {
				return r, "issuers " + r.fallback.Name + " and " + iss.Name + " both introspect tokens without a token_prefix: an opaque token carries no issuer, so give all but one of them a token_prefix"
			}
			r.fallback = iss
			continue
		}
		for _, o := range r.prefixed {
			if o.Introspection.TokenPrefix == in.TokenPrefix {
				return r, "issuers " + o.Name + " and " + iss.Name + " have the same token_prefix " + untrusted(in.TokenPrefix)
			}
		}
		r.prefixed = append(r.prefixed, iss)
	}
	sort.SliceStable(r.prefixed, func(i, j int) bool {
		return len(r.prefixed[i].Introspection.TokenPrefix) > len(r.prefixed[j].Introspection.TokenPrefix)
	})
	return r, ""
}

// issuerOf returns the issuer that introspects raw, or nil for a token to
// verify as a JWT.
func (r *opaqueRecognizer) issuerOf(raw string) *Issuer {
	for _, iss := range r.prefixed {
		if strings.HasPrefix(raw, iss.Introspection.TokenPrefix) {
			return iss
		}
	}
	if r.fallback != nil && !looksLikeJWS(raw) {
		return r.fallback
	}
	return nil
}

// looksLikeJWS reports whether raw has the shape of a JWS (three
// dot-separated, non-empty parts) or JWE (five) compact serialization:
// such a token is verified as a JWT, and any other is opaque.
func looksLikeJWS(raw string) bool {
	n := strings.Count(raw, ".")
	if n != 2 && n != 4 {
		return false
	}
	return !strings.HasPrefix(raw, ".") && !strings.HasSuffix(raw, ".") && !strings.Contains(raw, "..")
}
