package storetest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/scopegate/scopegate/decision"
	"github.com/scopegate/scopegate/store"
)

const testIss = "https://id.example.com/"

// TestRevocations checks the revocation store contract. newStore must
// return a fresh, empty store for each call and arrange its cleanup.
func TestRevocations(t *testing.T, newStore func(t *testing.T) store.RevocationStore) {
	t.Helper()
	future := time.Now().Add(24 * time.Hour)
	roundTrip := map[string]decision.Revocation{
		"token":                          {Kind: decision.RevokeToken, Issuer: testIss, JTI: "7f2c-jti", Reason: "INC-1 leaked in a log", CreatedBy: "ops@example.com"},
		"subject of any issuer":          {Kind: decision.RevokeSubject, Subject: "alice", Reason: "account closed"},
		"subject of one issuer":          {Kind: decision.RevokeSubject, Issuer: testIss, Subject: "alice", Reason: "r"},
		"client with a scope":            {Kind: decision.RevokeClient, ClientID: "web-app", Scope: "billing:write", Reason: "r"},
		"client with a segment":          {Kind: decision.RevokeClient, ClientID: "web-app", Segment: "billing", Reason: "r"},
		"subject with a path":            {Kind: decision.RevokeSubject, Subject: "bob", Segment: "/v1/payments", Reason: "r"},
		"with until":                     {Kind: decision.RevokeClient, ClientID: "batch", Reason: "r", Until: future},
		"session":                        {Kind: decision.RevokeSession, Issuer: testIss, SessionID: "sid-1", Reason: "caep session-revoked", CreatedBy: "ssf:https://idp.example.com/"},
		"session of a subject":           {Kind: decision.RevokeSession, Issuer: testIss, Subject: "alice", Reason: "r"},
		"device":                         {Kind: decision.RevokeDevice, Issuer: testIss, DeviceID: "dev-1", IssuedBefore: time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC), Reason: "ssf device-compliance-change"},
		"device of any issuer, narrowed": {Kind: decision.RevokeDevice, DeviceID: "dev-2", Scope: "billing:write", Reason: "r"},
		"assurance":                      {Kind: decision.RevokeAssurance, Subject: "alice", ACRLevel: "urn:example:pwd", IssuedBefore: time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC), Reason: "ssf assurance-level-change"},
		"assurance to no level":          {Kind: decision.RevokeAssurance, Issuer: testIss, Subject: "bob", Reason: "r"},
		"from an event":                  {Kind: decision.RevokeSubject, Subject: "carol", IssuedBefore: time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC), SourceEventTime: time.Date(2026, 12, 2, 10, 0, 0, 987654321, time.FixedZone("y", -7200)), Reason: "ssf credential-change"},
		"issued before":                  {Kind: decision.RevokeSubject, Subject: "alice", IssuedBefore: time.Date(2026, 12, 2, 10, 0, 0, 123456789, time.FixedZone("x", 3600)), Reason: "password changed"},
		"unicode and quotes": {
			Kind: decision.RevokeSubject, Subject: `josé'; DROP TABLE scopegate_revocations; --`,
			Reason: "用户 asked — \"urgent\" 🧾", CreatedBy: "CN=admin,O=Example",
		},
		"limits are inclusive": {
			Kind: decision.RevokeClient, ClientID: strings.Repeat("c", decision.MaxRevocationValueBytes),
			Reason: strings.Repeat("r", decision.MaxRevocationReasonBytes), CreatedBy: strings.Repeat("a", decision.MaxRevocationActorBytes),
		},
	}
	for name, in := range roundTrip {
		t.Run("round trip/"+name, func(t *testing.T) {
			s := newStore(t)
			ctx := t.Context()
			before := time.Now().Add(-time.Second)
			got, err := s.Revoke(ctx, in)
			if err != nil {
				t.Fatalf("Revoke: %v", err)
			}
			if got.ID == "" || store.CheckRevocationID(got.ID) != nil {
				t.Errorf("Revoke assigned id %q", got.ID)
			}
			if got.CreatedAt.Before(before) || got.CreatedAt.After(time.Now().Add(time.Second)) || got.CreatedAt.Location() != time.UTC {
				t.Errorf("CreatedAt = %v; want about now, in UTC", got.CreatedAt)
			}
			want := in
			want.ID, want.CreatedAt = got.ID, got.CreatedAt
			if !want.Until.IsZero() {
				want.Until = want.Until.UTC().Truncate(time.Microsecond)
			}
			if !want.IssuedBefore.IsZero() {
				want.IssuedBefore = want.IssuedBefore.UTC().Truncate(time.Microsecond)
				if got.IssuedBefore.Location() != time.UTC {
					t.Errorf("IssuedBefore %v is not in UTC", got.IssuedBefore)
				}
			}
			if !want.SourceEventTime.IsZero() {
				want.SourceEventTime = want.SourceEventTime.UTC().Truncate(time.Microsecond)
				if got.SourceEventTime.Location() != time.UTC {
					t.Errorf("SourceEventTime %v is not in UTC", got.SourceEventTime)
				}
			}
			if !same(got, want) {
				t.Errorf("Revoke returned\n%+v\nwant\n%+v", got, want)
			}
			stored, found, err := s.GetRevocation(ctx, got.ID)
			if err != nil || !found || !same(stored, got) {
				t.Errorf("GetRevocation = %+v %v %v;\nwant %+v", stored, found, err, got)
			}
			list, err := s.ListRevocations(ctx)
			if err != nil || len(list) != 1 || !same(list[0], got) {
				t.Errorf("ListRevocations = %+v %v; want [%+v]", list, err, got)
			}
		})
	}

	refused := map[string]struct {
		r    decision.Revocation
		want string
	}{
		"no reason":          {r: decision.Revocation{Kind: decision.RevokeSubject, Subject: "alice"}, want: "reason"},
		"no kind":            {r: decision.Revocation{Subject: "alice", Reason: "r"}, want: "kind"},
		"until in the past":  {r: decision.Revocation{Kind: decision.RevokeSubject, Subject: "alice", Reason: "r", Until: time.Now().Add(-time.Minute)}, want: "not in the future"},
		"token without iss":  {r: decision.Revocation{Kind: decision.RevokeToken, JTI: "j", Reason: "r"}, want: "issuer"},
		"scope and segment":  {r: decision.Revocation{Kind: decision.RevokeClient, ClientID: "c", Scope: "a", Segment: "b", Reason: "r"}, want: "not both"},
		"NUL byte":           {r: decision.Revocation{Kind: decision.RevokeClient, ClientID: "c\x00", Reason: "r"}, want: "NUL"},
		"too long":           {r: decision.Revocation{Kind: decision.RevokeClient, ClientID: strings.Repeat("c", decision.MaxRevocationValueBytes+1), Reason: "r"}, want: "at most"},
		"id with separators": {r: decision.Revocation{ID: "a/b", Kind: decision.RevokeClient, ClientID: "c", Reason: "r"}, want: "characters"},
	}
	for name, tc := range refused {
		t.Run("refused/"+name, func(t *testing.T) {
			s := newStore(t)
			_, err := s.Revoke(t.Context(), tc.r)
			if !errors.Is(err, store.ErrInvalidRevocation) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Revoke error = %v; want ErrInvalidRevocation mentioning %q", err, tc.want)
			}
			if list, err := s.ListRevocations(t.Context()); err != nil || len(list) != 0 {
				t.Errorf("a refused revocation was stored: %v %v", list, err)
			}
		})
	}

	t.Run("unrevoke", func(t *testing.T) {
		s := newStore(t)
		ctx := t.Context()
		a := mustRevoke(t, s, decision.Revocation{Kind: decision.RevokeSubject, Subject: "a", Reason: "r"})
		b := mustRevoke(t, s, decision.Revocation{Kind: decision.RevokeSubject, Subject: "b", Reason: "r"})
		if err := s.Unrevoke(ctx, a.ID); err != nil {
			t.Fatalf("Unrevoke: %v", err)
		}
		if _, found, err := s.GetRevocation(ctx, a.ID); found || err != nil {
			t.Errorf("GetRevocation after Unrevoke: found=%v err=%v", found, err)
		}
		list, err := s.ListRevocations(ctx)
		if err != nil || len(list) != 1 || list[0].ID != b.ID {
			t.Errorf("ListRevocations after Unrevoke = %v %v; want only %s", list, err, b.ID)
		}
		for _, id := range []string{a.ID, "no-such-id", `x'; DELETE FROM scopegate_revocations; --`, "", strings.Repeat("z", 500)} {
			if err := s.Unrevoke(ctx, id); !errors.Is(err, store.ErrRevocationNotFound) {
				t.Errorf("Unrevoke(%.20q) = %v; want ErrRevocationNotFound", id, err)
			}
		}
		if _, found, err := s.GetRevocation(ctx, "no such id"); found || err != nil {
			t.Errorf("GetRevocation(unknown) = %v %v", found, err)
		}
	})

	t.Run("duplicate id", func(t *testing.T) {
		s := newStore(t)
		r := decision.Revocation{ID: "fixed-id", Kind: decision.RevokeSubject, Subject: "a", Reason: "r"}
		mustRevoke(t, s, r)
		if _, err := s.Revoke(t.Context(), r); !errors.Is(err, store.ErrRevocationExists) {
			t.Fatalf("second Revoke with the same id = %v; want ErrRevocationExists", err)
		}
	})

	t.Run("times are UTC microseconds", func(t *testing.T) {
		s := newStore(t)
		zone := time.FixedZone("UTC+5:30", 5*3600+1800)
		until := time.Now().Add(time.Hour).In(zone).Truncate(time.Microsecond).Add(789 * time.Nanosecond)
		got := mustRevoke(t, s, decision.Revocation{Kind: decision.RevokeSubject, Subject: "a", Reason: "r", Until: until})
		if want := until.UTC().Truncate(time.Microsecond); !got.Until.Equal(want) || got.Until.Location() != time.UTC || got.Until.Nanosecond()%1000 != 0 {
			t.Errorf("Until = %v; want %v", got.Until, want)
		}
		if got.CreatedAt.Nanosecond()%1000 != 0 {
			t.Errorf("CreatedAt %v has sub-microsecond digits", got.CreatedAt)
		}
		stored, _, _ := s.GetRevocation(t.Context(), got.ID)
		if !same(stored, got) {
			t.Errorf("stored %+v; returned %+v", stored, got)
		}
	})

	t.Run("list is oldest first and skips lapsed revocations", func(t *testing.T) {
		s := newStore(t)
		ctx := t.Context()
		var ids []string
		for i := range 3 {
			ids = append(ids, mustRevoke(t, s, decision.Revocation{Kind: decision.RevokeSubject, Subject: fmt.Sprint("s", i), Reason: "r"}).ID)
			time.Sleep(2 * time.Millisecond)
		}
		lapsing := mustRevoke(t, s, decision.Revocation{Kind: decision.RevokeSubject, Subject: "soon", Reason: "r", Until: time.Now().Add(300 * time.Millisecond)})
		list, err := s.ListRevocations(ctx)
		if err != nil || len(list) != 4 {
			t.Fatalf("ListRevocations = %v %v; want 4", list, err)
		}
		for i, id := range ids {
			if list[i].ID != id {
				t.Errorf("list[%d] = %s; want %s (oldest first)", i, list[i].ID, id)
			}
		}
		time.Sleep(400 * time.Millisecond)
		list, err = s.ListRevocations(ctx)
		if err != nil || len(list) != 3 {
			t.Errorf("after the lapse, ListRevocations = %v %v; want the 3 others", list, err)
		}
		if _, found, err := s.GetRevocation(ctx, lapsing.ID); !found || err != nil {
			t.Errorf("GetRevocation of a lapsed revocation = %v %v; want it still found", found, err)
		}
	})

	t.Run("concurrent revokes", func(t *testing.T) {
		s := newStore(t)
		const n = 20
		var wg sync.WaitGroup
		ids := make([]string, n)
		errs := make([]error, n)
		for i := range n {
			wg.Go(func() {
				r, err := s.Revoke(t.Context(), decision.Revocation{Kind: decision.RevokeToken, Issuer: testIss, JTI: fmt.Sprint("j", i), Reason: "r"})
				ids[i], errs[i] = r.ID, err
			})
		}
		wg.Wait()
		seen := map[string]bool{}
		for i := range n {
			if errs[i] != nil {
				t.Fatalf("Revoke %d: %v", i, errs[i])
			}
			if seen[ids[i]] {
				t.Fatalf("id %s assigned twice", ids[i])
			}
			seen[ids[i]] = true
		}
		if list, err := s.ListRevocations(t.Context()); err != nil || len(list) != n {
			t.Errorf("ListRevocations: %d revocations, %v; want %d", len(list), err, n)
		}
	})

	t.Run("watch returns when its context ends", func(t *testing.T) {
		s := newStore(t)
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- s.WatchRevocations(ctx, func(store.RevocationChange) {}) }()
		time.Sleep(50 * time.Millisecond)
		cancel()
		select {
		case err := <-done:
			if !errors.Is(err, context.Canceled) {
				t.Errorf("WatchRevocations returned %v; want context.Canceled", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("WatchRevocations did not return after its context ended")
		}
	})
}

