package decision

import (
	"strings"
	"testing"
	"unicode/utf8"
	"unsafe"
)

func TestNormalizePath(t *testing.T) {
	semi := &PathSpec{AllowSemicolon: true}
	tests := map[string]struct {
		in     string
		opts   *PathSpec
		want   string // normalized path; "" when rejected
		detail string // the rejection message when rejected
	}{
		"root":                      {in: "/", want: "/"},
		"already normal":            {in: "/orders/17/items", want: "/orders/17/items"},
		"dotdot resolved":           {in: "/orders/../admin", want: "/admin"},
		"dot resolved":              {in: "/orders/./17", want: "/orders/17"},
		"encoded dotdot":            {in: "/orders/%2e%2e/admin", detail: pathMsgEncodedDot},
		"encoded dotdot upper":      {in: "/orders/%2E%2E/admin", detail: pathMsgEncodedDot},
		"half encoded dotdot":       {in: "/orders/.%2e/admin", detail: pathMsgEncodedDot},
		"encoded dot":               {in: "/a/%2e/b", detail: pathMsgEncodedDot},
		"encoded dot at end":        {in: "/a/%2E", detail: pathMsgEncodedDot},
		"encoded dot in a name":     {in: "/a/%2e%2e%2e/b.%2ejs", want: "/a/.../b..js"},
		"dotdot at end":             {in: "/a/b/..", want: "/a/"},
		"dot at end":                {in: "/a/b/.", want: "/a/b/"},
		"dotdot to root":            {in: "/a/..", want: "/"},
		"three dots is a name":      {in: "/a/.../b", want: "/a/.../b"},
		"dot prefix is a name":      {in: "/a/.well-known/x", want: "/a/.well-known/x"},
		"double slash leading":      {in: "//admin", want: "/admin"},
		"double slash inside":       {in: "/a//b///c", want: "/a/b/c"},
		"only slashes":              {in: "///", want: "/"},
		"trailing slash kept":       {in: "/orders/1/", want: "/orders/1/"},
		"double trailing slash":     {in: "/orders/1//", want: "/orders/1/"},
		"unreserved decoded":        {in: "/%61%62c%7E%2D%5f", want: "/abc~-_"},
		"non-ASCII decoded":         {in: "/a%c3%A9b", want: "/a\u00e9b"},
		"non-ASCII raw and escape":  {in: "/a\xc3%A9b", want: "/a\u00e9b"},
		"ends-or-cuts kept":         {in: "/a%3fb%23c%20d", want: "/a%3Fb%23c%20d"},
		"reserved decoded":          {in: "/users/%40me", want: "/users/@me"},
		"colon decoded":             {in: "/docs/internal%3Asecrets", want: "/docs/internal:secrets"},
		"sub-delims decoded":        {in: "/%21%24%26%27%28%29%2A%2B%2C%3D", want: "/!$&'()*+,="},
		"other printable decoded":   {in: "/%22%3C%3E%5B%5D%5E%60%7B%7C%7D", want: "/\"<>[]^`{|}"},
		"controls kept":             {in: "/a%0a%7f%1F", want: "/a%0A%7F%1F"},
		"percent kept encoded":      {in: "/100%25", want: "/100%25"},
		"percent then one hex":      {in: "/100%25a", want: "/100%25a"},
		"percent then escape":       {in: "/100%25%3F", want: "/100%25%3F"},
		"double encoding":           {in: "/%252e%252e/x", detail: pathMsgDoubleEscape},
		"double encoding upper":     {in: "/%2541", detail: pathMsgDoubleEscape},
		"double encoding built":     {in: "/%25%34%31", detail: pathMsgDoubleEscape},
		"double encoding at end":    {in: "/x/%25ff/", detail: pathMsgDoubleEscape},
		"query dropped":             {in: "/orders?id=1&x=%2F", want: "/orders"},
		"query with slashes":        {in: "/a?b=/../c", want: "/a"},
		"raw hash":                  {in: "/orders#top", detail: pathMsgHash},
		"raw hash dotdot":           {in: "/healthz#/../admin/x", detail: pathMsgHash},
		"raw hash slow":             {in: "//healthz#/../admin/x", detail: pathMsgHash},
		"raw hash first":            {in: "#x", detail: pathMsgNoSlash},
		"raw hash after root":       {in: "/#", detail: pathMsgHash},
		"raw hash in dot segment":   {in: "/a/..#", detail: pathMsgHash},
		"hash in query is query":    {in: "/a?b#c", want: "/a"},
		"encoded hash kept":         {in: "/a%23b", want: "/a%23b"},
		"empty path with query":     {in: "/?x", want: "/"},
		"unicode kept":              {in: "/caf\u00e9/\u65e5\u672c", want: "/caf\u00e9/\u65e5\u672c"},
		"raw invalid UTF-8":         {in: "/a\xff\xfe", detail: pathMsgBadUTF8},
		"raw truncated UTF-8":       {in: "/a\xc3", detail: pathMsgBadUTF8},
		"raw UTF-8 cut by query":    {in: "/a\xc3?\xa9", detail: pathMsgBadUTF8},
		"encoded invalid UTF-8":     {in: "/a%ff", detail: pathMsgBadUTF8},
		"encoded overlong slash":    {in: "/a%C0%AF", detail: pathMsgBadUTF8},
		"encoded surrogate":         {in: "/a%ED%A0%80", detail: pathMsgBadUTF8},
		"UTF-8 split by a slash":    {in: "/a%C3/%A9", detail: pathMsgBadUTF8},
		"semicolon allowed":         {in: "/a;b=1/c", opts: semi, want: "/a;b=1/c"},
		"semicolon allowed slow":    {in: "/a;b=1//c", opts: semi, want: "/a;b=1/c"},
		"encoded semicolon":         {in: "/a%3bb", want: "/a%3Bb"},
		"encoded semicolon allowed": {in: "/a%3bb", opts: semi, want: "/a;b"},
		"nil opts":                  {in: "/x", opts: nil, want: "/x"},
		"case kept":                 {in: "/Orders/ABC", want: "/Orders/ABC"},
		"empty":                     {in: "", detail: pathMsgEmpty},
		"only query":                {in: "?a=b", detail: pathMsgEmpty},
		"relative":                  {in: "orders/1", detail: pathMsgNoSlash},
		"absolute form":             {in: "http://h/orders", detail: pathMsgNoSlash},
		"asterisk":                  {in: "*", detail: pathMsgNoSlash},
		"encoded slash":             {in: "/a%2Fb", detail: pathMsgEncodedSlash},
		"encoded slash lower":       {in: "/a%2fb", detail: pathMsgEncodedSlash},
		"encoded backslash":         {in: "/a%5Cb", detail: pathMsgEncodedBSlash},
		"encoded backslash lower":   {in: "/a%5cb", detail: pathMsgEncodedBSlash},
		"encoded NUL":               {in: "/a%00", detail: pathMsgEncodedNUL},
		"raw backslash":             {in: "/a\\..\\admin", detail: pathMsgBackslash},
		"raw NUL":                   {in: "/a\x00b", detail: pathMsgNUL},
		"raw NUL slow":              {in: "//a\x00b", detail: pathMsgNUL},
		"control char":              {in: "/a\nb", detail: pathMsgControl},
		"tab":                       {in: "/a\tb", detail: pathMsgControl},
		"DEL":                       {in: "/a\x7fb", detail: pathMsgControl},
		"space":                     {in: "/a b", detail: pathMsgSpace},
		"semicolon":                 {in: "/admin;x=1/users", detail: pathMsgSemicolon},
		"semicolon slow":            {in: "/%61dmin;/users", detail: pathMsgSemicolon},
		"bad escape letters":        {in: "/a%zz", detail: pathMsgBadEscape},
		"bad escape G1":             {in: "/a%G1", detail: pathMsgBadEscape},
		"short escape":              {in: "/a%4", detail: pathMsgBadEscape},
		"trailing percent":          {in: "/a%", detail: pathMsgBadEscape},
		"escape cut by slash":       {in: "/a%4/1", detail: pathMsgBadEscape},
		"escape cut by query":       {in: "/a%4?1", detail: pathMsgBadEscape},
		"above root":                {in: "/..", detail: pathMsgAboveRoot},
		"above root deeper":         {in: "/a/../../b", detail: pathMsgAboveRoot},
		"above root encoded":        {in: "/%2e%2e/etc/passwd", detail: pathMsgEncodedDot},
		"above root after slashes":  {in: "//..//x", detail: pathMsgAboveRoot},
		"too long":                  {in: "/" + strings.Repeat("a", maxPathBytes), detail: pathMsgTooLong},
		"longest accepted":          {in: "/" + strings.Repeat("a", maxPathBytes-1), want: "/" + strings.Repeat("a", maxPathBytes-1)},
		"long query ignored":        {in: "/a?" + strings.Repeat("q", 2*maxPathBytes), want: "/a"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, detail, ok := normalizePath(tc.in, tc.opts)
			if tc.detail != "" {
				if ok {
					t.Fatalf("normalizePath(%.100q) = %.100q, want rejection %.100q", tc.in, got, tc.detail)
				}
				if detail != tc.detail {
					t.Fatalf("normalizePath(%.100q) detail = %.100q, want %.100q", tc.in, detail, tc.detail)
				}
				if got != "" {
					t.Fatalf("rejected normalizePath(%.100q) returned path %.100q", tc.in, got)
				}
				return
			}
			if !ok {
				t.Fatalf("normalizePath(%.100q) rejected: %s", tc.in, detail)
			}
			if got != tc.want {
				t.Fatalf("normalizePath(%.100q) = %.100q, want %.100q", tc.in, got, tc.want)
			}
			again, _, ok := normalizePath(got, tc.opts)
			if !ok || again != got {
				t.Fatalf("normalizePath(%.100q) = %.100q, ok=%v: not idempotent", got, again, ok)
			}
		})
	}
}

