package jwks

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/scopegate/scopegate/decision"
)

// File defaults.
const (
	// DefaultPollInterval is how often a JWKS file is checked for changes.
	DefaultPollInterval = 2 * time.Second
	// DefaultFileMinCheck bounds the checks an unknown kid triggers.
	DefaultFileMinCheck = time.Second
	// maxFileBytes bounds a JWKS file, like a fetched one.
	maxFileBytes = decision.MaxKeySetBytes
)

// FileOptions tune a File source.
type FileOptions struct {
	// PollInterval is how often the file is checked for a change (its
	// modification time, size or identity, which also catches a symlink or
	// rename swap); default DefaultPollInterval. Polling needs no watcher
	// and works on every file system, including mounted secrets.
	PollInterval time.Duration
	// MinCheckInterval bounds the extra checks unknown kids trigger;
	// default DefaultFileMinCheck.
	MinCheckInterval time.Duration
	// OnChange, if set, is called after the key set's content changed.
	OnChange func()
	// Logger receives a warning per failed reload (the file deleted,
	// unreadable, too large, not a JWKS, or without a usable key) and a
	// line when the file loads again; nil logs nothing.
	Logger *slog.Logger
}

// File serves the keys of a JWKS file and reloads them when the file
// changes. A file that becomes unreadable or invalid keeps the last good
// keys serving, with the error in LastError.
type File struct {
	keyState
	path string
	opts FileOptions

	mu      sync.Mutex // serializes loads; guards stamp and missing
	stamp   fileStamp
	missing bool

	lastCheck atomic.Int64 // Unix nanoseconds of the last kid-triggered check
	closeOnce sync.Once
	stop      chan struct{}
	done      chan struct{}
}

var _ decision.KeySource = (*File)(nil)

// fileStamp identifies one version of the file.
type fileStamp struct {
	info os.FileInfo
}

func (s fileStamp) same(fi os.FileInfo) bool {
	return s.info != nil && os.SameFile(s.info, fi) && s.info.ModTime().Equal(fi.ModTime()) && s.info.Size() == fi.Size()
}

// NewFile loads the JWKS file at path and watches it until ctx ends or
// Close is called. It fails if the file cannot be read or holds no usable
// key.
func NewFile(ctx context.Context, path string, opts FileOptions) (*File, error) {
	f := newFile(path, opts)
	if _, err := f.check(); err != nil {
		return nil, err
	}
	go f.run(ctx)
	return f, nil
}

func newFile(path string, opts FileOptions) *File {
	if opts.PollInterval <= 0 {
		opts.PollInterval = DefaultPollInterval
	}
	if opts.MinCheckInterval <= 0 {
		opts.MinCheckInterval = DefaultFileMinCheck
	}
	f := &File{path: path, opts: opts, stop: make(chan struct{}), done: make(chan struct{})}
	f.onChange = opts.OnChange
	f.setLog(opts.Logger, "file", path, path)
	return f
}

// startFile is NewFile for the registry: it serves seed (the keys
// decision.LoadFile read from the file) if given, else reads the file, and
// never fails: a file that cannot be read leaves the key set empty, with
// the error in LastError, until a poll finds it fixed.
func startFile(ctx context.Context, path string, opts FileOptions, seed []decision.Key) *File {
	f := newFile(path, opts)
	if len(seed) > 0 {
		// The first poll reads the file again: a change since it was read
		// is picked up, the same keys leave the epoch alone.
		f.publish(seed)
	} else {
		_, _ = f.check() // the error is recorded for LastError
	}
	go f.run(ctx)
	return f
}

func (f *File) run(ctx context.Context) {
	defer close(f.done)
	t := time.NewTicker(f.opts.PollInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-f.stop:
			return
		case <-t.C:
			_, _ = f.check() // the error is recorded for LastError
		}
	}
}

// check reloads the file if it changed since the last load. It reports
// whether a new version was loaded.
func (f *File) check() (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fi, err := os.Stat(f.path)
	if err != nil {
		if !f.missing { // count an outage once, not every poll
			f.missing = true
			f.stamp = fileStamp{}
			f.fail(err)
		}
		return false, err
	}
	f.missing = false
	if f.stamp.same(fi) {
		return false, nil
	}
	// Record the version before reading: a bad version is reported once,
	// and read again only when the file changes again.
	f.stamp = fileStamp{info: fi}
	if fi.Size() > maxFileBytes {
		err := errors.New("the JWKS file is larger than 1 MiB")
		f.fail(err)
		return false, err
	}
	data, err := os.ReadFile(f.path)
	if err != nil {
		f.fail(err)
		return false, err
	}
	keys, err := decision.ParseKeySet(data)
	if err != nil {
		f.fail(err)
		return false, err
	}
	f.publish(keys)
	return true, nil
}

// RefreshUnknownKid implements decision.KeySource: it checks the file for a
// new version (at most once per MinCheckInterval) and returns the keys to
// retry with when the file changed or now holds kid.
func (f *File) RefreshUnknownKid(_ context.Context, kid string) ([]decision.Key, bool) {
	if keys := f.Keys(); hasKid(keys, kid) {
		return keys, true
	}
	now := time.Now().UnixNano()
	last := f.lastCheck.Load()
	if now-last < int64(f.opts.MinCheckInterval) || !f.lastCheck.CompareAndSwap(last, now) {
		return nil, false
	}
	if changed, _ := f.check(); changed {
		return f.Keys(), true
	}
	return nil, false
}

// Path returns the file the keys are read from.
func (f *File) Path() string { return f.path }

// Status reports the source's state.
func (f *File) Status() Status { return f.status("file", f.path) }

// Close stops watching the file; the last keys keep serving.
func (f *File) Close() {
	f.closeOnce.Do(func() { close(f.stop) })
	<-f.done
}
