package suggest

import (
	"strings"
	"testing"
)

func TestDistance(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want int
	}{
		{"", "", 0},
		{"", "abc", 3},
		{"routes", "routes", 0},
		{"route", "routes", 1},
		{"rotues", "routes", 1}, // a transposition is one edit
		{"grpc_adrd", "grpc_addr", 1},
		{"kitten", "sitting", 3},
		{"token_expird", "token_expired", 1},
		{"ca", "abc", 3}, // optimal string alignment, not full Damerau
		{strings.Repeat("a", 65), strings.Repeat("a", 65), far},
	} {
		if got := Distance(tc.a, tc.b); got != tc.want {
			t.Errorf("Distance(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
		if got := Distance(tc.b, tc.a); got != tc.want {
			t.Errorf("Distance(%q, %q) = %d, want %d (symmetric)", tc.b, tc.a, got, tc.want)
		}
	}
}

func TestClosest(t *testing.T) {
	fields := []string{"issuers", "routes", "scopes", "segments", "clients", "default"}
	for name, tc := range map[string]struct {
		name string
		cand []string
		opts Options
		want string
	}{
		"typo":                        {"rotues", fields, Options{}, "routes"},
		"case is ignored":             {"Routes", fields, Options{}, "routes"},
		"two edits":                   {"isuer", fields, Options{}, "issuers"},
		"three edits is too far":      {"isuerzz", fields, Options{}, ""},
		"wider limit":                 {"isuerzz", fields, Options{MaxEdits: 3}, "issuers"},
		"not fewer edits than name":   {"x", []string{"y"}, Options{}, ""},
		"nothing near":                {"upstream", fields, Options{}, ""},
		"ties go to byte order":       {"ab", []string{"ac", "aa"}, Options{}, "aa"},
		"ties do not depend on order": {"ab", []string{"aa", "ac"}, Options{}, "aa"},
		"nearest wins over earlier":   {"grpc-adr", []string{"grpc-a", "grpc-addr"}, Options{}, "grpc-addr"},
		"prefix off":                  {"grpc", []string{"grpc-addr"}, Options{}, ""},
		"prefix on":                   {"grpc", []string{"grpc-addr"}, Options{Prefix: true}, "grpc-addr"},
		"written is longer":           {"grpc-addr-x", []string{"grpc-addr"}, Options{Prefix: true}, "grpc-addr"},
		"no candidates":               {"routes", nil, Options{}, ""},
	} {
		t.Run(name, func(t *testing.T) {
			if got, _ := tc.opts.Closest(tc.name, tc.cand); got != tc.want {
				t.Errorf("Closest(%q, %q) = %q, want %q", tc.name, tc.cand, got, tc.want)
			}
		})
	}
}

// TestPolicyFieldNames holds the suggestions the policy loader relies on
// for unknown fields.
func TestPolicyFieldNames(t *testing.T) {
	names := []string{"algorithms", "audiences", "issuer", "jwks_file", "jwks_url", "methods", "path"}
	for name, tc := range map[string]struct{ in, want string }{
		"extra letter":      {"pathh", "path"},
		"missing letter":    {"audience", "audiences"},
		"transposition":     {"ptah", "path"},
		"two edits":         {"isuser", "issuer"},
		"case":              {"Path", "path"},
		"dash for score":    {"jwks-url", "jwks_url"},
		"three edits":       {"methodzzz", ""},
		"short key":         {"pa", ""},
		"nothing close":     {"frobnicate", ""},
		"very long unknown": {strings.Repeat("a", 100), ""},
	} {
		t.Run(name, func(t *testing.T) {
			if got := Closest(tc.in, names); got != tc.want {
				t.Errorf("Closest(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

func TestDidYouMean(t *testing.T) {
	if got, want := DidYouMean("scope_usd", []string{"scopes_used", "status"}), `; did you mean "scopes_used"?`; got != want {
		t.Errorf("DidYouMean = %q, want %q", got, want)
	}
	if got := DidYouMean("zzz", []string{"scopes_used"}); got != "" {
		t.Errorf("DidYouMean with nothing near = %q, want empty", got)
	}
}

func BenchmarkClosest(b *testing.B) {
	cands := []string{"issuers", "routes", "scopes", "segments", "clients", "default", "networks", "windows", "lookups", "trusted_proxies"}
	b.ReportAllocs()
	for b.Loop() {
		Closest("trusted_proxys", cands)
	}
}
