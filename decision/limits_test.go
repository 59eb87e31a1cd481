package decision

import (
	"strings"
	"testing"
)

// TestLimitsPolicySize loads a policy padded to exactly the size limit
// (accepted) and one byte more (refused unread, with the limit named).
func TestLimitsPolicySize(t *testing.T) {
	pad := func(n int) []byte {
		// One long comment line: the cheapest text for the parser to skip.
		body := fuzzPolicy + "# "
		return []byte(body + strings.Repeat("x", n-len(body)-1) + "\n")
	}
	at := pad(maxPolicyBytes)
	if len(at) != maxPolicyBytes {
		t.Fatalf("padded to %d bytes, want %d", len(at), maxPolicyBytes)
	}
	if _, err := Compile(at, "at.yaml", CompileOptions{}); err != nil {
		t.Errorf("a policy of exactly %d bytes: %v", maxPolicyBytes, err)
	}
	_, err := Compile(pad(maxPolicyBytes+1), "over.yaml", CompileOptions{})
	if err == nil || !strings.Contains(err.Error(), "16 MiB") {
		t.Errorf("a policy of %d bytes = %v, want the size limit named", maxPolicyBytes+1, err)
	}
}

// TestLimitsPathBytes pins the path limit the docs state at its edge.
func TestLimitsPathBytes(t *testing.T) {
	at := "/" + strings.Repeat("a", maxPathBytes-1)
	if norm, _, ok := normalizePath(at, nil); !ok || norm != at {
		t.Errorf("a path of exactly %d bytes is refused", maxPathBytes)
	}
	if _, detail, ok := normalizePath(at+"a", nil); ok || detail != pathMsgTooLong {
		t.Errorf("a path of %d bytes: ok=%v %q", maxPathBytes+1, ok, detail)
	}
	// The limit is on the path as received, before normalization: a
	// longer spelling of an acceptable path is refused too.
	if _, detail, ok := normalizePath("//"+at[1:], nil); ok || detail != pathMsgTooLong {
		t.Errorf("a %d-byte path that would normalize to %d bytes: ok=%v %q", maxPathBytes+1, maxPathBytes, ok, detail)
	}
	// The query does not count.
	if _, _, ok := normalizePath(at+"?"+strings.Repeat("q", 1<<16), nil); !ok {
		t.Error("a long query made an acceptable path too long")
	}
}

// TestLimitsConfigurable: paths.max_length and CompileOptions.MaxPolicyBytes
// move the two limits, each tested at its new edge.
func TestLimitsConfigurable(t *testing.T) {
	pol, err := Compile([]byte("paths: {max_length: 100}\nroutes:\n  - {name: all, match: {path: \"/{rest...}\"}, public: true}\n"), "p.yaml", CompileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	at := "/" + strings.Repeat("a", 99)
	if _, _, ok := normalizePath(at, &pol.Paths); !ok {
		t.Error("a path of exactly paths.max_length bytes is refused")
	}
	if _, detail, ok := normalizePath(at+"a", &pol.Paths); ok || detail != "path longer than 100 bytes" {
		t.Errorf("one byte over paths.max_length: ok=%v %q", ok, detail)
	}
	if _, detail, ok := normalizePath("/x/%41"+strings.Repeat("a", 95), &pol.Paths); ok || detail != "path longer than 100 bytes" {
		t.Errorf("one byte over on the slow path: ok=%v %q", ok, detail)
	}
	if _, err := Compile([]byte("paths: {max_length: -1}\nroutes:\n  - {name: all, match: {path: \"/{rest...}\"}, public: true}\n"), "p.yaml", CompileOptions{}); err == nil || !strings.Contains(err.Error(), "paths.max_length") {
		t.Errorf("a negative max_length: %v", err)
	}

	text := []byte("routes:\n  - {name: all, match: {path: \"/{rest...}\"}, public: true}\n")
	if _, err := Compile(text, "p.yaml", CompileOptions{MaxPolicyBytes: len(text)}); err != nil {
		t.Errorf("a policy of exactly MaxPolicyBytes: %v", err)
	}
	if _, err := Compile(text, "p.yaml", CompileOptions{MaxPolicyBytes: len(text) - 1}); err == nil || !strings.Contains(err.Error(), "more than the limit") {
		t.Errorf("one byte over MaxPolicyBytes: %v", err)
	}
}
