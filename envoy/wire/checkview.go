package wire

import (
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/scopegate/scopegate/envoy"
)

// The lazy CheckRequest decoder (see envoy.RequestFromOffsets for why).
// ScanCheckRequest walks the message once, checks its structure as
// DecodeCheckRequest does, and records where the fields the translation
// may read lie: of the merged headers map, the values of the names in
// envoy.ViewHeaders and the count and size of all. It decodes nothing and
// checks no string for UTF-8: RequestFromOffsets checks the fields it
// reads, and a request in which one is not valid UTF-8 goes to the general
// decoder, which rejects it as proto.Unmarshal does. A string nobody reads
// is not checked; that is the one difference in what the scan accepts. It
// refuses everything else DecodeCheckRequest refuses (unknown fields,
// metadata and TLS attributes, non-socket addresses, wrong wire types,
// truncated input), and a request with more than maxMergedHeaders
// distinct merged headers or envoy.MaxRawHeaders header_map entries (the
// server's header limit refuses those at its default of 128, after the
// general decoder took them).

// maxMergedHeaders is the most distinct keys of the merged headers map a
// scan counts.
const maxMergedHeaders = 64

// ScanCheckRequest records in o where the fields envoy.RequestFromOffsets
// reads lie in b (see above); it resets o first. It reports false when b
// needs the general decoder (DecodeCheckRequest, then proto.Unmarshal); o
// is then in an unspecified state. It neither copies b nor keeps it.
func ScanCheckRequest(b []byte, o *envoy.CheckOffsets) bool {
	resetOffsets(o)
	sc := scanner{d: crDecoder{b: b}, o: o}
	for i := 0; i < len(b); {
		f, ok := sc.d.next(&i, len(b))
		if !ok || f.num != CheckRequestAttributes || f.typ != protowire.BytesType || !sc.attributes(f) {
			return false
		}
	}
	return true
}

// resetOffsets empties o but for the header_map entries past NumRaw,
// which are never read.
func resetOffsets(o *envoy.CheckOffsets) {
	var z envoy.Span
	o.Method, o.Path, o.Host, o.ID, o.Scheme = z, z, z, z, z
	o.SourceAddress, o.SourceCertificate, o.Environment = z, z, z
	o.Present, o.Merged, o.MergedBytes, o.NumRaw, o.RawBytes = 0, 0, 0, 0, 0
}

// headerIndex returns the position of name in envoy.ViewHeaders, or -1.
func headerIndex(name []byte) int {
	for i, h := range envoy.ViewHeaders {
		if len(h) == len(name) && h == string(name) {
			return i
		}
	}
	return -1
}

func spanOf(f field) envoy.Span { return envoy.Span{Start: int32(f.start), End: int32(f.end)} }

// scanner walks one message for ScanCheckRequest.
type scanner struct {
	d crDecoder
	o *envoy.CheckOffsets
	// The keys of the merged headers so far and their values' lengths,
	// to count a repeated key once with its last value, as the map
	// proto.Unmarshal builds does.
	keys [maxMergedHeaders]struct {
		key  envoy.Span
		vlen int32
	}
	nKeys int
}

// each calls fn on every field of b[m.start:m.end], and reports false on a
// malformed field or when fn does.
func (sc *scanner) each(m field, fn func(field) bool) bool {
	for i := m.start; i < m.end; {
		f, ok := sc.d.next(&i, m.end)
		if !ok || !fn(f) {
			return false
		}
	}
	return true
}

func (sc *scanner) attributes(m field) bool {
	return sc.each(m, func(f field) bool {
		if f.typ != protowire.BytesType {
			return false
		}
		switch f.num {
		case AttrSource:
			return sc.peer(f, true)
		case AttrDestination:
			return sc.peer(f, false)
		case AttrRequest:
			return sc.request(f)
		case AttrContextExtensions:
			k, v, ok := sc.entry(f)
			if ok && envoy.ViewContextKey == string(sc.d.b[k.Start:k.End]) {
				sc.o.Environment = v
			}
			return ok
		}
		return false
	})
}

// peer scans a peer; the source's address and certificate are recorded.
func (sc *scanner) peer(m field, source bool) bool {
	return sc.each(m, func(f field) bool {
		if f.typ != protowire.BytesType {
			return false
		}
		switch f.num {
		case PeerAddress:
			return sc.address(f, source)
		case PeerLabels:
			_, _, ok := sc.entry(f)
			return ok
		case PeerCertificate:
			if source {
				sc.o.SourceCertificate = spanOf(f)
			}
			return true
		case PeerService, PeerPrincipal:
			return true
		}
		return false
	})
}

