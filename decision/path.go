package decision

import "unicode/utf8"

// Path normalization: one canonical form.
//
// A request path is normalized once, before route matching, into one
// canonical form that route-template literals (compiled at load) and
// path-prefix revocations share, so that every spelling of a path that an
// upstream server could resolve to one resource is matched as that one path,
// and every spelling an upstream server might resolve differently from us is
// denied (path_invalid) instead of being guessed at:
//
//   - only '?' ends the path: the query is dropped. A request-target never
//     carries a fragment (RFC 9112: absolute-path ["?" query]), and servers
//     disagree about a raw '#' (nginx cuts the path there, Go's net/http
//     keeps it in the path), so a raw '#' is rejected;
//   - the path must start with '/' and be at most maxPathBytes long;
//   - every percent-escape is decoded, and the decoded bytes are what is
//     compared; the canonical form spells each byte one way: raw when the
//     byte may appear raw in a path (printable ASCII other than the ones
//     below, and UTF-8), else as an escape with upper-case hex digits. So
//     %40, %3A and %C3%A9 become '@', ':' and 'é', while %25 ('%'), %3F
//     ('?'), %23 ('#'), %20 (space), the escapes of control characters and,
//     unless PathSpec.AllowSemicolon is set, %3B (';') stay escaped: decoding
//     them would make a character that ends, cuts or is refused in a path;
//   - %2F (slash), %5C (backslash) and %00 (NUL) are rejected, because
//     servers disagree on whether they separate or end segments; malformed
//     escapes are rejected; so is an escaped '%' followed by two hex digits
//     (%2541): a server that decodes twice would read another character;
//   - a raw backslash, NUL, control character, DEL or space is rejected, and
//     so is a raw ';' unless PathSpec.AllowSemicolon is set;
//   - after decoding, the path must be valid UTF-8 (no stray byte >= 0x80,
//     no overlong form such as %C0%AF): servers disagree on what invalid
//     UTF-8 means;
//   - runs of '/' collapse to one, and dot segments ("." and "..") are
//     resolved as in RFC 3986 §5.2.4, except that ".." above the root is
//     rejected rather than ignored; a dot segment spelled with an escape
//     (%2E%2E, .%2e) is rejected: nginx and Envoy resolve it, Go's ServeMux
//     serves it as a literal segment (/admin/%2e%2e/x reaches /admin/{rest...});
//   - a trailing '/' is kept (the matcher ignores it).
//
// normalizePath is idempotent: the normalized form of a normalized path is
// itself, so a path can be normalized again by anyone downstream with the
// same result.

// maxPathBytes is the default longest path (without query) that is
// normalized; a longer one is denied. paths.max_length changes it.
const maxPathBytes = 8192

// Rejection messages: each names what is wrong and, where there is one, the
// fix. They become the human message of a path_invalid deny, so they are
// constants (no allocation on the deny path) and never quote the path.
const (
	pathMsgEmpty         = "the path is empty"
	pathMsgNoSlash       = "the path must start with '/'"
	pathMsgTooLong       = "path longer than 8192 bytes"
	pathMsgBackslash     = "the path contains a backslash ('\\'), which some servers treat as a '/'"
	pathMsgNUL           = "the path contains a NUL byte"
	pathMsgControl       = "the path contains a control character (0x01-0x1F or 0x7F); percent-encode it"
	pathMsgSpace         = "the path contains a space; percent-encode it as %20"
	pathMsgSemicolon     = "the path contains ';': servers that strip ';' matrix parameters would see another path than the one authorized; encode it as %3B, or set paths.allow_semicolon to treat it as a literal character"
	pathMsgHash          = "the path contains a raw '#': a request-target has no fragment, and servers disagree on whether '#' ends the path; encode it as %23"
	pathMsgEncodedSlash  = "the path contains an encoded slash (%2F), which servers disagree on whether to decode into a segment separator"
	pathMsgEncodedBSlash = "the path contains an encoded backslash (%5C), which some servers decode into a '/'"
	pathMsgEncodedNUL    = "the path contains an encoded NUL byte (%00)"
	pathMsgBadEscape     = "the path contains an invalid percent-escape: '%' must be followed by two hex digits"
	pathMsgDoubleEscape  = "the path contains an escaped '%' followed by two hex digits (such as %2541), which a server that decodes twice reads as another character"
	pathMsgBadUTF8       = "the path is not valid UTF-8 once its percent-escapes are decoded"
	pathMsgAboveRoot     = "path climbs above the root: a '..' segment has no parent segment to remove"
	pathMsgEncodedDot    = "the path has a '.' or '..' segment spelled with a percent-escape (%2E), which some servers resolve as a dot segment and others keep as a name; write it as '.' or '..'"
)

