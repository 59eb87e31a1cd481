package cache

import (
	"sync/atomic"
	"time"
)

// clockResolution is how stale the coarse clock may be. An entry may thus be
// served up to this long past its TTL, which is negligible against TTLs of
// seconds.
const clockResolution = 10 * time.Millisecond

// coarseClock is a clock read with one atomic load. A cache hit must not pay
// for time.Now: on some virtual machines it is a system call costing several
// hundred nanoseconds, more than the whole rest of a hit. This is also why
// the cache checks expiry itself instead of giving the entries a ristretto
// TTL, whose check calls time.Now on every Get.
type coarseClock struct {
	now  atomic.Int64 // unix nanoseconds
	stop chan struct{}
	done chan struct{}
}

func startClock() *coarseClock {
	c := &coarseClock{stop: make(chan struct{}), done: make(chan struct{})}
	c.now.Store(time.Now().UnixNano())
	go c.run()
	return c
}

func (c *coarseClock) run() {
	defer close(c.done)
	t := time.NewTicker(clockResolution)
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case now := <-t.C:
			c.now.Store(now.UnixNano())
		}
	}
}

func (c *coarseClock) nanos() int64 { return c.now.Load() }

// close stops the clock's goroutine and waits for it; calling it again is a
// no-op.
func (c *coarseClock) close() {
	select {
	case <-c.stop:
	default:
		close(c.stop)
	}
	<-c.done
}
