// Package freeport hands out loopback ports for processes (or in-process
// servers) that tests start and that listen on an address chosen ahead.
package freeport

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
)

// A port taken with "127.0.0.1:0" and closed again, to hand to a process
// that listens on it later, comes from the kernel's ephemeral range: the
// range every outgoing connection on the machine takes its local port
// from. Between the close and the child's listen, any connection (of this
// test, or of another package's test running beside it) may take that
// port, and the child fails with "address in use". Port picks from
// below the ephemeral range instead, where only listeners that choose a
// port themselves go, checks the port is free now, and never hands the
// same port out twice in one process.

const (
	// lowPort is the bottom of the range Port picks from: above the
	// ports of well-known services.
	lowPort = 20000
	// defaultEphemeralLow is Linux's default bottom of
	// net.ipv4.ip_local_port_range, used when the file cannot be read.
	defaultEphemeralLow = 32768
)

var (
	portsMu sync.Mutex
	given   = map[int]bool{}
)

// ephemeralLow is the bottom of the kernel's ephemeral port range.
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return defaultEphemeralLow
	}
	f := strings.Fields(string(b))
	if len(f) < 1 {
		return defaultEphemeralLow
	}
	n, err := strconv.Atoi(f[0])
	if err != nil || n <= lowPort+1000 {
		return defaultEphemeralLow
	}
	return n
}

// Port returns a loopback TCP port nothing listens on now, outside the
// kernel's ephemeral range, for a process that will listen on it.
func Port() (int, error) {
	hi := ephemeralLow()
	portsMu.Lock()
	defer portsMu.Unlock()
	for range 200 {
		p := lowPort + rand.IntN(hi-lowPort)
		if given[p] {
			continue
		}
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			continue // in use
		}
		l.Close()
		given[p] = true
		return p, nil
	}
	// Fall back to the kernel's choice.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("no free loopback port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// TB is the part of testing.TB that Addr needs.
type TB interface {
	Helper()
	Fatal(args ...any)
}

// Addr is Port as a host:port on 127.0.0.1; it fails the test when no
// port is free.
func Addr(t TB) string {
	t.Helper()
	p, err := Port()
	if err != nil {
		t.Fatal(err)
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(p))
}