// normalizePath returns the normalized form of the request-target raw (see
// the rules above), or ok=false and a message saying why it cannot be
// normalized safely. opts may be nil (defaults). When raw is already normal
// (the usual case) norm is a substring of raw and nothing is allocated.
func normalizePath(raw string, opts *PathSpec) (norm string, detail string, ok bool) {
	if raw == "" || raw[0] == '?' {
		return "", pathMsgEmpty, false
	}
	if raw[0] != '/' {
		return "", pathMsgNoSlash, false
	}
	allowSemi := opts != nil && opts.AllowSemicolon
	limit, tooLong := maxPathBytes, pathMsgTooLong
	if opts != nil && opts.MaxLength > 0 {
		limit, tooLong = opts.MaxLength, opts.tooLongMsg
	}

	// Fast path: one scan, up to the query, that either proves the path is
	// already normal or finds the first thing that needs the slow path.
	n := min(len(raw), limit)
	for i := 0; i < n; i++ {
		c := raw[i]
		switch byteClass[c] {
		case classPlain:
		case classSlash:
			// raw[i+1:] starts a segment: empty ("//"; a final "/" is
			// fine), "." or "..".
			if i+1 < len(raw) && raw[i+1] == '/' || isDotSegmentAt(raw, i+1) {
				return normalizeSlow(raw, allowSemi, limit, tooLong)
			}
		case classPercent:
			return normalizeSlow(raw, allowSemi, limit, tooLong)
		case classEnd:
			return raw[:i], "", true
		case classHigh:
			// A UTF-8 sequence (its bytes are all >= 0x80, so none is
			// the query's '?').
			r, size := utf8.DecodeRuneInString(raw[i:])
			if r == utf8.RuneError && size <= 1 {
				// Not UTF-8 as it stands; it may be once an escape
				// that follows is decoded ("\xC3%A9"): the slow path
				// checks the decoded bytes.
				return normalizeSlow(raw, allowSemi, limit, tooLong)
			}
			i += size - 1
		default:
			if m := badByte(c, allowSemi); m != "" {
				return "", m, false
			}
		}
	}
	if n < len(raw) {
		if raw[n] != '?' {
			return "", tooLong, false
		}
		return raw[:n], "", true
	}
	return raw, "", true
}

// pathEnd returns the index of the query of raw, or len(raw).
func pathEnd(raw string) int {
	for i := 0; i < len(raw); i++ {
		if raw[i] == '?' {
			return i
		}
	}
	return len(raw)
}

// Byte classes of the fast path's scan.
const (
	classPlain   = iota // allowed as is
	classSlash          // '/'
	classPercent        // '%'
	classEnd            // '?': the end of the path
	classHigh           // >= 0x80: part of a UTF-8 sequence
	classOther          // rejected, or ';' (see badByte)
)

var byteClass = func() (t [256]uint8) {
	for c := range 256 {
		switch {
		case c == '/':
			t[c] = classSlash
		case c == '%':
			t[c] = classPercent
		case c == '?':
			t[c] = classEnd
		case c >= 0x80:
			t[c] = classHigh
		case badByte(byte(c), false) != "":
			t[c] = classOther
		}
	}
	return t
}()

// isDotSegmentAt reports whether the segment starting at p[i] (ending at
// the next '/', the query or the end) is "." or "..".
func isDotSegmentAt(p string, i int) bool {
	if i >= len(p) || p[i] != '.' {
		return false
	}
	i++
	if i < len(p) && p[i] == '.' {
		i++
	}
	return i == len(p) || p[i] == '/' || p[i] == '?'
}

// badByte returns the rejection message for a raw byte of a path that is
// never allowed (other than '%', '/' and '?', which callers handle), or ""
// when c is allowed. Bytes >= 0x80 are allowed here; they must form UTF-8.
func badByte(c byte, allowSemi bool) string {
	switch {
	case c > ' ' && c < 0x7F && c != '\\' && c != ';' && c != '#':
		return ""
	case c >= 0x80:
		return ""
	case c == '\\':
		return pathMsgBackslash
	case c == '#':
		return pathMsgHash
	case c == ';':
		if allowSemi {
			return ""
		}
		return pathMsgSemicolon
	case c == 0:
		return pathMsgNUL
	case c == ' ':
		return pathMsgSpace
	default:
		return pathMsgControl
	}
}

