package decision

import (
	"strings"
	"testing"
)

func TestExtractBearer(t *testing.T) {
	const tok = "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJ4In0.c2ln-_~+/=="
	cases := []struct {
		name   string
		authz  string
		count  int
		max    int
		want   Code
		token  string
		detail string
	}{
		{name: "bearer", authz: "Bearer " + tok, count: 1, want: OK, token: tok},
		{name: "lowercase bearer", authz: "bearer " + tok, count: 1, want: OK, token: tok},
		{name: "mixed case bearer", authz: "BeArEr " + tok, count: 1, want: OK, token: tok},
		{name: "several spaces", authz: "Bearer    " + tok, count: 1, want: OK, token: tok},
		{name: "surrounding whitespace", authz: " \tBearer " + tok + " ", count: 1, want: OK, token: tok},
		{name: "padding only at the end", authz: "Bearer abc==", count: 1, want: OK, token: "abc=="},
		{name: "exactly max bytes", authz: "Bearer " + strings.Repeat("a", 64), count: 1, max: 64, want: OK, token: strings.Repeat("a", 64)},

		{name: "no header", authz: "", count: 0, want: TokenMissing, detail: "no Authorization header"},
		{name: "count zero", authz: "Bearer " + tok, count: 0, want: TokenMissing, detail: "query string"},
		{name: "empty value", authz: "   ", count: 1, want: TokenMissing, detail: "no Authorization header"},
		{name: "two headers", authz: "Bearer " + tok, count: 2, want: RequestInvalid, detail: "more than one"},
		{name: "merged headers", authz: "Bearer " + tok + ", Bearer " + tok, count: 1, want: RequestInvalid, detail: "more than one"},
		{name: "basic scheme", authz: "Basic dXNlcjpwYXNz", count: 1, want: TokenMissing, detail: "does not use the Bearer scheme"},
		{name: "dpop scheme", authz: "DPoP " + tok, count: 1, want: TokenMissing, detail: "Bearer scheme"},
		{name: "scheme glued to token", authz: "Bearer" + tok, count: 1, want: TokenMissing, detail: "Bearer scheme"},
		{name: "scheme only", authz: "Bearer", count: 1, want: TokenInvalid, detail: "no token"},
		{name: "scheme and spaces only", authz: "Bearer    x", count: 1, want: OK, token: "x"},
		{name: "tab separator", authz: "Bearer\t" + tok, count: 1, want: TokenMissing, detail: "Bearer scheme"},
		{name: "bad characters", authz: "Bearer abc$def", count: 1, want: TokenInvalid, detail: "b64token"},
		{name: "space inside token", authz: "Bearer abc def", count: 1, want: TokenInvalid, detail: "b64token"},
		{name: "padding in the middle", authz: "Bearer ab=c", count: 1, want: TokenInvalid, detail: "b64token"},
		{name: "padding only", authz: "Bearer ==", count: 1, want: TokenInvalid, detail: "b64token"},
		{name: "quoted token", authz: `Bearer "` + tok + `"`, count: 1, want: TokenInvalid, detail: "b64token"},
		{name: "one byte too long", authz: "Bearer " + strings.Repeat("a", 65), count: 1, max: 64, want: TokenInvalid, detail: "longer than 64 bytes"},
		{name: "huge header refused unread", authz: "Bearer " + strings.Repeat("a,", 1<<20), count: 1, max: 64, want: TokenInvalid, detail: "longer than 64 bytes"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			maxBytes := tc.max
			if maxBytes == 0 {
				maxBytes = 16 << 10
			}
			got, code, detail := extractBearer(tc.authz, tc.count, maxBytes)
			if code == OK {
				if code, detail = checkB64Token(got); code != OK {
					got = ""
				}
			}
			if code != tc.want {
				t.Fatalf("code = %v (%s), want %v", code, detail, tc.want)
			}
			if got != tc.token {
				t.Errorf("token = %q, want %q", got, tc.token)
			}
			if !strings.Contains(detail, tc.detail) {
				t.Errorf("detail %q does not contain %q", detail, tc.detail)
			}
			if code != OK && tc.token == "" && len(tok) > 0 && strings.Contains(detail, tok) {
				t.Errorf("detail echoes the token")
			}
		})
	}
}

func TestExtractBearerAllocatesNothing(t *testing.T) {
	authz := "Bearer eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJ4In0.c2ln"
	for _, h := range []string{authz, "Basic x", "Bearer a$b", authz + ", " + authz, "Bearer " + strings.Repeat("a", 20<<10)} {
		if n := testing.AllocsPerRun(100, func() {
			if tok, code, _ := extractBearer(h, 1, 16<<10); code == OK {
				checkB64Token(tok)
			}
		}); n != 0 {
			t.Errorf("extractBearer(%q) allocates %.0f times", h, n)
		}
	}
}

func BenchmarkExtractBearer(b *testing.B) {
	authz := "Bearer " + strings.Repeat("eyJhbGciOiJSUzI1NiJ9", 40)
	b.ReportAllocs()
	for b.Loop() {
		tok, code, _ := extractBearer(authz, 1, 16<<10)
		if code != OK {
			b.Fatal(code)
		}
		if code, _ := checkB64Token(tok); code != OK {
			b.Fatal(code)
		}
	}
}
