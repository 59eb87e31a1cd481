package main

import (
	"bytes"
	"context"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/scopegate/scopegate/store"
	"github.com/scopegate/scopegate/store/bolt"
)

func TestOwnershipImport(t *testing.T) {
	path := filepath.Join(t.TempDir(), "store.db")
	var out, errOut bytes.Buffer
	c := &cli{stdin: strings.NewReader("42,alice\n42,carol\n43,bob\n"), stdout: &out, stderr: &errOut}
	if code := c.run(context.Background(), []string{"ownership", "import", "--store", path, "--lookup", "orders"}); code != exitOK {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	if !strings.Contains(out.String(), "imported 2 key(s)") {
		t.Fatalf("output = %q", out.String())
	}
	db, err := bolt.Open(path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	owners, found, err := db.Ownership().Owners(context.Background(), "orders", "42")
	if err != nil || !found || !slices.Equal(owners, []string{"alice", "carol"}) {
		t.Fatalf("owners of 42 = %v, %v, %v; want [alice carol]", owners, found, err)
	}

	c = &cli{stdin: strings.NewReader("44\n"), stdout: &out, stderr: &errOut}
	if code := c.run(context.Background(), []string{"ownership", "import", "--store", filepath.Join(t.TempDir(), "x.db"), "--lookup", "orders"}); code == exitOK {
		t.Fatal("a line without an owner was accepted")
	}
	if code := c.run(context.Background(), []string{"ownership", "import", "--lookup", "orders"}); code != exitUsage {
		t.Fatalf("missing --store: exit %d, want %d", code, exitUsage)
	}
}

func TestOwnershipQueryFlag(t *testing.T) {
	var q queryFlag
	for _, v := range []string{"orders=SELECT customer FROM orders WHERE id = $1", " carts = SELECT owner FROM carts WHERE id = $1"} {
		if err := q.Set(v); err != nil {
			t.Fatalf("Set(%q): %v", v, err)
		}
	}
	if got := q["carts"]; got != " SELECT owner FROM carts WHERE id = $1" {
		t.Fatalf("carts query = %q", got)
	}
	if q.String() != "carts,orders" {
		t.Fatalf("String() = %q", q.String())
	}
	for _, bad := range []string{"orders", "=SELECT 1", "orders="} {
		if err := q.Set(bad); err == nil {
			t.Errorf("Set(%q) accepted", bad)
		}
	}
}
