// Package open picks and opens a store backend from a DSN. It is the one
// package that imports every backend, so only the command that wires the
// service imports it; the root store package stays free of database drivers
// (the decision engine and the tools that import store link no pgx).
package open

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/scopegate/scopegate/store"
	"github.com/scopegate/scopegate/store/bolt"
	"github.com/scopegate/scopegate/store/postgres"
)

// Open opens the store dsn names: a postgres:// or postgresql:// URL opens
// PostgreSQL; anything else is the path of an embedded store file, created
// if missing. Options for the other backend are an error.
func Open(ctx context.Context, dsn string, opts store.Options) (store.Store, error) {
	if strings.TrimSpace(dsn) == "" {
		return nil, errors.New("store: DSN is empty: give a file path (e.g. scopegate.db) or a postgres:// URL")
	}
	if store.IsPostgresDSN(dsn) {
		return postgres.Open(ctx, dsn, opts)
	}
	if scheme, _, ok := strings.Cut(dsn, "://"); ok {
		// Most likely a URL for a backend we do not have, not a file name.
		return nil, fmt.Errorf("store: unsupported DSN scheme %q: give a file path or a postgres:// URL", scheme)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return bolt.Open(dsn, opts)
}
