package server

import (
	"net/url"
	"regexp"
	"strings"

	"github.com/scopegate/scopegate/store"
)

// redactedValue replaces a secret in what the server shows about itself.
const redactedValue = "xxxxx"

// secretFlagSuffixes name flags whose value is itself a secret (a token, a
// password), whatever it looks like.
var secretFlagSuffixes = []string{"token", "password", "passwd", "secret"}

// secretAssignment matches key=value pairs whose value is a secret, as in
// a PostgreSQL keyword DSN ("host=db password=..."), in any case.
var secretAssignment = regexp.MustCompile(`(?i)\b(password|passwd|pwd|secret|token|access_token|client_secret|api_key|apikey)=([^\s&;]*)`)

// redactArgs returns a command line with the secrets it may carry
// replaced: the password of any URL (the --store PostgreSQL DSN above
// all, as store.RedactDSN redacts it for the logs), password=... pairs,
// and the value of a flag named like a secret (--token, --...-password).
// It serves /debug/pprof/cmdline.
func redactArgs(args []string) []string {
	out := make([]string, len(args))
	secretNext := false
	for i, a := range args {
		if secretNext {
			out[i], secretNext = redactedValue, false
			continue
		}
		if name, ok := flagName(a); ok {
			n, v, hasValue := strings.Cut(name, "=")
			switch {
			case isSecretFlag(n) && hasValue:
				out[i] = a[:len(a)-len(v)] + redactedValue
			case isSecretFlag(n):
				out[i], secretNext = a, true
			case hasValue:
				out[i] = a[:len(a)-len(v)] + redactValue(v)
			default:
				out[i] = a
			}
			continue
		}
		out[i] = redactValue(a)
	}
	return out
}

// flagName returns a without its leading dashes when it is a flag.
func flagName(a string) (string, bool) {
	if len(a) < 2 || a[0] != '-' || a == "--" {
		return "", false
	}
	return strings.TrimLeft(a, "-"), true
}

func isSecretFlag(name string) bool {
	name = strings.ToLower(name)
	for _, s := range secretFlagSuffixes {
		if strings.HasSuffix(name, s) {
			return true
		}
	}
	return false
}

// redactValue redacts the secrets of one value: a URL's password (and a
// password query parameter of a PostgreSQL DSN), and password=... pairs.
func redactValue(v string) string {
	if strings.Contains(v, "://") {
		if store.IsPostgresDSN(v) {
			v = store.RedactDSN(v)
		} else if u, err := url.Parse(v); err == nil && u.User != nil {
			v = u.Redacted()
		} else if err != nil && strings.Contains(v, "@") {
			// Unparseable, but it may hold user:password@: keep the scheme.
			scheme, _, _ := strings.Cut(v, "://")
			v = scheme + "://(unparseable URL)"
		}
	}
	return secretAssignment.ReplaceAllString(v, "${1}="+redactedValue)
}
