package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"strconv"
	"time"

	"github.com/scopegate/scopegate/store"
)

// One replica polls a transmitter at a time: the poll position lives with
// the transmitter, and two replicas polling one stream would split its
// events between them and acknowledge each other's. The poller holds a
// lease in the shared store (PostgreSQL: scopegate_ssf_leases, expiring by
// the database's clock), renewed every LeaseTTL/3. It polls only while it
// holds the lease: a renewal that fails, times out or finds the lease
// taken stops its polling at once, before the lease can expire in the
// store; the standby replicas try every LeaseTTL/3 and one takes over
// within LeaseTTL plus one interval of the holder's last renewal. A
// replica that stops releases the lease, so another takes over at its
// next try.

// DefaultSSFLeaseTTL is the poll lease's default time to live.
const DefaultSSFLeaseTTL = 15 * time.Second

// defaultSSFHolder names this process among the replicas: host, pid and a
// random suffix, so a restarted process is a new holder.
func defaultSSFHolder() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "scopegate"
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	return host + "-" + strconv.Itoa(os.Getpid()) + "-" + hex.EncodeToString(b[:])
}

func ssfLeaseName(tx *ssfTx) string { return "ssf-poll:" + tx.cfg.Name }

// pollUnderLease polls tx for as long as this replica holds its lease, and
// waits for the lease while another does, until the receiver closes.
func (r *SSFReceiver) pollUnderLease(tx *ssfTx) {
	name, ttl := ssfLeaseName(tx), tx.cfg.LeaseTTL
	every := ttl / 3
	acquire := func() bool {
		ctx, cancel := context.WithTimeout(r.ctx, every)
		defer cancel()
		held, err := r.leaser.Acquire(ctx, name, r.holder, ttl)
		if err != nil && r.ctx.Err() == nil {
			r.log.Warn("SSF poll lease not renewed: not polling until it is", "transmitter", tx.cfg.Name, "error", err)
		}
		return held && err == nil
	}
	for {
		if acquire() {
			r.setLease(tx, true)
			ctx, cancel := context.WithCancel(r.ctx)
			done := make(chan struct{})
			go func() { defer close(done); r.poll(ctx, tx) }()
			for held := true; held; {
				select {
				case <-r.ctx.Done():
				case <-time.After(every):
				}
				held = r.ctx.Err() == nil && acquire()
			}
			cancel()
			<-done
			r.setLease(tx, false)
		}
		if r.ctx.Err() != nil {
			rctx, cancel := context.WithTimeout(context.Background(), time.Second)
			_ = r.leaser.Release(rctx, name, r.holder)
			cancel()
			return
		}
		select {
		case <-r.ctx.Done():
		case <-time.After(every):
		}
	}
}

func (r *SSFReceiver) setLease(tx *ssfTx, held bool) {
	if tx.leaseHeld.Swap(held) != held {
		r.log.Info("SSF poll lease", "transmitter", tx.cfg.Name, "held", held, "replica", r.holder)
	}
	v := 0.0
	if held {
		v = 1
	}
	r.m.leaseHeld.WithLabelValues(tx.cfg.Name).Set(v)
}

var _ store.Leaser = store.SingleProcessLeaser{}
