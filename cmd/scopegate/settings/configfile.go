package settings

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/scopegate/scopegate/decision"
	"github.com/scopegate/scopegate/decision/suggest"
)

// EnvPrefix starts the name of every environment variable scopegate
// reads its settings from: --grpc-addr is SCOPEGATE_GRPC_ADDR.
const EnvPrefix = "SCOPEGATE_"

// ConfigFlag is the flag (and, as SCOPEGATE_CONFIG, the environment
// variable) naming the configuration file.
const ConfigFlag = "config"

// EnvName returns the environment variable that sets the flag named name:
// the prefix, then the name in upper case with dashes as underscores.
func EnvName(name string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// ConfigKey returns the configuration file key that sets the flag named
// name: the name with dashes as underscores (grpc-addr → grpc_addr).
func ConfigKey(name string) string { return strings.ReplaceAll(name, "-", "_") }

// ConfigFile is a parsed configuration file: a YAML mapping from setting
// keys to single values. Keys mirror the command's flags (ConfigKey), so
// every flag can be set in the file and nothing else can.
type ConfigFile struct {
	// Path is the file read, for messages.
	Path   string
	values map[string]configValue
	order  []string // keys in file order, for deterministic messages
}

type configValue struct {
	value string
	line  int
}

// ReadConfigFile reads and parses the configuration file at path. It
// checks the file's shape (a mapping of keys to single values); which keys
// are known is checked by ApplyLayers, against the flags.
func ReadConfigFile(path string) (*ConfigFile, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config file %s: %s", path, decision.ReadCause(err))
	}
	return ParseConfigFile(path, b)
}

// ParseConfigFile parses the configuration file content b; path names it
// in messages.
func ParseConfigFile(path string, b []byte) (*ConfigFile, error) {
	cf := &ConfigFile{Path: path, values: map[string]configValue{}}
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return cf, nil // an empty file sets nothing
		}
		return nil, fmt.Errorf("config file %s: not valid YAML: %s", path, strings.TrimPrefix(err.Error(), "yaml: "))
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		return nil, fmt.Errorf("config file %s:%d: more than one YAML document: keep one mapping of settings", path, extra.Line)
	}
	if len(doc.Content) == 0 {
		return cf, nil
	}
	root := doc.Content[0]
	if root.Kind == yaml.ScalarNode && root.Tag == "!!null" {
		return cf, nil
	}
	if root.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("config file %s:%d: the file must be a mapping of settings (key: value), e.g. \"grpc_addr: 127.0.0.1:9191\"", path, root.Line)
	}
	var errs []error
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			errs = append(errs, fmt.Errorf("config file %s:%d: a key must be a plain name such as grpc_addr", path, k.Line))
			continue
		}
		key := k.Value
		if prev, dup := cf.values[key]; dup {
			errs = append(errs, fmt.Errorf("config file %s:%d: %s is set twice (first on line %d): keep one", path, k.Line, key, prev.line))
			continue
		}
		if v.Kind == yaml.AliasNode && v.Alias != nil {
			v = v.Alias
		}
		if v.Kind != yaml.ScalarNode {
			errs = append(errs, fmt.Errorf("config file %s:%d: %s must be a single value, not a list or mapping", path, v.Line, key))
			continue
		}
		if v.Tag == "!!null" {
			errs = append(errs, fmt.Errorf("config file %s:%d: %s has no value: give one (write %s: \"\" for an empty value) or remove the key", path, v.Line, key, key))
			continue
		}
		cf.values[key] = configValue{value: v.Value, line: k.Line}
		cf.order = append(cf.order, key)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return cf, nil
}

// Keys returns the keys the file sets, in file order.
func (cf *ConfigFile) Keys() []string { return append([]string(nil), cf.order...) }

// Value returns the value the file gives key.
func (cf *ConfigFile) Value(key string) (string, bool) {
	v, ok := cf.values[key]
	return v.value, ok
}

// ApplyLayers gives every flag of fs that the command line did not set its
// value from the next layer that has one, in this precedence:
//
//	flags > environment (SCOPEGATE_<NAME>) > configuration file > defaults
//
// The configuration file is the one named by --config, else by
// SCOPEGATE_CONFIG; none is read when neither is set. lookupEnv is
// os.LookupEnv outside tests. A variable that is set, even to "", counts
// as set. An unknown key in the file is an error naming the key (and the
// likely intended one); environment variables that name no flag are
// ignored, since the environment is shared with other programs.
func ApplyLayers(fs *flag.FlagSet, lookupEnv func(string) (string, bool)) error {
	onCommandLine := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { onCommandLine[f.Name] = true })
	return ApplyLayersExcept(fs, onCommandLine, lookupEnv)
}

