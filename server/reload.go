package server

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/scopegate/scopegate/decision"
	"github.com/scopegate/scopegate/store/jwks"
)

// defaultReloadDebounce is how long the watcher waits after the last
// change in the policy file's directory before reloading: editors write a
// file in several steps (write, rename, chmod) and a Kubernetes ConfigMap
// update swaps a symlink and removes the old directory, and one reload
// should see the end result, not a half-written file.
const defaultReloadDebounce = 200 * time.Millisecond

// fileState identifies the content of the file at path: its SHA-256, or
// the error reading it. Two equal states mean nothing to reload.
func fileState(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "error: " + err.Error()
	}
	sum := sha256.Sum256(b)
	return string(sum[:])
}

// reload is the one serialising point of every policy reload: Reload,
// ReloadFrom (the command's SIGHUP), the file watcher and the Admin API's
// ReloadPolicy all go through it, one at a time, under reloadMu. It reloads when
// the file's content differs from the last one loaded or tried, or always
// when force is set (the operator asked). The whole file is validated and
// compiled before it is swapped in; an invalid file is logged and counted
// and the policy in force stays. It returns the policy in force after it.
func (s *Server) reload(trigger string, force bool) (*decision.Policy, error) {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	if s.stopping {
		return s.engine.Policy(), errors.New("reload policy: the server is stopping")
	}
	st := fileState(s.cfg.PolicyPath)
	if !force && st == s.lastState {
		s.log.Debug("policy file unchanged; not reloading", "policy", s.cfg.PolicyPath, "trigger", trigger)
		return s.engine.Policy(), nil
	}
	s.lastState = st
	s.log.Info("reloading policy", "policy", s.cfg.PolicyPath, "trigger", trigger)
	old := s.engine.Policy()
	size := s.policyFileBytes()
	s.fitMemoryLimit(max(size, s.policyBytes)) // the old and the new, while both live
	pol, err := s.loadPolicy()
	if err != nil {
		s.fitMemoryLimit(s.policyBytes)
		s.log.Error("policy reload failed; the policy in force is kept", "policy", s.cfg.PolicyPath, "version", old.Version, "trigger", trigger, "error", err)
		s.metrics.policyReloaded(false)
		return old, fmt.Errorf("reload policy: %w", err)
	}
	s.engine.SetPolicy(pol)
	s.policyBytes = size
	s.fitMemoryLimit(size)
	s.metrics.policyReloaded(true)
	s.admin.policyLoaded(pol)
	if s.registry != nil {
		// Stop refreshing key sets only the old policy used. Decisions
		// still running on the old policy keep its keys.
		s.registry.Retain(pol)
	}
	if s.introClient != nil {
		s.introClient.Retain(pol)
	}
	s.updateHealth()
	s.log.Info("policy reloaded", "policy", s.cfg.PolicyPath, "version", pol.Version, "previous", old.Version, "trigger", trigger)
	return pol, nil
}

// watchPolicy watches the policy file's directory, not the file: editors
// replace a file by renaming a new one over it, and a Kubernetes ConfigMap
// volume swaps its "..data" symlink, and neither is seen by a watch on the
// file itself. Every change in the directory is debounced, then the file's
// content is compared with the last loaded (reload), so unrelated
// files (a JWKS beside the policy) cause no reload. It returns the
// function that stops watching.
func (s *Server) watchPolicy() (stop func(), err error) {
	abs, err := filepath.Abs(s.cfg.PolicyPath)
	if err != nil {
		return nil, fmt.Errorf("watch the policy file %s: %w", s.cfg.PolicyPath, err)
	}
	dir := filepath.Dir(abs)
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("watch the policy file: %w (turn watching off and reload with SIGHUP instead)", err)
	}
	if err := w.Add(dir); err != nil {
		w.Close()
		return nil, fmt.Errorf("watch the policy directory %s: %w (turn watching off and reload with SIGHUP instead)", dir, err)
	}
	s.reloadMu.Lock()
	s.lastState = fileState(s.cfg.PolicyPath)
	s.reloadMu.Unlock()
	debounce := s.ops.debounce
	if debounce <= 0 {
		debounce = defaultReloadDebounce
	}

	done := make(chan struct{})
	go func() {
		defer close(done)
		timer := time.NewTimer(debounce)
		timer.Stop()
		defer timer.Stop()
		for {
			select {
			case ev, ok := <-w.Events:
				if !ok {
					return
				}
				if ev.Op == fsnotify.Chmod {
					continue // touch, or attribute changes: no new content
				}
				timer.Reset(debounce)
			case err, ok := <-w.Errors:
				if !ok {
					return
				}
				s.log.Warn("policy watch error; changes may be missed until the next one (SIGHUP reloads)", "dir", dir, "error", err)
			case <-timer.C:
				// Errors are logged and counted by reload.
				_, _ = s.reload("file change", false)
			}
		}
	}()
	s.log.Info("watching the policy file", "policy", s.cfg.PolicyPath, "dir", dir)
	return func() {
		w.Close()
		<-done
	}, nil
}

