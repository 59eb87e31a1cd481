package audit

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"slices"
	"strings"

	"github.com/scopegate/scopegate/decision/suggest"
)

// MaskAction is what a masking rule does to a field.
type MaskAction uint8

// The mask actions. The zero value keeps the field.
const (
	maskKeep MaskAction = iota
	// MaskDrop leaves the field out of the record.
	MaskDrop
	// MaskHash replaces the field's value (each element of a list) by
	// "hmac:" and the first 16 bytes of its HMAC-SHA256 under the mask
	// key, in hex: the same value always gives the same hash, so records
	// can still be grouped and searched by it, but only the key's holder
	// can tell which value it was.
	MaskHash
)

// String returns the action as a rule writes it.
func (a MaskAction) String() string {
	switch a {
	case MaskDrop:
		return "drop"
	case MaskHash:
		return "hash"
	}
	return "keep"
}

// MinMaskKeyBytes is the shortest key MaskHash accepts: a shorter one
// could be guessed along with the value.
const MinMaskKeyBytes = 32

// MaskRule masks one record field, or the fields that carry one token
// claim, in every record written to every sink.
type MaskRule struct {
	// Field is a record field (client_id, subject, source_ip, ...), or ""
	// when Claim is set.
	Field string
	// Claim is a token claim (sub, client_id, azp, iss, jti, scope, scp,
	// patient): the rule applies to every field that carries its value.
	Claim  string
	Action MaskAction
}

func (r MaskRule) name() string {
	if r.Claim != "" {
		return "claim:" + r.Claim
	}
	return r.Field
}

// maskField is a record field that masking can act on.
type maskField uint8

const (
	mRequestID maskField = iota
	mRoute
	mMethod
	mHost
	mPath
	mSourceIP
	mSubject
	mClientID
	mIss
	mJTI
	mPatient
	mScopesGranted
	mScopesUsed
	mScopesMissing
	mDeprecatedScopesUsed
	mDrift
	mShadow
	mMessage
	mPolicyVersion
	mPrincipal
	mPeer
	mDetails
	numMaskFields
)

var maskFieldNames = [numMaskFields]string{
	mRequestID: "request_id", mRoute: "route", mMethod: "method", mHost: "host", mPath: "path",
	mSourceIP: "source_ip", mSubject: "subject", mClientID: "client_id", mIss: "iss", mJTI: "jti",
	mPatient: "patient", mScopesGranted: "scopes_granted", mScopesUsed: "scopes_used",
	mScopesMissing: "scopes_missing", mDeprecatedScopesUsed: "deprecated_scopes_used",
	mDrift: "drift", mShadow: "shadow", mMessage: "message", mPolicyVersion: "policy_version",
	mPrincipal: "principal", mPeer: "peer", mDetails: "details",
}

// dropOnly are the fields whose value is an object with no value worth a
// hash of its own: they can only be dropped.
var dropOnly = [numMaskFields]bool{mShadow: true}

// unmaskable are the fields every record keeps: without them a record
// cannot be told apart, ordered or counted.
var unmaskable = []string{"time", "type", "decision_id", "api", "decision", "reasons", "status", "latency_us"}

// claimFields are the record fields that carry each token claim a record
// holds; no other claim reaches a record.
var claimFields = map[string][]maskField{
	"sub":       {mSubject},
	"client_id": {mClientID},
	"azp":       {mClientID},
	"iss":       {mIss},
	"jti":       {mJTI},
	"scope":     {mScopesGranted, mScopesUsed, mDeprecatedScopesUsed, mDrift},
	"scp":       {mScopesGranted, mScopesUsed, mDeprecatedScopesUsed, mDrift},
	"patient":   {mPatient},
}

// MaskFields lists the record fields a rule may name.
func MaskFields() []string { return append([]string(nil), maskFieldNames[:]...) }

func maskClaims() []string {
	out := make([]string, 0, len(claimFields))
	for c := range claimFields {
		out = append(out, c)
	}
	slices.Sort(out)
	return out
}

