package server

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	scopegatev1 "github.com/scopegate/scopegate/proto/scopegate/v1"
)

// policyNumber is the n of a policy version "e2e-n+hash" (0 for the
// original "e2e", -1 for any other).
func policyNumber(version string) int {
	v, _, _ := strings.Cut(version, "+")
	if v == "e2e" {
		return 0
	}
	n, err := strconv.Atoi(strings.TrimPrefix(v, "e2e-"))
	if err != nil {
		return -1
	}
	return n
}

// TestReloadsFromEveryTrigger rewrites the policy file 40 times while
// every trigger reloads at once: the file watcher, Reload, ReloadFrom (the
// command's SIGHUP) and the Admin API's ReloadPolicy. They share one
// serialising point (Server.reload), so the version in force never goes
// back (each reload reads the file after the one before it), no reload
// fails, and once the writes stop the last file is in force: no update is
// lost. Run it with -race.
func TestReloadsFromEveryTrigger(t *testing.T) {
	a := startAdminE2E(t, nil)
	watchT(t, a.e2e)
	policy := filepath.Join(a.dir, "policy.yaml")
	original := string(readFile(t, policy))
	if !strings.Contains(original, "version: e2e\n") {
		t.Fatal("the test policy has no version line to rewrite")
	}
	const writes = 40

	stop := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	calls := make([]int, 3)
	for i, trigger := range []func() error{
		a.srv.Reload,
		func() error { return a.srv.ReloadFrom("SIGHUP") },
		func() error {
			_, err := a.admin.ReloadPolicy(as(t, a.token), &scopegatev1.ReloadPolicyRequest{})
			return err
		},
	} {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if err := trigger(); err != nil {
					errs <- fmt.Errorf("trigger %d: %v", i, err)
					return
				}
				calls[i]++
			}
		})
	}
	// The version in force, sampled without pause, must never go back.
	wg.Go(func() {
		last := 0
		for {
			select {
			case <-stop:
				return
			default:
			}
			v := versionOf(a.srv)
			n := policyNumber(v)
			if n < last {
				errs <- fmt.Errorf("the policy in force went back from e2e-%d to %s", last, v)
				return
			}
			last = n
		}
	})

	for i := 1; i <= writes; i++ {
		replaceFile(t, policy, []byte(strings.Replace(original, "version: e2e\n", fmt.Sprintf("version: e2e-%d\n", i), 1)))
		time.Sleep(2 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for i, n := range calls {
		if n == 0 {
			t.Errorf("trigger %d never ran: the test did not reload concurrently", i)
		}
	}
	// The triggers have stopped: the watcher alone must bring the last
	// write in force, if no trigger did after it.
	waitFor(t, "the last policy", func() bool { return policyNumber(versionOf(a.srv)) == writes })
	ok, bad := reloads(t, a.srv)
	if bad != 0 {
		t.Errorf("%v reloads failed; every file written was valid", bad)
	}
	if forced := float64(calls[0] + calls[1] + calls[2]); ok < forced {
		t.Errorf("%v successful reloads, fewer than the %v forced ones", ok, forced)
	}
	t.Logf("%v reloads (%v forced: %v Reload, %v SIGHUP, %v Admin)", ok, calls[0]+calls[1]+calls[2], calls[0], calls[1], calls[2])
}
