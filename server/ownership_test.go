package server

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/scopegate/scopegate/store"
	"github.com/scopegate/scopegate/store/bolt"
)

// TestOwnershipThroughTheServer serves an owner rule with an embedded store
// configured as Config.Ownership and checks each outcome through ext_authz,
// then that answers are cached (the store is closed and a known answer is
// still served).
func TestOwnershipThroughTheServer(t *testing.T) {
	db, err := bolt.Open(filepath.Join(t.TempDir(), "store.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.PutOwners(context.Background(), "items", "7", []string{"alice"}); err != nil {
		t.Fatal(err)
	}
	e := startE2E(t, func(c *Config) { c.Ownership = db.Ownership() })
	copyFile(t, "testdata/policy-owner.yaml", filepath.Join(e.dir, "policy.yaml"))
	if err := e.srv.Reload(); err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t)
	alice := mint(t, e.signer, "alice", "app", "items:write", time.Now(), time.Hour)
	bob := mint(t, e.signer, "bob", "app", "items:write", time.Now(), time.Hour)
	check := func(t *testing.T, path, tok string) string {
		t.Helper()
		resp, err := e.extauthz.Check(ctx, extAuthzRequest("PUT", path, "Bearer "+tok))
		if err != nil {
			t.Fatal(err)
		}
		return resp.GetStatus().GetMessage()
	}
	for name, tc := range map[string]struct{ path, tok, want string }{
		"owner":     {"/api/items/7", alice, ""},
		"not owner": {"/api/items/7", bob, "not_owner"},
		"not found": {"/api/items/8", alice, "resource_not_found"},
	} {
		t.Run(name, func(t *testing.T) {
			if got := check(t, tc.path, tc.tok); got != tc.want {
				t.Fatalf("status message = %q, want %q", got, tc.want)
			}
		})
	}
	e.srv.ownersCache.Wait()
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if got := check(t, "/api/items/7", alice); got != "" {
		t.Fatalf("cached owner after the store closed: %q, want an allow", got)
	}
	if got := check(t, "/api/items/9", alice); got != "ownership_unavailable" {
		t.Fatalf("uncached key after the store closed: %q, want ownership_unavailable", got)
	}
}
