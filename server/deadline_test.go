package server

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestCheckDeadline checks that the lazily armed bound behaves as
// context.WithTimeoutCause(parent, timeout, errCheckTimeout) would, and
// arms no timer for a caller that never waits.
func TestCheckDeadline(t *testing.T) {
	t.Run("a decision that never waits arms nothing", func(t *testing.T) {
		c := newCheckDeadline(context.Background(), time.Minute)
		if dl, ok := c.Deadline(); !ok || time.Until(dl) < 59*time.Second {
			t.Fatalf("deadline %v %v", dl, ok)
		}
		if c.Err() != nil || ended(c) || context.Cause(c) != nil {
			t.Fatalf("ended before its deadline: %v", c.Err())
		}
		if c.armed.Load() != nil {
			t.Fatal("Err and Deadline armed a timer")
		}
		c.stop()
		if !errors.Is(c.Err(), context.Canceled) {
			t.Errorf("after stop, Err = %v, want Canceled", c.Err())
		}
		select {
		case <-c.Done():
		default:
			t.Error("after stop, Done is open")
		}
	})
	t.Run("the deadline passes while waiting", func(t *testing.T) {
		c := newCheckDeadline(context.Background(), 20*time.Millisecond)
		child, cancel := context.WithCancel(c)
		defer cancel()
		select {
		case <-child.Done():
		case <-time.After(5 * time.Second):
			t.Fatal("the deadline never fired")
		}
		if !errors.Is(c.Err(), context.DeadlineExceeded) || !errors.Is(context.Cause(c), errCheckTimeout) || !errors.Is(context.Cause(child), errCheckTimeout) {
			t.Errorf("Err %v, Cause %v, child's Cause %v", c.Err(), context.Cause(c), context.Cause(child))
		}
		c.stop()
		if !errors.Is(c.Err(), context.DeadlineExceeded) {
			t.Errorf("stop changed Err to %v", c.Err())
		}
	})
	t.Run("the deadline passed before anything waited", func(t *testing.T) {
		c := newCheckDeadline(context.Background(), time.Nanosecond)
		time.Sleep(time.Millisecond)
		if !ended(c) || !errors.Is(context.Cause(c), errCheckTimeout) {
			t.Errorf("ended %v, Cause %v", ended(c), context.Cause(c))
		}
		<-c.Done()
		c.stop()
	})
	t.Run("the caller goes first", func(t *testing.T) {
		gone := errors.New("caller gone")
		parent, cancel := context.WithCancelCause(context.Background())
		c := newCheckDeadline(parent, time.Minute)
		cancel(gone)
		if !errors.Is(c.Err(), context.Canceled) || !errors.Is(context.Cause(c), gone) {
			t.Errorf("Err %v, Cause %v", c.Err(), context.Cause(c))
		}
		<-c.Done()
		c.stop()
	})
	t.Run("ended by the clock, armed or not", func(t *testing.T) {
		for _, armed := range []bool{false, true} {
			c := checkDeadlineAt(context.Background(), time.Now(), 30*time.Millisecond)
			if armed {
				_ = c.Done()
			}
			if ended(c) {
				t.Fatalf("armed %v: ended before its deadline", armed)
			}
			time.Sleep(40 * time.Millisecond)
			// The clock says the deadline passed whether or not the
			// armed timer has fired: the funnel must see it ended.
			if !ended(c) {
				t.Errorf("armed %v: not ended past the deadline", armed)
			}
			c.stop()
		}
		// An armed timer that has not fired yet: the deadline passed by
		// the clock (moved back here; the timer stays an hour away).
		late := checkDeadlineAt(context.Background(), time.Now(), time.Hour)
		_ = late.Done()
		late.deadline = time.Now().Add(-time.Millisecond)
		if late.armed.Load().ctx.Err() != nil || !ended(late) {
			t.Error("armed, timer not fired, deadline passed by the clock: not ended")
		}
		late.stop()
		parent, cancel := context.WithCancel(context.Background())
		c := checkDeadlineAt(parent, time.Now(), time.Minute)
		cancel()
		if !ended(c) {
			t.Error("not ended once the parent ended")
		}
		s := checkDeadlineAt(context.Background(), time.Now(), time.Minute)
		s.stop()
		if !ended(s) {
			t.Error("not ended once stopped")
		}
	})
	t.Run("values pass through", func(t *testing.T) {
		type key struct{}
		c := newCheckDeadline(context.WithValue(context.Background(), key{}, "v"), time.Minute)
		if c.Value(key{}) != "v" {
			t.Error("value lost before arming")
		}
		_ = c.Done()
		if c.armed.Load() == nil || c.Value(key{}) != "v" {
			t.Error("value lost after arming")
		}
		c.stop()
	})
}
