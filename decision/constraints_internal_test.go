package decision

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestPrefixSetContains(t *testing.T) {
	set := newPrefixSet([]netip.Prefix{
		netip.MustParsePrefix("10.0.0.0/8"),
		netip.MustParsePrefix("10.1.0.0/16"), // inside 10.0.0.0/8: dropped
		netip.MustParsePrefix("192.168.1.0/24"),
		netip.MustParsePrefix("192.168.3.7/32"),
		netip.MustParsePrefix("::ffff:172.16.0.0/108"), // IPv4-mapped: 172.16.0.0/12
		netip.MustParsePrefix("2001:db8::/32"),
		netip.MustParsePrefix("2001:db8:1::/48"), // inside 2001:db8::/32
		netip.MustParsePrefix("fd00::/8"),
	})
	if len(set.v4) != 4 || len(set.v6) != 2 {
		t.Fatalf("v4 %v v6 %v: nested prefixes were not merged", set.v4, set.v6)
	}
	cases := map[string]bool{
		"10.0.0.0":        true,
		"10.255.255.255":  true,
		"11.0.0.0":        false,
		"9.255.255.255":   false,
		"192.168.1.200":   true,
		"192.168.2.1":     false,
		"192.168.3.7":     true,
		"192.168.3.8":     false,
		"172.16.0.1":      true,
		"172.31.255.255":  true,
		"172.32.0.0":      false,
		"2001:db8::1":     true,
		"2001:db8:ffff::": true,
		"2001:db9::":      false,
		"fd12::1":         true,
		"fe80::1":         false,
		"::":              false,
		"0.0.0.0":         false,
	}
	for addr, want := range cases {
		t.Run(addr, func(t *testing.T) {
			if got := set.contains(normAddr(netip.MustParseAddr(addr))); got != want {
				t.Fatalf("contains(%s) = %v, want %v", addr, got, want)
			}
		})
	}
}

