package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/scopegate/scopegate/store"
	"github.com/scopegate/scopegate/store/open"
)

// ownershipImportCmd loads key,owner lines into a store's ownership
// records, so that the embedded store (which has no other writer) can serve
// the policy's owner rules.
type ownershipImportCmd struct {
	storeDSN string
	lookup   string
	file     string
}

func (o *ownershipImportCmd) define(fs *flag.FlagSet) {
	fs.StringVar(&o.storeDSN, "store", "", "the store: a file path (embedded bbolt store) or a postgres:// URL; the same value as serve --store")
	fs.StringVar(&o.lookup, "lookup", "", "the lookup name the policy's owner rules use (lookups.<name>)")
	fs.StringVar(&o.file, "file", "-", "CSV of key,owner lines (several lines per key give several owners); - reads standard input")
}

func (o *ownershipImportCmd) run(ctx context.Context, c *cli) int {
	if o.storeDSN == "" || o.lookup == "" {
		return c.usageError("ownership import", "--store and --lookup are required")
	}
	var in io.Reader = c.stdin
	if o.file != "-" {
		f, err := os.Open(o.file)
		if err != nil {
			return c.usageError("ownership import", "%v", fileError("--file", o.file, err))
		}
		defer f.Close()
		in = f
	}
	st, err := open.Open(ctx, o.storeDSN, store.Options{})
	if err != nil {
		return c.fail("ownership import", fmt.Errorf("--store %s: %w", store.RedactDSN(o.storeDSN), err))
	}
	defer st.Close()
	if m, ok := st.(store.Migrator); ok {
		if err := m.Migrate(ctx); err != nil {
			return c.fail("ownership import", err)
		}
	}
	n, err := store.ImportOwnershipCSV(ctx, st, o.lookup, in)
	if err != nil {
		return c.fail("ownership import", err)
	}
	fmt.Fprintf(c.stdout, "imported %d key(s) into lookup %q\n", n, o.lookup)
	return exitOK
}
