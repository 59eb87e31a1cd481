package server

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// checkDeadline bounds a request by the check timeout (and a shadow
// evaluation by its budget), for a caller that sent no sooner deadline
// (every HTTP request). context.WithTimeoutCause
// would cost a timer, armed and stopped, and four allocations on every
// request; yet a decision answered from the token cache never waits on
// its context: the funnel only reads Err and Deadline, which the clock
// answers. So the timer is armed only when something asks for Done (a
// lookup that may block: keys, introspection, owners), and from then on
// the context is that context.WithDeadlineCause, with errCheckTimeout as
// its cause.
//
// It keeps the context rules: Done is closed, and Err non-nil, once the
// deadline passes, the parent ends or stop is called; Err is nil until
// then; context.Cause tells the check timeout from the caller's own end.
type checkDeadline struct {
	parent   context.Context
	deadline time.Time
	mu       sync.Mutex // serializes arming
	armed    atomic.Pointer[armedDeadline]
	stopped  atomic.Bool
}

type armedDeadline struct {
	ctx    context.Context
	cancel context.CancelFunc
}

var _ context.Context = (*checkDeadline)(nil)

func newCheckDeadline(parent context.Context, timeout time.Duration) *checkDeadline {
	return checkDeadlineAt(parent, time.Now(), timeout)
}

// checkDeadlineAt is newCheckDeadline from a clock reading the caller
// already took.
func checkDeadlineAt(parent context.Context, now time.Time, timeout time.Duration) *checkDeadline {
	return &checkDeadline{parent: parent, deadline: now.Add(timeout)}
}

// arm returns the context this one stands for, making it the first time.
func (c *checkDeadline) arm() context.Context {
	if a := c.armed.Load(); a != nil {
		return a.ctx
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if a := c.armed.Load(); a != nil {
		return a.ctx
	}
	ctx, cancel := context.WithDeadlineCause(c.parent, c.deadline, errCheckTimeout)
	if c.stopped.Load() {
		cancel()
	}
	c.armed.Store(&armedDeadline{ctx: ctx, cancel: cancel})
	return ctx
}

// stop is the CancelFunc: it releases the timer, if one was armed, and
// ends the context.
func (c *checkDeadline) stop() {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.stopped.Store(true)
	if a := c.armed.Load(); a != nil {
		a.cancel()
	}
}

func (c *checkDeadline) Deadline() (time.Time, bool) { return c.deadline, true }

func (c *checkDeadline) Done() <-chan struct{} { return c.arm().Done() }

func (c *checkDeadline) Err() error {
	if a := c.armed.Load(); a != nil {
		return a.ctx.Err()
	}
	if c.parent.Err() != nil || c.stopped.Load() || !time.Now().Before(c.deadline) {
		// Ended: arm, so that Done, Err and Cause say how, as
		// context.WithDeadlineCause would have.
		return c.arm().Err()
	}
	return nil
}

// ended is the funnel's ended for c, with one clock reading: whether c
// was stopped, its parent ended or, by the clock, its deadline passed
// (an armed context's timer may not have fired yet).
func (c *checkDeadline) ended() bool {
	if a := c.armed.Load(); a != nil {
		if a.ctx.Err() != nil {
			return true
		}
	} else if c.parent.Err() != nil || c.stopped.Load() {
		return true
	}
	return !time.Now().Before(c.deadline)
}

func (c *checkDeadline) Value(key any) any {
	if c.armed.Load() == nil && c.Err() == nil {
		return c.parent.Value(key)
	}
	// Ended (Err armed it), or armed: context.Cause reads the armed
	// context's cause through Value.
	return c.armed.Load().ctx.Value(key)
}