func TestClientAddr(t *testing.T) {
	cidrs := newPrefixSet([]netip.Prefix{netip.MustParsePrefix("192.0.2.0/24"), netip.MustParsePrefix("2001:db8:ffff::/48")})
	none := trustedProxies{}
	hops1 := trustedProxies{enabled: true, hops: 1}
	hops2 := trustedProxies{enabled: true, hops: 2}
	byCIDR := trustedProxies{enabled: true, cidrs: cidrs, hasCIDRs: true}
	both := trustedProxies{enabled: true, hops: 1, cidrs: cidrs, hasCIDRs: true}
	cases := map[string]struct {
		tp   trustedProxies
		peer string
		xff  string
		want string // "" for unknown
		hops int
	}{
		"no proxies: peer, XFF ignored":         {tp: none, peer: "203.0.113.1", xff: "10.0.0.1", want: "203.0.113.1"},
		"no proxies: mapped peer unmapped":      {tp: none, peer: "::ffff:203.0.113.1", want: "203.0.113.1"},
		"one hop: rightmost entry":              {tp: hops1, peer: "198.51.100.1", xff: "1.1.1.1, 10.0.0.1", want: "10.0.0.1", hops: 1},
		"one hop: no XFF means unknown":         {tp: hops1, peer: "198.51.100.1", want: ""},
		"two hops":                              {tp: hops2, peer: "198.51.100.1", xff: "1.1.1.1, 10.0.0.1, 198.51.100.2", want: "10.0.0.1", hops: 2},
		"two hops, too few entries":             {tp: hops2, peer: "198.51.100.1", xff: "10.0.0.1", want: ""},
		"cidrs: untrusted peer":                 {tp: byCIDR, peer: "203.0.113.1", xff: "10.0.0.1", want: "203.0.113.1"},
		"cidrs: skip every trusted proxy":       {tp: byCIDR, peer: "192.0.2.1", xff: "6.6.6.6, 10.0.0.1, 192.0.2.3, 192.0.2.2", want: "10.0.0.1", hops: 3},
		"cidrs: IPv6 proxies":                   {tp: byCIDR, peer: "2001:db8:ffff::1", xff: "2001:db8::7, 2001:db8:ffff::2", want: "2001:db8::7", hops: 2},
		"cidrs: chain ends at a proxy":          {tp: byCIDR, peer: "192.0.2.1", xff: "192.0.2.2", want: ""},
		"cidrs and hops: hop bound":             {tp: both, peer: "192.0.2.1", xff: "10.0.0.1, 192.0.2.2", want: "192.0.2.2", hops: 1},
		"cidrs and hops: untrusted first hop":   {tp: both, peer: "203.0.113.1", xff: "10.0.0.1", want: "203.0.113.1"},
		"garbage entry":                         {tp: byCIDR, peer: "192.0.2.1", xff: "10.0.0.1, not-an-ip", want: ""},
		"entry with port":                       {tp: byCIDR, peer: "192.0.2.1", xff: "10.0.0.1:443", want: "10.0.0.1", hops: 1},
		"bracketed IPv6 without port":           {tp: byCIDR, peer: "192.0.2.1", xff: "[2001:db8::9]", want: "2001:db8::9", hops: 1},
		"mapped entry":                          {tp: byCIDR, peer: "192.0.2.1", xff: "::ffff:10.0.0.1", want: "10.0.0.1", hops: 1},
		"mapped proxy address is still a proxy": {tp: byCIDR, peer: "::ffff:192.0.2.1", xff: "10.0.0.1", want: "10.0.0.1", hops: 1},
		"spaces and empty tail":                 {tp: byCIDR, peer: "192.0.2.1", xff: " 10.0.0.1 ,", want: ""},
		"no peer":                               {tp: byCIDR, xff: "10.0.0.1", want: ""},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			var peer netip.Addr
			if tc.peer != "" {
				peer = netip.MustParseAddr(tc.peer)
			}
			got, known, hops := tc.tp.clientAddr(peer, tc.xff)
			switch {
			case tc.want == "" && known:
				t.Fatalf("client = %s, want unknown", got)
			case tc.want != "" && (!known || got != netip.MustParseAddr(tc.want)):
				t.Fatalf("client = %s (known %v), want %s", got, known, tc.want)
			case known && hops != tc.hops:
				t.Fatalf("hops = %d, want %d", hops, tc.hops)
			}
		})
	}
}

func mustWindow(t *testing.T, spec *WindowSpec) *window {
	t.Helper()
	c := &compiler{}
	w := c.compileWindow("w", spec)
	if len(c.probs) > 0 || w == nil {
		t.Fatalf("window does not compile: %v", c.probs)
	}
	return w
}

