package authzen

import (
	"encoding/json"
	"maps"
	"slices"
	"strconv"
	"unicode/utf8"
)

// The answers' JSON, appended to a caller's buffer: byte for byte what
// encoding/json marshals of the same values (TestAppendJSON compares
// them), without its reflection and the allocations of json.Marshal.

// AppendJSON appends r's JSON to b.
func (r *Response) AppendJSON(b []byte) []byte {
	b = append(b, `{"decision":`...)
	b = strconv.AppendBool(b, r.Decision)
	if c := r.Context; c != nil {
		b = append(b, `,"context":{"id":`...)
		b = appendString(b, c.ID)
		b = append(b, `,"reason":`...)
		b = appendString(b, c.Reason)
		if len(c.ReasonAdmin) > 0 {
			b = append(b, `,"reason_admin":`...)
			b = appendStringMap(b, c.ReasonAdmin)
		}
		if len(c.ReasonUser) > 0 {
			b = append(b, `,"reason_user":`...)
			b = appendStringMap(b, c.ReasonUser)
		}
		if c.Error != nil {
			b = append(b, `,"error":`...)
			b = c.Error.AppendJSON(b)
		}
		b = append(b, `,"http_status":`...)
		b = strconv.AppendInt(b, int64(c.HTTPStatus), 10)
		if c.WWWAuthenticate != "" {
			b = append(b, `,"www_authenticate":`...)
			b = appendString(b, c.WWWAuthenticate)
		}
		if c.Route != "" {
			b = append(b, `,"route":`...)
			b = appendString(b, c.Route)
		}
		if len(c.ScopesUsed) > 0 {
			b = append(b, `,"scopes_used":`...)
			b = appendStrings(b, c.ScopesUsed)
		}
		if len(c.ScopesMissing) > 0 {
			b = append(b, `,"scopes_missing":`...)
			b = appendStrings(b, c.ScopesMissing)
		}
		if c.PolicyVersion != "" {
			b = append(b, `,"policy_version":`...)
			b = appendString(b, c.PolicyVersion)
		}
		b = append(b, '}')
	}
	return append(b, '}')
}

// AppendJSON appends r's JSON to b.
func (r *EvaluationsResponse) AppendJSON(b []byte) []byte {
	if r.Evaluations == nil {
		return append(b, `{"evaluations":null}`...)
	}
	b = append(b, `{"evaluations":[`...)
	for i := range r.Evaluations {
		if i > 0 {
			b = append(b, ',')
		}
		b = r.Evaluations[i].AppendJSON(b)
	}
	return append(b, "]}"...)
}

// AppendJSON appends e's JSON to b.
func (e *ErrorBody) AppendJSON(b []byte) []byte {
	b = append(b, `{"status":`...)
	b = strconv.AppendInt(b, int64(e.Status), 10)
	if e.Error != "" {
		b = append(b, `,"error":`...)
		b = appendString(b, e.Error)
	}
	if e.Field != "" {
		b = append(b, `,"field":`...)
		b = appendString(b, e.Field)
	}
	b = append(b, `,"message":`...)
	b = appendString(b, e.Message)
	return append(b, '}')
}

func appendStrings(b []byte, l []string) []byte {
	b = append(b, '[')
	for i, s := range l {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, s)
	}
	return append(b, ']')
}

// appendStringMap appends m with its keys sorted, as encoding/json does.
func appendStringMap(b []byte, m map[string]string) []byte {
	b = append(b, '{')
	for i, k := range slices.Sorted(maps.Keys(m)) {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(appendString(b, k), ':')
		b = appendString(b, m[k])
	}
	return append(b, '}')
}

// appendString appends s as a JSON string. A string of printable ASCII
// that needs no escape (the usual reason codes, routes, scopes and
// versions) is appended as it is; any other goes through encoding/json, so
// that every escape (HTML characters, control characters, invalid UTF-8,
// U+2028 and U+2029) is exactly its own.
func appendString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= utf8.RuneSelf || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, err := json.Marshal(s)
			if err != nil { // a string always encodes
				return append(b, `""`...)
			}
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}
