package decision

import (
	"io"
	"runtime"
)

// Pacing a large compile. A reload compiles on a goroutine of its own
// while requests are decided on the same few cores. Go preempts a
// goroutine that runs long only every 10 ms, and requests queued behind
// it on its processor wait that long. A compile of a large policy
// therefore yields every so often (runtime.Gosched): requests that are
// ready run first, and the compile goes on when they have, so its work
// fills the time the cores would be idle instead of adding to the
// requests' latency. A small policy compiles in a few milliseconds and
// never yields.

// paceBytes is how much of the policy file the YAML parser reads between
// yields (about 70 µs of parsing), and paceMinBytes the smallest file that
// is paced at all.
const (
	paceBytes    = 1 << 10
	paceMinBytes = 256 << 10
)

// pacedReader hands the YAML parser the file, yielding each time another
// paceBytes have been read (the parser asks for 512 bytes at a time).
type pacedReader struct {
	b     []byte
	since int
}

func (r *pacedReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	if r.since >= paceBytes {
		runtime.Gosched()
		r.since = 0
	}
	n := copy(p[:min(len(p), paceBytes-r.since)], r.b)
	r.b, r.since = r.b[n:], r.since+n
	return n, nil
}

// pacer yields every paceEvery calls of tick, when on.
type pacer struct {
	on bool
	n  int
}

const paceEvery = 16

func (p *pacer) tick() {
	if !p.on {
		return
	}
	if p.n++; p.n%paceEvery == 0 {
		runtime.Gosched()
	}
}
