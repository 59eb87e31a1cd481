package audit

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
)

// Sink is where records go. The Logger calls a sink from its one goroutine
// only, so a sink needs no locking of its own; a slow sink delays the
// records behind it, never a decision.
type Sink interface {
	// Name identifies the sink in logs, e.g. "stdout" or "file:audit.log".
	Name() string
	// Write takes one batch of records. The entries and their JSON are
	// valid only during the call. An error counts the batch as failed.
	Write(ctx context.Context, entries []Entry) error
	// Flush writes what the sink buffers (called every FlushInterval and
	// before Close).
	Flush(ctx context.Context) error
	// Close flushes and releases the sink.
	Close(ctx context.Context) error
}

// WriterSink writes JSON lines to an io.Writer (stdout), one Write call per
// batch so concurrent writers of the same stream do not split a line.
type WriterSink struct {
	name string
	w    io.Writer
	buf  []byte
}

// NewWriterSink returns a sink writing JSON lines to w; name is how logs
// call it.
func NewWriterSink(name string, w io.Writer) *WriterSink {
	return &WriterSink{name: name, w: w}
}

// Name implements Sink.
func (s *WriterSink) Name() string { return s.name }

// Write implements Sink.
func (s *WriterSink) Write(_ context.Context, entries []Entry) error {
	s.buf = appendLines(s.buf[:0], entries)
	_, err := s.w.Write(s.buf)
	if cap(s.buf) > maxKeptBuf {
		s.buf = nil
	}
	return err
}

// Flush implements Sink; every Write is already written.
func (s *WriterSink) Flush(context.Context) error { return nil }

// Close implements Sink. It does not close the writer (stdout stays open).
func (s *WriterSink) Close(context.Context) error { return nil }

func appendLines(dst []byte, entries []Entry) []byte {
	for i := range entries {
		dst = append(dst, entries[i].JSON...)
		dst = append(dst, '\n')
	}
	return dst
}

// FileOptions configure a FileSink.
type FileOptions struct {
	// MaxBytes rotates the file when a write would take it past this size:
	// the file becomes PATH.1 (older ones shift to PATH.2 ...). Zero never
	// rotates (leave it to logrotate and Reopen).
	MaxBytes int64
	// MaxBackups is how many rotated files are kept; default 5.
	MaxBackups int
	// Mode is the permission of a new file; default 0600 (records name
	// subjects and clients).
	Mode os.FileMode
}

// DefaultMaxBackups is the number of rotated files kept by default.
const DefaultMaxBackups = 5

// FileSink appends JSON lines to a file, rotating it by size if asked, and
// reopening it on request (after an external logrotate moved it).
type FileSink struct {
	path   string
	opts   FileOptions
	f      *os.File
	size   int64
	buf    []byte
	reopen atomic.Bool
	// mu guards f against Close racing a late Reopen; writes come from
	// the Logger's goroutine only.
	mu sync.Mutex
}

// NewFileSink opens (creating if needed) the file at path for appending.
// The directory must exist.
func NewFileSink(path string, opts FileOptions) (*FileSink, error) {
	if path == "" {
		return nil, errors.New("audit: file sink path is empty: give a file, e.g. file:/var/log/scopegate/audit.log")
	}
	if opts.MaxBytes < 0 {
		return nil, fmt.Errorf("audit: file sink MaxBytes %d is negative: use 0 to never rotate", opts.MaxBytes)
	}
	if opts.MaxBackups < 0 {
		return nil, fmt.Errorf("audit: file sink MaxBackups %d is negative: use 0 for the default (%d)", opts.MaxBackups, DefaultMaxBackups)
	}
	if opts.MaxBackups == 0 {
		opts.MaxBackups = DefaultMaxBackups
	}
	if opts.Mode == 0 {
		opts.Mode = 0o600
	}
	s := &FileSink{path: path, opts: opts}
	if err := s.open(); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *FileSink) open() error {
	if dir := filepath.Dir(s.path); dir != "" {
		if st, err := os.Stat(dir); err != nil || !st.IsDir() {
			return fmt.Errorf("audit: directory %s of audit file %s does not exist: create it first", dir, s.path)
		}
	}
	f, err := os.OpenFile(s.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, s.opts.Mode)
	if err != nil {
		return fmt.Errorf("audit: open audit file: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("audit: stat audit file: %w", err)
	}
	s.f, s.size = f, st.Size()
	return nil
}

// Name implements Sink.
func (s *FileSink) Name() string { return "file:" + s.path }

// Path is the file written.
func (s *FileSink) Path() string { return s.path }

// Reopen makes the next write close and reopen the file by name, so a file
// moved away by logrotate is replaced by a new one. It is safe to call
// from any goroutine (a SIGHUP handler).
func (s *FileSink) Reopen() { s.reopen.Store(true) }

// Write implements Sink.
func (s *FileSink) Write(_ context.Context, entries []Entry) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f == nil {
		return fmt.Errorf("audit file %s is closed", s.path)
	}
	if s.reopen.Swap(false) {
		s.f.Close()
		s.f = nil
		if err := s.open(); err != nil {
			return err
		}
	}
	s.buf = appendLines(s.buf[:0], entries)
	if s.opts.MaxBytes > 0 && s.size > 0 && s.size+int64(len(s.buf)) > s.opts.MaxBytes {
		if err := s.rotate(); err != nil {
			return err
		}
	}
	n, err := s.f.Write(s.buf)
	s.size += int64(n)
	if cap(s.buf) > maxKeptBuf {
		s.buf = nil
	}
	if err != nil {
		return fmt.Errorf("audit: write audit file: %w", err)
	}
	return nil
}

// rotate shifts PATH.i to PATH.i+1 (dropping the oldest), moves PATH to
// PATH.1 and opens a new PATH.
func (s *FileSink) rotate() error {
	if err := s.f.Close(); err != nil {
		return fmt.Errorf("audit: close audit file for rotation: %w", err)
	}
	s.f = nil
	n := s.opts.MaxBackups
	_ = os.Remove(s.backup(n))
	for i := n - 1; i >= 1; i-- {
		if err := os.Rename(s.backup(i), s.backup(i+1)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("audit: rotate audit file: %w", err)
		}
	}
	if err := os.Rename(s.path, s.backup(1)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("audit: rotate audit file: %w", err)
	}
	return s.open()
}

func (s *FileSink) backup(i int) string { return s.path + "." + strconv.Itoa(i) }

// Flush implements Sink; writes go straight to the file.
func (s *FileSink) Flush(context.Context) error { return nil }

// Close implements Sink.
func (s *FileSink) Close(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f == nil {
		return nil
	}
	err := s.f.Close()
	s.f = nil
	return err
}