// Every rejection reason has its own message, so a path_invalid deny says
// exactly what was wrong.
func TestNormalizePathMessagesDistinct(t *testing.T) {
	msgs := []string{pathMsgEmpty, pathMsgNoSlash, pathMsgTooLong, pathMsgBackslash, pathMsgNUL,
		pathMsgControl, pathMsgSpace, pathMsgSemicolon, pathMsgHash, pathMsgEncodedSlash, pathMsgEncodedBSlash,
		pathMsgEncodedNUL, pathMsgBadEscape, pathMsgDoubleEscape, pathMsgBadUTF8, pathMsgAboveRoot, pathMsgEncodedDot}
	seen := map[string]bool{}
	for _, m := range msgs {
		if m == "" || seen[m] {
			t.Errorf("message %q is empty or repeated", m)
		}
		seen[m] = true
	}
}

// An already-normal path comes back as a substring of the input, unallocated.
func TestNormalizePathFastPathNoCopy(t *testing.T) {
	for _, in := range []string{"/orders/17/items", "/orders/17/?x=%2F", "/a/.b/c..", "/", "/users/@me:x", "/menu/caf\u00e9/\u65e5\u672c?q#f"} {
		got, _, ok := normalizePath(in, nil)
		if !ok {
			t.Fatalf("%q rejected", in)
		}
		if unsafe.StringData(got) != unsafe.StringData(in) {
			t.Errorf("normalizePath(%q) copied the path", in)
		}
		if n := testing.AllocsPerRun(100, func() { normalizePath(in, nil) }); n != 0 {
			t.Errorf("normalizePath(%q) allocates %v times", in, n)
		}
	}
}