func TestWindowContains(t *testing.T) {
	ny := &WindowSpec{Zone: "America/New_York", From: "01:30", To: "03:30"}
	nyFallBack := &WindowSpec{Zone: "America/New_York", From: "01:00", To: "01:30"}
	overnight := &WindowSpec{Zone: "Europe/Berlin", Days: []string{"fri"}, From: "22:00", To: "02:00"}
	weekend := &WindowSpec{Zone: "Asia/Tokyo", Days: []string{"sat-sun"}}
	instants := &WindowSpec{Dates: &DateRangeSpec{From: "2026-05-01T10:00:00+02:00", To: "2026-05-01T12:00:00+02:00"}}
	dates := &WindowSpec{Zone: "Pacific/Auckland", Dates: &DateRangeSpec{From: "2026-12-24", To: "2026-12-26"}}
	openEnded := &WindowSpec{Dates: &DateRangeSpec{From: "2027-01-01"}}
	datesAndHours := &WindowSpec{Zone: "UTC", From: "09:00", To: "10:00", Dates: &DateRangeSpec{From: "2026-06-01", To: "2026-06-01"}}
	cases := map[string]struct {
		spec *WindowSpec
		at   string
		want bool
	}{
		// 2026-03-08: New York springs forward at 02:00 EST (07:00Z) to 03:00 EDT.
		"spring forward: 01:30 EST":                {ny, "2026-03-08T06:30:00Z", true},
		"spring forward: 01:59 EST":                {ny, "2026-03-08T06:59:00Z", true},
		"spring forward: 03:00 EDT, an hour later": {ny, "2026-03-08T07:00:00Z", true},
		"spring forward: 03:29 EDT":                {ny, "2026-03-08T07:29:00Z", true},
		"spring forward: 03:30 EDT closes":         {ny, "2026-03-08T07:30:00Z", false},
		"day before: 07:30Z is 02:30 EST, open":    {ny, "2026-03-07T07:30:00Z", true},
		"day after: 07:30Z is 03:30 EDT, closed":   {ny, "2026-03-09T07:30:00Z", false},
		"day after: 06:30Z is 02:30 EDT, open":     {ny, "2026-03-09T06:30:00Z", true},
		// 2026-11-01: 02:00 EDT (06:00Z) falls back to 01:00 EST; 01:xx happens twice.
		"fall back: 01:00 EDT":          {nyFallBack, "2026-11-01T05:00:00Z", true},
		"fall back: 01:29 EDT":          {nyFallBack, "2026-11-01T05:29:00Z", true},
		"fall back: 01:45 EDT":          {nyFallBack, "2026-11-01T05:45:00Z", false},
		"fall back: 01:15 EST, again":   {nyFallBack, "2026-11-01T06:15:00Z", true},
		"fall back: 01:30 EST":          {nyFallBack, "2026-11-01T06:30:00Z", false},
		"fall back: 2h window lasts 3h": {ny, "2026-11-01T08:29:00Z", true},
		"fall back: 03:30 EST":          {ny, "2026-11-01T08:30:00Z", false},
		"overnight: friday 23:00":       {overnight, "2026-11-27T22:00:00Z", true},
		"overnight: saturday 01:59":     {overnight, "2026-11-28T00:59:00Z", true},
		"overnight: saturday 02:00":     {overnight, "2026-11-28T01:00:00Z", false},
		"overnight: friday 21:59":       {overnight, "2026-11-27T20:59:00Z", false},
		"overnight: thursday 23:00":     {overnight, "2026-11-26T22:00:00Z", false},
		"overnight: friday 01:00":       {overnight, "2026-11-27T00:00:00Z", false},
		"weekend in tokyo: sat 00:30":   {weekend, "2026-11-27T15:30:00Z", true},
		"weekend in tokyo: fri 23:30":   {weekend, "2026-11-27T14:30:00Z", false},
		"weekend in tokyo: mon 00:00":   {weekend, "2026-11-29T15:00:00Z", false},
		"instants: start is inclusive":  {instants, "2026-05-01T08:00:00Z", true},
		"instants: end is exclusive":    {instants, "2026-05-01T10:00:00Z", false},
		"instants: before":              {instants, "2026-05-01T07:59:59Z", false},
		"dates in auckland: first day":  {dates, "2026-12-23T11:00:00Z", true},
		"dates: before the first day":   {dates, "2026-12-23T10:59:59Z", false},
		"dates: end of the last day":    {dates, "2026-12-26T10:59:59Z", true},
		"dates: after the last day":     {dates, "2026-12-26T11:00:00Z", false},
		"open-ended: after":             {openEnded, "2030-01-01T00:00:00Z", true},
		"open-ended: before":            {openEnded, "2026-12-31T23:59:59Z", false},
		"dates and hours: both hold":    {datesAndHours, "2026-06-01T09:30:00Z", true},
		"dates and hours: wrong hour":   {datesAndHours, "2026-06-01T10:30:00Z", false},
		"dates and hours: wrong day":    {datesAndHours, "2026-06-02T09:30:00Z", false},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			at, err := time.Parse(time.RFC3339, tc.at)
			if err != nil {
				t.Fatal(err)
			}
			if got := mustWindow(t, tc.spec).contains(at); got != tc.want {
				t.Fatalf("contains(%s = %s local) = %v, want %v", tc.at, at.In(mustWindow(t, tc.spec).loc).Format("Mon 15:04 MST"), got, tc.want)
			}
		})
	}
}

