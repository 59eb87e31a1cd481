package decision

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"sync/atomic"
	"time"
)

// MinDPoPNonceSecretBytes is the shortest nonce secret accepted.
const MinDPoPNonceSecretBytes = 32

// dpopNonces derives DPoP server nonces (RFC 9449 §8, §9) statelessly: the
// nonce of a time window is an HMAC of the window's number under a secret
// every replica shares, so any replica accepts the nonce another issued and
// none stores one. A nonce is accepted in its window and the next.
type dpopNonces struct {
	key  []byte
	last atomic.Pointer[nonceMemo]
}

type nonceMemo struct {
	win    int64
	window time.Duration
	s      string
}

func newDPoPNonces(secret []byte) *dpopNonces {
	if len(secret) == 0 {
		return nil
	}
	return &dpopNonces{key: append([]byte(nil), secret...)}
}

func windowOf(now time.Time, window time.Duration) int64 {
	return now.UnixNano() / int64(window)
}

func (n *dpopNonces) derive(win int64) string {
	m := hmac.New(sha256.New, n.key)
	var b [8 + len("scopegate dpop nonce")]byte
	binary.BigEndian.PutUint64(b[:8], uint64(win))
	copy(b[8:], "scopegate dpop nonce")
	m.Write(b[:])
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil)[:18])
}

// current returns the nonce of now's window (memoized per window).
func (n *dpopNonces) current(now time.Time, window time.Duration) string {
	win := windowOf(now, window)
	if m := n.last.Load(); m != nil && m.win == win && m.window == window {
		return m.s
	}
	s := n.derive(win)
	n.last.Store(&nonceMemo{win: win, window: window, s: s})
	return s
}

// valid reports whether nonce is the nonce of now's window or of the one
// before.
func (n *dpopNonces) valid(nonce string, now time.Time, window time.Duration) bool {
	if nonce == "" {
		return false
	}
	win := windowOf(now, window)
	cur := n.current(now, window)
	if subtle.ConstantTimeCompare([]byte(nonce), []byte(cur)) == 1 {
		return true
	}
	return subtle.ConstantTimeCompare([]byte(nonce), []byte(n.derive(win-1))) == 1
}
