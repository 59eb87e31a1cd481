package jwks

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"testing/synctest"
	"time"
)

func TestFileSourceRotation(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "jwks.json")
	writeFile(t, path, jwksOf(t, key(t, "k1")))

	f, err := NewFile(context.Background(), path, FileOptions{PollInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if got := kids(f.Keys()); !slices.Equal(got, []string{"k1"}) || f.Epoch() != 1 || f.Refreshes() != 1 {
		t.Fatalf("start: kids %q epoch %d refreshes %d", got, f.Epoch(), f.Refreshes())
	}

	// Rotation: k2 added, then k1 removed.
	writeFile(t, path, jwksOf(t, key(t, "k1"), key(t, "k2")))
	eventually(t, "k2 to load", func() bool { return slices.Equal(kids(f.Keys()), []string{"k1", "k2"}) })
	writeFile(t, path, jwksOf(t, key(t, "k2")))
	eventually(t, "k1 to go", func() bool { return slices.Equal(kids(f.Keys()), []string{"k2"}) })
	if f.Epoch() != 3 {
		t.Fatalf("epoch = %d after two changes, want 3", f.Epoch())
	}

	// The same keys rewritten: reloaded, epoch unchanged.
	refreshes := f.Refreshes()
	writeFile(t, path, jwksOf(t, key(t, "k2")))
	eventually(t, "the rewrite to load", func() bool { return f.Refreshes() > refreshes })
	if f.Epoch() != 3 {
		t.Fatalf("epoch = %d after rewriting the same keys, want 3", f.Epoch())
	}

	// A bad file keeps the last good keys.
	writeFile(t, path, []byte(`{"keys": [`))
	eventually(t, "the bad file to be noticed", func() bool { return f.LastError() != nil })
	if got := kids(f.Keys()); !slices.Equal(got, []string{"k2"}) || f.Failures() != 1 {
		t.Fatalf("after a bad file: kids %q failures %d", got, f.Failures())
	}
	time.Sleep(100 * time.Millisecond)
	if f.Failures() != 1 {
		t.Fatalf("the same bad file counted %d times", f.Failures())
	}

	// A deleted file too; and a good file clears the error.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the removal to be noticed", func() bool { return f.Failures() == 2 })
	if got := kids(f.Keys()); !slices.Equal(got, []string{"k2"}) {
		t.Fatalf("after removal: kids %q", got)
	}
	writeFile(t, path, jwksOf(t, key(t, "k3")))
	eventually(t, "k3 to load", func() bool { return f.LastError() == nil && slices.Equal(kids(f.Keys()), []string{"k3"}) })
	if st := f.Status(); st.Kind != "file" || st.Location != path || st.Keys != 1 || st.Epoch != 4 {
		t.Fatalf("status = %+v", st)
	}
}

// TestFileSourceUnknownKid runs in a synctest bubble: the rate limit is
// checked against the bubble's clock, to the millisecond, without waiting.
func TestFileSourceUnknownKid(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "jwks.json")
		writeFile(t, path, jwksOf(t, key(t, "k1")))
		// No polling during the test: only RefreshUnknownKid reloads.
		f, err := NewFile(context.Background(), path, FileOptions{PollInterval: time.Hour, MinCheckInterval: 200 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		ctx := context.Background()

		if _, ok := f.RefreshUnknownKid(ctx, "k2"); ok {
			t.Fatal("an unchanged file reported a refresh")
		}
		writeFile(t, path, jwksOf(t, key(t, "k1"), key(t, "k2")))
		if _, ok := f.RefreshUnknownKid(ctx, "k2"); ok {
			t.Fatal("a check within MinCheckInterval was not rate-limited")
		}
		time.Sleep(199 * time.Millisecond)
		if _, ok := f.RefreshUnknownKid(ctx, "k2"); ok {
			t.Fatal("a check 199ms after the last, within MinCheckInterval, was not rate-limited")
		}
		time.Sleep(time.Millisecond)
		keys, ok := f.RefreshUnknownKid(ctx, "k2")
		if !ok || !slices.Equal(kids(keys), []string{"k1", "k2"}) {
			t.Fatalf("after the interval: ok %v kids %q", ok, kids(keys))
		}
		// Already present: no check needed.
		if _, ok := f.RefreshUnknownKid(ctx, "k2"); !ok {
			t.Fatal("a kid already present was not reported")
		}
	})
}

func TestNewFileFails(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.json")
	writeFile(t, bad, []byte("not json"))
	for name, path := range map[string]string{"missing": filepath.Join(dir, "none.json"), "invalid": bad} {
		t.Run(name, func(t *testing.T) {
			if f, err := NewFile(context.Background(), path, FileOptions{}); err == nil {
				f.Close()
				t.Fatal("NewFile succeeded")
			}
		})
	}
}

func TestFileSourceStopsWithContext(t *testing.T) {
	path := filepath.Join(t.TempDir(), "jwks.json")
	writeFile(t, path, jwksOf(t, key(t, "k1")))
	ctx, cancel := context.WithCancel(context.Background())
	f, err := NewFile(ctx, path, FileOptions{PollInterval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	done := make(chan struct{})
	go func() { f.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close hung after the context ended")
	}
}
