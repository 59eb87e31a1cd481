package decision

import (
	"bytes"
	"io"
	"strconv"
	"strings"
	"testing"
)

// The paced reader hands over every byte, in order, at most paceBytes at
// a time.
func TestPacedReader(t *testing.T) {
	data := []byte(strings.Repeat("routes: [] # 0123456789\n", 3*paceBytes/10+7))
	r := &pacedReader{b: data}
	var got bytes.Buffer
	buf := make([]byte, 3*paceBytes)
	for {
		n, err := r.Read(buf)
		if n > paceBytes {
			t.Fatalf("read %d bytes at once, want at most %d", n, paceBytes)
		}
		got.Write(buf[:n])
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.Equal(got.Bytes(), data) {
		t.Fatal("the paced reader changed the data")
	}
}

// A large policy, paced, compiles to what its problems say: a mistake
// deep in it is found at its line, as it is in a small one.
func TestPacedCompileFindsTheSameProblem(t *testing.T) {
	var b strings.Builder
	b.WriteString("version: big\nissuers:\n  - {issuer: https://id.example.com/, audiences: [api], jwks_file: keys.json, algorithms: [ES256]}\nroutes:\n")
	n := 0
	for b.Len() < paceMinBytes+paceBytes {
		b.WriteString("  - {name: r" + strconv.Itoa(n) + ", match: {methods: [GET], path: /r" + strconv.Itoa(n) + "}, require: {all_of: [a:read]}}\n")
		n++
	}
	good := b.String() + "default: deny\n"
	if _, err := Compile([]byte(good), "big.yaml", CompileOptions{}); err != nil {
		t.Fatalf("the big policy: %v", err)
	}
	bad := b.String() + "  - {name: oops, match: {methods: [GET], path: /x}, requires: {all_of: [a:read]}}\ndefault: deny\n"
	_, err := Compile([]byte(bad), "big.yaml", CompileOptions{})
	if err == nil || !strings.Contains(err.Error(), "requires") || !strings.Contains(err.Error(), ":"+strconv.Itoa(n+5)+":") {
		t.Fatalf("the mistake on line %d: %v", n+5, err)
	}
}
