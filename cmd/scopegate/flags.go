package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/scopegate/scopegate/decision/tokenmint"
)

// kv is one key=value pair of a repeatable flag.
type kv struct{ key, value string }

// kvFlag collects repeated --flag key=value options, in order.
type kvFlag []kv

func (f *kvFlag) String() string {
	if f == nil {
		return ""
	}
	parts := make([]string, len(*f))
	for i, p := range *f {
		parts[i] = p.key + "=" + p.value
	}
	return strings.Join(parts, ",")
}

// Type names the value in help (pflag.Value).
func (*kvFlag) Type() string { return "key=value" }

func (f *kvFlag) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok || strings.TrimSpace(k) == "" {
		return fmt.Errorf("%q is not key=value", s)
	}
	*f = append(*f, kv{key: strings.TrimSpace(k), value: v})
	return nil
}

// repoPath resolves a relative path that does not exist in the working
// directory against the root of the scopegate source tree, so the bundled
// examples (examples/policy.yaml, examples/keys/...) can be named the same
// way from any directory of the repository. Any other path is returned
// unchanged, and a missing file is reported by whoever opens it.
func repoPath(p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	if _, err := os.Stat(p); err == nil || !errors.Is(err, os.ErrNotExist) {
		return p
	}
	root, err := tokenmint.FindModuleRoot("")
	if err != nil {
		return p
	}
	alt := filepath.Join(root, p)
	if _, err := os.Stat(alt); err == nil {
		return alt
	}
	return p
}
