package decision

import (
	"math"
	"strings"
	"testing"
	"time"
	"unsafe"
)

// TestVerifiedTokenSize pins the size of what the token cache holds per
// token: a cache of many tokens is mostly these, and each byte past a size
// class costs the next class (allocSize).
func TestVerifiedTokenSize(t *testing.T) {
	if got, want := unsafe.Sizeof(Token{}), uintptr(336); got != want {
		t.Errorf("Token is %d bytes, want %d", got, want)
	}
	vt := int64(unsafe.Sizeof(verifiedToken{}))
	if vt != 384 || allocSize(vt) != 384 {
		t.Errorf("verifiedToken is %d bytes (allocated as %d), want 384 in the 384-byte size class", vt, allocSize(vt))
	}
}

func TestNumericDate(t *testing.T) {
	var zero numericDate
	if !zero.time().IsZero() || zero.nanos(math.MinInt64) != math.MinInt64 {
		t.Errorf("the zero numericDate is %v, %d; want absent", zero.time(), zero.nanos(math.MinInt64))
	}
	for _, n := range []int64{0, 1, -1, 1.7e18 + 5e8, -1e9, maxNumericDate * 1e9, -maxNumericDate * 1e9} {
		d := dateAt(n)
		if d == 0 {
			t.Errorf("dateAt(%d) reads as absent", n)
		}
		if got := d.nanos(math.MinInt64); got != n {
			t.Errorf("dateAt(%d).nanos = %d", n, got)
		}
		if got := d.time(); !got.Equal(time.Unix(0, n)) {
			t.Errorf("dateAt(%d).time = %v, want %v", n, got, time.Unix(0, n))
		}
	}
	tok := &Token{}
	if !tok.IssuedAt().IsZero() || !tok.NotBefore().IsZero() || !tok.Expiry().IsZero() || !tok.AuthTime().IsZero() {
		t.Error("a Token built without times has some")
	}
}

// An entry bound that would charge an entry past its int32 cost is refused
// with the fix, not wrapped around.
func TestTokenCacheEntryCostFits(t *testing.T) {
	_, err := newTokenCache(tokenCacheConfig{MaxBytes: 8 << 30, MaxEntries: 4})
	if err == nil || !strings.Contains(err.Error(), "allow more entries") {
		t.Fatalf("4 entries in 8 GiB: err %v, want the per-entry cost refused", err)
	}
	tc, err := newTokenCache(tokenCacheConfig{MaxBytes: 8 << 30, MaxEntries: 5})
	if err != nil {
		t.Fatal(err)
	}
	defer tc.c.Close()
	if tc.minCost > math.MaxInt32 {
		t.Errorf("minimum cost %d overflows the entry's cost", tc.minCost)
	}
}
