package audit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
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
	// the file becomes PATH.1 (older ones shift to PATH.2 ...). Zero means
	// DefaultMaxBytes; negative never rotates (leave it to logrotate and
	// Reopen: the file then grows without bound).
	MaxBytes int64
	// MaxBackups is how many rotated files are kept; default 5.
	MaxBackups int
	// Mode is the permission of a new file; default 0600 (records name
	// subjects and clients).
	Mode os.FileMode
	// MaxPendingBytes bounds the records held while the file cannot be
	// opened or written; default DefaultMaxPendingBytes. Past it, new
	// records are lost (and counted).
	MaxPendingBytes int
	// MinRetry and MaxRetry bound the backoff between attempts to reopen
	// the file after a failure; defaults DefaultMinRetry, DefaultMaxRetry.
	MinRetry, MaxRetry time.Duration
}

// Defaults of FileOptions.
const (
	// DefaultMaxBytes with DefaultMaxBackups bounds an audit file and its
	// backups to 600 MiB.
	DefaultMaxBytes = 100 << 20
	// DefaultMaxBackups is the number of rotated files kept by default.
	DefaultMaxBackups = 5
	// DefaultMaxPendingBytes is about 16,000 records.
	DefaultMaxPendingBytes = 8 << 20
	DefaultMinRetry        = 100 * time.Millisecond
	DefaultMaxRetry        = 30 * time.Second
)

// FileSink appends JSON lines to a file, rotating it by size, and reopening
// it on request (after an external logrotate moved it). When the file
// cannot be opened, rotated or written (a full disk, a removed directory, a
// path that became a directory), it keeps the records, up to
// MaxPendingBytes, and retries with a backoff on later writes and flushes:
// one failure never leaves the sink closed until a restart.
//
// It is written by hand rather than with a rotation library: the numbered
// backups (PATH.1 ... PATH.N) are what logrotate users expect, and the
// libraries we looked at (lumberjack) retry on every write without
// backoff, drop the data of a failed write, and name backups by time.
type FileSink struct {
	path   string
	opts   FileOptions
	reopen atomic.Bool
	// mu guards the rest against Close racing a late Reopen; writes come
	// from the Logger's goroutine only.
	mu      sync.Mutex
	f       *os.File
	size    int64
	buf     []byte
	pending []byte
	closed  bool
	// Retry state after a failure: no attempt before retryAt; rotateAt the
	// same for rotations that failed (the file is then written past
	// MaxBytes rather than losing records).
	retryAt, rotateAt time.Time
	backoff, rbackoff time.Duration
	lastErr           error

	failures atomic.Uint64
	lost     atomic.Uint64
}

// NewFileSink opens (creating if needed) the file at path for appending.
// The directory must exist.
func NewFileSink(path string, opts FileOptions) (*FileSink, error) {
	if path == "" {
		return nil, errors.New("audit: file sink path is empty: give a file, e.g. file:/var/log/scopegate/audit.log")
	}
	if opts.MaxBackups < 0 {
		return nil, fmt.Errorf("audit: file sink MaxBackups %d is negative: use 0 for the default (%d)", opts.MaxBackups, DefaultMaxBackups)
	}
	if opts.MaxPendingBytes < 0 || opts.MinRetry < 0 || opts.MaxRetry < 0 {
		return nil, fmt.Errorf("audit: file sink MaxPendingBytes, MinRetry and MaxRetry must not be negative (0 means the defaults: %d, %v, %v)", DefaultMaxPendingBytes, DefaultMinRetry, DefaultMaxRetry)
	}
	if opts.MaxBytes == 0 {
		opts.MaxBytes = DefaultMaxBytes
	}
	if opts.MaxBackups == 0 {
		opts.MaxBackups = DefaultMaxBackups
	}
	if opts.Mode == 0 {
		opts.Mode = 0o600
	}
	if opts.MaxPendingBytes == 0 {
		opts.MaxPendingBytes = DefaultMaxPendingBytes
	}
	if opts.MinRetry == 0 {
		opts.MinRetry = DefaultMinRetry
	}
	if opts.MaxRetry == 0 {
		opts.MaxRetry = DefaultMaxRetry
	}
	opts.MaxRetry = max(opts.MaxRetry, opts.MinRetry)
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

// Failures is the number of failed attempts to open, rotate or write the
// file since the sink was made.
func (s *FileSink) Failures() uint64 { return s.failures.Load() }

// Lost is the number of records lost because the file stayed unusable
// past MaxPendingBytes of records (or at Close).
func (s *FileSink) Lost() uint64 { return s.lost.Load() }

// Pending is the number of bytes of records waiting for the file.
func (s *FileSink) Pending() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.pending)
}

// Write implements Sink. Records it cannot write now are kept for a retry
// (the error is then a *WriteError saying how many were lost, usually
// none).
func (s *FileSink) Write(_ context.Context, entries []Entry) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return fmt.Errorf("audit file %s is closed", s.path)
	}
	s.buf = appendLines(s.buf[:0], entries)
	err := s.write(s.buf, time.Now())
	if cap(s.buf) > maxKeptBuf {
		s.buf = nil
	}
	return err
}