// ApplyLayersExcept is ApplyLayers for flags parsed by another parser
// (the command line's): onCommandLine names the flags it set.
func ApplyLayersExcept(fs *flag.FlagSet, onCommandLine map[string]bool, lookupEnv func(string) (string, bool)) error {

	var path string
	if f := fs.Lookup(ConfigFlag); f != nil {
		path = f.Value.String()
		if !onCommandLine[ConfigFlag] {
			if v, ok := lookupEnv(EnvName(ConfigFlag)); ok {
				path = v
				if err := fs.Set(ConfigFlag, v); err != nil {
					return fmt.Errorf("%s: %v", EnvName(ConfigFlag), err)
				}
			}
		}
	}
	var cf *ConfigFile
	if path != "" {
		var err error
		if cf, err = ReadConfigFile(path); err != nil {
			return err
		}
		if err := cf.checkKeys(fs); err != nil {
			return err
		}
	}

	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		if onCommandLine[f.Name] || f.Name == ConfigFlag {
			return
		}
		if v, ok := lookupEnv(EnvName(f.Name)); ok {
			if err := fs.Set(f.Name, v); err != nil {
				errs = append(errs, fmt.Errorf("environment %s=%q: %v", EnvName(f.Name), v, valueError(f, err)))
			}
			return
		}
		if cf == nil {
			return
		}
		if v, ok := cf.values[ConfigKey(f.Name)]; ok {
			if err := fs.Set(f.Name, v.value); err != nil {
				errs = append(errs, fmt.Errorf("config file %s:%d: %s: %q: %v", cf.Path, v.line, ConfigKey(f.Name), v.value, valueError(f, err)))
			}
		}
	})
	return errors.Join(errs...)
}

// valueError says what value f wants, with an example, when the flag
// package's own error ("parse error", "invalid syntax") does not.
func valueError(f *flag.Flag, err error) error {
	example := f.DefValue
	var want string
	switch fmt.Sprintf("%T", f.Value) {
	case "*flag.intValue", "*flag.int64Value":
		want = "an integer"
	case "*flag.uintValue", "*flag.uint64Value":
		want = "a whole number (0 or more)"
	case "*flag.float64Value":
		want = "a number"
	case "*flag.durationValue":
		want = "a duration (units s, m, h)"
	case "*flag.boolValue":
		want, example = "true or false", ""
	default:
		return err
	}
	if strings.Contains(err.Error(), "out of range") {
		want += " in range"
	}
	if example == "0" || example == "0s" {
		// A zero default shows no value: give one of the type.
		example = map[string]string{"an integer": "100000", "a whole number (0 or more)": "100000", "a number": "0.5", "a duration (units s, m, h)": "30s"}[want]
	}
	if example != "" {
		return fmt.Errorf("want %s, e.g. %s", want, example)
	}
	return fmt.Errorf("want %s", want)
}

// checkKeys reports every key of the file that names no flag of fs.
func (cf *ConfigFile) checkKeys(fs *flag.FlagSet) error {
	known := map[string]bool{}
	fs.VisitAll(func(f *flag.Flag) {
		if f.Name != ConfigFlag {
			known[ConfigKey(f.Name)] = true
		}
	})
	var errs []error
	for _, key := range cf.order {
		if known[key] {
			continue
		}
		line := cf.values[key].line
		switch {
		case key == ConfigFlag:
			errs = append(errs, fmt.Errorf("config file %s:%d: %s: a config file cannot name another one; remove the key", cf.Path, line, key))
		case known[ConfigKey(key)]:
			errs = append(errs, fmt.Errorf("config file %s:%d: unknown key %q: write %s (underscores, not dashes)", cf.Path, line, key, ConfigKey(key)))
		default:
			msg := fmt.Sprintf("config file %s:%d: unknown key %q", cf.Path, line, key)
			if s := suggest.Closest(key, slices.Collect(maps.Keys(known))); s != "" {
				msg += fmt.Sprintf(": did you mean %s?", s)
			} else {
				msg += ": the keys are the serve flags with underscores (see scopegate serve --help)"
			}
			errs = append(errs, errors.New(msg))
		}
	}
	return errors.Join(errs...)
}
