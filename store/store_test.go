package store_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/scopegate/scopegate/store"
)

// memWriter records writes in memory and can fail the n-th one.
type memWriter struct {
	data   map[string][]string
	puts   int
	failAt int // 1-based; 0 never fails
}

func (m *memWriter) PutOwners(_ context.Context, lookup, key string, owners []string) error {
	m.puts++
	if m.puts == m.failAt {
		return errors.New("disk full")
	}
	norm, err := store.CheckPut(lookup, key, owners)
	if err != nil {
		return err
	}
	if m.data == nil {
		m.data = map[string][]string{}
	}
	m.data[lookup+"/"+key] = norm
	return nil
}

func (m *memWriter) DeleteOwners(_ context.Context, lookup, key string) error {
	delete(m.data, lookup+"/"+key)
	return nil
}

func TestImportOwnershipCSV(t *testing.T) {
	cases := map[string]struct {
		file    string // under testdata/, or
		input   string
		lookup  string
		failAt  int
		wantN   int
		wantErr string
		want    map[string][]string
	}{
		"header, comments, quoting, repeated keys": {
			file: "orders.csv", wantN: 3,
			want: map[string][]string{"orders/o-1": {"alice"}, "orders/o-2": {"bob", "carol"}, "orders/o-3": {"dave, jr."}},
		},
		"no header": {
			input: "o-1,alice\n", wantN: 1, want: map[string][]string{"orders/o-1": {"alice"}},
		},
		"header only after the first line is data": {
			input: "o-1,alice\nkey,owner\n", wantN: 2, want: map[string][]string{"orders/o-1": {"alice"}, "orders/key": {"owner"}},
		},
		"empty input": {input: "", wantN: 0, want: map[string][]string{}},
		"wrong field count names the line": {
			file: "bad_fields.csv", wantErr: "line 2",
		},
		"empty owner names the key": {
			input: "o-1,alice\no-2,\n", wantErr: `key "o-2"`,
		},
		"empty key names the line": {
			input: "o-1,alice\n\" \",bob\n", wantErr: "line 2: key is empty",
		},
		"bad lookup": {
			input: "o-1,alice\n", lookup: "bad\nlookup", wantErr: "lookup name",
		},
		"bare quote": {
			input: "o-1,al\"ice\n", wantErr: "line 1",
		},
		"write failure reports progress": {
			input: "a,x\nb,y\nc,z\n", failAt: 2, wantN: 1, wantErr: `key "b" (after 1 keys written): disk full`,
			want: map[string][]string{"orders/a": {"x"}},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			in := tc.input
			if tc.file != "" {
				b, err := os.ReadFile(filepath.Join("testdata", tc.file))
				if err != nil {
					t.Fatal(err)
				}
				in = string(b)
			}
			lookup := tc.lookup
			if lookup == "" {
				lookup = "orders"
			}
			w := &memWriter{failAt: tc.failAt}
			n, err := store.ImportOwnershipCSV(t.Context(), w, lookup, strings.NewReader(in))
			if n != tc.wantN {
				t.Errorf("n = %d; want %d", n, tc.wantN)
			}
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Errorf("err = %v; want it to contain %q", err, tc.wantErr)
				}
				if tc.want == nil && len(w.data) != 0 {
					t.Errorf("a rejected input wrote %v", w.data)
				}
			} else if err != nil {
				t.Fatal(err)
			}
			for k, want := range tc.want {
				if got := w.data[k]; !slices.Equal(got, want) {
					t.Errorf("%s = %q; want %q", k, got, want)
				}
			}
			if tc.want != nil && len(w.data) != len(tc.want) {
				t.Errorf("wrote %d records; want %d: %v", len(w.data), len(tc.want), w.data)
			}
		})
	}
}

func TestImportStopsOnCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	w := &memWriter{}
	n, err := store.ImportOwnershipCSV(ctx, w, "orders", strings.NewReader("a,x\n"))
	if !errors.Is(err, context.Canceled) || n != 0 || w.puts != 0 {
		t.Errorf("import with a cancelled context = %d, %v, %d writes", n, err, w.puts)
	}
}

func TestNormalizeOwners(t *testing.T) {
	in := []string{"b", "a", "b", "c"}
	got, err := store.NormalizeOwners(in)
	if err != nil || !slices.Equal(got, []string{"a", "b", "c"}) {
		t.Errorf("NormalizeOwners = %q, %v", got, err)
	}
	if !slices.Equal(in, []string{"b", "a", "b", "c"}) {
		t.Errorf("argument modified: %q", in)
	}
}

func TestIsPostgresDSN(t *testing.T) {
	cases := map[string]bool{
		"postgres://u@h/db":        true,
		"postgresql://u@h/db":      true,
		"PostgreSQL://u@h/db":      true,
		"scopegate.db":             false,
		"/var/lib/x/postgres.db":   false,
		"postgres:/not-a-url":      false,
		"host=localhost dbname=db": false,
		"":                         false,
	}
	for dsn, want := range cases {
		if got := store.IsPostgresDSN(dsn); got != want {
			t.Errorf("IsPostgresDSN(%q) = %v; want %v", dsn, got, want)
		}
	}
}

func TestRedactDSN(t *testing.T) {
	cases := map[string]struct{ in, hidden, kept string }{
		"userinfo password": {"postgres://u:pw-secret@h:5432/db", "pw-secret", "u:xxxxx@h:5432"},
		"query password":    {"postgres://u@h/db?password=pw-secret&sslmode=disable", "pw-secret", "sslmode=disable"},
		"file path intact":  {"data/scopegate.db", "", "data/scopegate.db"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			got := store.RedactDSN(tc.in)
			if tc.hidden != "" && strings.Contains(got, tc.hidden) {
				t.Errorf("RedactDSN = %q still shows the password", got)
			}
			if !strings.Contains(got, tc.kept) {
				t.Errorf("RedactDSN = %q; want it to keep %q", got, tc.kept)
			}
		})
	}
}

func TestOptionsValidate(t *testing.T) {
	cases := map[string]struct {
		opts store.Options
		want string // empty: valid
	}{
		"zero is valid":          {store.Options{}, ""},
		"negative lock timeout":  {store.Options{File: store.FileOptions{LockTimeout: -time.Second}}, "File.LockTimeout"},
		"query needs $1":         {store.Options{Postgres: store.PostgresOptions{OwnershipQueries: map[string]string{"o": "SELECT 1"}}}, "$1"},
		"min above max":          {store.Options{Postgres: store.PostgresOptions{MaxConns: 1, MinConns: 2}}, "MinConns"},
		"negative lifetime":      {store.Options{Postgres: store.PostgresOptions{MaxConnLifetime: -1}}, "MaxConnLifetime"},
		"good queries and sizes": {store.Options{Postgres: store.PostgresOptions{OwnershipQueries: map[string]string{"o": "SELECT a FROM t WHERE id = $1"}, MaxConns: 4, MinConns: 1}}, ""},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			err := errors.Join(tc.opts.File.Validate(), tc.opts.Postgres.Validate())
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("err = %v; want valid", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("err = %v; want it to mention %q", err, tc.want)
			}
		})
	}
}
