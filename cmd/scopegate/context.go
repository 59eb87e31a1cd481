package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"

	"go.yaml.in/yaml/v3"

	"github.com/scopegate/scopegate/decision/suggest"
)

// The context file, like cerbosctl's and kubectl's: named sets of the
// client-side settings (server addresses, the file holding the Admin API
// token, TLS) and the one in use, so that client, revoke, revocations,
// unrevoke and report reach a server without flags on every call.
// Precedence: flags, then SCOPEGATE_* variables, then the current
// context, then the defaults. The file names the token's file, never the
// token itself.

const contextEnv = "SCOPEGATE_CONTEXT"

// contextFile is ~/.config/scopegate/context.yaml.
type contextFile struct {
	Current  string                 `yaml:"current,omitempty"`
	Contexts map[string]*cliContext `yaml:"contexts,omitempty"`
}

// cliContext is one named context.
type cliContext struct {
	// AdminAddr is the Admin API's gRPC address (revoke, revocations,
	// unrevoke, report).
	AdminAddr string `yaml:"admin_addr,omitempty"`
	// AdminTokenFile names the file holding the Admin API token.
	AdminTokenFile string `yaml:"admin_token_file,omitempty"`
	// Addr is the decision server's gRPC address (client).
	Addr string      `yaml:"addr,omitempty"`
	TLS  *contextTLS `yaml:"tls,omitempty"`
}

// contextTLS are the Admin API's TLS settings (--tls, --ca-file,
// --cert-file, --key-file).
type contextTLS struct {
	Enabled  bool   `yaml:"enabled,omitempty"`
	CAFile   string `yaml:"ca_file,omitempty"`
	CertFile string `yaml:"cert_file,omitempty"`
	KeyFile  string `yaml:"key_file,omitempty"`
}

// contextPath is $SCOPEGATE_CONTEXT, else
// $XDG_CONFIG_HOME/scopegate/context.yaml, else
// ~/.config/scopegate/context.yaml.
func (c *cli) contextPath() (string, error) {
	if p, ok := c.env(contextEnv); ok && p != "" {
		return p, nil
	}
	if x, ok := c.env("XDG_CONFIG_HOME"); ok && filepath.IsAbs(x) {
		return filepath.Join(x, "scopegate", "context.yaml"), nil
	}
	home, ok := c.env("HOME")
	if !ok || home == "" {
		return "", fmt.Errorf("no home directory ($HOME) for the context file: set %s to its path", contextEnv)
	}
	return filepath.Join(home, ".config", "scopegate", "context.yaml"), nil
}

// readContextFile reads the context file; a file that does not exist is
// an empty one.
func (c *cli) readContextFile() (*contextFile, string, error) {
	path, err := c.contextPath()
	if err != nil {
		// No home: no context file to read (a later write reports it).
		return &contextFile{}, "", nil
	}
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return &contextFile{}, path, nil
	}
	if err != nil {
		return nil, path, fmt.Errorf("context file: %w", err)
	}
	var f contextFile
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil && len(bytes.TrimSpace(data)) > 0 {
		msg := yamlDecodeError(err, &f)
		if strings.Contains(msg, "admin_token ") || strings.Contains(msg, `"admin_token"`) {
			msg += " (the context file holds no token: put it in a file readable only by you and name that file with admin_token_file)"
		}
		return nil, path, fmt.Errorf("context file %s: %s (fields: current, contexts.NAME.{admin_addr, admin_token_file, addr, tls.{enabled, ca_file, cert_file, key_file}})", path, msg)
	}
	return &f, path, nil
}

// currentContext is the context in use, or nil when there is none.
func (c *cli) currentContext() (*cliContext, error) {
	f, path, err := c.readContextFile()
	if err != nil || f.Current == "" {
		return nil, err
	}
	ctx, ok := f.Contexts[f.Current]
	if !ok {
		return nil, fmt.Errorf("context file %s: current context %q is not defined: run scopegate context use NAME (one of %s)", path, f.Current, strings.Join(contextNames(f), ", "))
	}
	return ctx, nil
}

