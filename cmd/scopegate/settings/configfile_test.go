package settings

import (
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestEnvNameAndConfigKey(t *testing.T) {
	for flagName, want := range map[string][2]string{
		"grpc-addr":              {"SCOPEGATE_GRPC_ADDR", "grpc_addr"},
		"policy":                 {"SCOPEGATE_POLICY", "policy"},
		"max-concurrent-streams": {"SCOPEGATE_MAX_CONCURRENT_STREAMS", "max_concurrent_streams"},
	} {
		if got := EnvName(flagName); got != want[0] {
			t.Errorf("EnvName(%q) = %q, want %q", flagName, got, want[0])
		}
		if got := ConfigKey(flagName); got != want[1] {
			t.Errorf("ConfigKey(%q) = %q, want %q", flagName, got, want[1])
		}
	}
}

func TestParseConfigFile(t *testing.T) {
	for name, tc := range map[string]struct {
		yaml    string
		want    map[string]string
		wantErr string
	}{
		"settings":       {yaml: "policy: /etc/scopegate/policy.yaml\ngrpc_addr: 0.0.0.0:9191\nshutdown_timeout: 20s\nwatch_policy: false\ntoken_cache_size: 5000\n", want: map[string]string{"policy": "/etc/scopegate/policy.yaml", "grpc_addr": "0.0.0.0:9191", "shutdown_timeout": "20s", "watch_policy": "false", "token_cache_size": "5000"}},
		"empty file":     {yaml: "", want: map[string]string{}},
		"only comments":  {yaml: "# nothing set\n", want: map[string]string{}},
		"empty string":   {yaml: "metrics_addr: \"\"\n", want: map[string]string{"metrics_addr": ""}},
		"anchor":         {yaml: "a: &x 1s\nb: *x\n", want: map[string]string{"a": "1s", "b": "1s"}},
		"null value":     {yaml: "metrics_addr:\n", wantErr: `:1: metrics_addr has no value: give one (write metrics_addr: "" for an empty value)`},
		"list value":     {yaml: "policy: [a, b]\n", wantErr: ":1: policy must be a single value"},
		"mapping value":  {yaml: "policy:\n  file: a\n", wantErr: ":2: policy must be a single value"},
		"duplicate key":  {yaml: "policy: a\npolicy: b\n", wantErr: "policy is set twice (first on line 1)"},
		"not a mapping":  {yaml: "- policy\n", wantErr: "must be a mapping of settings"},
		"not yaml":       {yaml: "policy: [\n", wantErr: "not valid YAML"},
		"two documents":  {yaml: "policy: a\n---\npolicy: b\n", wantErr: "more than one YAML document"},
		"scalar":         {yaml: "hello\n", wantErr: "must be a mapping of settings"},
		"every problem":  {yaml: "a: [1]\nb: {c: 1}\n", wantErr: "b must be a single value"},
		"key not scalar": {yaml: "? [a]\n: b\n", wantErr: "a key must be a plain name"},
	} {
		t.Run(name, func(t *testing.T) {
			cf, err := ParseConfigFile("scopegate.yaml", []byte(tc.yaml))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
				}
				if !strings.Contains(err.Error(), "scopegate.yaml") {
					t.Errorf("error %q does not name the file", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(cf.Keys()) != len(tc.want) {
				t.Errorf("keys %v, want %v", cf.Keys(), tc.want)
			}
			for k, v := range tc.want {
				if got, ok := cf.Value(k); !ok || got != v {
					t.Errorf("%s = %q (%v), want %q", k, got, ok, v)
				}
			}
		})
	}
}

// layeredFlags are a stand-in for the serve flags.
type layeredFlags struct {
	policy, grpcAddr, metricsAddr, config string
	timeout                               time.Duration
	watch                                 bool
	cacheSize                             int64
}

// The defaults of the test's flags, as a command declares them.
const (
	defaultGRPCAddr              = "127.0.0.1:9191"
	defaultMetricsAddr           = "127.0.0.1:9090"
	defaultShutdownTimeout       = 10 * time.Second
	defaultTokenCacheSize  int64 = 0
)

func newLayeredFlags() (*flag.FlagSet, *layeredFlags) {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	v := &layeredFlags{}
	fs.StringVar(&v.config, ConfigFlag, "", "")
	fs.StringVar(&v.policy, "policy", "", "")
	fs.StringVar(&v.grpcAddr, "grpc-addr", defaultGRPCAddr, "")
	fs.StringVar(&v.metricsAddr, "metrics-addr", defaultMetricsAddr, "")
	fs.DurationVar(&v.timeout, "shutdown-timeout", defaultShutdownTimeout, "")
	fs.BoolVar(&v.watch, "watch-policy", true, "")
	fs.Int64Var(&v.cacheSize, "token-cache-size", defaultTokenCacheSize, "")
	return fs, v
}

// TestApplyLayersPrecedence: flags > environment > config file > defaults,
// setting by setting.
func TestApplyLayersPrecedence(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	file := write("scopegate.yaml", "policy: /from/file.yaml\ngrpc_addr: 10.0.0.1:1\nshutdown_timeout: 30s\nwatch_policy: false\n")
	other := write("other.yaml", "policy: /from/other.yaml\n")

	for name, tc := range map[string]struct {
		args []string
		env  map[string]string
		want layeredFlags // config is not compared
	}{
		"defaults": {
			want: layeredFlags{grpcAddr: defaultGRPCAddr, metricsAddr: defaultMetricsAddr, timeout: defaultShutdownTimeout, watch: true, cacheSize: defaultTokenCacheSize},
		},
		"file over defaults": {
			args: []string{"--config", file},
			want: layeredFlags{policy: "/from/file.yaml", grpcAddr: "10.0.0.1:1", metricsAddr: defaultMetricsAddr, timeout: 30 * time.Second, watch: false, cacheSize: defaultTokenCacheSize},
		},
		"environment over file": {
			args: []string{"--config", file},
			env:  map[string]string{"SCOPEGATE_GRPC_ADDR": "10.0.0.2:2", "SCOPEGATE_WATCH_POLICY": "true", "SCOPEGATE_TOKEN_CACHE_SIZE": "7"},
			want: layeredFlags{policy: "/from/file.yaml", grpcAddr: "10.0.0.2:2", metricsAddr: defaultMetricsAddr, timeout: 30 * time.Second, watch: true, cacheSize: 7},
		},
		"flags over environment": {
			args: []string{"--config", file, "--grpc-addr", "10.0.0.3:3", "--shutdown-timeout", "1s"},
			env:  map[string]string{"SCOPEGATE_GRPC_ADDR": "10.0.0.2:2", "SCOPEGATE_SHUTDOWN_TIMEOUT": "2s"},
			want: layeredFlags{policy: "/from/file.yaml", grpcAddr: "10.0.0.3:3", metricsAddr: defaultMetricsAddr, timeout: time.Second, watch: false, cacheSize: defaultTokenCacheSize},
		},
		"empty environment value disables": {
			env:  map[string]string{"SCOPEGATE_METRICS_ADDR": ""},
			want: layeredFlags{grpcAddr: defaultGRPCAddr, metricsAddr: "", timeout: defaultShutdownTimeout, watch: true, cacheSize: defaultTokenCacheSize},
		},
		"config file from the environment": {
			env:  map[string]string{"SCOPEGATE_CONFIG": other},
			want: layeredFlags{policy: "/from/other.yaml", grpcAddr: defaultGRPCAddr, metricsAddr: defaultMetricsAddr, timeout: defaultShutdownTimeout, watch: true, cacheSize: defaultTokenCacheSize},
		},
		"config flag over its variable": {
			args: []string{"--config", other},
			env:  map[string]string{"SCOPEGATE_CONFIG": file},
			want: layeredFlags{policy: "/from/other.yaml", grpcAddr: defaultGRPCAddr, metricsAddr: defaultMetricsAddr, timeout: defaultShutdownTimeout, watch: true, cacheSize: defaultTokenCacheSize},
		},
		"unrelated variables ignored": {
			env:  map[string]string{"SCOPEGATE_TEST_POSTGRES": "postgres://x", "GRPC_ADDR": "1.2.3.4:5"},
			want: layeredFlags{grpcAddr: defaultGRPCAddr, metricsAddr: defaultMetricsAddr, timeout: defaultShutdownTimeout, watch: true, cacheSize: defaultTokenCacheSize},
		},
	} {
		t.Run(name, func(t *testing.T) {
			fs, got := newLayeredFlags()
			if err := fs.Parse(tc.args); err != nil {
				t.Fatal(err)
			}
			env := func(k string) (string, bool) { v, ok := tc.env[k]; return v, ok }
			if err := ApplyLayers(fs, env); err != nil {
				t.Fatal(err)
			}
			got.config = ""
			if *got != tc.want {
				t.Errorf("got %+v\nwant %+v", *got, tc.want)
			}
		})
	}
}

func TestApplyLayersErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(content string) string {
		p := filepath.Join(dir, "c.yaml")
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for name, tc := range map[string]struct {
		file    string // "" passes no --config
		env     map[string]string
		wantErr []string
	}{
		"unknown key":           {file: "polcy: a.yaml\n", wantErr: []string{`c.yaml:1: unknown key "polcy": did you mean policy?`}},
		"unknown far key":       {file: "policy: a.yaml\ncolour: blue\n", wantErr: []string{`c.yaml:2: unknown key "colour"`, "scopegate serve --help"}},
		"dashes":                {file: "grpc-addr: a:1\n", wantErr: []string{`unknown key "grpc-addr": write grpc_addr`}},
		"config in config":      {file: "config: other.yaml\n", wantErr: []string{"cannot name another"}},
		"bad value in file":     {file: "shutdown_timeout: soon\n", wantErr: []string{"c.yaml:1: shutdown_timeout", `"soon"`}},
		"bad value in env":      {env: map[string]string{"SCOPEGATE_WATCH_POLICY": "maybe"}, wantErr: []string{`environment SCOPEGATE_WATCH_POLICY="maybe"`}},
		"missing file":          {env: map[string]string{"SCOPEGATE_CONFIG": filepath.Join(dir, "nope.yaml")}, wantErr: []string{"config file", "nope.yaml"}},
		"every problem at once": {file: "polcy: a\ncolour: b\n", wantErr: []string{"polcy", "colour"}},
	} {
		t.Run(name, func(t *testing.T) {
			fs, _ := newLayeredFlags()
			var args []string
			if tc.file != "" {
				args = []string{"--config", write(tc.file)}
			}
			if err := fs.Parse(args); err != nil {
				t.Fatal(err)
			}
			env := func(k string) (string, bool) { v, ok := tc.env[k]; return v, ok }
			err := ApplyLayers(fs, env)
			if err == nil {
				t.Fatal("no error")
			}
			for _, want := range tc.wantErr {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q lacks %q", err, want)
				}
			}
		})
	}
}
