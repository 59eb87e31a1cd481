package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/scopegate/scopegate/decision"
)

// callTarget names the server a client-side command calls, for its
// error messages: the address and how the user sets it.
type callTarget struct {
	call    string // what was called, e.g. "check call"
	addr    string
	flag    string // e.g. "--addr"
	env     string // e.g. "SCOPEGATE_ADDR"
	timeout time.Duration
	admin   bool // the Admin API: a refusal is about its token
}

// callError turns the error of a gRPC call into one sentence that names the
// server once and says what to do, instead of gRPC's nested "rpc error:
// code = Unavailable desc = connection error: desc = \"transport: Error
// while dialing: dial tcp ADDR: ...\"".
func callError(t callTarget, err error) error {
	st, ok := status.FromError(err)
	if !ok {
		if errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("%s to %s: no answer within %v: raise --timeout, or check that the server is up", t.call, t.addr, t.timeout)
		}
		return fmt.Errorf("%s to %s: %v", t.call, t.addr, err)
	}
	where := t.flag
	if t.env != "" {
		where += " (or $" + t.env + ", or the current context: scopegate context set)"
	}
	switch st.Code() {
	case codes.Unavailable:
		return fmt.Errorf("%s to %s: the server cannot be reached (%s): start scopegate serve there, or point %s at it", t.call, t.addr, dialCause(st.Message()), where)
	case codes.DeadlineExceeded:
		return fmt.Errorf("%s to %s: no answer within %v: raise --timeout, or check that the server is up", t.call, t.addr, t.timeout)
	case codes.Unauthenticated, codes.PermissionDenied:
		msg := fmt.Sprintf("%s to %s: refused (%s): %s", t.call, t.addr, st.Code().String(), st.Message())
		if t.admin {
			msg += "; give an admin token with --token, $" + adminTokenEnv + " or $" + adminTokenFileEnv + " (or a context: scopegate context set)"
		}
		return errors.New(msg)
	case codes.Unimplemented:
		return fmt.Errorf("%s to %s: the server does not offer this call (%s): is %s the address of the right listener?", t.call, t.addr, st.Message(), where)
	}
	return fmt.Errorf("%s to %s: %s: %s", t.call, t.addr, st.Code().String(), st.Message())
}

// fileError is a file named by a flag that cannot be read: the flag, the
// path once, and why (decision.ReadCause), without the operating system's
// "open PATH:" repeating the path.
func fileError(flag, path string, err error) error {
	return fmt.Errorf("%s %s: %s", flag, path, decision.ReadCause(err))
}

// dialCause is the last, useful, part of gRPC's dial error: "connection
// refused", "no such host", "i/o timeout".
func dialCause(msg string) string {
	if strings.Contains(msg, "produced zero addresses") || strings.Contains(msg, "no such host") {
		return "the host name does not resolve"
	}
	msg = strings.TrimSuffix(strings.TrimSpace(msg), `"`)
	if i := strings.LastIndex(msg, ": "); i >= 0 {
		return msg[i+2:]
	}
	return msg
}