// loadPolicy loads the policy file (decision.LoadFile, the loading path
// every command shares) and starts fetching the key sets it names that are
// not running yet. It never waits on an identity provider: a new jwks_url
// is fetched in the background and its keys are swapped in when they
// arrive, so a reload stays fast while the provider hangs.
func (s *Server) loadPolicy() (*decision.Policy, error) {
	pol, err := decision.LoadFile(s.cfg.PolicyPath, decision.CompileOptions{MaxPolicyBytes: s.cfg.MaxPolicyBytes})
	if err != nil {
		return nil, err
	}
	if pol.DPoPNonceRequired() && len(s.cfg.DPoPNonceSecret) == 0 {
		// Refused here rather than denying every DPoP request with
		// internal: a reload keeps the running policy.
		return nil, errors.New("the policy sets dpop.nonce: required, but the server has no nonce secret: give one with --dpop-nonce-secret-file (SCOPEGATE_DPOP_NONCE_SECRET_FILE), at least 32 random bytes, the same on every replica")
	}
	if s.registry != nil {
		if err := s.registry.Open(pol); err != nil {
			return nil, fmt.Errorf("key sets: %w", err)
		}
	}
	if s.introClient != nil {
		if err := s.introClient.Open(pol); err != nil {
			return nil, fmt.Errorf("introspection clients: %w", err)
		}
	}
	return pol, nil
}

// keySetChanged is the registry's OnChange: it asks watchHealth to
// re-evaluate readiness now, so a key set that arrives late turns the
// server SERVING at once. It never blocks.
func (s *Server) keySetChanged() {
	select {
	case s.keysChanged <- struct{}{}:
	default:
	}
}

// keyWaitPoll is how often waitForKeys looks for keys besides the
// registry's change notices.
const keyWaitPoll = 100 * time.Millisecond

// waitForKeys waits, when Config.KeyStartupTimeout is set, until every
// issuer of pol has keys, and fails naming the first one without when the
// timeout passes. Without a timeout it returns at once: the server starts
// NOT_SERVING and turns SERVING when the keys arrive.
func (s *Server) waitForKeys(pol *decision.Policy) error {
	if s.cfg.KeyStartupTimeout <= 0 {
		return nil
	}
	deadline := time.NewTimer(s.cfg.KeyStartupTimeout)
	defer deadline.Stop()
	poll := time.NewTicker(keyWaitPoll)
	defer poll.Stop()
	for {
		ready, missing := s.engine.KeysReady(pol)
		if ready {
			return nil
		}
		select {
		case <-s.keysChanged:
		case <-poll.C:
		case <-deadline.C:
			msg := fmt.Sprintf("the key set of issuer %s was not loaded within %s (KeyStartupTimeout)", missing, s.cfg.KeyStartupTimeout)
			if iss := pol.Issuers[missing]; iss != nil {
				msg += " from " + iss.KeyRef.Location()
				if src, ok := s.engine.IssuerKeys(iss).(interface{ Status() jwks.Status }); ok {
					if err := src.Status().LastError; err != nil {
						// Named once: the fetch error starts "GET URL: ".
						msg += ": " + strings.TrimPrefix(err.Error(), "GET "+iss.KeyRef.Location()+": ")
					}
				}
			}
			return errors.New(msg + "; set the timeout to 0 to start NOT_SERVING and wait for the keys instead")
		}
	}
}
