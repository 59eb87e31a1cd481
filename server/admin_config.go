package server

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/scopegate/scopegate/decision"
	"github.com/scopegate/scopegate/store"
)

// Defaults of AdminConfig and RevocationConfig.
const (
	// DefaultAdminScope is the scope an admin bearer token must carry.
	DefaultAdminScope = "scopegate:admin"
	// DefaultRevocationStaleAfter bounds the age of the revocation list
	// before routes that require a high-risk scope fail closed: ten missed
	// resyncs at the default interval.
	DefaultRevocationStaleAfter = 5 * time.Minute
)

// AdminConfig configures the Admin API listener. It is off unless Addr is
// set. Callers authenticate with a client certificate (when ClientCAFile
// is set) or with a bearer token from one of the policy's issuers carrying
// Scope.
type AdminConfig struct {
	// Addr is the host:port of the admin listener; "" serves no Admin API.
	Addr string
	// Scope is the scope an admin bearer token must carry; default
	// DefaultAdminScope.
	Scope string
	// Issuers, when set, are the only issuers whose tokens are admin
	// tokens (exact iss strings, each an issuer of the policy). Empty
	// accepts an admin token from any issuer of the policy: then every
	// identity provider the policy trusts for API access can also mint
	// tokens that revoke, reload and read usage.
	Issuers []string
	// TLSCertFile and TLSKeyFile serve the listener over TLS (both or
	// neither). Without them the listener is plain text and needs a bearer
	// token on every call.
	TLSCertFile string
	TLSKeyFile  string
	// ClientCAFile verifies the client certificates callers present
	// against these CAs (PEM); a verified certificate authenticates the
	// call on its own, and callers without one may still use a bearer
	// token. It needs TLSCertFile and TLSKeyFile.
	ClientCAFile string
	// Auditor receives every admin call; default the server's audit log
	// when one is configured. Every call is also logged on Config.Logger.
	Auditor AdminAuditor
	// UsageReporter answers UsageReport; default the server's usage
	// aggregator (Config.Audit.Usage). Without one, UsageReport is
	// UNIMPLEMENTED.
	UsageReporter UsageReporter
}

// RevocationConfig configures where revocations come from and how stale
// they may get.
type RevocationConfig struct {
	// Store is the revocation system of record (store.Store.Revocations()):
	// PostgreSQL shares revocations between replicas, a store file keeps
	// them across restarts. nil keeps them in this process's memory only.
	Store store.RevocationStore
	// Resync is the full-reload interval; default
	// store.DefaultRevocationResync.
	Resync time.Duration
	// StaleAfter bounds the age of the last successful sync: past it,
	// routes that require a high-risk scope deny with revocation_stale;
	// default DefaultRevocationStaleAfter.
	StaleAfter time.Duration
}

// Validate reports every invalid field, each with the fix. It does not
// read the files.
func (c *AdminConfig) Validate() error {
	var errs []error
	if c.Addr != "" {
		if _, port, err := net.SplitHostPort(c.Addr); err != nil {
			errs = append(errs, fmt.Errorf("server config: Admin.Addr %q is not host:port (e.g. 127.0.0.1:9193): %v", c.Addr, err))
		} else if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
			errs = append(errs, fmt.Errorf("server config: Admin.Addr %q: port %q must be a number from 0 to 65535", c.Addr, port))
		}
	} else if c.TLSCertFile != "" || c.TLSKeyFile != "" || c.ClientCAFile != "" {
		errs = append(errs, errors.New("server config: admin TLS files are set but Admin.Addr is empty: set the admin address, or drop the TLS files"))
	}
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		errs = append(errs, errors.New("server config: Admin.TLSCertFile and Admin.TLSKeyFile go together: give both, or neither"))
	}
	if c.ClientCAFile != "" && c.TLSCertFile == "" {
		errs = append(errs, errors.New("server config: Admin.ClientCAFile needs Admin.TLSCertFile and Admin.TLSKeyFile: client certificates are only asked for over TLS"))
	}
	for _, iss := range c.Issuers {
		if strings.TrimSpace(iss) == "" || strings.ContainsAny(iss, " \t\r\n,") {
			errs = append(errs, fmt.Errorf("server config: Admin.Issuers entry %q is not one issuer: give the exact iss of an issuer of the policy, e.g. https://id.example.com/", iss))
		}
	}
	if c.Scope != "" && (strings.ContainsAny(c.Scope, " \t\r\n\"\\")) {
		errs = append(errs, fmt.Errorf("server config: Admin.Scope %q is not one scope token: drop the whitespace or quotes", c.Scope))
	}
	return errors.Join(errs...)
}

// checkIssuers reports an admin issuer the policy does not have: it could
// never match, and would leave the Admin API without tokens.
func (c *AdminConfig) checkIssuers(pol *decision.Policy) error {
	var errs []error
	for _, iss := range c.Issuers {
		if _, ok := pol.Issuers[iss]; ok {
			continue
		}
		names := make([]string, 0, len(pol.Issuers))
		for name := range pol.Issuers {
			names = append(names, name)
		}
		slices.Sort(names)
		hint := ""
		for _, name := range names {
			if strings.EqualFold(strings.TrimSuffix(name, "/"), strings.TrimSuffix(iss, "/")) {
				hint = " (did you mean " + strconv.Quote(name) + "? issuers are compared exactly)"
				break
			}
		}
		errs = append(errs, fmt.Errorf("server config: admin issuer %q is not an issuer of the policy%s; the policy's issuers: %s", iss, hint, strings.Join(names, ", ")))
	}
	return errors.Join(errs...)
}

func (c *AdminConfig) scope() string {
	if c.Scope == "" {
		return DefaultAdminScope
	}
	return c.Scope
}

// Validate reports every invalid field, each with the fix.
func (c *RevocationConfig) Validate() error {
	var errs []error
	if c.Resync < 0 {
		errs = append(errs, fmt.Errorf("server config: Revocation.Resync %v is negative: use 0 for the default (%v)", c.Resync, store.DefaultRevocationResync))
	}
	if c.StaleAfter < 0 {
		errs = append(errs, fmt.Errorf("server config: Revocation.StaleAfter %v is negative: use 0 for the default (%v)", c.StaleAfter, DefaultRevocationStaleAfter))
	}
	if c.StaleAfter > 0 && c.Resync > 0 && c.StaleAfter < c.Resync {
		errs = append(errs, fmt.Errorf("server config: Revocation.StaleAfter %v is shorter than Revocation.Resync %v: every resync interval would make high-risk routes fail closed; make StaleAfter several times Resync", c.StaleAfter, c.Resync))
	}
	return errors.Join(errs...)
}

func (c *RevocationConfig) staleAfter() time.Duration {
	if c.StaleAfter == 0 {
		return DefaultRevocationStaleAfter
	}
	return c.StaleAfter
}
