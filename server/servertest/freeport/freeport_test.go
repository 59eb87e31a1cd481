package freeport

import (
	"net"
	"strconv"
	"testing"
)

// TestPortOutsideEphemeralRange checks that the ports handed out are
// below the ephemeral range, free to listen on, and never repeated.
func TestPortOutsideEphemeralRange(t *testing.T) {
	hi := ephemeralLow()
	seen := map[int]bool{}
	for range 300 {
		p, err := Port()
		if err != nil {
			t.Fatal(err)
		}
		if p < lowPort || p >= hi {
			t.Fatalf("port %d outside [%d, %d)", p, lowPort, hi)
		}
		if seen[p] {
			t.Fatalf("port %d handed out twice", p)
		}
		seen[p] = true
	}
	addr := Addr(t)
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listen on %s: %v", addr, err)
	}
	l.Close()
	if _, port, _ := net.SplitHostPort(addr); port == "" {
		t.Fatalf("Addr %q has no port", addr)
	} else if n, _ := strconv.Atoi(port); seen[n] {
		t.Fatalf("Addr repeated port %d", n)
	}
}

// TestPortSkipsTaken holds a port in the range and checks Port never
// returns it.
func TestPortSkipsTaken(t *testing.T) {
	var held []net.Listener
	taken := map[int]bool{}
	for p := lowPort; p < lowPort+50; p++ {
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			continue
		}
		held = append(held, l)
		taken[p] = true
	}
	defer func() {
		for _, l := range held {
			l.Close()
		}
	}()
	for range 2000 {
		p, err := Port()
		if err != nil {
			t.Fatal(err)
		}
		if taken[p] {
			t.Fatalf("Port returned %d, which is held", p)
		}
	}
}
