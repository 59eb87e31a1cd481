package storetest

import (
	"slices"
	"testing"
	"time"

	"github.com/scopegate/scopegate/store"
)

// TestSSFStreams checks the SSF stream record contract: a missing record
// is not an error, a saved one loads as saved and is replaced whole, and
// only a listed verification state marks it verified.
func TestSSFStreams(t *testing.T, newStore func(t *testing.T) store.SSFStreamStore) {
	t.Helper()
	s := newStore(t)
	ctx := t.Context()
	if _, ok, err := s.LoadSSFStream(ctx, "idp"); err != nil || ok {
		t.Fatalf("load of a missing record: ok %v, err %v; want neither", ok, err)
	}
	rec := store.SSFStream{Transmitter: "idp", StreamID: "st-1", ConfigDigest: "d1", PollURL: "https://tx.test/poll",
		Subjects: []string{`{"format":"email","email":"a@example.com"}`}}
	rec.AddState("s1")
	if err := s.SaveSSFStream(ctx, rec); err != nil {
		t.Fatal(err)
	}
	if err := s.SaveSSFStream(ctx, store.SSFStream{Transmitter: "other", StreamID: "st-9"}); err != nil {
		t.Fatal(err)
	}
	got, ok, err := s.LoadSSFStream(ctx, "idp")
	if err != nil || !ok || got.StreamID != "st-1" || got.ConfigDigest != "d1" || got.PollURL != rec.PollURL || !slices.Equal(got.States, []string{"s1"}) ||
		!slices.Equal(got.Subjects, rec.Subjects) || !got.VerifiedAt.IsZero() {
		t.Fatalf("load: %+v %v %v; want %+v", got, ok, err, rec)
	}
	at := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	for _, bad := range []string{"", "s2"} {
		if ok, err := s.MarkSSFStreamVerified(ctx, "idp", bad, at); err != nil || ok {
			t.Errorf("state %q marked verified: %v %v", bad, ok, err)
		}
	}
	if ok, err := s.MarkSSFStreamVerified(ctx, "nobody", "s1", at); err != nil || ok {
		t.Errorf("a missing record marked verified: %v %v", ok, err)
	}
	if ok, err := s.MarkSSFStreamVerified(ctx, "idp", "s1", at); err != nil || !ok {
		t.Fatalf("the listed state did not mark it verified: %v %v", ok, err)
	}
	got, _, _ = s.LoadSSFStream(ctx, "idp")
	if !got.VerifiedAt.Equal(at) {
		t.Errorf("verified_at %v; want %v", got.VerifiedAt, at)
	}
	// States are bounded, oldest dropped.
	for _, st := range []string{"s2", "s3", "s4", "s5"} {
		got.AddState(st)
	}
	got.StreamID = "st-2"
	if err := s.SaveSSFStream(ctx, got); err != nil {
		t.Fatal(err)
	}
	again, _, _ := s.LoadSSFStream(ctx, "idp")
	if again.StreamID != "st-2" || !slices.Equal(again.States, []string{"s2", "s3", "s4", "s5"}) || !again.VerifiedAt.Equal(at) {
		t.Errorf("after replace: %+v", again)
	}
	if other, ok, _ := s.LoadSSFStream(ctx, "other"); !ok || other.StreamID != "st-9" {
		t.Errorf("another transmitter's record: %+v %v", other, ok)
	}
	if err := s.SaveSSFStream(ctx, store.SSFStream{}); err == nil {
		t.Error("a record without a transmitter was saved")
	}
}
