package bolt_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/scopegate/scopegate/store"
	"github.com/scopegate/scopegate/store/bolt"
	"github.com/scopegate/scopegate/store/storetest"
)

func openTemp(t testing.TB) *bolt.DB {
	t.Helper()
	db, err := bolt.Open(filepath.Join(t.TempDir(), "scopegate.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

func TestConformance(t *testing.T) {
	storetest.TestOwnership(t, func(t *testing.T) store.Store { return openTemp(t) })
}

func TestSecondOpenFailsWithLockError(t *testing.T) {
	path := filepath.Join(t.TempDir(), "scopegate.db")
	first, err := bolt.Open(path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()

	start := time.Now()
	second, err := bolt.Open(path, store.Options{File: store.FileOptions{LockTimeout: 100 * time.Millisecond}})
	if err == nil {
		second.Close()
		t.Fatal("second Open of a locked file succeeded")
	}
	if waited := time.Since(start); waited > 2*time.Second {
		t.Errorf("second Open waited %s; want about the 100ms lock timeout", waited)
	}
	if !errors.Is(err, store.ErrLocked) {
		t.Errorf("err = %v; want it to wrap store.ErrLocked", err)
	}
	want := fmt.Sprintf("store file %s is locked by another scopegate process", path)
	if !strings.Contains(err.Error(), want) {
		t.Errorf("err = %q; want it to contain %q", err, want)
	}

	// Once the first holder closes, the file opens again with its data.
	if err := first.PutOwners(t.Context(), "orders", "1", []string{"alice"}); err != nil {
		t.Fatal(err)
	}
	first.Close()
	again, err := bolt.Open(path, store.Options{})
	if err != nil {
		t.Fatalf("Open after the holder closed: %v", err)
	}
	defer again.Close()
	owners, found, err := again.Owners(t.Context(), "orders", "1")
	if err != nil || !found || !slices.Equal(owners, []string{"alice"}) {
		t.Errorf("data after reopen: %q %v %v", owners, found, err)
	}
}

func TestOpenRejectsBadConfiguration(t *testing.T) {
	dir := t.TempDir()
	cases := map[string]struct {
		path string
		opts store.Options
		want string
	}{
		"empty path":          {"", store.Options{}, "file path is empty"},
		"missing directory":   {filepath.Join(dir, "nope", "x.db"), store.Options{}, "does not exist"},
		"negative timeout":    {filepath.Join(dir, "a.db"), store.Options{File: store.FileOptions{LockTimeout: -1}}, "File.LockTimeout"},
		"postgres options":    {filepath.Join(dir, "b.db"), store.Options{Postgres: store.PostgresOptions{Migrate: true}}, "PostgreSQL options given"},
		"path is a directory": {dir, store.Options{}, "open file"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			db, err := bolt.Open(tc.path, tc.opts)
			if err == nil {
				db.Close()
				t.Fatal("Open succeeded")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %q; want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestCorruptRecordIsAnError(t *testing.T) {
	// A record this version cannot decode must fail closed, not read as "no owners".
	path := filepath.Join(t.TempDir(), "scopegate.db")
	db, err := bolt.Open(path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.PutOwners(t.Context(), "orders", "1", []string{"alice"}); err != nil {
		t.Fatal(err)
	}
	db.Close()
	corruptValue(t, path, "orders", "1")
	db, err = bolt.Open(path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	owners, found, err := db.Owners(t.Context(), "orders", "1")
	if err == nil {
		t.Fatalf("corrupt record read as %q, found=%v", owners, found)
	}
}

func TestCSVImportIntoFileStore(t *testing.T) {
	db := openTemp(t)
	f, err := os.Open(filepath.Join("testdata", "orders.csv"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n, err := store.ImportOwnershipCSV(t.Context(), db, "orders", f)
	if err != nil {
		t.Fatal(err)
	}
	if n != 3 {
		t.Errorf("imported %d keys; want 3", n)
	}
	owners, found, err := db.Owners(t.Context(), "orders", "o-2")
	if err != nil || !found || !slices.Equal(owners, []string{"bob", "carol"}) {
		t.Errorf("o-2 = %q %v %v; want [bob carol]", owners, found, err)
	}
}

func BenchmarkOwners(b *testing.B) {
	db := openTemp(b)
	ctx := context.Background()
	for i := range 1000 {
		if err := db.PutOwners(ctx, "orders", fmt.Sprintf("order-%d", i), []string{"alice", fmt.Sprintf("user-%d", i)}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		_, found, err := db.Owners(ctx, "orders", "order-500")
		if err != nil || !found {
			b.Fatal(found, err)
		}
	}
}

func corruptValue(t *testing.T, path, lookup, key string) {
	t.Helper()
	raw, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	if err := raw.Update(func(tx *bbolt.Tx) error {
		return tx.Bucket([]byte("ownership")).Bucket([]byte(lookup)).Put([]byte(key), []byte{1, 2, 5, 'a'})
	}); err != nil {
		t.Fatal(err)
	}
}
