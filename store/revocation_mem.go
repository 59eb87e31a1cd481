package store

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/scopegate/scopegate/decision"
)

// MemoryRevocations is a RevocationStore held in process memory: a server
// run without a store keeps its revocations here, and they are lost when it
// stops. Tests use it as the reference backend of the conformance suite.
type MemoryRevocations struct {
	mu    sync.Mutex
	revs  map[string]decision.Revocation
	clock func() time.Time
}

var _ RevocationStore = (*MemoryRevocations)(nil)

// NewMemoryRevocations returns an empty in-memory store. clock is the
// current time (nil means time.Now).
func NewMemoryRevocations(clock func() time.Time) *MemoryRevocations {
	if clock == nil {
		clock = time.Now
	}
	return &MemoryRevocations{revs: map[string]decision.Revocation{}, clock: clock}
}

// Revoke implements RevocationStore.
func (m *MemoryRevocations) Revoke(ctx context.Context, r decision.Revocation) (decision.Revocation, error) {
	if err := ctx.Err(); err != nil {
		return decision.Revocation{}, err
	}
	r, err := PrepareRevocation(r, m.clock())
	if err != nil {
		return decision.Revocation{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, dup := m.revs[r.ID]; dup {
		return decision.Revocation{}, fmt.Errorf("revoke %s: %w", r.ID, ErrRevocationExists)
	}
	m.revs[r.ID] = r
	return r, nil
}

// Unrevoke implements RevocationStore.
func (m *MemoryRevocations) Unrevoke(ctx context.Context, id string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.revs[id]; !ok {
		return fmt.Errorf("unrevoke %q: %w", id, ErrRevocationNotFound)
	}
	delete(m.revs, id)
	return nil
}

// GetRevocation implements RevocationStore.
func (m *MemoryRevocations) GetRevocation(ctx context.Context, id string) (decision.Revocation, bool, error) {
	if err := ctx.Err(); err != nil {
		return decision.Revocation{}, false, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.revs[id]
	return r, ok, nil
}

// ListRevocations implements RevocationStore.
func (m *MemoryRevocations) ListRevocations(ctx context.Context) ([]decision.Revocation, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	now := m.clock()
	m.mu.Lock()
	out := make([]decision.Revocation, 0, len(m.revs))
	for _, r := range m.revs {
		if r.ActiveAt(now) {
			out = append(out, r)
		}
	}
	m.mu.Unlock()
	SortRevocations(out)
	return out, nil
}

// WatchRevocations implements RevocationStore: a process-local store has
// no other writers, so it reports nothing and returns when ctx ends.
func (m *MemoryRevocations) WatchRevocations(ctx context.Context, _ func(RevocationChange)) error {
	<-ctx.Done()
	return ctx.Err()
}

// SortRevocations orders revocations as ListRevocations returns them:
// oldest first, then by ID.
func SortRevocations(revs []decision.Revocation) {
	slices.SortFunc(revs, func(a, b decision.Revocation) int {
		if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
			return c
		}
		return cmp.Compare(a.ID, b.ID)
	})
}
