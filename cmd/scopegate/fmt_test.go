package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const unformatted = `routes:
    - match: {path: /healthz, methods: [GET]}
      # the load balancer's probe
      name: health
      public: true
default: deny
`

const formatted = `routes:
  # the load balancer's probe
  - name: health
    match: {methods: [GET], path: /healthz}
    public: true
default: deny
`

func TestFmt(t *testing.T) {
	dir := t.TempDir()
	messy := filepath.Join(dir, "messy.yaml")
	clean := filepath.Join(dir, "clean.yaml")
	broken := filepath.Join(dir, "broken.yaml")
	for name, body := range map[string]string{messy: unformatted, clean: formatted, broken: "routes: [\n"} {
		if err := os.WriteFile(name, []byte(body), 0o640); err != nil {
			t.Fatal(err)
		}
	}

	code, out, errs := runCLI(t, "", "fmt", messy)
	if code != exitOK || out != formatted {
		t.Errorf("fmt: exit %d, stdout:\n%s\nwant:\n%s%s", code, out, formatted, errs)
	}
	code, out, _ = runCLI(t, "", "fmt", "--check", messy, clean)
	if code != exitError || out != messy+"\n" {
		t.Errorf("fmt --check: exit %d, listed %q, want only %s", code, out, messy)
	}
	code, out, _ = runCLI(t, "", "fmt", "--check", clean)
	if code != exitOK || out != "" {
		t.Errorf("fmt --check on a formatted file: exit %d, %q", code, out)
	}
	code, _, errs = runCLI(t, "", "fmt", "--check", broken, clean)
	if code != exitUsage || !strings.Contains(errs, "broken.yaml: line ") {
		t.Errorf("fmt a file that is not YAML: exit %d: %s", code, errs)
	}
	code, _, errs = runCLI(t, "", "fmt", "--check", "-w", clean)
	if code != exitUsage || !strings.Contains(errs, "use one") {
		t.Errorf("--check with -w: exit %d: %s", code, errs)
	}
	if code, _, _ = runCLI(t, "", "fmt"); code != exitUsage {
		t.Errorf("fmt without files: exit %d", code)
	}

	code, out, errs = runCLI(t, "", "fmt", "-w", messy)
	if code != exitOK || out != "" {
		t.Fatalf("fmt -w: exit %d: %s%s", code, out, errs)
	}
	b, _ := os.ReadFile(messy)
	if string(b) != formatted {
		t.Errorf("fmt -w wrote:\n%s", b)
	}
	if fi, _ := os.Stat(messy); fi.Mode().Perm() != 0o640 {
		t.Errorf("fmt -w changed the mode to %v", fi.Mode().Perm())
	}
	if code, _, _ = runCLI(t, "", "fmt", "--check", messy); code != exitOK {
		t.Error("the file fmt -w wrote is not formatted")
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 3 {
		t.Errorf("fmt -w left files behind: %v", entries)
	}
}
