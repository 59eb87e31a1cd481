package store

import (
	"context"
	"errors"
	"slices"
	"sync"
	"time"
)

// SSFStream is what the Shared Signals receiver keeps about a stream it
// manages at a transmitter (SSF 1.0 §8.1): the stream's id, so that a
// restart, or another replica, uses the stream created before instead of
// creating another; a digest of the configuration it was last set to, so
// that a changed configuration is sent to the transmitter once; and the
// verification requests outstanding, so that whichever replica receives
// the verification event can match its state.
type SSFStream struct {
	// Transmitter is the transmitter's name in the receiver's
	// configuration: the key.
	Transmitter string `json:"transmitter"`
	StreamID    string `json:"stream_id"`
	// ConfigDigest identifies the receiver-supplied configuration (events,
	// delivery, description, subjects) the stream was last set to.
	ConfigDigest string `json:"config_digest"`
	// PollURL is the poll endpoint the transmitter gave the stream (poll
	// delivery only).
	PollURL string `json:"poll_url,omitempty"`
	// States are the verification states requested, newest last, at most
	// MaxSSFStreamStates.
	States []string `json:"states,omitempty"`
	// VerifiedAt is when a verification event with one of States arrived.
	VerifiedAt time.Time `json:"verified_at,omitzero"`
	// Subjects are the subjects added to the stream (compact JSON), so
	// that one dropped from the configuration is removed.
	Subjects []string `json:"subjects,omitempty"`
}

// MaxSSFStreamStates bounds SSFStream.States: replicas starting together
// each request a verification, and the events may arrive out of order.
const MaxSSFStreamStates = 4

// AddState appends state to States, dropping the oldest beyond the bound.
func (s *SSFStream) AddState(state string) {
	s.States = append(s.States, state)
	if n := len(s.States); n > MaxSSFStreamStates {
		s.States = slices.Clone(s.States[n-MaxSSFStreamStates:])
	}
}

// SSFStreamStore keeps the streams the receiver manages. Every replica
// sharing the store sees the same records.
type SSFStreamStore interface {
	// LoadSSFStream returns the record of transmitter; ok is false when
	// there is none.
	LoadSSFStream(ctx context.Context, transmitter string) (s SSFStream, ok bool, err error)
	// SaveSSFStream creates or replaces the record of s.Transmitter.
	SaveSSFStream(ctx context.Context, s SSFStream) error
	// MarkSSFStreamVerified sets VerifiedAt to at when the record of
	// transmitter lists state, in one step (a concurrent SaveSSFStream
	// does not lose it); ok is false when it does not.
	MarkSSFStreamVerified(ctx context.Context, transmitter, state string, at time.Time) (ok bool, err error)
}

// SSFStreamStoreProvider is a backend that keeps SSF stream records
// (PostgreSQL for every replica; the bbolt file for one process).
type SSFStreamStoreProvider interface {
	SSFStreams() SSFStreamStore
}

// CheckSSFStream checks a record for every backend.
func CheckSSFStream(s SSFStream) error {
	switch {
	case s.Transmitter == "":
		return errors.New("ssf stream: empty transmitter")
	case len(s.Transmitter) > MaxKeyBytes || len(s.StreamID) > MaxKeyBytes || len(s.PollURL) > 4096:
		return errors.New("ssf stream: transmitter, stream id or poll url too long")
	case len(s.States) > MaxSSFStreamStates:
		return errors.New("ssf stream: too many verification states")
	case len(s.Subjects) > MaxOwners:
		return errors.New("ssf stream: too many subjects")
	}
	return nil
}

// MemorySSFStreams is an SSFStreamStore in process memory, for tests and
// for a server run without a store.
type MemorySSFStreams struct {
	mu sync.Mutex
	m  map[string]SSFStream
}

var _ SSFStreamStore = (*MemorySSFStreams)(nil)

// NewMemorySSFStreams returns an empty store.
func NewMemorySSFStreams() *MemorySSFStreams { return &MemorySSFStreams{m: map[string]SSFStream{}} }

// LoadSSFStream implements SSFStreamStore.
func (m *MemorySSFStreams) LoadSSFStream(ctx context.Context, transmitter string) (SSFStream, bool, error) {
	if err := ctx.Err(); err != nil {
		return SSFStream{}, false, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	s, ok := m.m[transmitter]
	s.States, s.Subjects = slices.Clone(s.States), slices.Clone(s.Subjects)
	return s, ok, nil
}

// SaveSSFStream implements SSFStreamStore.
func (m *MemorySSFStreams) SaveSSFStream(ctx context.Context, s SSFStream) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := CheckSSFStream(s); err != nil {
		return err
	}
	s.States, s.Subjects = slices.Clone(s.States), slices.Clone(s.Subjects)
	m.mu.Lock()
	m.m[s.Transmitter] = s
	m.mu.Unlock()
	return nil
}

// MarkSSFStreamVerified implements SSFStreamStore.
func (m *MemorySSFStreams) MarkSSFStreamVerified(ctx context.Context, transmitter, state string, at time.Time) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	s, ok := m.m[transmitter]
	if !ok || state == "" || !slices.Contains(s.States, state) {
		return false, nil
	}
	s.VerifiedAt = at
	m.m[transmitter] = s
	return true, nil
}