func contextNames(f *contextFile) []string {
	names := make([]string, 0, len(f.Contexts))
	for n := range f.Contexts {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

func (c *cli) writeContextFile(path string, f *contextFile) error {
	if path == "" {
		_, err := c.contextPath()
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("context file: %w", err)
	}
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(f); err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, buf.Bytes(), 0o600); err != nil {
		return fmt.Errorf("context file: %w", err)
	}
	return os.Rename(tmp, path)
}

// contextUseCmd is `scopegate context use NAME`.
type contextUseCmd struct{ name string }

func (k *contextUseCmd) define(*flag.FlagSet) {}

func (k *contextUseCmd) setArgs(args []string) error {
	if len(args) != 1 {
		return errors.New("name one context: scopegate context use NAME")
	}
	k.name = args[0]
	return nil
}

func (k *contextUseCmd) run(_ context.Context, c *cli) int {
	f, path, err := c.readContextFile()
	if err != nil {
		return c.usageError("context use", "%v", err)
	}
	if _, ok := f.Contexts[k.name]; !ok {
		msg := fmt.Sprintf("no context %q in %s", k.name, path)
		if names := contextNames(f); len(names) > 0 {
			msg += suggest.DidYouMean(k.name, names)
			msg += " (contexts: " + strings.Join(names, ", ") + ")"
		} else {
			msg += "; create it with scopegate context set " + k.name + " --admin-addr HOST:PORT"
		}
		return c.usageError("context use", "%s", msg)
	}
	f.Current = k.name
	if err := c.writeContextFile(path, f); err != nil {
		return c.fail("context use", err)
	}
	fmt.Fprintf(c.stdout, "using context %q\n", k.name)
	return exitOK
}

// contextListCmd is `scopegate context list`.
type contextListCmd struct{ json bool }

func (k *contextListCmd) define(fs *flag.FlagSet) {
	fs.BoolVar(&k.json, "json", false, "print the contexts as JSON")
}

// contextListJSON is context list -o json: the file and its contexts, in
// name order, with the context file's field names.
type contextListJSON struct {
	File     string            `json:"file"`
	Current  string            `json:"current,omitempty"`
	Contexts []contextItemJSON `json:"contexts"`
}

type contextItemJSON struct {
	Name           string       `json:"name"`
	Current        bool         `json:"current"`
	AdminAddr      string       `json:"admin_addr,omitempty"`
	AdminTokenFile string       `json:"admin_token_file,omitempty"`
	Addr           string       `json:"addr,omitempty"`
	TLS            *contextTLSJ `json:"tls,omitempty"`
}

type contextTLSJ struct {
	Enabled  bool   `json:"enabled"`
	CAFile   string `json:"ca_file,omitempty"`
	CertFile string `json:"cert_file,omitempty"`
	KeyFile  string `json:"key_file,omitempty"`
}

func (k *contextListCmd) run(_ context.Context, c *cli) int {
	f, path, err := c.readContextFile()
	if err != nil {
		return c.usageError("context list", "%v", err)
	}
	if k.json {
		out := contextListJSON{File: path, Current: f.Current, Contexts: []contextItemJSON{}}
		for _, n := range contextNames(f) {
			x := f.Contexts[n]
			it := contextItemJSON{Name: n, Current: n == f.Current, AdminAddr: x.AdminAddr, AdminTokenFile: x.AdminTokenFile, Addr: x.Addr}
			if t := x.TLS; t != nil {
				it.TLS = &contextTLSJ{Enabled: t.Enabled || t.CAFile != "" || t.CertFile != "", CAFile: t.CAFile, CertFile: t.CertFile, KeyFile: t.KeyFile}
			}
			out.Contexts = append(out.Contexts, it)
		}
		b, err := json.MarshalIndent(out, "", "  ")
		if err != nil {
			return c.fail("context list", err)
		}
		fmt.Fprintf(c.stdout, "%s\n", b)
		return exitOK
	}
	if len(f.Contexts) == 0 {
		fmt.Fprintf(c.stdout, "no contexts in %s; create one with scopegate context set NAME --admin-addr HOST:PORT\n", path)
		return exitOK
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "CURRENT\tNAME\tADMIN ADDR\tADMIN TOKEN FILE\tADDR\tTLS")
	for _, n := range contextNames(f) {
		x := f.Contexts[n]
		cur := ""
		if n == f.Current {
			cur = "*"
		}
		tlsDesc := "no"
		if t := x.TLS; t != nil && (t.Enabled || t.CAFile != "" || t.CertFile != "") {
			tlsDesc = "yes"
			if t.CAFile != "" {
				tlsDesc += ", ca " + t.CAFile
			}
			if t.CertFile != "" {
				tlsDesc += ", cert " + t.CertFile
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", cur, n, govDash(x.AdminAddr), govDash(x.AdminTokenFile), govDash(x.Addr), tlsDesc)
	}
	_ = tw.Flush()
	return exitOK
}

// contextSetCmd is `scopegate context set NAME --admin-addr ...`: create
// the context or change the settings given.
type contextSetCmd struct {
	name                       string
	adminAddr, tokenFile, addr string
	tls                        string
	caFile, certFile, keyFile  string
	use                        bool
}

func (k *contextSetCmd) define(fs *flag.FlagSet) {
	fs.StringVar(&k.adminAddr, "admin-addr", "", "gRPC address of the Admin API (revoke, revocations, unrevoke, report)")
	fs.StringVar(&k.tokenFile, "admin-token-file", "", "file holding the Admin API token (the token itself is never stored)")
	fs.StringVar(&k.addr, "addr", "", "gRPC address of the decision server (client)")
	fs.StringVar(&k.tls, "tls", "", "connect to the Admin API with TLS: true or false")
	fs.StringVar(&k.caFile, "ca-file", "", "PEM file of the CA of the Admin API's certificate")
	fs.StringVar(&k.certFile, "cert-file", "", "PEM client certificate for the Admin API")
	fs.StringVar(&k.keyFile, "key-file", "", "PEM private key of --cert-file")
	fs.BoolVar(&k.use, "use", false, "also make it the current context")
}

func (k *contextSetCmd) setArgs(args []string) error {
	if len(args) != 1 {
		return errors.New("name one context: scopegate context set NAME [flags]")
	}
	k.name = args[0]
	return nil
}

func (k *contextSetCmd) run(_ context.Context, c *cli) int {
	if strings.TrimSpace(k.name) == "" || strings.ContainsAny(k.name, "\n\t") {
		return c.usageError("context set", "the context name %q is empty or has control characters", k.name)
	}
	f, path, err := c.readContextFile()
	if err != nil {
		return c.usageError("context set", "%v", err)
	}
	if f.Contexts == nil {
		f.Contexts = map[string]*cliContext{}
	}
	x := f.Contexts[k.name]
	if x == nil {
		x = &cliContext{}
		f.Contexts[k.name] = x
	}
	set := func(dst *string, v string) {
		if v != "" {
			*dst = v
		}
	}
	set(&x.AdminAddr, k.adminAddr)
	set(&x.Addr, k.addr)
	if k.tokenFile != "" {
		abs, err := filepath.Abs(k.tokenFile)
		if err != nil {
			return c.usageError("context set", "--admin-token-file: %v", err)
		}
		x.AdminTokenFile = abs
	}
	if k.tls != "" || k.caFile != "" || k.certFile != "" || k.keyFile != "" {
		if x.TLS == nil {
			x.TLS = &contextTLS{}
		}
		switch k.tls {
		case "":
		case "true":
			x.TLS.Enabled = true
		case "false":
			x.TLS.Enabled = false
		default:
			return c.usageError("context set", "--tls %q: want true or false", k.tls)
		}
		for _, p := range []struct {
			dst *string
			v   string
		}{{&x.TLS.CAFile, k.caFile}, {&x.TLS.CertFile, k.certFile}, {&x.TLS.KeyFile, k.keyFile}} {
			if p.v != "" {
				abs, err := filepath.Abs(p.v)
				if err != nil {
					return c.usageError("context set", "%v", err)
				}
				*p.dst = abs
			}
		}
	}
	if k.use || f.Current == "" {
		f.Current = k.name
	}
	if err := c.writeContextFile(path, f); err != nil {
		return c.fail("context set", err)
	}
	fmt.Fprintf(c.stdout, "context %q saved in %s", k.name, path)
	if f.Current == k.name {
		fmt.Fprint(c.stdout, " (current)")
	}
	fmt.Fprintln(c.stdout)
	return exitOK
}
