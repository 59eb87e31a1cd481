package audit

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/scopegate/scopegate/decision"
	"github.com/scopegate/scopegate/store/audit/audittest"
)

func TestAppendString(t *testing.T) {
	cases := map[string]string{
		"plain":        "hello",
		"quote":        `a"b\c`,
		"controls":     "a\nb\rc\td\x00e\x1f",
		"unicode":      "café ☕ 日本",
		"invalid utf8": "a\xffb\xc3",
		"js breaks":    "a\u2028b\u2029c",
		"empty":        "",
		"html":         "<script>&</script>",
	}
	for name, s := range cases {
		t.Run(name, func(t *testing.T) {
			b := appendString(nil, s)
			if !json.Valid(b) {
				t.Fatalf("not valid JSON: %q", b)
			}
			var got string
			if err := json.Unmarshal(b, &got); err != nil {
				t.Fatal(err)
			}
			want := s
			if !utf8.ValidString(s) {
				want = string([]rune(s)) // invalid bytes become U+FFFD
			}
			if got != want {
				t.Errorf("round trip: got %q, want %q", got, want)
			}
			for _, c := range b {
				if c == '\n' || c == '\r' {
					t.Errorf("output holds a raw line break: %q", b)
				}
			}
		})
	}
}

func TestTruncate(t *testing.T) {
	cases := map[string]struct {
		s    string
		n    int
		want string
	}{
		"short":          {"abc", 5, "abc"},
		"cut":            {"abcdef", 3, "abc"},
		"rune boundary":  {"aé", 2, "a"},
		"exact boundary": {"aé", 3, "aé"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			if got := truncate(c.s, c.n); got != c.want {
				t.Errorf("truncate(%q, %d) = %q, want %q", c.s, c.n, got, c.want)
			}
		})
	}
}

// BenchmarkAuditEncode is the drain goroutine's cost per record: the JSON
// of an allow with drift and a deprecated scope (off the decision path).
func BenchmarkAuditEncode(b *testing.B) {
	f := audittest.New(b)
	tok := f.Token(b, "alice", "mobile-app", "orders:v1 admin:all")
	r, d := f.Decide("GET", "/orders/1", tok)
	ev := Event{Decision: d, Time: audittest.Now, Latency: 3 * time.Microsecond, Method: r.Method, Host: r.Host, RequestID: r.RequestID, DecisionID: "0123456789abcdef", write: true}
	var buf []byte
	b.ReportAllocs()
	for b.Loop() {
		buf, _ = appendDecision(buf[:0], &ev, nil)
	}
	b.SetBytes(int64(len(buf)))
}

// BenchmarkAuditMask is the cost of masking on the drain goroutine: the
// record of BenchmarkAuditEncode without rules, and with drops and
// hashes (each hash is one HMAC-SHA256 of the value).
func BenchmarkAuditMask(b *testing.B) {
	f := audittest.New(b)
	tok := f.Token(b, "alice", "mobile-app", "orders:v1 admin:all")
	r, d := f.Decide("GET", "/orders/1", tok)
	ev := Event{Decision: d, Time: audittest.Now, Latency: 3 * time.Microsecond, Method: r.Method, Host: r.Host, RequestID: r.RequestID, DecisionID: "0123456789abcdef", write: true}
	key := []byte("0123456789abcdef0123456789abcdef")
	for _, c := range []struct{ name, spec string }{
		{"none", ""},
		{"drop-subject", "claim:sub=drop"},
		{"hash-client", "client_id=hash"},
		{"hash-client-drop-subject-ip", "client_id=hash,claim:sub=drop,source_ip=drop"},
		{"hash-scopes", "claim:scope=hash"},
	} {
		b.Run(c.name, func(b *testing.B) {
			rules, err := ParseMask(c.spec)
			if err != nil {
				b.Fatal(err)
			}
			m, err := newMasker(rules, key)
			if err != nil {
				b.Fatal(err)
			}
			var buf []byte
			b.ReportAllocs()
			for b.Loop() {
				buf, _ = appendDecision(buf[:0], &ev, m)
			}
			b.SetBytes(int64(len(buf)))
		})
	}
}

func TestAppendShadow(t *testing.T) {
	route := &decision.Route{Name: "order-strict"}
	for name, tc := range map[string]struct {
		sh   decision.ShadowOutcome
		want string
	}{
		"route would deny":  {decision.ShadowOutcome{Route: route, Code: decision.InsufficientScope}, `"shadow":{"kind":"route","route":"order-strict","decision":"deny","reason":"insufficient_scope"}`},
		"route would allow": {decision.ShadowOutcome{Route: route, Allow: true, Code: decision.OK}, `"shadow":{"kind":"route","route":"order-strict","decision":"allow","reason":"ok"}`},
		"scopes would deny": {decision.ShadowOutcome{Route: route, Code: decision.SourceIPNotAllowed, Scopes: true}, `"shadow":{"kind":"scopes","route":"order-strict","decision":"deny","reason":"source_ip_not_allowed"}`},
	} {
		t.Run(name, func(t *testing.T) {
			ev := &Event{Decision: decision.Decision{Allow: true, Code: decision.OK, Shadow: tc.sh}}
			line, _ := appendDecision(nil, ev, nil)
			if !strings.Contains(string(line), tc.want) {
				t.Fatalf("record %s\nwant it to contain %s", line, tc.want)
			}
		})
	}
	line, _ := appendDecision(nil, &Event{Decision: decision.Decision{Allow: true, Code: decision.OK}}, nil)
	if strings.Contains(string(line), "shadow") {
		t.Fatalf("a decision without a shadow rule records one: %s", line)
	}
}
