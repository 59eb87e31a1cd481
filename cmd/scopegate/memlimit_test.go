package main

import (
	"strings"
	"testing"

	"github.com/scopegate/scopegate/server"
)

// TestServeMemoryLimit: --memory-limit auto follows GOMEMLIMIT when it is
// set and derives a limit otherwise, off sets none, a size is taken in
// bytes or KiB/MiB/GiB, and anything else is refused naming the flag and
// its forms; the environment sets it like any serve flag.
func TestServeMemoryLimit(t *testing.T) {
	auto, autoFrom := server.MemoryLimitAuto(64 << 20)
	cases := []struct {
		name, value, gomemlimit string
		want                    int64
		from                    string
		err                     string
	}{
		{"auto", "auto", "", auto, autoFrom, ""},
		{"auto under GOMEMLIMIT", "auto", "300MiB", 0, "GOMEMLIMIT", ""},
		{"off", "off", "", 0, "off", ""},
		{"MiB", "512MiB", "", 512 << 20, "--memory-limit", ""},
		{"GiB over GOMEMLIMIT", "2GiB", "300MiB", 2 << 30, "--memory-limit", ""},
		{"bytes", "268435456", "", 256 << 20, "--memory-limit", ""},
		{"too small", "1MiB", "", 0, "", "at least 16MiB"},
		{"unit unknown", "512MB", "", 0, "", `--memory-limit "512MB"`},
		{"negative", "-1", "", 0, "", "give auto, off, or a size"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, s, err := resolveServe(t, map[string]string{"SCOPEGATE_MEMORY_LIMIT": tc.value}, "--policy", "p.yaml")
			if err != nil {
				t.Fatal(err)
			}
			got, from, err := s.memLimit(tc.gomemlimit)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want one containing %q", err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want || from != tc.from {
				t.Fatalf("limit %d from %q (%v), want %d from %q", got, from, err, tc.want, tc.from)
			}
		})
	}
}
