package postgres

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/scopegate/scopegate/decision"
	"github.com/scopegate/scopegate/store"
)

const replayTable = "scopegate_dpop_replay"

// Bounds of the shared DPoP replay cache.
const (
	// DefaultReplayClaimTimeout bounds one claim when the request's own
	// context has no earlier deadline: a slow database denies DPoP
	// requests with dpop_replay_unavailable instead of holding them.
	DefaultReplayClaimTimeout = 500 * time.Millisecond
	// ReplaySweepInterval is how often expired rows are deleted.
	ReplaySweepInterval = time.Minute
	// replaySweepGrace keeps rows a little past their expiry by the
	// database's clock, for replicas whose clocks run behind it. A claim
	// never needs the sweep: it overwrites an expired row itself.
	replaySweepGrace = time.Minute
)

var (
	_ store.ReplayCacheProvider = (*DB)(nil)
	_ decision.ReplayCache      = (*replayCache)(nil)
)

func replayMigrations(t, index string) []string {
	return []string{
		`CREATE TABLE IF NOT EXISTS ` + t + ` (
	key     bytea PRIMARY KEY,
	expires timestamptz NOT NULL
)`,
		`CREATE INDEX IF NOT EXISTS ` + index + ` ON ` + t + ` (expires)`,
	}
}

// ReplayCache returns the DPoP replay cache shared by every replica of this
// database (scopegate_dpop_replay). Its rows are the decision.ReplayKey of
// each proof (a hash: no proof, token or jti is stored) and when it leaves
// the window. The first call starts the deletion of expired rows, which
// Close stops. Claims after Close fail (store.ErrClosed).
func (d *DB) ReplayCache() decision.ReplayCache {
	d.replayMu.Lock()
	defer d.replayMu.Unlock()
	if d.replay == nil {
		t := d.table(replayTable)
		d.replay = &replayCache{d: d,
			// A row comes back when the key is new, or when its row had
			// expired by the claiming replica's clock ($3): the same
			// clock that let the proof's iat into the window.
			//
			// The claim commits asynchronously (synchronous_commit off
			// for its own transaction only): it does not wait for the
			// WAL flush, which costs about ten times the rest. A crash
			// of PostgreSQL can lose the claims of its last moments
			// (at most three wal_writer_delay, 600 ms by default); a
			// replica's own cache loses all of its claims when it
			// restarts, so this is the same kind of guarantee.
			claim: `INSERT INTO ` + t + ` AS r (key, expires)
SELECT $1, $2 FROM (SELECT set_config('synchronous_commit', 'off', true)) AS async
ON CONFLICT (key) DO UPDATE SET expires = EXCLUDED.expires WHERE r.expires < $3
RETURNING true`,
			sweep: `DELETE FROM ` + t + ` WHERE expires < clock_timestamp() - $1 * interval '1 microsecond'`,
			stop:  make(chan struct{}),
		}
		if !d.closed.Load() {
			d.replay.wg.Go(d.replay.sweepLoop)
		}
	}
	return d.replay
}

type replayCache struct {
	d            *DB
	claim, sweep string
	stop         chan struct{}
	stopOnce     sync.Once
	wg           sync.WaitGroup
}

// Claim implements decision.ReplayCache: one INSERT, one round trip.
func (c *replayCache) Claim(ctx context.Context, key decision.ReplayKey, expires time.Time) (bool, error) {
	if err := c.d.usable(ctx); err != nil {
		return false, err
	}
	if dl, ok := ctx.Deadline(); !ok || time.Until(dl) > DefaultReplayClaimTimeout {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultReplayClaimTimeout)
		defer cancel()
	}
	var isNew bool
	err := c.d.pool.QueryRow(ctx, c.claim, key[:], expires, time.Now()).Scan(&isNew)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return true, nil
	case err != nil:
		return false, fmt.Errorf("store: PostgreSQL DPoP replay claim: %w", err)
	}
	return false, nil
}

// SweepReplays deletes the replay cache's rows that expired more than a
// minute ago by the database's clock and returns how many it deleted. The
// cache runs it every ReplaySweepInterval by itself.
func (d *DB) SweepReplays(ctx context.Context) (int64, error) {
	return d.ReplayCache().(*replayCache).sweepNow(ctx)
}

func (c *replayCache) sweepNow(ctx context.Context) (int64, error) {
	if err := c.d.usable(ctx); err != nil {
		return 0, err
	}
	tag, err := c.d.pool.Exec(ctx, c.sweep, replaySweepGrace.Microseconds())
	if err != nil {
		return 0, fmt.Errorf("store: PostgreSQL DPoP replay sweep: %w", err)
	}
	return tag.RowsAffected(), nil
}

func (c *replayCache) sweepLoop() {
	tick := time.NewTicker(ReplaySweepInterval)
	defer tick.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-tick.C:
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			// A failed sweep is retried at the next tick; claims do
			// not depend on it.
			_, _ = c.sweepNow(ctx)
			cancel()
		}
	}
}

func (c *replayCache) close() {
	c.stopOnce.Do(func() { close(c.stop) })
	c.wg.Wait()
}