// keepsEscaped reports whether the decoded byte v is spelled as a
// percent-escape in the canonical form: it would end the path or the
// segment ('?'), be refused or mean something else raw ('#', ';' without
// allowSemi, space, control characters, DEL), or be decoded again ('%').
// '/', '\' and NUL never get here: their escapes are refused.
func keepsEscaped(v byte, allowSemi bool) bool {
	switch {
	case v == '%' || v == '?' || v == '#':
		return true
	case v == ';':
		return !allowSemi
	case v >= 0x80:
		return false
	}
	return badByte(v, allowSemi) != ""
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

func isHex(c byte) bool {
	_, ok := unhex(c)
	return ok
}

const upperHex = "0123456789ABCDEF"

// normalizeSlow normalizes raw (which starts with '/') segment by segment
// into a new buffer. The output is never longer than the input's path.
func normalizeSlow(raw string, allowSemi bool, limit int, tooLong string) (string, string, bool) {
	p := raw[:pathEnd(raw)]
	if len(p) > limit {
		return "", tooLong, false
	}
	// Most paths fit the stack buffer; then the result string is the only
	// allocation.
	var buf [256]byte
	out := buf[:0]
	if len(p) > len(buf) {
		out = make([]byte, 0, len(p))
	}
	// starts[k] is the offset in out of the '/' that begins the k-th kept
	// segment, so ".." can drop the last one.
	var startsBuf [32]int
	starts := startsBuf[:0]
	trailing, high := false, false
	for i := 1; i <= len(p); {
		// The segment is p[i:j].
		j := i
		for j < len(p) && p[j] != '/' {
			j++
		}
		if j == i {
			// Empty segment: a repeated or final '/'.
			trailing = true
			i = j + 1
			continue
		}
		segStart := len(out)
		out = append(out, '/')
		for k := i; k < j; k++ {
			c := p[k]
			if c != '%' {
				if m := badByte(c, allowSemi); m != "" {
					return "", m, false
				}
				high = high || c >= 0x80
				out = append(out, c)
				continue
			}
			if k+2 >= j {
				// Fewer than two bytes left in the segment.
				return "", pathMsgBadEscape, false
			}
			hi, ok1 := unhex(p[k+1])
			lo, ok2 := unhex(p[k+2])
			if !ok1 || !ok2 {
				return "", pathMsgBadEscape, false
			}
			k += 2
			switch v := hi<<4 | lo; {
			case v == '/':
				return "", pathMsgEncodedSlash, false
			case v == '\\':
				return "", pathMsgEncodedBSlash, false
			case v == 0:
				return "", pathMsgEncodedNUL, false
			case keepsEscaped(v, allowSemi):
				out = append(out, '%', upperHex[v>>4], upperHex[v&15])
			default:
				high = high || v >= 0x80
				out = append(out, v)
			}
		}
		seg := out[segStart+1:]
		if isDotSegment(seg) && !isDotSegment([]byte(p[i:j])) {
			// Spelled with an escape (%2E, .%2E): nginx and Envoy's
			// normalize_path resolve it, Go's ServeMux keeps it as a
			// literal segment.
			return "", pathMsgEncodedDot, false
		}
		switch {
		case len(seg) == 1 && seg[0] == '.':
			out = out[:segStart]
			trailing = true
		case len(seg) == 2 && seg[0] == '.' && seg[1] == '.':
			if len(starts) == 0 {
				return "", pathMsgAboveRoot, false
			}
			out = out[:starts[len(starts)-1]]
			starts = starts[:len(starts)-1]
			trailing = true
		default:
			if m := checkDecodedSegment(seg); m != "" {
				return "", m, false
			}
			starts = append(starts, segStart)
			trailing = false
		}
		i = j + 1
	}
	if high && !utf8.Valid(out) {
		return "", pathMsgBadUTF8, false
	}
	if len(out) == 0 {
		return "/", "", true
	}
	if trailing {
		out = append(out, '/')
	}
	return string(out), "", true
}

// isDotSegment reports whether seg is "." or "..".
func isDotSegment(seg []byte) bool {
	return len(seg) == 1 && seg[0] == '.' || len(seg) == 2 && seg[0] == '.' && seg[1] == '.'
}

// checkDecodedSegment rejects a canonical segment in which an escaped '%'
// is followed by two hex digits (after decoding: "%25" then, say, "41"),
// which a server that decodes twice would read as another character.
func checkDecodedSegment(seg []byte) string {
	for i := 0; i+4 < len(seg); i++ {
		if seg[i] == '%' && seg[i+1] == '2' && seg[i+2] == '5' && isHex(seg[i+3]) && isHex(seg[i+4]) {
			return pathMsgDoubleEscape
		}
	}
	return ""
}
