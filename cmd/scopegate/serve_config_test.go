package main

import (
	"bytes"
	"context"
	"flag"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/scopegate/scopegate/cmd/scopegate/settings"
	"github.com/scopegate/scopegate/decision/decisiontest"
	"github.com/scopegate/scopegate/server"
	"github.com/scopegate/scopegate/server/servertest/freeport"
)

// resolveServe parses args for serve, layers env and the config file over
// them as the command does, and returns the server configuration the
// command would run with.
func resolveServe(t *testing.T, env map[string]string, args ...string) (server.Config, *serveCmd, error) {
	t.Helper()
	ci, _ := lookup("serve")
	fs, cmd := newFlagSet(ci, &bytes.Buffer{})
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	if err := settings.ApplyLayers(fs, func(k string) (string, bool) { v, ok := env[k]; return v, ok }); err != nil {
		return server.Config{}, nil, err
	}
	s := cmd.(*serveCmd)
	cfg := server.Config{PolicyPath: s.policy, GRPCAddr: s.grpcAddr}
	if err := s.opsFlags.apply(&cfg); err != nil {
		return server.Config{}, nil, err
	}
	return cfg, s, nil
}

// TestServeSettingsPrecedence: flags > environment > config file >
// defaults, through the serve command's own flags.
func TestServeSettingsPrecedence(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "scopegate.yaml")
	if err := os.WriteFile(file, []byte(`policy: /etc/scopegate/policy.yaml
grpc_addr: 0.0.0.0:9191
metrics_addr: 0.0.0.0:9194
log_level: debug
log_format: text
token_cache_size: 5000
max_token_bytes: 8192
max_recv_msg_size: 65536
max_concurrent_streams: 64
shutdown_timeout: 25s
watch_policy: false
`), 0o600); err != nil {
		t.Fatal(err)
	}
	type want struct {
		policy, grpc, metrics, level, format string
		cache                                int64
		streams                              uint32
		timeout                              time.Duration
		watch                                bool
	}
	defaults := want{"", server.DefaultGRPCAddr, server.DefaultMetricsAddr, "info", "json", server.DefaultTokenCacheSize, server.DefaultMaxConcurrentStreams, server.DefaultShutdownTimeout, true}
	fromFile := want{"/etc/scopegate/policy.yaml", "0.0.0.0:9191", "0.0.0.0:9194", "debug", "text", 5000, 64, 25 * time.Second, false}
	for name, tc := range map[string]struct {
		args []string
		env  map[string]string
		want want
	}{
		"defaults":    {want: defaults},
		"config file": {args: []string{"--config", file}, want: fromFile},
		"config file named by the environment": {
			env: map[string]string{"SCOPEGATE_CONFIG": file}, want: fromFile,
		},
		"environment over the file": {
			args: []string{"--config", file},
			env:  map[string]string{"SCOPEGATE_GRPC_ADDR": "127.0.0.1:7000", "SCOPEGATE_LOG_FORMAT": "json", "SCOPEGATE_WATCH_POLICY": "true", "SCOPEGATE_METRICS_ADDR": ""},
			want: want{"/etc/scopegate/policy.yaml", "127.0.0.1:7000", "", "debug", "json", 5000, 64, 25 * time.Second, true},
		},
		"flags over the environment": {
			args: []string{"--config", file, "--grpc-addr", "127.0.0.1:8000", "--shutdown-timeout", "3s", "--policy", "p.yaml"},
			env:  map[string]string{"SCOPEGATE_GRPC_ADDR": "127.0.0.1:7000", "SCOPEGATE_SHUTDOWN_TIMEOUT": "4s"},
			want: want{"p.yaml", "127.0.0.1:8000", "0.0.0.0:9194", "debug", "text", 5000, 64, 3 * time.Second, false},
		},
	} {
		t.Run(name, func(t *testing.T) {
			cfg, s, err := resolveServe(t, tc.env, tc.args...)
			if err != nil {
				t.Fatal(err)
			}
			got := want{cfg.PolicyPath, cfg.GRPCAddr, cfg.MetricsAddr, s.logLevel, s.logFormat, cfg.TokenCacheSize, cfg.MaxConcurrentStreams, cfg.ShutdownTimeout, cfg.WatchPolicy}
			if got != tc.want {
				t.Errorf("got  %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

// TestServeSettingsRefused: values server.Config would silently read as
// "default" are refused with the fix.
func TestServeSettingsRefused(t *testing.T) {
	for name, tc := range map[string]struct {
		args []string
		want string
	}{
		"negative cache":   {[]string{"--token-cache-size", "-1"}, "--token-cache-size -1: give a positive number of tokens, or 0"},
		"zero cache bytes": {[]string{"--token-cache-bytes", "0"}, "--token-cache-bytes 0: give at least 1048576"},
		"tiny cache bytes": {[]string{"--token-cache-bytes", "65536"}, "--token-cache-bytes 65536: give at least 1048576"},
		"zero timeout":     {[]string{"--shutdown-timeout", "0s"}, "--shutdown-timeout 0s"},
		"huge streams":     {[]string{"--max-concurrent-streams", "5000000000"}, "--max-concurrent-streams"},
		"zero token bytes": {[]string{"--max-token-bytes", "0"}, "--max-token-bytes 0"},
		"zero msg size":    {[]string{"--max-recv-msg-size", "0"}, "--max-recv-msg-size 0"},
	} {
		t.Run(name, func(t *testing.T) {
			_, _, err := resolveServe(t, nil, tc.args...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
		})
	}
}

// TestServeHelpListsEverything: serve --help names, for every flag, the
// environment variable and config key that also set it, and states the
// precedence.
func TestServeHelpListsEverything(t *testing.T) {
	code, out, errs := runCLI(t, "", "serve", "--help")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errs)
	}
	ci, _ := lookup("serve")
	fs, _ := newFlagSet(ci, &bytes.Buffer{})
	n := 0
	fs.VisitAll(func(f *flag.Flag) {
		n++
		if !strings.Contains(out, "-"+f.Name+" ") && !strings.Contains(out, "-"+f.Name+"\n") {
			t.Errorf("help lacks flag -%s", f.Name)
		}
		if !strings.Contains(out, "env "+settings.EnvName(f.Name)) {
			t.Errorf("help lacks env %s", settings.EnvName(f.Name))
		}
		if f.Name != settings.ConfigFlag && !strings.Contains(out, "config "+settings.ConfigKey(f.Name)+")") {
			t.Errorf("help lacks config key %s", settings.ConfigKey(f.Name))
		}
	})
	if n < 10 {
		t.Errorf("serve has only %d flags", n)
	}
	for _, want := range []string{"Precedence: flags > environment > config file > defaults", "SIGHUP", "SIGTERM", "/debug/pprof"} {
		if !strings.Contains(out, want) {
			t.Errorf("help lacks %q", want)
		}
	}
}

// TestServeConfigErrors: a bad config file or environment value stops
// serve before it starts, with the problem named.
func TestServeConfigErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("policy: p.yaml\ngrpc_adr: 127.0.0.1:1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	typed := filepath.Join(dir, "typed.yaml")
	if err := os.WriteFile(typed, []byte("policy: p.yaml\ntoken_cache_bytes: lots\nshutdown_timeout: 10\nwatch_policy: maybe\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		args []string
		env  map[string]string
		want string
	}{
		"unknown key":          {[]string{"serve", "--config", bad}, nil, `unknown key "grpc_adr": did you mean grpc_addr?`},
		"bad env value":        {[]string{"serve", "--policy", "p.yaml"}, map[string]string{"SCOPEGATE_SHUTDOWN_TIMEOUT": "later"}, "SCOPEGATE_SHUTDOWN_TIMEOUT"},
		"bad log format":       {[]string{"serve", "--policy", "p.yaml", "--log-format", "xml"}, nil, `--log-format "xml" is not one of json, text`},
		"wrong type, int":      {[]string{"serve", "--config", typed}, nil, `typed.yaml:2: token_cache_bytes: "lots": want an integer, e.g. 67108864`},
		"wrong type, duration": {[]string{"serve", "--config", typed}, nil, `typed.yaml:3: shutdown_timeout: "10": want a duration (units s, m, h), e.g. 10s`},
		"wrong type, bool":     {[]string{"serve", "--config", typed}, nil, `typed.yaml:4: watch_policy: "maybe": want true or false`},
		"wrong type, env":      {[]string{"serve", "--policy", "p.yaml"}, map[string]string{"SCOPEGATE_MAX_TOKEN_BYTES": "big"}, `SCOPEGATE_MAX_TOKEN_BYTES="big": want an integer, e.g. 16384`},
		"missing file":         {[]string{"serve", "--config", filepath.Join(dir, "none.yaml")}, nil, "none.yaml"},
		"policy from env":      {[]string{"serve", "--log-format", "xml"}, map[string]string{"SCOPEGATE_POLICY": "p.yaml"}, "--log-format"},
	} {
		t.Run(name, func(t *testing.T) {
			var out, errb bytes.Buffer
			c := &cli{stdin: strings.NewReader(""), stdout: &out, stderr: &errb,
				lookupEnv: func(k string) (string, bool) { v, ok := tc.env[k]; return v, ok }}
			if code := c.run(context.Background(), tc.args); code != exitUsage {
				t.Fatalf("exit %d, want %d: %s", code, exitUsage, errb.String())
			}
			if !strings.Contains(errb.String(), tc.want) {
				t.Errorf("stderr lacks %q:\n%s", tc.want, errb.String())
			}
		})
	}
}

// TestKubernetesExampleSettings: the settings file in the Kubernetes
// example's ConfigMap, and the Deployment's arguments, are accepted by
// serve's own flags, so a renamed flag breaks the build, not a rollout.
func TestKubernetesExampleSettings(t *testing.T) {
	cmPath, err := decisiontest.ExamplePath("examples/kubernetes/configmap.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var cm struct {
		Data map[string]string `yaml:"data"`
	}
	b, err := os.ReadFile(cmPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &cm); err != nil {
		t.Fatal(err)
	}
	settings := filepath.Join(t.TempDir(), "scopegate.yaml")
	if err := os.WriteFile(settings, []byte(cm.Data["scopegate.yaml"]), 0o600); err != nil {
		t.Fatal(err)
	}

	depPath, err := decisiontest.ExamplePath("examples/kubernetes/deployment.yaml")
	if err != nil {
		t.Fatal(err)
	}
	b, err = os.ReadFile(depPath)
	if err != nil {
		t.Fatal(err)
	}
	var dep struct {
		Spec struct {
			Template struct {
				Spec struct {
					Containers []struct {
						Args []string `yaml:"args"`
					} `yaml:"containers"`
				} `yaml:"spec"`
			} `yaml:"template"`
		} `yaml:"spec"`
	}
	if err := yaml.NewDecoder(bytes.NewReader(b)).Decode(&dep); err != nil {
		t.Fatal(err)
	}
	args := dep.Spec.Template.Spec.Containers[0].Args
	if len(args) == 0 || args[0] != "serve" {
		t.Fatalf("deployment args %v do not run serve", args)
	}
	// The Deployment points --config at the mount; read the ConfigMap's
	// copy instead.
	var flags []string
	for _, a := range args[1:] {
		if strings.HasPrefix(a, "--config=") {
			a = "--config=" + settings
		}
		flags = append(flags, a)
	}
	cfg, s, err := resolveServe(t, nil, flags...)
	if err != nil {
		t.Fatalf("serve rejects the example's settings: %v", err)
	}
	if cfg.PolicyPath == "" || cfg.MetricsAddr == "" || s.logFormat != "json" {
		t.Errorf("settings not applied: %+v", cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Errorf("the example's settings do not validate: %v", err)
	}
}

// TestServeListenErrors: a port in use, on any of the four listeners, is
// reported with the flag, the variable and the fix, before anything is
// announced, and without a Go field name.
func TestServeListenErrors(t *testing.T) {
	pol := examplePolicy(t)
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	taken := busy.Addr().String()
	free := func() string { return freeport.Addr(t) }
	for _, flagName := range []string{"grpc-addr", "http-addr", "metrics-addr", "admin-addr"} {
		t.Run(flagName, func(t *testing.T) {
			addrs := map[string]string{"grpc-addr": free(), "http-addr": free(), "metrics-addr": free(), "admin-addr": free()}
			addrs[flagName] = taken
			args := []string{"serve", "--policy", pol, "--audit", "off", "--watch-policy=false"}
			for f, a := range addrs {
				args = append(args, "--"+f, a)
			}
			code, _, errs := runCLI(t, "", args...)
			if code != exitError {
				t.Fatalf("exit %d, want %d: %s", code, exitError, errs)
			}
			env := settings.EnvName(flagName)
			for _, want := range []string{"--" + flagName + " " + taken, env, "in use", "choose another address"} {
				if !strings.Contains(errs, want) {
					t.Errorf("stderr lacks %q:\n%s", want, errs)
				}
			}
			for _, bad := range []string{"GRPCAddr", "HTTPAddr", "MetricsAddr", "Admin.Addr", "SERVING", "serving"} {
				if strings.Contains(errs, bad) {
					t.Errorf("stderr has %q:\n%s", bad, errs)
				}
			}
		})
	}
}

// TestServeConfigFieldNames: the server's configuration errors reach a
// serve user with flag names, never Go field names.
func TestServeConfigFieldNames(t *testing.T) {
	pol := examplePolicy(t)
	for name, tc := range map[string]struct {
		args []string
		want string
	}{
		"cert without key":  {[]string{"--admin-addr", "127.0.0.1:0", "--admin-tls-cert", "c.pem"}, "--admin-tls-cert and --admin-tls-key go together"},
		"grpc not hostport": {[]string{"--grpc-addr", "9191"}, `--grpc-addr "9191" is not host:port`},
		"metrics bad port":  {[]string{"--metrics-addr", "127.0.0.1:99999"}, `--metrics-addr "127.0.0.1:99999"`},
		"admin bad port":    {[]string{"--admin-addr", "localhost"}, `--admin-addr "localhost"`},
	} {
		t.Run(name, func(t *testing.T) {
			code, _, errs := runCLI(t, "", append([]string{"serve", "--policy", pol, "--audit", "off"}, tc.args...)...)
			if code != exitUsage {
				t.Fatalf("exit %d, want %d: %s", code, exitUsage, errs)
			}
			if !strings.Contains(errs, tc.want) {
				t.Errorf("stderr lacks %q:\n%s", tc.want, errs)
			}
			if m := configFieldRE.FindAllString(errs, -1); len(m) > 0 {
				for _, w := range m {
					if _, ok := serveFlagOf[w]; ok {
						t.Errorf("stderr names the field %s:\n%s", w, errs)
					}
				}
			}
		})
	}
}

// TestServeFlagOfCoversConfig: every plain setting of server.Config has
// its flag in serveFlagOf, so a server error naming a new field is never
// shown to a user with the Go field name. Fields that no flag sets are
// listed here on purpose.
func TestServeFlagOfCoversConfig(t *testing.T) {
	notFlags := map[string]bool{
		"DisableHTTP": true, // --http-addr "" disables it
		"Realm":       true, // set from the policy
		"WatchPolicy": true, // --watch-policy is a bool with no error text
	}
	typ := reflect.TypeOf(server.Config{})
	for i := range typ.NumField() {
		f := typ.Field(i)
		switch f.Type.Kind() {
		case reflect.String, reflect.Int, reflect.Int64, reflect.Uint32, reflect.Bool:
		default:
			continue // loggers, clocks, stores, nested sections
		}
		if notFlags[f.Name] {
			continue
		}
		if _, ok := serveFlagOf[f.Name]; !ok {
			t.Errorf("server.Config.%s has no entry in serveFlagOf: add its flag name", f.Name)
		}
	}
}
