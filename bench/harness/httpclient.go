package harness

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"time"
)

// The HTTP load generator is a minimal HTTP/1.1 client: one keep-alive
// connection per request in flight, requests written from a buffer,
// answers read without building a header map. It shares the machine's
// cores with the servers it loads, so its own cost per answer counts
// against the side that sends the richer answer: net/http's client
// canonicalises, allocates and stores every header of every answer, and
// an allow of scopegate's carries five headers the no-op's does not. The
// figures of the HTTP shapes are the servers' work, not the client's.
//
// It reads what the harness checks: the status, X-Scopegate-Reason, and
// the body by Content-Length or chunked transfer coding (a body delimited
// by the connection's close is read to the end, and the connection is not
// reused). Anything else in an answer is skipped unread.

// maxHeaderBytes bounds an answer's header block.
const maxHeaderBytes = 64 << 10

// rawConn is one keep-alive connection to an HTTP target.
type rawConn struct {
	c  net.Conn
	br *bufio.Reader
	// broken is set when the connection cannot carry another request.
	broken bool
}

// httpTarget is an HTTP server under load: its address and the idle
// connections the load generator keeps to it.
type httpTarget struct {
	addr string
	idle chan *rawConn
}

func newHTTPTarget(addr string, conns int) *httpTarget {
	return &httpTarget{addr: addr, idle: make(chan *rawConn, max(conns, 1))}
}

// conn returns an idle connection, or dials a new one.
func (t *httpTarget) conn() (*rawConn, error) {
	select {
	case rc := <-t.idle:
		return rc, nil
	default:
	}
	c, err := net.DialTimeout("tcp", t.addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
	}
	return &rawConn{c: c, br: bufio.NewReaderSize(c, 4096)}, nil
}

// release keeps rc for the next request, or closes it.
func (t *httpTarget) release(rc *rawConn) {
	if rc.broken {
		rc.c.Close()
		return
	}
	select {
	case t.idle <- rc:
	default:
		rc.c.Close()
	}
}

func (t *httpTarget) close() {
	for {
		select {
		case rc := <-t.idle:
			rc.c.Close()
		default:
			return
		}
	}
}

// roundTrip writes req and reads the answer into rep, its body appended
// to body[:0]. On any error the connection is marked broken.
func (rc *rawConn) roundTrip(req []byte, deadline time.Time, rep *httpReply, body []byte) ([]byte, error) {
	if err := rc.c.SetDeadline(deadline); err != nil {
		rc.broken = true
		return body, err
	}
	if _, err := rc.c.Write(req); err != nil {
		rc.broken = true
		return body, err
	}
	body, err := rc.readResponse(rep, body[:0])
	if err != nil {
		rc.broken = true
	}
	return body, err
}

var (
	errMalformedAnswer = errors.New("malformed HTTP answer")
	hdrContentLength   = []byte("content-length")
	hdrTransferEnc     = []byte("transfer-encoding")
	hdrReason          = []byte("x-scopegate-reason")
	hdrConnection      = []byte("connection")
)

// readResponse reads one answer: status line, header block, body.
func (rc *rawConn) readResponse(rep *httpReply, body []byte) ([]byte, error) {
	line, err := rc.readLine()
	if err != nil {
		return body, err
	}
	// HTTP/1.1 200 OK
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) || line[8] != ' ' {
		return body, fmt.Errorf("%w: status line %q", errMalformedAnswer, line)
	}
	status, err := strconv.Atoi(string(line[9:12]))
	if err != nil {
		return body, fmt.Errorf("%w: status line %q", errMalformedAnswer, line)
	}
	rep.status = status
	rep.reason = rep.reason[:0]
	length, chunked, closeAfter := -1, false, line[7] == '0'
	size := 0
	for {
		line, err := rc.readLine()
		if err != nil {
			return body, err
		}
		if size += len(line); size > maxHeaderBytes {
			return body, fmt.Errorf("%w: header block over %d bytes", errMalformedAnswer, maxHeaderBytes)
		}
		if len(line) == 0 {
			break
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			return body, fmt.Errorf("%w: header line %q", errMalformedAnswer, line)
		}
		name, value := line[:colon], bytes.TrimSpace(line[colon+1:])
		switch {
		case bytes.EqualFold(name, hdrContentLength):
			n, err := strconv.Atoi(string(value))
			if err != nil || n < 0 {
				return body, fmt.Errorf("%w: Content-Length %q", errMalformedAnswer, value)
			}
			length = n
		case bytes.EqualFold(name, hdrTransferEnc):
			chunked = bytes.EqualFold(value, []byte("chunked"))
			if !chunked {
				return body, fmt.Errorf("%w: Transfer-Encoding %q", errMalformedAnswer, value)
			}
		case bytes.EqualFold(name, hdrReason):
			rep.reason = append(rep.reason, value...)
		case bytes.EqualFold(name, hdrConnection):
			if bytes.EqualFold(value, []byte("close")) {
				closeAfter = true
			}
		}
	}
	if closeAfter {
		rc.broken = true
	}
	switch {
	case status/100 == 1 || status == 204 || status == 304:
		return body, nil
	case chunked:
		return rc.readChunked(body)
	case length >= 0:
		return rc.readN(body, length)
	default:
		rc.broken = true
		return readAll(rc.br, body)
	}
}