func FuzzNormalizePath(f *testing.F) {
	for _, s := range []string{"/", "/orders/../admin", "/a/%2e%2E/b", "//x//y/", "/a%c3%a9", "/a;b",
		"/a%2Fb", "/a?b#c", "/a/./b/../../c", "/%7e%41", "/a%", "/\xff", "/.."} {
		f.Add(s, false)
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, in string, semi bool) {
		opts := &PathSpec{AllowSemicolon: semi}
		norm, detail, ok := normalizePath(in, opts)
		if !ok {
			if detail == "" || norm != "" {
				t.Fatalf("normalizePath(%q) rejected with detail %q, norm %q", in, detail, norm)
			}
			return
		}
		if detail != "" {
			t.Fatalf("normalizePath(%q) accepted with detail %q", in, detail)
		}
		if norm == "" || norm[0] != '/' || len(norm) > maxPathBytes {
			t.Fatalf("normalizePath(%q) = %q: not a rooted path", in, norm)
		}
		if strings.Contains(norm, "//") || strings.ContainsAny(norm, "?#\\") || !utf8.ValidString(norm) {
			t.Fatalf("normalizePath(%q) = %q: not normal", in, norm)
		}
		again, detail, ok := normalizePath(norm, opts)
		if !ok || again != norm {
			t.Fatalf("normalizePath(%q) = %q; normalizing that again = %q, %v, %q", in, norm, again, ok, detail)
		}
	})
}

func BenchmarkNormalizePath(b *testing.B) {
	cases := []struct{ name, in string }{
		{"normal", "/api/v1/orders/8b7c6d5e/items/42"},
		{"normal_query", "/api/v1/orders/8b7c6d5e/items/42?expand=lines&limit=20"},
		{"normal_utf8", "/api/v1/menu/caf\u00e9-cr\u00e8me/\u65e5\u672c/42"},
		{"needs_work", "/api//v1/./orders/%38b7c6d5e/../8b7c6d5e/items/%e2%82%ac"},
		{"escaped_reserved", "/api/v1/users/%40me/docs/internal%3Asecrets"},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, _, ok := normalizePath(c.in, nil); !ok {
					b.Fatal("rejected")
				}
			}
		})
	}
}
