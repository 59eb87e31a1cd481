package audit_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"testing/synctest"
	"time"

	"github.com/scopegate/scopegate/store/audit"
)

// lineEntries returns n entries whose JSON is {"n":first+i}.
func lineEntries(first, n int) []audit.Entry {
	es := make([]audit.Entry, n)
	for i := range es {
		es[i].JSON = []byte(`{"n":` + strconv.Itoa(first+i) + `}`)
	}
	return es
}

// numbersIn returns the "n" of every line of the files, in order.
func numbersIn(t *testing.T, paths ...string) []int {
	t.Helper()
	var out []int
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if errors.Is(err, os.ErrNotExist) {
			continue
		} else if err != nil {
			t.Fatal(err)
		}
		for line := range bytes.SplitSeq(bytes.TrimSuffix(b, []byte("\n")), []byte("\n")) {
			if len(line) == 0 {
				continue
			}
			n, err := strconv.Atoi(string(bytes.TrimSuffix(bytes.TrimPrefix(line, []byte(`{"n":`)), []byte("}"))))
			if err != nil {
				t.Fatalf("%s: line %q", p, line)
			}
			out = append(out, n)
		}
	}
	return out
}

func wantSequence(t *testing.T, got []int, n int) {
	t.Helper()
	seen := make(map[int]bool, len(got))
	for _, v := range got {
		if seen[v] {
			t.Errorf("record %d written twice", v)
		}
		seen[v] = true
	}
	for i := range n {
		if !seen[i] {
			t.Errorf("record %d lost (%d of %d written)", i, len(got), n)
			return
		}
	}
}

// TestFileSinkRecovers: the audit file's path becomes unusable (a
// directory where the file was, or its directory removed) and the sink is
// asked to reopen; records are held meanwhile, each attempt is counted,
// and once the path is fixed the sink resumes with nothing lost.
func TestFileSinkRecovers(t *testing.T) {
	for name, breakIt := range map[string]func(t *testing.T, dir, path string) (fix func()){
		"path became a directory": func(t *testing.T, dir, path string) func() {
			if err := os.Rename(path, path+".old"); err != nil {
				t.Fatal(err)
			}
			if err := os.Mkdir(path, 0o700); err != nil {
				t.Fatal(err)
			}
			return func() {
				if err := os.Remove(path); err != nil {
					t.Fatal(err)
				}
			}
		},
		"directory removed": func(t *testing.T, dir, path string) func() {
			if err := os.Rename(path, filepath.Join(filepath.Dir(dir), filepath.Base(dir)+".old")); err != nil {
				t.Fatal(err)
			}
			if err := os.Remove(dir); err != nil {
				t.Fatal(err)
			}
			return func() {
				if err := os.Mkdir(dir, 0o700); err != nil {
					t.Fatal(err)
				}
			}
		},
	} {
		// In a synctest bubble the sink's retry backoff runs on the
		// bubble's clock: the sleeps past it take no real time, and the
		// recovery is checked at the backoff's bound, not polled for.
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				dir := filepath.Join(t.TempDir(), "logs")
				if err := os.Mkdir(dir, 0o700); err != nil {
					t.Fatal(err)
				}
				path := filepath.Join(dir, "audit.log")
				fs, err := audit.NewFileSink(path, audit.FileOptions{MinRetry: 10 * time.Millisecond, MaxRetry: 20 * time.Millisecond})
				if err != nil {
					t.Fatal(err)
				}
				ctx := context.Background()
				if err := fs.Write(ctx, lineEntries(0, 10)); err != nil {
					t.Fatal(err)
				}
				fix := breakIt(t, dir, path)
				fs.Reopen()
				next := 10
				for range 5 {
					err := fs.Write(ctx, lineEntries(next, 10))
					next += 10
					var we *audit.WriteError
					if !errors.As(err, &we) || we.Lost != 0 {
						t.Fatalf("write to a broken path: %v, want a WriteError losing nothing", err)
					}
					time.Sleep(15 * time.Millisecond)
				}
				if fs.Failures() == 0 || fs.Pending() == 0 {
					t.Fatalf("failures %d, pending %d bytes: want the failures counted and the records held", fs.Failures(), fs.Pending())
				}
				fix()
				// Recovery needs no new traffic: the Logger's periodic Flush
				// retries.
				time.Sleep(20 * time.Millisecond) // MaxRetry
				if err := fs.Flush(ctx); err != nil || fs.Pending() > 0 {
					t.Fatalf("the sink did not resume once the path was fixed and MaxRetry passed: %v (failures %d, pending %d bytes)", err, fs.Failures(), fs.Pending())
				}
				if err := fs.Write(ctx, lineEntries(next, 10)); err != nil {
					t.Fatalf("write after recovery: %v", err)
				}
				next += 10
				if err := fs.Close(ctx); err != nil {
					t.Fatal(err)
				}
				got := numbersIn(t, path+".old", filepath.Join(filepath.Dir(dir), filepath.Base(dir)+".old"), path)
				wantSequence(t, got, next)
				if fs.Lost() != 0 {
					t.Errorf("lost %d records", fs.Lost())
				}
			})
		})
	}
}