func TestWindowProblems(t *testing.T) {
	cases := map[string]struct {
		spec *WindowSpec
		want string
	}{
		"bad weekday":      {&WindowSpec{Days: []string{"mon", "funday"}}, `"funday" is not a weekday`},
		"bad range":        {&WindowSpec{Days: []string{"mon-xyz"}}, "is not a weekday range"},
		"bad hour":         {&WindowSpec{From: "9:00"}, `"9:00" is not a time of day`},
		"24:00 start":      {&WindowSpec{From: "24:00", To: "23:00"}, "can only end a window"},
		"empty hours":      {&WindowSpec{From: "10:00", To: "10:00"}, "an empty window"},
		"bad zone":         {&WindowSpec{Zone: "Europe/Atlantis", Days: []string{"mon"}}, `unknown time zone "Europe/Atlantis"`},
		"local zone":       {&WindowSpec{Zone: "Local", Days: []string{"mon"}}, `"Local" depends on the machine`},
		"nothing":          {&WindowSpec{Zone: "UTC"}, "restricts nothing"},
		"bad date":         {&WindowSpec{Dates: &DateRangeSpec{From: "2026-13-01"}}, "neither a date"},
		"backwards dates":  {&WindowSpec{Dates: &DateRangeSpec{From: "2026-02-01", To: "2026-01-31"}}, "before it starts"},
		"empty date range": {&WindowSpec{Dates: &DateRangeSpec{}}, "dates needs from, to or both"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			c := &compiler{}
			if w := c.compileWindow("w", tc.spec); w != nil {
				t.Fatal("a bad window compiled")
			}
			var msgs []string
			for _, p := range c.probs {
				msgs = append(msgs, p.Message)
			}
			if !strings.Contains(strings.Join(msgs, "\n"), tc.want) {
				t.Fatalf("problems %q do not mention %q", msgs, tc.want)
			}
		})
	}
}

func TestParseDays(t *testing.T) {
	cases := map[string]uint8{
		"mon":     1 << time.Monday,
		"Sunday":  1 << time.Sunday,
		"mon-fri": 1<<time.Monday | 1<<time.Tuesday | 1<<time.Wednesday | 1<<time.Thursday | 1<<time.Friday,
		"fri-mon": 1<<time.Friday | 1<<time.Saturday | 1<<time.Sunday | 1<<time.Monday,
		"sat-sat": 1 << time.Saturday,
	}
	for in, want := range cases {
		t.Run(in, func(t *testing.T) {
			got, err := parseDays(in)
			if err != nil || got != want {
				t.Fatalf("parseDays(%q) = %07b, %v; want %07b", in, got, err, want)
			}
		})
	}
}

