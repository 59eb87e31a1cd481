package store

import (
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"
)

// The checks below are shared by every backend so that all of them accept
// and reject exactly the same records (the conformance suite relies on it).

// CheckLookup reports whether lookup can name an ownership lookup: non-empty
// UTF-8 text without NUL or control characters, at most MaxLookupBytes.
func CheckLookup(lookup string) error {
	if lookup == "" {
		return fmt.Errorf("lookup name is empty: use the name the policy's owner rule gives")
	}
	if len(lookup) > MaxLookupBytes {
		return fmt.Errorf("lookup name %.32q... is %d bytes: use at most %d", lookup, len(lookup), MaxLookupBytes)
	}
	if !utf8.ValidString(lookup) || strings.ContainsFunc(lookup, isControl) {
		return fmt.Errorf("lookup name %q has invalid UTF-8 or control characters: use printable text", lookup)
	}
	return nil
}

// CheckKey reports whether key can be stored: non-empty UTF-8 without NUL,
// at most MaxKeyBytes. Other characters (slashes, spaces, quotes) are data.
func CheckKey(key string) error {
	if key == "" {
		return fmt.Errorf("key is empty: give the resource identifier")
	}
	if len(key) > MaxKeyBytes {
		return fmt.Errorf("key %.32q... is %d bytes: use at most %d", key, len(key), MaxKeyBytes)
	}
	if !utf8.ValidString(key) || strings.IndexByte(key, 0) >= 0 {
		return fmt.Errorf("key %q has invalid UTF-8 or a NUL byte: keys are UTF-8 text", key)
	}
	return nil
}

// KeyCanExist reports whether a lookup for key can find anything. Writers
// reject keys that fail CheckKey, so a read of such a key (say, a mangled
// path segment) is answered "not found" without asking the backend, which
// might otherwise fail on the bytes (PostgreSQL text holds no NUL).
func KeyCanExist(lookup, key string) bool {
	return CheckLookup(lookup) == nil && CheckKey(key) == nil
}

// NormalizeOwners checks owners and returns them sorted by byte order with
// duplicates removed, the form every backend stores and returns. It does not
// modify its argument.
func NormalizeOwners(owners []string) ([]string, error) {
	if len(owners) == 0 {
		return nil, fmt.Errorf("owners list is empty: give at least one owner, or delete the record")
	}
	if len(owners) > MaxOwners {
		return nil, fmt.Errorf("%d owners given: at most %d per record", len(owners), MaxOwners)
	}
	out := slices.Clone(owners)
	for i, o := range out {
		switch {
		case o == "":
			return nil, fmt.Errorf("owner %d is empty: owners are claim values such as a subject", i)
		case len(o) > MaxOwnerBytes:
			return nil, fmt.Errorf("owner %d is %d bytes: use at most %d", i, len(o), MaxOwnerBytes)
		case !utf8.ValidString(o) || strings.IndexByte(o, 0) >= 0:
			return nil, fmt.Errorf("owner %d (%q) has invalid UTF-8 or a NUL byte: owners are UTF-8 text", i, o)
		}
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// CheckPut validates a PutOwners call and returns the normalized owners.
// Backends call it first so every backend fails the same way.
func CheckPut(lookup, key string, owners []string) ([]string, error) {
	if err := CheckLookup(lookup); err != nil {
		return nil, err
	}
	if err := CheckKey(key); err != nil {
		return nil, err
	}
	return NormalizeOwners(owners)
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f }
