package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/scopegate/scopegate/decision"
	"github.com/scopegate/scopegate/decision/policyfmt"
)

// fmtCmd formats policy files canonically (decision/policyfmt), like
// `opa fmt`: keys in the schema's order, two-space indentation, comments
// and blank lines between entries kept.
type fmtCmd struct {
	files []string
	check bool
	write bool
}

func (k *fmtCmd) define(fs *flag.FlagSet) {
	fs.BoolVar(&k.check, "check", false, "print the files that are not formatted and exit 1 if there is one; change nothing (for CI)")
	fs.BoolVar(&k.write, "write", false, "write the formatted text back to each file instead of printing it")
}

func (k *fmtCmd) shorthands() map[string]string { return map[string]string{"write": "w"} }

func (k *fmtCmd) setArgs(args []string) error {
	if len(args) == 0 {
		return errors.New("name the policy files to format: scopegate fmt FILE [FILE...]")
	}
	k.files = args
	return nil
}

func (k *fmtCmd) run(_ context.Context, c *cli) int {
	if k.check && k.write {
		return c.usageError("fmt", "--check changes nothing and --write changes files: use one")
	}
	code := exitOK
	for _, name := range k.files {
		src, err := os.ReadFile(name)
		if err != nil {
			fmt.Fprintf(c.stderr, "scopegate fmt: %s: %s\n", name, decision.ReadCause(err))
			code = exitUsage
			continue
		}
		out, err := policyfmt.Format(src)
		if err != nil {
			fmt.Fprintf(c.stderr, "scopegate fmt: %s: %v\n", name, err)
			code = exitUsage
			continue
		}
		switch {
		case k.check:
			if !bytes.Equal(src, out) {
				fmt.Fprintln(c.stdout, name)
				if code == exitOK {
					code = exitError
				}
			}
		case k.write:
			if bytes.Equal(src, out) {
				continue
			}
			if err := writeFileKeepMode(name, out); err != nil {
				fmt.Fprintf(c.stderr, "scopegate fmt: %v\n", err)
				code = exitError
			}
		default:
			c.stdout.Write(out)
		}
	}
	return code
}

// writeFileKeepMode replaces name with data through a temporary file in
// the same directory, so a failed write leaves the old file whole, and
// keeps the file's permissions.
func writeFileKeepMode(name string, data []byte) error {
	fi, err := os.Stat(name)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(name), ".scopegate-fmt-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(fi.Mode().Perm()); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), name)
}
