package decision

import (
	"errors"
	"fmt"
	"time"
)

// Session revocations and "issued before" revocations, the shapes identity
// events take (a revoked session, a changed credential).
//
// A session revocation is keyed like a token revocation, by issuer and one
// value: the sid claim, or, for a revocation that names a subject and no
// session, the subject of tokens that carry no sid. A token is looked up
// under its sid when it has one, else under its subject: one map lookup
// either way.
//
// IssuedBefore narrows a subject, client or session revocation in time: it
// refuses the tokens issued before the instant (iat earlier than it), and
// the tokens that carry no iat, since nothing proves they came after
// (fail closed). The check is one comparison on a revocation the lookup
// already found.

const (
	detailSessionRevoked      = "the token's session has been revoked"
	detailSessionScopeRevoked = "the scope this route requires has been revoked for the token's session"
	detailSessionPathRevoked  = "the token's session has been revoked for this path"
)

// sessionKey is a session revocation's key: (iss, sid, "") for a session,
// (iss, "", sub) for the tokens of a subject that carry no sid.
type sessionKey struct{ iss, sid, sub string }

func (r *Revocation) sessionKey() sessionKey {
	if r.SessionID != "" {
		return sessionKey{iss: r.Issuer, sid: r.SessionID}
	}
	return sessionKey{iss: r.Issuer, sub: r.Subject}
}

func tokenSessionKey(tok *Token) sessionKey {
	if tok.SessionID != "" {
		return sessionKey{iss: tok.Issuer, sid: tok.SessionID}
	}
	return sessionKey{iss: tok.Issuer, sub: tok.Subject}
}

func (s *RevocationSet) sessionList(k sessionKey) []*Revocation {
	if k.sid == "" && k.sub == "" {
		return nil
	}
	for _, x := range s.deltas {
		if x != nil {
			if l, ok := x.sessions[k]; ok {
				return l
			}
		}
	}
	return s.base.sessions[k]
}

// covers reports whether r's IssuedBefore (if any) includes tok: it was
// issued before it, or carries no iat.
func (r *Revocation) covers(tok *Token) bool {
	if r.IssuedBefore.IsZero() {
		return true
	}
	iat := tok.IssuedAt()
	return iat.IsZero() || iat.Before(r.IssuedBefore)
}

// IssuedBeforeCovers reports whether a revocation whose IssuedBefore is t
// refuses a token issued at iat (zero: the token has no iat). It is the
// engine's rule, exported for the store and tools that explain it.
func IssuedBeforeCovers(t, iat time.Time) bool {
	return t.IsZero() || iat.IsZero() || iat.Before(t)
}

func (r *Revocation) validateSession() error {
	if r.Issuer == "" {
		return errors.New("revocation: a session revocation needs the issuer of the session (sid values are only unique per issuer)")
	}
	if r.SessionID == "" && r.Subject == "" {
		return errors.New("revocation: a session revocation needs session_id (the sid claim), or subject for the subject's tokens that carry no sid")
	}
	if r.SessionID != "" && r.Subject != "" {
		return errors.New("revocation: a session revocation names session_id or subject, not both: make two revocations to cover both")
	}
	return nil
}

func (r *Revocation) validateIssuedBefore() error {
	if r.IssuedBefore.IsZero() {
		return nil
	}
	if r.Kind == RevokeToken {
		return errors.New("revocation: issued_before narrows subject, client and session revocations; a token revocation names one token already: leave issued_before unset")
	}
	if y := r.IssuedBefore.Year(); y < 1970 || y > 9999 {
		return fmt.Errorf("revocation: issued_before %s is out of range: give an RFC 3339 time between 1970 and 9999", r.IssuedBefore.Format(time.RFC3339))
	}
	return nil
}
