package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/scopegate/scopegate/store"
)

func TestSingleProcessLeaser(t *testing.T) {
	var l store.SingleProcessLeaser
	ctx := context.Background()
	for _, h := range []string{"a", "b"} {
		if held, err := l.Acquire(ctx, "poll:idp", h, time.Second); err != nil || !held {
			t.Errorf("%s: held %v, %v; want held: one process has no one to share with", h, held, err)
		}
	}
	bad := map[string]struct {
		name, holder string
		ttl          time.Duration
	}{"no name": {"", "h", time.Second}, "no holder": {"n", "", time.Second}, "no ttl": {"n", "h", 0}}
	for what, c := range bad {
		if held, err := l.Acquire(ctx, c.name, c.holder, c.ttl); err == nil || held {
			t.Errorf("%s: held %v, err %v; want an error", what, held, err)
		}
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := l.Acquire(cancelled, "n", "h", time.Second); err == nil {
		t.Error("a cancelled context acquired the lease")
	}
}
