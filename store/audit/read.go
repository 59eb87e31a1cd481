package audit

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"strconv"
	"time"
)

// Record is a decision record read back from a sink (docs/audit.md):
// the fields the review and the evidence export use, and the record as
// written.
type Record struct {
	Time                 time.Time `json:"time"`
	Type                 string    `json:"type"`
	DecisionID           string    `json:"decision_id"`
	RequestID            string    `json:"request_id"`
	API                  string    `json:"api"`
	Decision             string    `json:"decision"`
	Reasons              []string  `json:"reasons"`
	Message              string    `json:"message"`
	Route                string    `json:"route"`
	Method               string    `json:"method"`
	Host                 string    `json:"host"`
	Path                 string    `json:"path"`
	SourceIP             string    `json:"source_ip"`
	Subject              string    `json:"subject"`
	ClientID             string    `json:"client_id"`
	Issuer               string    `json:"iss"`
	JTI                  string    `json:"jti"`
	Patient              string    `json:"patient"`
	ScopesGranted        []string  `json:"scopes_granted"`
	ScopesUsed           []string  `json:"scopes_used"`
	DeprecatedScopesUsed []string  `json:"deprecated_scopes_used"`
	Drift                *struct {
		Mode         string   `json:"mode"`
		Unregistered bool     `json:"unregistered"`
		Extra        []string `json:"extra"`
		Expired      []string `json:"expired"`
		Segments     []string `json:"segments"`
		Straddled    []string `json:"straddled"`
	} `json:"drift"`
	PolicyVersion string `json:"policy_version"`
}

// Query selects the decision records to read. Zero fields select all.
type Query struct {
	ClientID string
	Patient  string
	// From (inclusive) and To (exclusive) bound the record's time.
	From, To time.Time
}

// Match reports whether r is a decision record q selects.
func (q *Query) Match(r *Record) bool {
	return r.Type == "decision" &&
		(q.ClientID == "" || r.ClientID == q.ClientID) &&
		(q.Patient == "" || r.Patient == q.Patient) &&
		(q.From.IsZero() || !r.Time.Before(q.From)) &&
		(q.To.IsZero() || r.Time.Before(q.To))
}

// MaxRecordBytes bounds one line read back: a record is small (its
// strings are bounded when written), so a longer line is not a record.
const MaxRecordBytes = 1 << 20

// ReadRecords calls fn with each decision record of the JSON lines in r
// that q selects, in file order. name is used in errors, with the line
// number. A line that is not a record is an error: evidence must not
// silently skip what it cannot read.
func ReadRecords(r io.Reader, name string, q Query, fn func(*Record) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), MaxRecordBytes)
	n := 0
	for sc.Scan() {
		n++
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		var rec Record
		if err := json.Unmarshal(line, &rec); err != nil {
			return fmt.Errorf("%s:%d: not an audit record: %w", name, n, err)
		}
		if rec.Type == "" || rec.Time.IsZero() {
			return fmt.Errorf("%s:%d: not an audit record: no type or time", name, n)
		}
		if !q.Match(&rec) {
			continue
		}
		if err := fn(&rec); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("%s: line %d: %w", name, n+1, err)
	}
	return nil
}

// RotatedFiles returns the files of a FileSink at path, oldest first: the
// numbered backups PATH.N ... PATH.1 that exist, then PATH. PATH itself
// must exist (or one backup).
func RotatedFiles(path string) ([]string, error) {
	var out []string
	for i := 1; ; i++ {
		p := path + "." + strconv.Itoa(i)
		if _, err := os.Stat(p); err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				break
			}
			return nil, err
		}
		out = append(out, p)
	}
	slices.Reverse(out)
	if _, err := os.Stat(path); err == nil {
		out = append(out, path)
	} else if !errors.Is(err, fs.ErrNotExist) || len(out) == 0 {
		return nil, fmt.Errorf("audit file: %w", err)
	}
	return out, nil
}

// ReadFiles reads the records of an audit file and its rotated backups,
// oldest first (RotatedFiles).
func ReadFiles(path string, q Query, fn func(*Record) error) error {
	files, err := RotatedFiles(path)
	if err != nil {
		return err
	}
	for _, f := range files {
		if err := readFile(f, q, fn); err != nil {
			return err
		}
	}
	return nil
}

func readFile(path string, q Query, fn func(*Record) error) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("audit file: %w", err)
	}
	defer f.Close()
	return ReadRecords(f, path, q, fn)
}
