package open_test

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/scopegate/scopegate/store"
	"github.com/scopegate/scopegate/store/bolt"
	"github.com/scopegate/scopegate/store/open"
	"github.com/scopegate/scopegate/store/postgres"
)

func TestOpenPicksTheBackendFromTheDSN(t *testing.T) {
	dir := t.TempDir()
	cases := map[string]struct {
		dsn      string
		opts     store.Options
		wantPG   bool
		wantErr  string
		wantFile string
	}{
		// Opening a pool does not connect, so no server is needed here.
		"postgres URL":          {dsn: "postgres://u@127.0.0.1:1/db", wantPG: true},
		"postgresql URL":        {dsn: "postgresql://u@127.0.0.1:1/db", wantPG: true},
		"scheme is case-blind":  {dsn: "POSTGRES://u@127.0.0.1:1/db", wantPG: true},
		"file path":             {dsn: filepath.Join(dir, "a.db"), wantFile: "a.db"},
		"relative-looking path": {dsn: filepath.Join(dir, "postgres.db"), wantFile: "postgres.db"},
		"empty":                 {dsn: " ", wantErr: "DSN is empty"},
		"pg options for a file": {dsn: filepath.Join(dir, "b.db"), opts: store.Options{Postgres: store.PostgresOptions{Schema: "x"}}, wantErr: "PostgreSQL options"},
		"file options for pg":   {dsn: "postgres://u@127.0.0.1:1/db", opts: store.Options{File: store.FileOptions{LockTimeout: 1}}, wantErr: "file options"},
		"unknown scheme":        {dsn: "mysql://x/y", wantErr: `unsupported DSN scheme "mysql"`},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			s, err := open.Open(t.Context(), tc.dsn, tc.opts)
			if tc.wantErr != "" {
				if err == nil {
					s.Close()
					t.Fatal("Open succeeded")
				}
				if !strings.Contains(err.Error(), tc.wantErr) {
					t.Errorf("err = %q; want it to mention %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			switch db := s.(type) {
			case *postgres.DB:
				if !tc.wantPG {
					t.Error("got PostgreSQL; want a file store")
				}
			case *bolt.DB:
				if tc.wantPG || filepath.Base(db.Path()) != tc.wantFile {
					t.Errorf("got file store %s; want PostgreSQL=%v file=%s", db.Path(), tc.wantPG, tc.wantFile)
				}
			default:
				t.Errorf("got %T", s)
			}
		})
	}
}
