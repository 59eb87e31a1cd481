package server

import "testing"

// TestMemoryLimitAuto: without a container limit the soft limit is twice
// the token cache budget plus 128 MiB; with one, 90% of it.
func TestMemoryLimitAuto(t *testing.T) {
	l, from := MemoryLimitAuto(64 << 20)
	switch from {
	case "token cache budget":
		if l != 256<<20 {
			t.Fatalf("limit %d for the default budget, want %d", l, 256<<20)
		}
		if l2, _ := MemoryLimitAuto(1 << 30); l2 != 2<<30+128<<20 {
			t.Fatalf("limit %d for a 1 GiB budget, want %d", l2, 2<<30+128<<20)
		}
		if l0, _ := MemoryLimitAuto(0); l0 != l {
			t.Fatalf("limit %d for budget 0 (the default), want %d", l0, l)
		}
	case "container memory limit":
		if l <= 0 {
			t.Fatalf("limit %d from the container", l)
		}
		t.Logf("container limit: soft limit %d", l)
	default:
		t.Fatalf("limit %d from %q", l, from)
	}
}