// TestRevocationWatch checks that changes written through one handle are
// notified to a watcher on another: newPair returns two handles on the same
// data (two connection pools, as two replicas would have).
func TestRevocationWatch(t *testing.T, newPair func(t *testing.T) (writer, watcher store.RevocationStore)) {
	t.Helper()
	w, r := newPair(t)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	changes := make(chan store.RevocationChange, 16)
	go func() { _ = r.WatchRevocations(ctx, func(c store.RevocationChange) { changes <- c }) }()
	next := func() store.RevocationChange {
		t.Helper()
		select {
		case c := <-changes:
			return c
		case <-time.After(10 * time.Second):
			t.Fatal("no notification within 10s")
			return store.RevocationChange{}
		}
	}
	if c := next(); !c.Resync {
		t.Fatalf("first notification = %+v; want Resync (listening started)", c)
	}
	rev := mustRevoke(t, w, decision.Revocation{Kind: decision.RevokeClient, ClientID: "web-app", Reason: "r"})
	if c := next(); c.ID != rev.ID || c.Deleted || c.Resync {
		t.Errorf("after Revoke: %+v; want the put of %s", c, rev.ID)
	}
	if err := w.Unrevoke(ctx, rev.ID); err != nil {
		t.Fatal(err)
	}
	if c := next(); c.ID != rev.ID || !c.Deleted {
		t.Errorf("after Unrevoke: %+v; want the deletion of %s", c, rev.ID)
	}
	// A failed write notifies nothing.
	_ = w.Unrevoke(ctx, rev.ID)
	select {
	case c := <-changes:
		t.Errorf("a failed Unrevoke notified %+v", c)
	case <-time.After(200 * time.Millisecond):
	}
}

func mustRevoke(t *testing.T, s store.RevocationStore, r decision.Revocation) decision.Revocation {
	t.Helper()
	got, err := s.Revoke(t.Context(), r)
	if err != nil {
		t.Fatalf("Revoke(%+v): %v", r, err)
	}
	return got
}

func same(a, b decision.Revocation) bool {
	return a.ID == b.ID && a.Kind == b.Kind && a.Issuer == b.Issuer && a.JTI == b.JTI &&
		a.Subject == b.Subject && a.ClientID == b.ClientID && a.Scope == b.Scope &&
		a.Segment == b.Segment && a.Reason == b.Reason && a.CreatedAt.Equal(b.CreatedAt) &&
		a.Until.Equal(b.Until) && a.CreatedBy == b.CreatedBy &&
		a.SessionID == b.SessionID && a.IssuedBefore.Equal(b.IssuedBefore) &&
		a.DeviceID == b.DeviceID && a.ACRLevel == b.ACRLevel &&
		a.IssuedBefore.Nanosecond()%1000 == 0 &&
		a.SourceEventTime.Equal(b.SourceEventTime) && a.SourceEventTime.Nanosecond()%1000 == 0
}