func claimsJSON(t *testing.T, s string) map[string]any {
	t.Helper()
	d := json.NewDecoder(strings.NewReader(s))
	d.UseNumber()
	var m map[string]any
	if err := d.Decode(&m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestClaimConditions(t *testing.T) {
	claims := `{"tenant": "acme", "groups": ["staff", "on-call"], "roles": "admin support", "level": 3,
		"ratio": 0.5, "big": 12345678901234567, "verified": true, "nothing": null,
		"realm_access": {"roles": ["auditor"]}, "a.b": "literal", "a": {"b": "nested"}}`
	str := func(s string) ClaimValue { return ClaimValue{Kind: "string", Text: s} }
	num := func(s string) ClaimValue { return ClaimValue{Kind: "number", Text: s} }
	yes := true
	no := false
	cases := map[string]struct {
		spec ClaimConditionSpec
		want bool
	}{
		"equals string":                      {ClaimConditionSpec{Claim: "tenant", Equals: &ClaimValue{Kind: "string", Text: "acme"}}, true},
		"equals other string":                {ClaimConditionSpec{Claim: "tenant", Equals: &ClaimValue{Kind: "string", Text: "Acme"}}, false},
		"equals on an array is false":        {ClaimConditionSpec{Claim: "groups", Equals: &ClaimValue{Kind: "string", Text: "staff"}}, false},
		"equals number":                      {ClaimConditionSpec{Claim: "level", Equals: &ClaimValue{Kind: "number", Text: "3"}}, true},
		"equals number written as float":     {ClaimConditionSpec{Claim: "level", Equals: &ClaimValue{Kind: "number", Text: "3.0"}}, true},
		"number does not equal string":       {ClaimConditionSpec{Claim: "level", Equals: &ClaimValue{Kind: "string", Text: "3"}}, false},
		"equals fraction":                    {ClaimConditionSpec{Claim: "ratio", Equals: &ClaimValue{Kind: "number", Text: "0.5"}}, true},
		"big integers compare exactly":       {ClaimConditionSpec{Claim: "big", Equals: &ClaimValue{Kind: "number", Text: "12345678901234568"}}, false},
		"big integer equal":                  {ClaimConditionSpec{Claim: "big", Equals: &ClaimValue{Kind: "number", Text: "12345678901234567"}}, true},
		"equals bool":                        {ClaimConditionSpec{Claim: "verified", Equals: &ClaimValue{Kind: "bool", Text: "true"}}, true},
		"bool does not equal string":         {ClaimConditionSpec{Claim: "verified", Equals: &ClaimValue{Kind: "string", Text: "true"}}, false},
		"in scalar":                          {ClaimConditionSpec{Claim: "tenant", In: ClaimValues{str("globex"), str("acme")}}, true},
		"in scalar, none":                    {ClaimConditionSpec{Claim: "tenant", In: ClaimValues{str("globex")}}, false},
		"in array intersects":                {ClaimConditionSpec{Claim: "groups", In: ClaimValues{str("admins"), str("on-call")}}, true},
		"in array, none":                     {ClaimConditionSpec{Claim: "groups", In: ClaimValues{str("admins")}}, false},
		"in numbers":                         {ClaimConditionSpec{Claim: "level", In: ClaimValues{num("1"), num("3")}}, true},
		"contains in array":                  {ClaimConditionSpec{Claim: "groups", Contains: &ClaimValue{Kind: "string", Text: "on-call"}}, true},
		"contains, absent":                   {ClaimConditionSpec{Claim: "groups", Contains: &ClaimValue{Kind: "string", Text: "on"}}, false},
		"contains in space-separated string": {ClaimConditionSpec{Claim: "roles", Contains: &ClaimValue{Kind: "string", Text: "support"}}, true},
		"contains is not a substring match":  {ClaimConditionSpec{Claim: "roles", Contains: &ClaimValue{Kind: "string", Text: "sup"}}, false},
		"contains on a missing claim":        {ClaimConditionSpec{Claim: "teams", Contains: &ClaimValue{Kind: "string", Text: "x"}}, false},
		"exists":                             {ClaimConditionSpec{Claim: "tenant", Exists: &yes}, true},
		"exists, missing":                    {ClaimConditionSpec{Claim: "teams", Exists: &yes}, false},
		"exists, null":                       {ClaimConditionSpec{Claim: "nothing", Exists: &yes}, false},
		"absent":                             {ClaimConditionSpec{Claim: "teams", Exists: &no}, true},
		"absent, null":                       {ClaimConditionSpec{Claim: "nothing", Exists: &no}, true},
		"absent, present":                    {ClaimConditionSpec{Claim: "tenant", Exists: &no}, false},
		"nested path":                        {ClaimConditionSpec{Claim: "realm_access.roles", Contains: &ClaimValue{Kind: "string", Text: "auditor"}}, true},
		"literal dotted name wins":           {ClaimConditionSpec{Claim: "a.b", Equals: &ClaimValue{Kind: "string", Text: "literal"}}, true},
		"nested path through a scalar":       {ClaimConditionSpec{Claim: "tenant.x", Exists: &yes}, false},
	}
	m := claimsJSON(t, claims)
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			c := &compiler{}
			cc, ok := c.compileClaimCond(&tc.spec, "route r", nil, "when.claims[0]")
			if !ok {
				t.Fatalf("does not compile: %v", c.probs)
			}
			if got := cc.holds(m); got != tc.want {
				t.Fatalf("holds = %v, want %v", got, tc.want)
			}
		})
	}
}

