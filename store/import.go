package store

import (
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"strings"
)

// ImportOwnershipCSV reads `key,owner` lines from r and writes them to w
// under lookup. Several lines with the same key give that key several owners;
// each key's owners replace what the store held for it. A first line of
// exactly `key,owner` is taken as a header; lines starting with # are
// comments; fields may be quoted as in RFC 4180.
//
// The whole input is checked before anything is written, so a bad line
// (named by its line number) leaves the store untouched. It returns the
// number of keys written; if a write fails midway, the keys before it stay
// written and are counted, and re-running the import is safe.
func ImportOwnershipCSV(ctx context.Context, w OwnershipWriter, lookup string, r io.Reader) (n int, err error) {
	if err := CheckLookup(lookup); err != nil {
		return 0, fmt.Errorf("import ownership: %w", err)
	}
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = 2
	cr.Comment = '#'
	cr.ReuseRecord = true

	var order []string
	owners := map[string][]string{}
	for first := true; ; first = false {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		line, _ := cr.FieldPos(0)
		if err != nil {
			var pe *csv.ParseError
			if errors.As(err, &pe) {
				return 0, fmt.Errorf("import ownership: line %d: %v: each line is key,owner", pe.Line, pe.Err)
			}
			return 0, fmt.Errorf("import ownership: %w", err)
		}
		key, owner := strings.TrimSpace(rec[0]), strings.TrimSpace(rec[1])
		if first && key == "key" && owner == "owner" {
			continue
		}
		if err := CheckKey(key); err != nil {
			return 0, fmt.Errorf("import ownership: line %d: %w", line, err)
		}
		if _, ok := owners[key]; !ok {
			order = append(order, key)
		}
		owners[key] = append(owners[key], owner)
	}
	for _, key := range order {
		if _, err := NormalizeOwners(owners[key]); err != nil {
			return 0, fmt.Errorf("import ownership: key %q: %w", key, err)
		}
	}
	for _, key := range order {
		if err := ctx.Err(); err != nil {
			return n, fmt.Errorf("import ownership: stopped after %d keys: %w", n, err)
		}
		if err := w.PutOwners(ctx, lookup, key, owners[key]); err != nil {
			return n, fmt.Errorf("import ownership: key %q (after %d keys written): %w", key, n, err)
		}
		n++
	}
	return n, nil
}
