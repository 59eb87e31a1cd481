package server

import (
	"context"
	"net/http"
	"sync"
	"time"
)

// opsState is the server's operations machinery: the operator listener,
// the policy watcher and the shutdown hooks. Run starts
// it (startOps); Stop tears it down (stopOps) after the decision listeners
// have drained.
type opsState struct {
	mu   sync.Mutex
	http *http.Server
	// stopped is set once the operator listener is closed, so a serveOps
	// that starts late does not serve after Stop.
	stopped bool
	hooks   []func(context.Context)
	stops   []func()

	// debounce overrides defaultReloadDebounce (tests).
	debounce time.Duration
}

// OnShutdown registers f to run when the server stops, after the decision
// listeners have drained and before the engine is released: the audit
// sink flushes its buffer here. Hooks run in the order registered and
// share one context whose deadline is Config.ShutdownTimeout away, so a
// hook that cannot finish does not hold the process forever.
func (s *Server) OnShutdown(f func(ctx context.Context)) {
	s.ops.mu.Lock()
	s.ops.hooks = append(s.ops.hooks, f)
	s.ops.mu.Unlock()
}

// startOps starts what a long-running process needs beside the decision
// listeners: the operator listener (Config.MetricsAddr) and the policy
// file watcher (Config.WatchPolicy). Signals are the command's: it calls
// ReloadFrom on SIGHUP and cancels Run's context on SIGTERM.
func (s *Server) startOps() error {
	if _, err := s.listenOps(s.cfg.MetricsAddr); err != nil {
		return err
	}
	return s.startWatch()
}

// startWatch starts reloading the policy when its file changes, with
// Config.WatchPolicy.
func (s *Server) startWatch() error {
	if !s.cfg.WatchPolicy {
		return nil
	}
	stop, err := s.watchPolicy()
	if err != nil {
		return err
	}
	s.addStop(stop)
	return nil
}

func (s *Server) addStop(f func()) {
	s.ops.mu.Lock()
	s.ops.stops = append(s.ops.stops, f)
	s.ops.mu.Unlock()
}

// stopOps stops watching and reloading, runs the shutdown hooks, then
// closes the operator listener last, so that metrics stay scrapeable while
// the decision listeners drain.
func (s *Server) stopOps() {
	s.ops.mu.Lock()
	stops, hooks := s.ops.stops, s.ops.hooks
	s.ops.stops, s.ops.hooks = nil, nil
	s.ops.mu.Unlock()
	for _, stop := range stops {
		stop()
	}
	if len(hooks) > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
		for _, h := range hooks {
			s.runHook(ctx, h)
		}
		cancel()
	}
	s.closeOpsListener()
}

// runHook runs one shutdown hook; a panic in it is logged, and the other
// hooks still run.
func (s *Server) runHook(ctx context.Context, h func(context.Context)) {
	defer func() {
		if p := recover(); p != nil {
			s.log.Error("panic in shutdown hook", "panic", p)
		}
	}()
	h(ctx)
}
