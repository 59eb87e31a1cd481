package server

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"

	"github.com/scopegate/scopegate/decision"
)

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// reloads returns the reload counters of s.
func reloads(t testing.TB, s *Server) (success, failure float64) {
	t.Helper()
	g := gather(t, s.Metrics().Registry())
	success, _ = g.value(metricPolicyReloads, "result", "success")
	failure, _ = g.value(metricPolicyReloads, "result", "failure")
	return success, failure
}

// replaceFile writes b beside path and renames it over path, as editors
// and deployment tools do.
func replaceFile(t testing.TB, path string, b []byte) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func readFile(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// watchT starts watching e's policy file with a short debounce; Stop ends
// the watch.
func watchT(t testing.TB, e *e2e) {
	t.Helper()
	e.srv.ops.debounce = 5 * time.Millisecond
	stop, err := e.srv.watchPolicy()
	if err != nil {
		t.Fatal(err)
	}
	e.srv.addStop(stop)
}

func versionOf(s *Server) string { return s.Engine().Policy().Version }

// TestWatchPolicy changes the policy file the ways editors, deployment
// tools and Kubernetes do, and checks each is reloaded.
func TestWatchPolicy(t *testing.T) {
	v2 := readFile(t, "testdata/policy-v2.yaml")
	for name, change := range map[string]func(t *testing.T, e *e2e){
		"rename over": func(t *testing.T, e *e2e) {
			replaceFile(t, filepath.Join(e.dir, "policy.yaml"), v2)
		},
		"write in place": func(t *testing.T, e *e2e) {
			if err := os.WriteFile(filepath.Join(e.dir, "policy.yaml"), v2, 0o600); err != nil {
				t.Fatal(err)
			}
		},
		"kubernetes configmap swap": func(t *testing.T, e *e2e) {
			// The volume's layout: policy.yaml -> ..data/policy.yaml,
			// ..data -> ..v1; an update writes ..v2, points a new symlink
			// at it, renames it over ..data and removes ..v1.
			newDir := filepath.Join(e.dir, "..v2")
			if err := os.Mkdir(newDir, 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(newDir, "policy.yaml"), v2, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink("..v2", filepath.Join(e.dir, "..data_tmp")); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(filepath.Join(e.dir, "..data_tmp"), filepath.Join(e.dir, "..data")); err != nil {
				t.Fatal(err)
			}
			if err := os.RemoveAll(filepath.Join(e.dir, "..v1")); err != nil {
				t.Fatal(err)
			}
		},
	} {
		t.Run(name, func(t *testing.T) {
			e := startE2E(t, nil)
			if name == "kubernetes configmap swap" {
				// Turn the directory into a ConfigMap volume holding the
				// same policy before watching starts.
				policy := filepath.Join(e.dir, "policy.yaml")
				b := readFile(t, policy)
				if err := os.Mkdir(filepath.Join(e.dir, "..v1"), 0o700); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(e.dir, "..v1", "policy.yaml"), b, 0o600); err != nil {
					t.Fatal(err)
				}
				if err := os.Symlink("..v1", filepath.Join(e.dir, "..data")); err != nil {
					t.Fatal(err)
				}
				if err := os.Remove(policy); err != nil {
					t.Fatal(err)
				}
				if err := os.Symlink(filepath.Join("..data", "policy.yaml"), policy); err != nil {
					t.Fatal(err)
				}
			}
			watchT(t, e)
			before := versionOf(e.srv)
			change(t, e)
			waitFor(t, "the new policy", func() bool { return strings.HasPrefix(versionOf(e.srv), "e2e-v2+") })
			// Writing in place may be seen half done (truncated) and
			// fail once; the end result must load once.
			ok, bad := reloads(t, e.srv)
			if ok != 1 || (bad != 0 && name != "write in place") {
				t.Errorf("reloads: %v success, %v failure; want exactly 1 success (from %s)", ok, bad, before)
			}
		})
	}
}

// TestWatchIgnoresOtherFiles: a change to another file of the directory
// (the JWKS beside the policy) does not reload the policy.
func TestWatchIgnoresOtherFiles(t *testing.T) {
	e := startE2E(t, nil)
	watchT(t, e)
	if err := os.WriteFile(filepath.Join(e.dir, "notes.txt"), []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	// Touch the policy without changing its content.
	now := time.Now()
	if err := os.Chtimes(filepath.Join(e.dir, "policy.yaml"), now, now); err != nil {
		t.Fatal(err)
	}
	replaceFile(t, filepath.Join(e.dir, "policy.yaml"), readFile(t, filepath.Join(e.dir, "policy.yaml")))
	time.Sleep(100 * time.Millisecond)
	if ok, bad := reloads(t, e.srv); ok != 0 || bad != 0 {
		t.Errorf("reloads: %v success, %v failure; want none for unchanged content", ok, bad)
	}
}

// TestWatchKeepsPolicyOnBadFile: a truncated, broken or deleted policy
// file is rejected, logged and counted, and the policy in force keeps
// deciding; a good file afterwards is loaded.
func TestWatchKeepsPolicyOnBadFile(t *testing.T) {
	for name, breakIt := range map[string]func(t *testing.T, path string){
		"truncated": func(t *testing.T, path string) {
			if err := os.Truncate(path, 0); err != nil {
				t.Fatal(err)
			}
		},
		"half written": func(t *testing.T, path string) {
			b := readFile(t, path)
			cut := strings.Index(string(b), "[GET") + 3 // an unclosed flow sequence
			replaceFile(t, path, b[:cut])
		},
		"not yaml": func(t *testing.T, path string) {
			replaceFile(t, path, []byte("routes: [\n  - {name: x\n"))
		},
		"unknown field": func(t *testing.T, path string) {
			replaceFile(t, path, append(readFile(t, path), []byte("\nroutez: []\n")...))
		},
		"deleted": func(t *testing.T, path string) {
			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
		},
	} {
		t.Run(name, func(t *testing.T) {
			e := startE2E(t, nil)
			good := mint(t, e.signer, "alice", "app", "items:read", time.Now(), time.Hour)
			policy := filepath.Join(e.dir, "policy.yaml")
			original := readFile(t, policy)
			watchT(t, e)
			before := versionOf(e.srv)

			breakIt(t, policy)
			waitFor(t, "the failed reload", func() bool { _, bad := reloads(t, e.srv); return bad == 1 })
			if v := versionOf(e.srv); v != before {
				t.Errorf("version %s after a bad file, want %s kept", v, before)
			}
			resp, err := e.extauthz.Check(ctxT(t), extAuthzRequest("GET", "/api/items/1", "Bearer "+good))
			if err != nil || resp.GetStatus().GetCode() != int32(codes.OK) {
				t.Fatalf("the kept policy does not allow: %v %v", resp.GetStatus(), err)
			}

			replaceFile(t, policy, readFile(t, "testdata/policy-v2.yaml"))
			waitFor(t, "the good file", func() bool { return strings.HasPrefix(versionOf(e.srv), "e2e-v2+") })
			replaceFile(t, policy, original)
			waitFor(t, "the original", func() bool { return versionOf(e.srv) == before })
			if ok, bad := reloads(t, e.srv); ok != 2 || bad != 1 {
				t.Errorf("reloads: %v success, %v failure; want 2 and 1", ok, bad)
			}
		})
	}
}

// TestReloadFromForces: ReloadFrom (the command's SIGHUP) and Reload
// reload even when the file looks unchanged, because someone asked, and
// content they loaded is not loaded again by the watcher: every trigger
// shares one record of the last content (reload.go).
func TestReloadFromForces(t *testing.T) {
	e := startE2E(t, nil)
	replaceFile(t, filepath.Join(e.dir, "policy.yaml"), readFile(t, "testdata/policy-v2.yaml"))
	if err := e.srv.ReloadFrom("SIGHUP"); err != nil {
		t.Fatal(err)
	}
	if v := versionOf(e.srv); !strings.HasPrefix(v, "e2e-v2+") {
		t.Fatalf("version %s after ReloadFrom, want e2e-v2+...", v)
	}
	if err := e.srv.Reload(); err != nil {
		t.Fatal(err)
	}
	if ok, _ := reloads(t, e.srv); ok != 2 {
		t.Errorf("%v reloads, want 2: a second reload of the same file must reload", ok)
	}
	if _, err := e.srv.reload("file change", false); err != nil {
		t.Fatal(err)
	}
	if ok, _ := reloads(t, e.srv); ok != 2 {
		t.Errorf("%v reloads, want 2: the watcher reloaded content ReloadFrom had loaded", ok)
	}
}

// TestReloadUnderLoadWatched makes 100 reloads through the file watcher,
// alternating two valid policies that decide the test requests alike and
// slipping in invalid ones, while 4 clients send ext_authz Checks over
// loopback without pause. No call may fail and no answer may differ from
// the expected verdict (run with -race).
func TestReloadUnderLoadWatched(t *testing.T) {
	e := startE2E(t, nil)
	watchT(t, e)
	policy := filepath.Join(e.dir, "policy.yaml")
	valid := [2][]byte{readFile(t, policy), nil}
	valid[1] = []byte(strings.Replace(string(valid[0]), "version: e2e\n", "version: e2e-b\n", 1))
	if string(valid[1]) == string(valid[0]) {
		t.Fatal("the second policy is not different")
	}
	invalid := [][]byte{
		[]byte("routes: [\n"),
		[]byte(""),
		[]byte(strings.Replace(string(valid[0]), "all_of: [items:read]", "all_of: items:read", 1)),
	}

	read := mint(t, e.signer, "alice", "app", "items:read", time.Now(), time.Hour)
	cases := []struct {
		req  *authv3.CheckRequest
		code codes.Code
		why  string // reason header of a deny
	}{
		{extAuthzRequest("GET", "/api/items/1", "Bearer "+read), codes.OK, ""},
		{extAuthzRequest("POST", "/api/items/1", "Bearer "+read), codes.PermissionDenied, decision.InsufficientScope.String()},
		{extAuthzRequest("GET", "/api/items/1", ""), codes.Unauthenticated, decision.TokenMissing.String()},
		{extAuthzRequest("GET", "/api/nothing", "Bearer "+read), codes.PermissionDenied, decision.NoRoute.String()},
	}
	ctx := ctxT(t)
	stop := make(chan struct{})
	var calls atomic.Int64
	errs := make(chan error, 8)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := g; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				c := cases[i%len(cases)]
				resp, err := e.extauthz.Check(ctx, c.req)
				if err != nil {
					errs <- fmt.Errorf("call %d failed: %v", i, err)
					return
				}
				calls.Add(1)
				if got := codes.Code(resp.GetStatus().GetCode()); got != c.code {
					errs <- fmt.Errorf("%s %s: status %v, want %v", c.req.GetAttributes().GetRequest().GetHttp().GetMethod(), c.req.GetAttributes().GetRequest().GetHttp().GetPath(), got, c.code)
					return
				}
				if c.why != "" && !strings.Contains(resp.GetDeniedResponse().String(), c.why) {
					errs <- fmt.Errorf("deny lacks reason %s: %v", c.why, resp.GetDeniedResponse())
					return
				}
			}
		})
	}

	var wantOK, wantBad float64
	for i := range 100 {
		var b []byte
		if i%10 == 9 {
			b = invalid[(i/10)%len(invalid)]
			wantBad++
		} else {
			b = valid[(i+1)%2] // valid[0] is in force at the start
			wantOK++
		}
		replaceFile(t, policy, b)
		waitFor(t, fmt.Sprintf("reload %d", i), func() bool {
			ok, bad := reloads(t, e.srv)
			return ok == wantOK && bad == wantBad
		})
		if i%10 == 9 && !strings.HasPrefix(versionOf(e.srv), "e2e") {
			t.Fatalf("reload %d: version %s after an invalid file", i, versionOf(e.srv))
		}
	}
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := calls.Load(); n < 100 {
		t.Errorf("only %d calls ran during the reloads; the test did not load the server", n)
	}
	if ok, bad := reloads(t, e.srv); ok != 90 || bad != 10 {
		t.Errorf("reloads: %v success, %v failure; want 90 and 10", ok, bad)
	}
	t.Logf("%d checks during 100 reloads", calls.Load())
}

// TestWatchPolicyMissingDir: watching a policy whose directory cannot be
// watched fails with an error that names the directory and the fix.
func TestWatchPolicyMissingDir(t *testing.T) {
	e := startE2E(t, nil)
	e.srv.cfg.PolicyPath = filepath.Join(t.TempDir(), "gone", "policy.yaml")
	stop, err := e.srv.watchPolicy()
	if err == nil {
		stop()
		t.Fatal("watching a missing directory succeeded")
	}
	if !strings.Contains(err.Error(), "gone") || !strings.Contains(err.Error(), "SIGHUP") {
		t.Errorf("error %q does not name the directory and the fix", err)
	}
}