// readLine returns the next line without its CRLF (or LF), valid until
// the next read.
func (rc *rawConn) readLine() ([]byte, error) {
	line, err := rc.br.ReadSlice('\n')
	if err == bufio.ErrBufferFull {
		return nil, fmt.Errorf("%w: a line over %d bytes", errMalformedAnswer, rc.br.Size())
	}
	if err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	line = line[:len(line)-1]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return line, nil
}

// readN appends n bytes of body.
func (rc *rawConn) readN(body []byte, n int) ([]byte, error) {
	start := len(body)
	body = append(body, make([]byte, n)...)[:start+n]
	if _, err := io.ReadFull(rc.br, body[start:]); err != nil {
		return body[:start], err
	}
	return body, nil
}

// readChunked appends a chunked body, skipping chunk extensions and
// trailers.
func (rc *rawConn) readChunked(body []byte) ([]byte, error) {
	for {
		line, err := rc.readLine()
		if err != nil {
			return body, err
		}
		if i := bytes.IndexByte(line, ';'); i >= 0 {
			line = line[:i]
		}
		n, err := strconv.ParseUint(string(bytes.TrimSpace(line)), 16, 31)
		if err != nil {
			return body, fmt.Errorf("%w: chunk size %q", errMalformedAnswer, line)
		}
		if n == 0 {
			for { // trailers, up to the empty line
				line, err := rc.readLine()
				if err != nil {
					return body, err
				}
				if len(line) == 0 {
					return body, nil
				}
			}
		}
		if body, err = rc.readN(body, int(n)); err != nil {
			return body, err
		}
		if line, err := rc.readLine(); err != nil || len(line) != 0 {
			return body, fmt.Errorf("%w: no CRLF after a chunk", errMalformedAnswer)
		}
	}
}

// httpRequest appends the request of rq for api to b; batch items are the
// worker's next picks.
func appendHTTPRequest(b []byte, t *httpTarget, api string, rq request, items []request, scratch []byte) ([]byte, []byte, error) {
	switch api {
	case APIForwardAuth:
		b = append(b, "GET "+authPath+" HTTP/1.1\r\nHost: "...)
		b = append(b, t.addr...)
		b = append(b, "\r\nUser-Agent: scopegate-bench\r\nX-Forwarded-Method: "...)
		b = append(b, rq.method...)
		b = append(b, "\r\nX-Forwarded-Uri: "...)
		b = append(b, rq.path...)
		b = append(b, "\r\nX-Forwarded-Host: "+benchHost+"\r\nX-Forwarded-Proto: https\r\nAuthorization: "...)
		b = append(b, rq.bearer...)
		b = append(b, "\r\n\r\n"...)
	case APINginx:
		b = append(b, rq.method...)
		b = append(b, ' ')
		b = append(b, rq.path...)
		b = append(b, " HTTP/1.1\r\nHost: "+benchHost+"\r\nUser-Agent: scopegate-bench\r\nAuthorization: "...)
		b = append(b, rq.bearer...)
		b = append(b, "\r\n\r\n"...)
	case APIAuthZEN, APIAuthZENBatch:
		body := scratch[:0]
		path := "/access/v1/evaluation"
		if api == APIAuthZENBatch {
			path = "/access/v1/evaluations"
			body = append(body, `{"evaluations":[`...)
			for i, it := range items {
				if i > 0 {
					body = append(body, ',')
				}
				body = appendEvaluation(body, it)
			}
			body = append(body, "]}"...)
		} else {
			body = appendEvaluation(body, rq)
		}
		scratch = body
		b = append(b, "POST "...)
		b = append(b, path...)
		b = append(b, " HTTP/1.1\r\nHost: "...)
		b = append(b, t.addr...)
		b = append(b, "\r\nUser-Agent: scopegate-bench\r\nContent-Type: application/json\r\nContent-Length: "...)
		b = strconv.AppendInt(b, int64(len(body)), 10)
		b = append(b, "\r\n\r\n"...)
		b = append(b, body...)
	default:
		return b, scratch, fmt.Errorf("API %q is not HTTP", api)
	}
	return b, scratch, nil
}

// closeOnCancel breaks rc's pending read or write when ctx ends.
func closeOnCancel(ctx context.Context, rc *rawConn) (stop func() bool) {
	return context.AfterFunc(ctx, func() { _ = rc.c.SetDeadline(time.Unix(1, 0)) })
}