// ParseMask parses a masking specification: rules separated by commas,
// each FIELD=ACTION or claim:NAME=ACTION with ACTION drop or hash, e.g.
// "client_id=hash,claim:sub=hash,source_ip=drop". "" is no rule. The
// rules are checked by ValidateMask.
func ParseMask(spec string) ([]MaskRule, error) {
	spec = strings.TrimSpace(spec)
	if spec == "" {
		return nil, nil
	}
	var rules []MaskRule
	var errs []error
	for part := range strings.SplitSeq(spec, ",") {
		part = strings.TrimSpace(part)
		name, action, ok := strings.Cut(part, "=")
		name, action = strings.TrimSpace(name), strings.TrimSpace(action)
		if !ok || name == "" {
			errs = append(errs, fmt.Errorf("audit mask rule %q: write FIELD=ACTION or claim:NAME=ACTION with ACTION drop or hash, e.g. client_id=hash", part))
			continue
		}
		var r MaskRule
		if c, isClaim := strings.CutPrefix(name, "claim:"); isClaim {
			r.Claim = strings.TrimSpace(c)
		} else {
			r.Field = name
		}
		switch action {
		case "drop":
			r.Action = MaskDrop
		case "hash":
			r.Action = MaskHash
		default:
			errs = append(errs, fmt.Errorf("audit mask rule %q: action %q is unknown: use drop or hash%s", part, action, suggest.DidYouMean(action, []string{"drop", "hash"})))
			continue
		}
		rules = append(rules, r)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return rules, nil
}

// compileMask checks rules and returns the action of each field.
func compileMask(rules []MaskRule, key []byte) (acts [numMaskFields]MaskAction, err error) {
	var errs []error
	by := [numMaskFields]string{} // the rule that set each field
	hashes := false
	for _, r := range rules {
		var fields []maskField
		switch {
		case r.Field != "" && r.Claim != "":
			errs = append(errs, fmt.Errorf("audit mask rule %s: names both field %q and claim %q: one rule names one of them", r.name(), r.Field, r.Claim))
			continue
		case r.Claim != "":
			fs, ok := claimFields[r.Claim]
			if !ok {
				errs = append(errs, fmt.Errorf("audit mask rule %s: claim %q never reaches an audit record (records carry only the claims %s): nothing to mask, remove the rule%s",
					r.name(), r.Claim, strings.Join(maskClaims(), ", "), suggest.DidYouMean(r.Claim, maskClaims())))
				continue
			}
			fields = fs
		case r.Field != "":
			if slices.Contains(unmaskable, r.Field) {
				errs = append(errs, fmt.Errorf("audit mask rule %s: field %q cannot be masked: every record keeps %s", r.name(), r.Field, strings.Join(unmaskable, ", ")))
				continue
			}
			i := slices.Index(maskFieldNames[:], r.Field)
			if i < 0 {
				errs = append(errs, fmt.Errorf("audit mask rule %s: unknown record field %q%s (fields: %s; or claim:NAME for a token claim)",
					r.name(), r.Field, suggest.DidYouMean(r.Field, maskFieldNames[:]), strings.Join(maskFieldNames[:], ", ")))
				continue
			}
			fields = []maskField{maskField(i)}
		default:
			errs = append(errs, errors.New("audit mask rule names no field: give a record field or claim:NAME"))
			continue
		}
		if r.Action != MaskDrop && r.Action != MaskHash {
			errs = append(errs, fmt.Errorf("audit mask rule %s: action %d is unknown: use drop or hash", r.name(), r.Action))
			continue
		}
		for _, f := range fields {
			if r.Action == MaskHash && dropOnly[f] {
				errs = append(errs, fmt.Errorf("audit mask rule %s: field %s is an object and can only be dropped: write %s=drop", r.name(), maskFieldNames[f], r.name()))
				continue
			}
			if by[f] != "" && acts[f] != r.Action {
				errs = append(errs, fmt.Errorf("audit mask rules %s=%s and %s=%s both mask field %s: keep one", by[f], acts[f], r.name(), r.Action, maskFieldNames[f]))
				continue
			}
			if by[f] == "" {
				by[f] = r.name()
			}
			acts[f] = r.Action
		}
		hashes = hashes || r.Action == MaskHash
	}
	if hashes && len(key) < MinMaskKeyBytes {
		if len(key) == 0 {
			errs = append(errs, fmt.Errorf("audit mask: a hash rule needs a key (at least %d random bytes, e.g. openssl rand -base64 48): an unkeyed hash of a client id or subject is undone by hashing the likely values", MinMaskKeyBytes))
		} else {
			errs = append(errs, fmt.Errorf("audit mask: the key holds %d bytes; give at least %d random bytes (e.g. openssl rand -base64 48)", len(key), MinMaskKeyBytes))
		}
	}
	return acts, errors.Join(errs...)
}

// ValidateMask reports every invalid rule, each with the fix; key is the
// HMAC key hash rules need.
func ValidateMask(rules []MaskRule, key []byte) error {
	_, err := compileMask(rules, key)
	return err
}

// masker applies the rules while a record is encoded. It is used by the
// drain goroutine only: the HMAC state is reused from record to record.
type masker struct {
	act     [numMaskFields]MaskAction
	mac     hash.Hash
	scratch []byte
	sum     []byte
	out     []byte
}

func newMasker(rules []MaskRule, key []byte) (*masker, error) {
	if len(rules) == 0 {
		return nil, nil
	}
	acts, err := compileMask(rules, key)
	if err != nil {
		return nil, err
	}
	m := &masker{act: acts}
	if len(key) > 0 {
		m.mac = hmac.New(sha256.New, key)
	}
	return m, nil
}

// on returns the action for f (keep with no masker).
func (m *masker) on(f maskField) MaskAction {
	if m == nil {
		return maskKeep
	}
	return m.act[f]
}

// hashPrefix starts every hashed value.
const hashPrefix = "hmac:"

// hashLen is the bytes of the HMAC kept: 128 bits, as many as a random
// UUID, so two values never share a hash in practice.
const hashLen = 16

// appendHash appends the masked form of v (without quotes).
func (m *masker) appendHash(dst []byte, v string) []byte {
	m.scratch = append(m.scratch[:0], v...)
	m.mac.Reset()
	m.mac.Write(m.scratch)
	m.sum = m.mac.Sum(m.sum[:0])
	dst = append(dst, hashPrefix...)
	return hex.AppendEncode(dst, m.sum[:hashLen])
}

// str returns v as field f records it: "" when dropped, its hash when
// hashed. It allocates only for a hash (Entry fields a sink indexes).
func (m *masker) str(f maskField, v string) string {
	switch m.on(f) {
	case MaskDrop:
		return ""
	case MaskHash:
		if v == "" {
			return ""
		}
		m.out = m.appendHash(m.out[:0], v)
		return string(m.out)
	}
	return v
}

// field appends ,"name":"value" for f unless value is empty or f dropped.
func (m *masker) field(dst []byte, f maskField, value string) []byte {
	switch m.on(f) {
	case MaskDrop:
		return dst
	case MaskHash:
		if value == "" {
			return dst
		}
		dst = append(dst, ',', '"')
		dst = append(dst, maskFieldNames[f]...)
		dst = append(dst, '"', ':', '"')
		dst = m.appendHash(dst, value)
		return append(dst, '"')
	}
	return appendField(dst, maskFieldNames[f], value)
}

// value appends the JSON string of value (hashed when f is), for values
// inside objects and lists.
func (m *masker) value(dst []byte, f maskField, value string) []byte {
	if m.on(f) == MaskHash {
		dst = append(dst, '"')
		dst = m.appendHash(dst, value)
		return append(dst, '"')
	}
	return appendString(dst, value)
}
