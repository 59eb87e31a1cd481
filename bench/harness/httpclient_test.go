package harness

import (
	"bufio"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// scripted serves each connection the answers given, one per request
// read (a request is read up to its blank line; bodies are not sent in
// these tests), then closes it.
func scripted(t *testing.T, answers ...string) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lis.Close() })
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for _, a := range answers {
					for {
						line, err := br.ReadString('\n')
						if err != nil {
							return
						}
						if line == "\r\n" {
							break
						}
					}
					if _, err := c.Write([]byte(a)); err != nil {
						return
					}
				}
			}()
		}
	}()
	return lis.Addr().String()
}

var getReq = []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")

func TestRawClientReadsAnswers(t *testing.T) {
	for _, tc := range []struct {
		name, answer   string
		status         int
		reason, body   string
		broken, errors bool
	}{
		{name: "content-length", answer: "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", status: 200, body: "hello"},
		{name: "reason, any case, no body", answer: "HTTP/1.1 403 Forbidden\r\nx-scopegate-REASON:  insufficient_scope \r\nContent-Length: 0\r\n\r\n", status: 403, reason: "insufficient_scope"},
		{name: "chunked with extension and trailer", answer: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n2\r\nde\r\n0\r\nTrailer: 1\r\n\r\n", status: 200, body: "abcde"},
		{name: "connection close", answer: "HTTP/1.1 401 Unauthorized\r\nConnection: close\r\nContent-Length: 2\r\n\r\nno", status: 401, body: "no", broken: true},
		{name: "HTTP/1.0 closes", answer: "HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nx", status: 200, body: "x", broken: true},
		{name: "no length: read to the close", answer: "HTTP/1.1 200 OK\r\n\r\nuntil close", status: 200, body: "until close", broken: true},
		{name: "204 has no body", answer: "HTTP/1.1 204 No Content\r\n\r\n", status: 204},
		{name: "LF only", answer: "HTTP/1.1 200 OK\nContent-Length: 2\n\nok", status: 200, body: "ok"},
		{name: "not HTTP", answer: "SSH-2.0-x\r\n\r\n", errors: true},
		{name: "bad status", answer: "HTTP/1.1 2x0 OK\r\n\r\n", errors: true},
		{name: "bad length", answer: "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", errors: true},
		{name: "gzip coding", answer: "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", errors: true},
		{name: "header without colon", answer: "HTTP/1.1 200 OK\r\nbroken\r\n\r\n", errors: true},
		{name: "short body", answer: "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", errors: true},
		{name: "bad chunk", answer: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", errors: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tg := newHTTPTarget(scripted(t, tc.answer), 1)
			defer tg.close()
			rc, err := tg.conn()
			if err != nil {
				t.Fatal(err)
			}
			var rep httpReply
			rep.reason = []byte("stale")
			body, err := rc.roundTrip(getReq, time.Now().Add(5*time.Second), &rep, []byte("old"))
			if tc.errors {
				if err == nil || !rc.broken {
					t.Fatalf("err %v, broken %v: want an error and a broken connection", err, rc.broken)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if rep.status != tc.status || string(rep.reason) != tc.reason || string(body) != tc.body || rc.broken != tc.broken {
				t.Errorf("status %d reason %q body %q broken %v, want %d %q %q %v", rep.status, rep.reason, body, rc.broken, tc.status, tc.reason, tc.body, tc.broken)
			}
		})
	}
}

// TestRawClientKeepsAlive sends requests through one target to a
// net/http server and checks that they share one connection, and that a
// request past its deadline fails without hanging.
func TestRawClientKeepsAlive(t *testing.T) {
	var conns atomic.Int32
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/slow" {
				time.Sleep(300 * time.Millisecond)
			}
			w.Header().Set("X-Scopegate-Reason", "ok-"+r.Method)
			_, _ = w.Write([]byte(strings.Repeat("b", 5000))) // past the writer's buffer: chunked
		}),
		ConnState: func(_ net.Conn, s http.ConnState) {
			if s == http.StateNew {
				conns.Add(1)
			}
		},
	}
	go func() { _ = srv.Serve(lis) }()
	defer srv.Close()
	tg := newHTTPTarget(lis.Addr().String(), 2)
	defer tg.close()
	var body []byte
	for i := range 20 {
		rc, err := tg.conn()
		if err != nil {
			t.Fatal(err)
		}
		var rep httpReply
		body, err = rc.roundTrip(getReq, time.Now().Add(5*time.Second), &rep, body)
		if err != nil || rep.status != 200 || string(rep.reason) != "ok-GET" || len(body) != 5000 {
			t.Fatalf("request %d: err %v status %d reason %q body %d bytes", i, err, rep.status, rep.reason, len(body))
		}
		tg.release(rc)
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("20 requests took %d connections, want 1", n)
	}
	rc, err := tg.conn()
	if err != nil {
		t.Fatal(err)
	}
	var rep httpReply
	if _, err := rc.roundTrip([]byte("GET /slow HTTP/1.1\r\nHost: x\r\n\r\n"), time.Now().Add(50*time.Millisecond), &rep, nil); err == nil || !rc.broken {
		t.Fatalf("past its deadline: err %v, broken %v", err, rc.broken)
	}
	tg.release(rc) // closed, not kept
	if len(tg.idle) != 0 {
		t.Errorf("a broken connection was kept")
	}
}
