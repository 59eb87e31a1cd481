package decision

import (
	"sync"
	"sync/atomic"
	"time"
)

// coarseClockResolution is how often the engine's default clock advances.
// Token expiry, time windows and staleness bounds are all far coarser, and a
// read of the coarse clock is one atomic load where time.Now costs 100 ns or
// more on virtual machines whose clock source is not read through the vDSO.
const coarseClockResolution = time.Millisecond

// coarseClock is a wall clock read from an atomic, advanced by one goroutine
// every coarseClockResolution while at least one engine uses it.
type coarseClock struct {
	nanos atomic.Int64

	mu    sync.Mutex
	users int
	stop  chan struct{}
}

var sharedClock coarseClock

// acquire starts the ticking goroutine on first use and returns the clock
// function.
func (c *coarseClock) acquire() func() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.users++
	if c.users == 1 {
		c.nanos.Store(time.Now().UnixNano())
		c.stop = make(chan struct{})
		go c.run(c.stop)
	}
	return c.now
}

// release stops the goroutine when the last engine is closed.
func (c *coarseClock) release() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.users--
	if c.users == 0 {
		close(c.stop)
	}
}

func (c *coarseClock) run(stop chan struct{}) {
	t := time.NewTicker(coarseClockResolution)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case now := <-t.C:
			c.nanos.Store(now.UnixNano())
		}
	}
}

func (c *coarseClock) now() time.Time { return time.Unix(0, c.nanos.Load()) }
