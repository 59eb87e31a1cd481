package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestContext(t *testing.T) {
	_, addr := startFakeAdmin(t)
	dir := t.TempDir()
	tokFile := filepath.Join(dir, "admin-token")
	if err := os.WriteFile(tokFile, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	xdg := filepath.Join(dir, "xdg")
	env := map[string]string{"HOME": filepath.Join(dir, "home"), "XDG_CONFIG_HOME": xdg}
	path := filepath.Join(xdg, "scopegate", "context.yaml")

	if code, out, _ := runReport(t, env, "", "context", "list"); code != exitOK || !strings.Contains(out, "no contexts in "+path) {
		t.Errorf("empty list: exit %d: %s", code, out)
	}
	code, out, errs := runReport(t, env, "", "context", "set", "local", "--admin-addr", addr, "--admin-token-file", tokFile)
	if code != exitOK || !strings.Contains(out, "(current)") {
		t.Fatalf("set: exit %d: %s%s", code, out, errs)
	}
	if code, _, errs = runReport(t, env, "", "context", "set", "prod", "--admin-addr", "127.0.0.1:1", "--tls", "true"); code != exitOK {
		t.Fatalf("set prod: %s", errs)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("context file %s: %v %v", path, err, fi)
	}
	b, _ := os.ReadFile(path)
	if strings.Contains(string(b), "s3cret") {
		t.Error("the context file holds the token")
	}

	// The current context reaches the Admin API with the token from its file.
	code, out, errs = runReport(t, env, "", "report", "usage")
	if code != exitOK || !strings.Contains(out, "a-tidy") {
		t.Fatalf("report with the context: exit %d:\n%s%s", code, out, errs)
	}
	code, out, _ = runReport(t, env, "", "context", "list")
	if code != exitOK || !strings.Contains(spaces.ReplaceAllString(out, " "), "* local "+addr+" "+tokFile) || strings.Contains(out, "s3cret") {
		t.Errorf("list:\n%s", out)
	}

	// Precedence: the environment beats the context, a flag beats both.
	env[adminAddrEnv] = "127.0.0.1:1"
	if code, _, errs = runReport(t, env, "", "report", "usage", "--timeout", "2s"); code != exitError || !strings.Contains(errs, "127.0.0.1:1") {
		t.Errorf("env over context: exit %d: %s", code, errs)
	}
	if code, _, errs = runReport(t, env, "", "report", "usage", "--admin", addr); code != exitOK {
		t.Errorf("flag over env: exit %d: %s", code, errs)
	}
	delete(env, adminAddrEnv)
	if code, _, _ = runReport(t, env, "", "report", "usage", "--token", "wrong"); code != exitError {
		t.Errorf("--token over the context's token file: exit %d", code)
	}

	// use: switch, with a suggestion for a typo.
	code, _, errs = runReport(t, env, "", "context", "use", "prd")
	if code != exitUsage || !strings.Contains(errs, `did you mean "prod"?`) {
		t.Errorf("use typo: exit %d: %s", code, errs)
	}
	if code, _, _ = runReport(t, env, "", "context", "use", "prod"); code != exitOK {
		t.Fatal("use prod failed")
	}
	// prod has TLS on: the plain-text fake server cannot be reached that way.
	if code, _, _ = runReport(t, env, "", "report", "usage", "--timeout", "2s", "--token", "s3cret"); code != exitError {
		t.Errorf("prod context: exit %d, want a failed call", code)
	}

	// SCOPEGATE_CONTEXT names another file; a file with a token in it is
	// refused with the fix, without echoing the token.
	other := filepath.Join(dir, "other.yaml")
	if err := os.WriteFile(other, []byte("current: x\ncontexts:\n  x: {admin_addr: a:1, admin_token: hunter2}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env[contextEnv] = other
	code, _, errs = runReport(t, env, "", "revocations", "list")
	if code != exitUsage || !strings.Contains(errs, "admin_token_file") || strings.Contains(errs, "hunter2") {
		t.Errorf("token in the context file: exit %d: %s", code, errs)
	}
	if err := os.WriteFile(other, []byte("current: gone\ncontexts:\n  x: {addr: a:1}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, errs = runReport(t, env, "", "client")
	if code != exitUsage || !strings.Contains(errs, `current context "gone" is not defined`) {
		t.Errorf("undefined current context: exit %d: %s", code, errs)
	}
}