func selfSigned(t testing.TB) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "c"}, NotBefore: time.Unix(0, 0), NotAfter: time.Unix(1<<32, 0)}
	der, err := x509.CreateCertificate(rand.Reader, tpl, tpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func TestCertThumbprint(t *testing.T) {
	der := selfSigned(t)
	sum := sha256.Sum256(der)
	want := base64.RawURLEncoding.EncodeToString(sum[:])
	b64 := base64.StdEncoding.EncodeToString(der)
	var lines []string
	for s := b64; s != ""; {
		n := min(64, len(s))
		lines = append(lines, s[:n])
		s = s[n:]
	}
	pemText := "-----BEGIN CERTIFICATE-----\n" + strings.Join(lines, "\n") + "\n-----END CERTIFICATE-----\n"
	cases := map[string]struct {
		in string
		ok bool
	}{
		"PEM":                   {pemText, true},
		"PEM with CRLF":         {strings.ReplaceAll(pemText, "\n", "\r\n"), true},
		"URL-encoded PEM (%20)": {strings.ReplaceAll(url.PathEscape(pemText), "+", "%2B"), true},
		"form-encoded PEM (+)":  {url.QueryEscape(pemText), true},
		"RFC 9440":              {":" + b64 + ":", true},
		"bare base64 DER":       {b64, true},
		"XFCC hash":             {strings.ToUpper(hexOf(sum[:])), true},
		"XFCC hash, lowercase":  {hexOf(sum[:]), true},
		"empty":                 {"", false},
		"not base64":            {":***:", false},
		"base64 of a non-cert":  {":" + base64.StdEncoding.EncodeToString([]byte("hello")) + ":", false},
		"PEM of another type":   {strings.ReplaceAll(pemText, "CERTIFICATE", "PRIVATE KEY"), false},
		"PEM without end":       {strings.Split(pemText, "-----END")[0], false},
		"bad percent escape":    {"%zz", false},
		"63 hex digits":         {hexOf(sum[:])[1:], false},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			got, ok := certThumbprint(tc.in)
			if ok != tc.ok || (ok && got != want) {
				t.Fatalf("certThumbprint = %q, %v; want %q, %v", got, ok, want, tc.ok)
			}
			cache := newCertCache()
			for range 2 {
				if got2, ok2 := cache.thumbprint(tc.in); got2 != got || ok2 != ok {
					t.Fatalf("cached thumbprint = %q, %v; uncached %q, %v", got2, ok2, got, ok)
				}
			}
		})
	}
}

func hexOf(b []byte) string {
	const digits = "0123456789abcdef"
	out := make([]byte, 0, 2*len(b))
	for _, c := range b {
		out = append(out, digits[c>>4], digits[c&15])
	}
	return string(out)
}

func TestStepUpOnlyForItsDeny(t *testing.T) {
	d := Decision{Code: InsufficientScope}
	if _, maxAge, ok := d.StepUp(); ok || maxAge != -1 {
		t.Fatal("StepUp is ok for insufficient_scope")
	}
	d = Decision{Code: InsufficientUserAuthentication, Route: &Route{}, Detail: "something else"}
	if _, _, ok := d.StepUp(); ok {
		t.Fatal("StepUp is ok for a detail no rule owns")
	}
}

// compileConstraintFixture compiles testdata/constraints/policy.yaml with
// an empty key set.
func compileConstraintFixture(t testing.TB) *Policy {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "constraints", "policy.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	pol, err := Compile(data, "policy.yaml", CompileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return pol
}