// write writes data after what is pending, or keeps it pending when the
// file is unusable.
func (s *FileSink) write(data []byte, now time.Time) error {
	if s.reopen.Swap(false) {
		s.closeFile()
		s.retryAt, s.backoff = time.Time{}, 0
	}
	lost := 0
	if s.f == nil || len(s.pending) > 0 {
		lost = s.hold(data)
		data = nil
		if s.f == nil {
			if now.Before(s.retryAt) {
				return &WriteError{Err: fmt.Errorf("audit file %s unusable, next attempt in %v: %w", s.path, s.retryAt.Sub(now).Round(time.Millisecond), s.lastErr), Lost: lost}
			}
			if err := s.open(); err != nil {
				s.fail(err, now)
				return &WriteError{Err: err, Lost: lost}
			}
			s.backoff = 0
		}
		data, s.pending = s.pending, nil
	}
	if len(data) == 0 {
		return nil
	}
	var rotErr error
	if s.opts.MaxBytes > 0 && s.size > 0 && s.size+int64(len(data)) > s.opts.MaxBytes && !now.Before(s.rotateAt) {
		if err := s.rotate(); err != nil {
			s.failures.Add(1)
			s.rbackoff = min(max(2*s.rbackoff, s.opts.MinRetry), s.opts.MaxRetry)
			s.rotateAt = now.Add(s.rbackoff)
			if s.f == nil {
				// Not even the old name reopens: keep the records.
				lost += s.hold(data)
				s.fail(err, now)
				return &WriteError{Err: err, Lost: lost}
			}
			// The file is still open: write past MaxBytes rather than lose
			// records, and retry the rotation after the backoff.
			rotErr = err
		} else {
			s.rbackoff, s.rotateAt = 0, time.Time{}
		}
	}
	n, err := s.f.Write(data)
	s.size += int64(n)
	if err != nil {
		s.closeFile()
		lost += s.hold(data[n:])
		err = fmt.Errorf("audit: write audit file: %w", err)
		s.fail(err, now)
		return &WriteError{Err: err, Lost: lost}
	}
	if rotErr != nil {
		return &WriteError{Err: fmt.Errorf("%w (writing on past the size limit; next attempt in %v)", rotErr, s.rbackoff), Lost: lost}
	}
	if lost > 0 {
		return &WriteError{Err: fmt.Errorf("audit file %s: %d records lost while it was unusable (over %d bytes held)", s.path, lost, s.opts.MaxPendingBytes), Lost: lost}
	}
	return nil
}

// hold appends the whole lines of data that fit under MaxPendingBytes to
// the pending records and returns the number of lines that did not.
func (s *FileSink) hold(data []byte) int {
	room := s.opts.MaxPendingBytes - len(s.pending)
	if len(data) <= room {
		s.pending = append(s.pending, data...)
		return 0
	}
	keep := 0
	if room > 0 {
		keep = bytes.LastIndexByte(data[:room], '\n') + 1
	}
	s.pending = append(s.pending, data[:keep]...)
	n := bytes.Count(data[keep:], []byte{'\n'})
	s.lost.Add(uint64(n))
	return n
}

// fail counts a failure to open or write and schedules the next attempt.
func (s *FileSink) fail(err error, now time.Time) {
	s.failures.Add(1)
	s.lastErr = err
	s.backoff = min(max(2*s.backoff, s.opts.MinRetry), s.opts.MaxRetry)
	s.retryAt = now.Add(s.backoff)
}

func (s *FileSink) closeFile() {
	if s.f != nil {
		s.f.Close()
		s.f = nil
	}
}

// rotate shifts PATH.i to PATH.i+1 (dropping the oldest), moves PATH to
// PATH.1 and opens a new PATH. When a rename fails it reopens PATH, so the
// file stays usable (s.f is nil only when even that failed).
func (s *FileSink) rotate() error {
	if err := s.f.Close(); err != nil {
		s.f = nil
		if oerr := s.open(); oerr != nil {
			return oerr
		}
		return fmt.Errorf("audit: close audit file for rotation: %w", err)
	}
	s.f = nil
	n := s.opts.MaxBackups
	var rerr error
	if err := os.Remove(s.backup(n)); err != nil && !errors.Is(err, os.ErrNotExist) {
		rerr = err
	}
	for i := n - 1; i >= 1 && rerr == nil; i-- {
		if err := os.Rename(s.backup(i), s.backup(i+1)); err != nil && !errors.Is(err, os.ErrNotExist) {
			rerr = err
		}
	}
	if rerr == nil {
		if err := os.Rename(s.path, s.backup(1)); err != nil && !errors.Is(err, os.ErrNotExist) {
			rerr = err
		}
	}
	if err := s.open(); err != nil {
		return err
	}
	if rerr != nil {
		return fmt.Errorf("audit: rotate audit file: %w", rerr)
	}
	return nil
}

func (s *FileSink) backup(i int) string { return s.path + "." + strconv.Itoa(i) }

// Flush implements Sink: records held after a failure are retried (once
// the backoff allows), so a sink recovers without new traffic.
func (s *FileSink) Flush(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || (len(s.pending) == 0 && !s.reopen.Load()) {
		return nil
	}
	return s.write(nil, time.Now())
}

// Close implements Sink: a last attempt to write what is held, whatever
// the backoff, then the file is closed.
func (s *FileSink) Close(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	var err error
	if len(s.pending) > 0 {
		s.retryAt = time.Time{}
		err = s.write(nil, time.Now())
		if n := bytes.Count(s.pending, []byte{'\n'}); n > 0 {
			s.lost.Add(uint64(n))
			err = &WriteError{Err: fmt.Errorf("audit file %s: %d records lost at close: %w", s.path, n, err), Lost: n}
		}
		s.pending = nil
	}
	if s.f != nil {
		if cerr := s.f.Close(); cerr != nil && err == nil {
			err = cerr
		}
		s.f = nil
	}
	return err
}
