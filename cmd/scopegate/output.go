package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"slices"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"go.yaml.in/yaml/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// outputFormats are the values of -o/--output.
var outputFormats = []string{"table", "json", "yaml"}

// outputFlag is -o/--output json|yaml|table, given to every command that
// prints data as JSON (those with a boolean --json, which stays as a
// deprecated spelling of -o json). yaml is the JSON output re-encoded, so
// both always carry the same fields.
type outputFlag struct{ format string }

func (o *outputFlag) String() string { return o.format }
func (o *outputFlag) Type() string   { return "json|yaml|table" }
func (o *outputFlag) Set(s string) error {
	if s == "text" {
		s = "table"
	}
	if !slices.Contains(outputFormats, s) {
		return fmt.Errorf("want one of json, yaml, table")
	}
	o.format = s
	return nil
}

// addOutputFlag gives cc -o/--output when its flags have a boolean
// --json; it returns nil otherwise.
func addOutputFlag(cc *cobra.Command) *outputFlag {
	f := cc.Flags().Lookup("json")
	if f == nil || f.NoOptDefVal != "true" {
		return nil
	}
	o := &outputFlag{format: "table"}
	cc.Flags().VarP(o, "output", "o", "output format: table (for people), json or yaml (for programs)")
	cc.RegisterFlagCompletionFunc("output", cobra.FixedCompletions(outputFormats, cobra.ShellCompDirectiveNoFileComp))
	// Kept, silently, for the scripts that use it: a deprecation notice
	// would land in their output.
	f.Usage = "same as -o json (older spelling)"
	return o
}

// apply sets --json for -o json and yaml; for yaml it returns the writer
// the command writes its JSON to, and a flush that converts it.
func (o *outputFlag) apply(flags *pflag.FlagSet, stdout io.Writer) (io.Writer, func() error, error) {
	if o == nil || o.format == "table" || !flags.Changed("output") {
		return stdout, func() error { return nil }, nil
	}
	if err := flags.Set("json", "true"); err != nil {
		return nil, nil, err
	}
	if o.format == "json" {
		return stdout, func() error { return nil }, nil
	}
	var buf bytes.Buffer
	return &buf, func() error { return jsonToYAML(stdout, buf.Bytes()) }, nil
}

// jsonToYAML re-encodes a stream of JSON values (one, or JSON lines) as
// YAML documents, keeping key order and numbers as numbers.
func jsonToYAML(w io.Writer, b []byte) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	first := true
	for dec.More() {
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			// Not JSON (a message printed instead): pass it through.
			_, werr := w.Write(b)
			return werr
		}
		var node yaml.Node
		if err := yaml.Unmarshal(raw, &node); err != nil {
			return err
		}
		if !first {
			fmt.Fprintln(w, "---")
		}
		first = false
		cleanStyle(&node)
		enc := yaml.NewEncoder(w)
		enc.SetIndent(2)
		if err := enc.Encode(&node); err != nil {
			return err
		}
		enc.Close()
	}
	return nil
}

// cleanStyle drops the flow style and quoting yaml took from the JSON
// text, so the output reads as ordinary block YAML.
func cleanStyle(n *yaml.Node) {
	n.Style &^= yaml.FlowStyle
	if n.Kind == yaml.ScalarNode && n.Tag == "!!str" {
		n.Style &^= yaml.DoubleQuotedStyle
	}
	for _, c := range n.Content {
		cleanStyle(c)
	}
}

// protoJSON is m as indented JSON with proto field names, like protojson,
// except that 64-bit integers are JSON numbers: protojson writes them as
// strings ("count": "3"), which scripts then have to convert.
func protoJSON(m proto.Message) ([]byte, error) {
	b, err := protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: false}.Marshal(m)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	v = int64sAsNumbers(v, m.ProtoReflect().Descriptor())
	return json.MarshalIndent(v, "", "  ")
}

func int64sAsNumbers(v any, md protoreflect.MessageDescriptor) any {
	obj, ok := v.(map[string]any)
	if !ok || md == nil {
		return v
	}
	for k, val := range obj {
		fd := md.Fields().ByName(protoreflect.Name(k))
		if fd == nil {
			fd = md.Fields().ByJSONName(k)
		}
		if fd == nil {
			continue
		}
		conv := func(x any) any {
			switch fd.Kind() {
			case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind,
				protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
				if s, ok := x.(string); ok {
					return json.Number(s)
				}
			case protoreflect.MessageKind, protoreflect.GroupKind:
				return int64sAsNumbers(x, fd.Message())
			}
			return x
		}
		switch {
		case fd.IsList():
			if list, ok := val.([]any); ok {
				for i := range list {
					list[i] = conv(list[i])
				}
			}
		case fd.IsMap():
			if m, ok := val.(map[string]any); ok {
				vd := fd.MapValue()
				for mk, mv := range m {
					if vd.Kind() == protoreflect.MessageKind {
						m[mk] = int64sAsNumbers(mv, vd.Message())
					} else if s, ok := mv.(string); ok && (vd.Kind() == protoreflect.Int64Kind || vd.Kind() == protoreflect.Uint64Kind) {
						m[mk] = json.Number(s)
					}
				}
			}
		default:
			obj[k] = conv(val)
		}
	}
	return obj
}