func TestConstraintWarnings(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("testdata", "constraints", "policy.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	text := strings.Replace(string(data), "environment: prod\n", "", 1)
	text = strings.Replace(text, "networks:\n", "networks:\n  spare: [192.0.2.0/24]\n", 1)
	text = strings.Replace(text, "windows:\n", "windows:\n  never: {days: [sun]}\n", 1)
	text = strings.Replace(text, "lookups:\n", "lookups:\n  customers: {}\n", 1)
	pf, li, probs := parsePolicyFile([]byte(text), "policy.yaml")
	if hasErrors(probs) {
		t.Fatalf("parse: %v", probs)
	}
	c := &compiler{file: "policy.yaml", li: li}
	c.compile(pf, ".", false)
	want := map[string]string{
		"networks.spare":               `network "spare" is not used`,
		"windows.never":                `window "never" is not used`,
		"lookups.customers":            `lookup "customers" is not used`,
		"scopes[13].when.environments": "set environment at the top of the policy",
	}
	got := map[string]Problem{}
	for _, p := range c.probs {
		if !p.Warning {
			t.Errorf("unexpected error: %s", p)
		}
		got[p.Field] = p
	}
	for field, msg := range want {
		p, ok := got[field]
		if !ok || !strings.Contains(p.Message, msg) || p.Line == 0 {
			t.Errorf("%s: got %+v, want a warning with a line containing %q", field, p, msg)
		}
	}
	for field, p := range got {
		if strings.HasPrefix(field, "networks.corp") || strings.HasPrefix(field, "windows.freeze") || strings.HasPrefix(field, "lookups.orders") {
			t.Errorf("a used definition is reported: %s", p)
		}
	}
}

type memOwners map[string][]string

func (m memOwners) Owners(_ context.Context, _, key string) ([]string, bool, error) {
	o, ok := m[key]
	return o, ok, nil
}

func (m memOwners) CachedOwners(_, key string) ([]string, bool, bool) {
	o, ok := m[key]
	return o, ok, true
}

// BenchmarkCheckConstraints measures the constraint checks alone, for the
// route whose scope has every kind of constraint, with a cached ownership
// answer.
func BenchmarkCheckConstraints(b *testing.B) {
	pol := compileConstraintFixture(b)
	now := time.Date(2026, 11, 24, 15, 0, 0, 0, time.UTC)
	e, err := NewEngine(pol, Options{Keys: StaticKeyResolver(StaticKeys{}), Clock: func() time.Time { return now }, Ownership: memOwners{"42": {"alice"}}})
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	der := selfSigned(b)
	sum := sha256.Sum256(der)
	tok := &Token{
		Subject: "alice", Scopes: []string{"orders:write"},
		iat: dateAt(now.Add(-5 * time.Minute).UnixNano()), exp: dateAt(now.Add(55 * time.Minute).UnixNano()), authTime: dateAt(now.Add(-5 * time.Minute).UnixNano()),
		ACR: "urn:mfa", AMR: []string{"pwd", "mfa"}, CnfX5tS256: base64.RawURLEncoding.EncodeToString(sum[:]),
	}
	tok.SetClaims(map[string]any{
		"sub": "alice", "groups": []any{"staff", "on-call"}, "tenant": "acme", "roles": []any{"admin"}, "email_verified": true,
	})
	r := &Request{
		Method: "PUT", Path: "/orders/42", SourceIP: netip.MustParseAddr("192.0.2.10"), ForwardedFor: "203.0.113.9, 10.1.2.3",
		ClientCertificate: url.QueryEscape("-----BEGIN CERTIFICATE-----\n" + base64.StdEncoding.EncodeToString(der) + "\n-----END CERTIFICATE-----\n"),
	}
	d := Decision{Policy: pol, Token: tok, used: 1}
	d.Route, _ = pol.router.match("PUT", "/orders/42", &d.Params)
	if d.Route == nil {
		b.Fatal("no route")
	}
	ctx := context.Background()
	if code, detail := e.checkConstraints(ctx, r, &d, now); code != OK {
		b.Fatalf("setup: %s %s", code, detail)
	}
	b.ReportAllocs()
	for b.Loop() {
		if code, _ := e.checkConstraints(ctx, r, &d, now); code != OK {
			b.Fatal(code)
		}
	}
}
