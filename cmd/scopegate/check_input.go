package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/scopegate/scopegate/decision"
	"github.com/scopegate/scopegate/decision/suggest"
	scopegatev1 "github.com/scopegate/scopegate/proto/scopegate/v1"
	"github.com/scopegate/scopegate/server"
	"github.com/scopegate/scopegate/store"
	"github.com/scopegate/scopegate/store/open"
)

// maxInputBytes bounds a --input file: requests are small, and the whole
// file is read before the first decision so a bad line decides nothing.
const maxInputBytes = 64 << 20

// inputRequest is one request of a --input file and where it starts.
type inputRequest struct {
	req  *scopegatev1.CheckRequest
	line int
}

// runInput decides every request of --input and prints one verdict per
// request, in order. It exits 0 when every request is allowed, 3 when any
// is denied, 2 when the file cannot be read (then nothing is decided).
func (k *checkCmd) runInput(ctx context.Context, c *cli) int {
	data, err := k.readInput(c)
	if err != nil {
		return c.usageError("check", "%v", err)
	}
	reqs, err := parseCheckRequests(data)
	if err != nil {
		return c.usageError("check", "--input %s: %v", k.input, err)
	}
	eng, done, code := k.engine(ctx, c)
	if eng == nil {
		return code
	}
	defer done()

	exit := exitOK
	for _, in := range reqs {
		var req decision.Request
		invalid := server.DecisionRequest(in.req, &req)
		if k.explain && req.Trace == nil {
			req.Trace = &decision.Trace{}
		}
		var d decision.Decision
		if invalid != "" {
			d = decision.Reject(eng.Policy(), decision.RequestInvalid, invalid)
			if req.Trace != nil {
				req.Trace.Steps = append(req.Trace.Steps, decision.TraceStep{Check: "request", Result: "fail", Detail: invalid})
			}
		} else {
			d = eng.Decide(ctx, &req)
		}
		if k.json {
			if err := writeDecisionJSON(c.stdout, &d, req.Trace, in.req.GetRequestId(), false); err != nil {
				return c.fail("check", err)
			}
		} else {
			writeDecisionText(c.stdout, &d, req.Trace)
		}
		if !d.Allow {
			exit = exitDeny
		}
	}
	return exit
}

func (k *checkCmd) readInput(c *cli) ([]byte, error) {
	var r io.Reader = c.stdin
	if k.input != "-" {
		f, err := os.Open(k.input)
		if err != nil {
			return nil, fileError("--input", k.input, err)
		}
		defer f.Close()
		r = f
	}
	data, err := io.ReadAll(io.LimitReader(r, maxInputBytes+1))
	if err != nil {
		return nil, fmt.Errorf("--input %s: %w", k.input, err)
	}
	if len(data) > maxInputBytes {
		return nil, fmt.Errorf("--input %s is larger than 64 MiB: split it", k.input)
	}
	return data, nil
}

// parseCheckRequests reads one Check RPC request in its JSON form, or a
// stream of them (JSON lines, or objects one after another), decoded with
// protojson so that the shape is exactly the RPC's: proto or JSON field
// names, unknown fields refused.
func parseCheckRequests(data []byte) ([]inputRequest, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	var out []inputRequest
	for {
		start := skipSpace(data, int(dec.InputOffset()))
		var raw json.RawMessage
		err := dec.Decode(&raw)
		if errors.Is(err, io.EOF) {
			break
		}
		line := lineAt(data, start)
		if err != nil {
			var se *json.SyntaxError
			if errors.As(err, &se) {
				return nil, fmt.Errorf("line %d: not JSON (%v at byte %d): write one request object per line", lineAt(data, int(se.Offset)), se, se.Offset)
			}
			return nil, fmt.Errorf("line %d: %v", line, err)
		}
		if len(raw) == 0 || raw[0] != '{' {
			return nil, fmt.Errorf("line %d: a request is a JSON object such as {\"method\": \"GET\", \"path\": \"/orders/1\", \"token\": \"...\"}", line)
		}
		req := &scopegatev1.CheckRequest{}
		if err := protojson.Unmarshal(raw, req); err != nil {
			return nil, fmt.Errorf("line %d: %s", line, protojsonMessage(err))
		}
		out = append(out, inputRequest{req: req, line: line})
	}
	if len(out) == 0 {
		return nil, errors.New("no requests: give one JSON object, or one per line")
	}
	return out, nil
}

var protojsonPos = regexp.MustCompile(`^\(line \d+:\d+\): `)

