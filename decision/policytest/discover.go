package policytest

import (
	"os"
	"path/filepath"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Discover returns the test files beside the policy file at policyPath
// that test it, sorted: every *_test.yaml (or *_test.yml) of its directory
// except those meant for another policy. A test file is meant for another
// policy when its policy: field names another file, or, without that
// field, when its name starts with the name of another policy file beside
// it: orders_test.yaml and orders_refunds_test.yaml are for orders.yaml.
func Discover(policyPath string) ([]string, error) {
	dir := filepath.Dir(policyPath)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	self, _ := filepath.Abs(policyPath)
	base := strings.TrimSuffix(filepath.Base(policyPath), filepath.Ext(policyPath))
	exists := func(name string) bool {
		for _, ext := range []string{".yaml", ".yml"} {
			if st, err := os.Stat(filepath.Join(dir, name+ext)); err == nil && !st.IsDir() {
				return true
			}
		}
		return false
	}
	var out []string
	for _, e := range entries {
		name := e.Name()
		stem, ok := strings.CutSuffix(name, "_test.yaml")
		if !ok {
			stem, ok = strings.CutSuffix(name, "_test.yml")
		}
		if !ok || e.IsDir() {
			continue
		}
		path := filepath.Join(dir, name)
		if target := policyField(path); target != "" {
			abs, _ := filepath.Abs(filepath.Join(dir, target))
			if abs == self {
				out = append(out, path)
			}
			continue
		}
		if owner := ownerPolicy(stem, exists); owner == "" || owner == base {
			out = append(out, path)
		}
	}
	slices.Sort(out)
	return out, nil
}

// ownerPolicy is the longest prefix of stem, cut at '_', that names a
// policy file beside it, or "".
func ownerPolicy(stem string, exists func(string) bool) string {
	for p := stem; p != ""; {
		if exists(p) {
			return p
		}
		i := strings.LastIndexByte(p, '_')
		if i < 0 {
			break
		}
		p = p[:i]
	}
	return ""
}

// policyField reads only the policy: field of a test file ("" when absent
// or unreadable; a broken file is reported when it is run).
func policyField(path string) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	var head struct {
		Policy string `yaml:"policy"`
	}
	if yaml.Unmarshal(data, &head) != nil {
		return ""
	}
	return head.Policy
}