// TestFileSinkHoldBound: while the file is unusable, records are held only
// up to MaxPendingBytes; the rest are lost and counted, never more memory.
func TestFileSinkHoldBound(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.log")
	fs, err := audit.NewFileSink(path, audit.FileOptions{MaxPendingBytes: 100, MinRetry: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	os.Remove(path)
	if err := os.Mkdir(path, 0o700); err != nil {
		t.Fatal(err)
	}
	fs.Reopen()
	var lost int
	for i := range 10 {
		err := fs.Write(ctx, lineEntries(i*5, 5)) // 5 lines of 9-10 bytes
		var we *audit.WriteError
		if !errors.As(err, &we) {
			t.Fatalf("write %d: %v", i, err)
		}
		lost += we.Lost
	}
	if p := fs.Pending(); p > 100 || p < 80 {
		t.Errorf("pending %d bytes, want close to the 100-byte bound", p)
	}
	if lost == 0 || uint64(lost) != fs.Lost() {
		t.Errorf("lost %d (reported), %d (counted): want the overflow counted", lost, fs.Lost())
	}
}

// TestFileSinkRotationFailure: a rotation that cannot rename keeps writing
// the current file (past its size, losing nothing), counts the failure and
// rotates once the obstacle is gone.
func TestFileSinkRotationFailure(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dir := t.TempDir()
		path := filepath.Join(dir, "audit.log")
		fs, err := audit.NewFileSink(path, audit.FileOptions{MaxBytes: 200, MaxBackups: 1, MinRetry: 10 * time.Millisecond, MaxRetry: 10 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		// PATH.1 is a non-empty directory: neither removed nor renamed over.
		if err := os.MkdirAll(filepath.Join(path+".1", "x"), 0o700); err != nil {
			t.Fatal(err)
		}
		next := 0
		for range 10 {
			_ = fs.Write(ctx, lineEntries(next, 5))
			next += 5
		}
		if fs.Failures() == 0 {
			t.Fatal("failed rotations not counted")
		}
		if st, err := os.Stat(path); err != nil || st.Size() <= 200 {
			t.Fatalf("current file %v, %v: want it written past MaxBytes while rotation fails", st, err)
		}
		if err := os.RemoveAll(path + ".1"); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
		for range 4 {
			if err := fs.Write(ctx, lineEntries(next, 5)); err != nil {
				t.Fatalf("write after the obstacle is gone: %v", err)
			}
			next += 5
		}
		if err := fs.Close(ctx); err != nil {
			t.Fatal(err)
		}
		if st, err := os.Stat(path + ".1"); err != nil || !st.Mode().IsRegular() {
			t.Fatalf("no rotated file after recovery: %v, %v", st, err)
		}
		// One backup kept: the oldest lines of the long file may be gone with
		// later rotations, but what the two files hold is the latest records,
		// each once.
		got := numbersIn(t, path+".1", path)
		if len(got) == 0 || got[len(got)-1] != next-1 {
			t.Errorf("last record %v, want %d", got, next-1)
		}
	})
}

// TestFileSinkDefaultBounded: without options the file rotates at
// DefaultMaxBytes; a negative MaxBytes is the explicit way to never rotate.
func TestFileSinkDefaultBounded(t *testing.T) {
	if audit.DefaultMaxBytes <= 0 || audit.DefaultMaxBackups <= 0 {
		t.Fatalf("defaults %d bytes × %d files are not a bound", audit.DefaultMaxBytes, audit.DefaultMaxBackups)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.log")
	// A file already at the default size rotates on the next write.
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, audit.DefaultMaxBytes); err != nil { // sparse
		t.Fatal(err)
	}
	fs, err := audit.NewFileSink(path, audit.FileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := fs.Write(ctx, lineEntries(0, 2)); err != nil {
		t.Fatal(err)
	}
	fs.Close(ctx)
	if _, err := os.Stat(path + ".1"); err != nil {
		t.Errorf("a file at the default size did not rotate: %v", err)
	}
	if got := numbersIn(t, path); len(got) != 2 {
		t.Errorf("new file holds %v, want the 2 new records", got)
	}
	never, err := audit.NewFileSink(filepath.Join(dir, "never.log"), audit.FileOptions{MaxBytes: -1})
	if err != nil {
		t.Fatal(err)
	}
	never.Close(ctx)
}