// protojsonMessage is err without protojson's "proto: (line 1:2): "
// prefix (its position is within one object) and the non-breaking spaces
// it puts in messages; an unknown field gets the nearest field name and
// the list of fields.
func protojsonMessage(err error) string {
	s := strings.ReplaceAll(err.Error(), "\u00a0", " ")
	s = strings.TrimPrefix(s, "proto:")
	s = protojsonPos.ReplaceAllString(strings.TrimSpace(s), "")
	if m := unknownFieldRE.FindStringSubmatch(s); m != nil {
		fields := checkRequestFields()
		// protojson also takes the lowerCamelCase names (sourceAddress).
		cands := slices.Clone(fields)
		fds := (&scopegatev1.CheckRequest{}).ProtoReflect().Descriptor().Fields()
		for i := range fds.Len() {
			cands = append(cands, fds.Get(i).JSONName())
		}
		s += suggest.DidYouMean(m[1], cands)
		s += " (fields: " + strings.Join(fields, ", ") + ")"
	}
	if m := invalidValueRE.FindStringSubmatch(s); m != nil {
		// "invalid value for string field method: 5": name the field and
		// what it takes, not the value (it may be a token).
		want := map[string]string{"string": "a string", "map": "an object of string values", "message": "an object", "bool": "true or false"}[m[1]]
		if want == "" {
			want = "a " + m[1]
		}
		field := m[2]
		if field == "value" {
			field = "each value of headers (or another map)"
		}
		s = fmt.Sprintf("%s: want %s", field, want)
	}
	return s
}

var invalidValueRE = regexp.MustCompile(`^invalid value for (\w+) (?:field|key) (\w+)`)

var unknownFieldRE = regexp.MustCompile(`^unknown field "([^"]*)"`)

// checkRequestFields are the JSON names of the Check RPC request.
func checkRequestFields() []string {
	fields := (&scopegatev1.CheckRequest{}).ProtoReflect().Descriptor().Fields()
	out := make([]string, fields.Len())
	for i := range fields.Len() {
		out[i] = string(fields.Get(i).Name())
	}
	slices.Sort(out)
	return out
}

func skipSpace(data []byte, i int) int {
	for i < len(data) && (data[i] == ' ' || data[i] == '\t' || data[i] == '\r' || data[i] == '\n') {
		i++
	}
	return i
}

func lineAt(data []byte, off int) int {
	off = min(max(off, 0), len(data))
	return bytes.Count(data[:off], []byte("\n")) + 1
}

// memOwners answers ownership lookups from an --owners file.
type memOwners map[string]map[string][]string

func (m memOwners) Owners(_ context.Context, lookup, key string) ([]string, bool, error) {
	o, ok := m[lookup][key]
	return o, ok, nil
}

// readOwnersFile reads ownership facts: a YAML (or JSON) mapping of
// lookup name → resource key → owners, the form of a test file's owners:
// block; an owner may be written as one string instead of a list. Every
// record is checked as the store import checks it.
func readOwnersFile(path string) (memOwners, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fileError("--owners", path, err)
	}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, fmt.Errorf("--owners %s: %s", path, strings.TrimPrefix(err.Error(), "yaml: "))
	}
	const shape = `lookup → key → owners, e.g. {orders: {"42": [alice]}}`
	if len(root.Content) == 0 || root.Content[0].Kind != yaml.MappingNode {
		return nil, fmt.Errorf("--owners %s: want a mapping of %s", path, shape)
	}
	out := memOwners{}
	top := root.Content[0]
	for i := 0; i+1 < len(top.Content); i += 2 {
		lk, keys := top.Content[i], top.Content[i+1]
		if err := store.CheckLookup(lk.Value); err != nil {
			return nil, fmt.Errorf("--owners %s:%d: %v", path, lk.Line, err)
		}
		if keys.Kind != yaml.MappingNode {
			return nil, fmt.Errorf("--owners %s:%d: lookup %q: want a mapping of key → owners (%s)", path, keys.Line, lk.Value, shape)
		}
		recs := map[string][]string{}
		for j := 0; j+1 < len(keys.Content); j += 2 {
			kn, on := keys.Content[j], keys.Content[j+1]
			var owners []string
			switch on.Kind {
			case yaml.ScalarNode:
				owners = []string{on.Value}
			case yaml.SequenceNode:
				if err := on.Decode(&owners); err != nil {
					return nil, fmt.Errorf("--owners %s:%d: key %q: want a list of owners", path, on.Line, kn.Value)
				}
			default:
				return nil, fmt.Errorf("--owners %s:%d: key %q: want an owner or a list of owners", path, on.Line, kn.Value)
			}
			norm, err := store.CheckPut(lk.Value, kn.Value, owners)
			if err != nil {
				return nil, fmt.Errorf("--owners %s:%d: lookup %q, key %q: %v", path, kn.Line, lk.Value, kn.Value, err)
			}
			recs[kn.Value] = norm
		}
		out[lk.Value] = recs
	}
	return out, nil
}

// openStoreForRead opens --store for lookups. A file store must already
// exist: check never creates one.
func openStoreForRead(ctx context.Context, dsn string) (store.Store, error) {
	if !store.IsPostgresDSN(dsn) && !strings.Contains(dsn, "://") {
		if _, err := os.Stat(dsn); err != nil {
			return nil, fmt.Errorf("--store %s: %w (create it with scopegate ownership import)", dsn, err)
		}
	}
	st, err := open.Open(ctx, dsn, store.Options{})
	if err != nil {
		return nil, fmt.Errorf("--store %s: %w", store.RedactDSN(dsn), err)
	}
	return st, nil
}