func (sc *scanner) address(m field, source bool) bool {
	return sc.each(m, func(f field) bool {
		if f.num != AddressSocket || f.typ != protowire.BytesType {
			return false
		}
		return sc.each(f, func(g field) bool {
			if g.typ == protowire.VarintType {
				return g.num == SockProtocol || g.num == SockPortValue || g.num == SockIPv4Compat
			}
			switch g.num {
			case SockAddress:
				if source {
					sc.o.SourceAddress = spanOf(g)
				}
				return true
			case SockNamedPort, SockResolverName, SockNetnsPath:
				return true
			}
			return false
		})
	})
}

func (sc *scanner) request(m field) bool {
	return sc.each(m, func(f field) bool {
		if f.typ != protowire.BytesType {
			return false
		}
		switch f.num {
		case RequestTime:
			return sc.each(f, func(g field) bool {
				return g.typ == protowire.VarintType && (g.num == TimeSeconds || g.num == TimeNanos)
			})
		case RequestHTTP:
			return sc.http(f)
		}
		return false
	})
}

func (sc *scanner) http(m field) bool {
	o := sc.o
	return sc.each(m, func(f field) bool {
		if f.typ == protowire.VarintType {
			return f.num == HTTPSize
		}
		switch f.num {
		case HTTPHeaders:
			return sc.header(f)
		case HTTPID:
			o.ID = spanOf(f)
		case HTTPMethod:
			o.Method = spanOf(f)
		case HTTPPath:
			o.Path = spanOf(f)
		case HTTPHost:
			o.Host = spanOf(f)
		case HTTPScheme:
			o.Scheme = spanOf(f)
		case HTTPQuery, HTTPFragment, HTTPProtocol, HTTPBody, HTTPRawBody:
		case HTTPHeaderMap:
			return sc.each(f, func(g field) bool {
				return g.num == HeaderMapHeaders && g.typ == protowire.BytesType && sc.rawHeader(g)
			})
		default:
			return false
		}
		return true
	})
}

// header scans one entry of the merged headers map.
func (sc *scanner) header(f field) bool {
	k, val, ok := sc.entry(f)
	if !ok {
		return false
	}
	o, b := sc.o, sc.d.b
	key := b[k.Start:k.End]
	if i := headerIndex(key); i >= 0 {
		o.Headers[i] = val
		o.Present |= 1 << i
	}
	vlen := val.End - val.Start
	for j := range sc.nKeys {
		e := &sc.keys[j]
		if e.key.End-e.key.Start == k.End-k.Start && string(b[e.key.Start:e.key.End]) == string(key) {
			o.MergedBytes += int(vlen - e.vlen)
			e.vlen = vlen
			return true
		}
	}
	if sc.nKeys == maxMergedHeaders {
		return false
	}
	sc.keys[sc.nKeys].key, sc.keys[sc.nKeys].vlen = k, vlen
	sc.nKeys++
	o.Merged++
	o.MergedBytes += int(k.End - k.Start + vlen)
	return true
}

// rawHeader scans one HeaderValue of header_map.
func (sc *scanner) rawHeader(f field) bool {
	o := sc.o
	if o.NumRaw == envoy.MaxRawHeaders {
		return false
	}
	var h envoy.RawHeader
	ok := sc.each(f, func(g field) bool {
		if g.typ != protowire.BytesType {
			return false
		}
		switch g.num {
		case HeaderValueKey:
			h.Key = spanOf(g)
		case HeaderValueValue:
			h.Value = spanOf(g)
		case HeaderValueRawValue:
			h.RawValue = spanOf(g)
		default:
			return false
		}
		return true
	})
	if !ok {
		return false
	}
	o.Raw[o.NumRaw] = h
	o.NumRaw++
	o.RawBytes += int(h.Key.End - h.Key.Start + h.Value.End - h.Value.Start + h.RawValue.End - h.RawValue.Start)
	return true
}

// entry scans one map<string, string> entry: a missing key or value is
// empty, a repeated one keeps its last occurrence.
func (sc *scanner) entry(m field) (k, v envoy.Span, ok bool) {
	ok = sc.each(m, func(f field) bool {
		if f.typ != protowire.BytesType {
			return false
		}
		switch f.num {
		case MapKey:
			k = spanOf(f)
		case MapValue:
			v = spanOf(f)
		default:
			return false
		}
		return true
	})
	return k, v, ok
}
