package wire

import (
	"unicode/utf8"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// The CheckRequest fast path. proto.Unmarshal allocates every string of a
// CheckRequest on its own: with the ten or so headers Envoy sends, that is
// some thirty allocations per call, more than the whole decision costs on a
// cached token. DecodeCheckRequest instead copies the message into one
// string and makes every string field a substring of it, and takes every
// nested message of the usual request from one block.
//
// It covers the fields Envoy fills for an HTTP request: source and
// destination peers with socket addresses, principals, certificates and
// labels; the request time; every field of the HTTP request, headers as a
// map or as header_map; context extensions. It gives up (returns false,
// and the caller runs proto.Unmarshal) on anything else: unknown fields,
// metadata_context, route_metadata_context, tls_session, non-socket
// addresses, wrong wire types, invalid UTF-8, truncated input. What it
// returns is therefore always what proto.Unmarshal would have produced
// (checkrequest_test.go checks this on a corpus and under fuzzing), including
// proto's merge rules for repeated singular fields and last-wins for
// repeated map keys.
//
// The authorization header shares the copy like every other string: the
// token cache copies a token when it stores it (decision.verifier), so a
// cached token never keeps a request alive, and a cache hit copies nothing.

// peerBlock holds the messages of one peer with a socket address.
type peerBlock struct {
	peer     authv3.AttributeContext_Peer
	addr     corev3.Address
	sockWrap corev3.Address_SocketAddress
	sock     corev3.SocketAddress
	port     corev3.SocketAddress_PortValue
	named    corev3.SocketAddress_NamedPort
}

// checkRequestBlock holds every nested message of a usual CheckRequest, so
// that they cost one allocation.
type checkRequestBlock struct {
	attrs     authv3.AttributeContext
	src, dst  peerBlock
	req       authv3.AttributeContext_Request
	http      authv3.AttributeContext_HttpRequest
	time      timestamppb.Timestamp
	headerMap corev3.HeaderMap
}

// crDecoder decodes one CheckRequest. b is the encoded message and s the
// same bytes as a string: a string field at b[i:j] is s[i:j]. raw is a
// copy of b made on the first bytes field, for the same purpose.
type crDecoder struct {
	b   []byte
	s   string
	raw []byte
	blk *checkRequestBlock
}

// field is one field of an encoded message: for a length-delimited field,
// b[start:end] is its content; for a varint field, v is its value.
type field struct {
	num        protowire.Number
	typ        protowire.Type
	start, end int
	v          uint64
}

// DecodeCheckRequest decodes b into m, which it resets first. It reports
// false when b needs the general decoder, proto.Unmarshal (see above); m
// is then in an unspecified state and the caller must decode it again.
// m's strings share one copy of b, so b may be reused once it returns.
func DecodeCheckRequest(b []byte, m *authv3.CheckRequest) bool {
	m.Reset()
	d := crDecoder{b: b, s: string(b)}
	for i := 0; i < len(b); {
		f, ok := d.next(&i, len(b))
		if !ok || f.num != CheckRequestAttributes || f.typ != protowire.BytesType {
			return false
		}
		if m.Attributes == nil {
			m.Attributes = &d.block().attrs
		}
		if !d.attributes(f.start, f.end, m.Attributes) {
			return false
		}
	}
	return true
}

func (d *crDecoder) block() *checkRequestBlock {
	if d.blk == nil {
		d.blk = &checkRequestBlock{}
	}
	return d.blk
}

// next reads the field at b[*i:end] and moves *i past it. It reports false
// on a malformed tag or length, and on wire types other than varint and
// length-delimited, which no field of the fast path has.
func (d *crDecoder) next(i *int, end int) (field, bool) {
	var f field
	// Most fields of a request are short length-delimited ones with a
	// one-byte tag and length: read those without the general varint
	// decoding. A tag byte of 8 or more names a valid field number.
	if j := *i; j+1 < end {
		if t, l := d.b[j], d.b[j+1]; t >= 8 && t < 0x80 && t&7 == byte(protowire.BytesType) && l < 0x80 {
			if int(l) > end-j-2 {
				return f, false
			}
			f.num, f.typ, f.start, f.end = protowire.Number(t>>3), protowire.BytesType, j+2, j+2+int(l)
			*i = f.end
			return f, true
		}
	}
	num, typ, n := protowire.ConsumeTag(d.b[*i:end])
	if n < 0 {
		return f, false
	}
	*i += n
	f.num, f.typ = num, typ
	switch typ {
	case protowire.BytesType:
		l, n := protowire.ConsumeVarint(d.b[*i:end])
		if n < 0 || l > uint64(end-*i-n) {
			return f, false
		}
		f.start = *i + n
		f.end = f.start + int(l)
		*i = f.end
		return f, true
	case protowire.VarintType:
		v, n := protowire.ConsumeVarint(d.b[*i:end])
		if n < 0 {
			return f, false
		}
		f.v = v
		*i += n
		return f, true
	}
	return f, false
}

// str returns the content of f as a substring of the shared copy, or false
// when it is not valid UTF-8 (proto.Unmarshal rejects such a proto3
// string).
func (d *crDecoder) str(f field) (string, bool) {
	v := d.s[f.start:f.end]
	return v, utf8.ValidString(v)
}

func (d *crDecoder) setString(f field, dst *string) bool {
	v, ok := d.str(f)
	*dst = v
	return ok
}

// bytes returns the content of f as a slice of a private copy of b, capped
// so that an append by the receiver cannot run into the next field.
func (d *crDecoder) bytes(f field) []byte {
	if d.raw == nil {
		d.raw = []byte(d.s)
	}
	return d.raw[f.start:f.end:f.end]
}

func (d *crDecoder) attributes(start, end int, a *authv3.AttributeContext) bool {
	for i := start; i < end; {
		f, ok := d.next(&i, end)
		if !ok || f.typ != protowire.BytesType {
			return false
		}
		switch f.num {
		case AttrSource:
			if a.Source == nil {
				a.Source = &d.block().src.peer
			}
			ok = d.peer(f, a.Source, &d.block().src)
		case AttrDestination:
			if a.Destination == nil {
				a.Destination = &d.block().dst.peer
			}
			ok = d.peer(f, a.Destination, &d.block().dst)
		case AttrRequest:
			if a.Request == nil {
				a.Request = &d.block().req
			}
			ok = d.request(f, a.Request)
		case AttrContextExtensions:
			if a.ContextExtensions == nil {
				a.ContextExtensions = make(map[string]string, d.countField(start, end, AttrContextExtensions))
			}
			ok = d.mapEntry(f, a.ContextExtensions)
		default:
			ok = false
		}
		if !ok {
			return false
		}
	}
	return true
}

func (d *crDecoder) peer(pf field, p *authv3.AttributeContext_Peer, blk *peerBlock) bool {
	for i := pf.start; i < pf.end; {
		f, ok := d.next(&i, pf.end)
		if !ok || f.typ != protowire.BytesType {
			return false
		}
		switch f.num {
		case PeerAddress:
			if p.Address == nil {
				p.Address = &blk.addr
			}
			ok = d.address(f, p.Address, blk)
		case PeerLabels:
			if p.Labels == nil {
				p.Labels = make(map[string]string, d.countField(pf.start, pf.end, PeerLabels))
			}
			ok = d.mapEntry(f, p.Labels)
		case PeerService:
			ok = d.setString(f, &p.Service)
		case PeerPrincipal:
			ok = d.setString(f, &p.Principal)
		case PeerCertificate:
			ok = d.setString(f, &p.Certificate)
		default:
			ok = false
		}
		if !ok {
			return false
		}
	}
	return true
}

func (d *crDecoder) address(af field, a *corev3.Address, blk *peerBlock) bool {
	for i := af.start; i < af.end; {
		f, ok := d.next(&i, af.end)
		if !ok || f.num != AddressSocket || f.typ != protowire.BytesType {
			return false
		}
		// A repeated socket_address merges into the one set before; the
		// other members of the oneof are not on the fast path.
		if a.Address == nil {
			blk.sockWrap.SocketAddress = &blk.sock
			a.Address = &blk.sockWrap
		}
		w, ok := a.Address.(*corev3.Address_SocketAddress)
		if !ok || w.SocketAddress == nil || !d.socketAddress(f, w.SocketAddress, blk) {
			return false
		}
	}
	return true
}

func (d *crDecoder) socketAddress(sf field, sa *corev3.SocketAddress, blk *peerBlock) bool {
	for i := sf.start; i < sf.end; {
		f, ok := d.next(&i, sf.end)
		if !ok {
			return false
		}
		if f.typ == protowire.VarintType {
			switch f.num {
			case SockProtocol:
				sa.Protocol = corev3.SocketAddress_Protocol(int32(f.v))
			case SockPortValue:
				blk.port.PortValue = uint32(f.v)
				sa.PortSpecifier = &blk.port
			case SockIPv4Compat:
				sa.Ipv4Compat = protowire.DecodeBool(f.v)
			default:
				return false
			}
			continue
		}
		switch f.num {
		case SockAddress:
			ok = d.setString(f, &sa.Address)
		case SockNamedPort:
			ok = d.setString(f, &blk.named.NamedPort)
			sa.PortSpecifier = &blk.named
		case SockResolverName:
			ok = d.setString(f, &sa.ResolverName)
		case SockNetnsPath:
			ok = d.setString(f, &sa.NetworkNamespaceFilepath)
		default:
			ok = false
		}
		if !ok {
			return false
		}
	}
	return true
}

func (d *crDecoder) request(rf field, r *authv3.AttributeContext_Request) bool {
	for i := rf.start; i < rf.end; {
		f, ok := d.next(&i, rf.end)
		if !ok || f.typ != protowire.BytesType {
			return false
		}
		switch f.num {
		case RequestTime:
			if r.Time == nil {
				r.Time = &d.block().time
			}
			ok = d.timestamp(f, r.Time)
		case RequestHTTP:
			if r.Http == nil {
				r.Http = &d.block().http
			}
			ok = d.http(f, r.Http)
		default:
			ok = false
		}
		if !ok {
			return false
		}
	}
	return true
}

func (d *crDecoder) timestamp(tf field, t *timestamppb.Timestamp) bool {
	for i := tf.start; i < tf.end; {
		f, ok := d.next(&i, tf.end)
		if !ok || f.typ != protowire.VarintType {
			return false
		}
		switch f.num {
		case TimeSeconds:
			t.Seconds = int64(f.v)
		case TimeNanos:
			t.Nanos = int32(f.v)
		default:
			return false
		}
	}
	return true
}

func (d *crDecoder) http(hf field, h *authv3.AttributeContext_HttpRequest) bool {
	for i := hf.start; i < hf.end; {
		f, ok := d.next(&i, hf.end)
		if !ok {
			return false
		}
		if f.typ == protowire.VarintType {
			if f.num != HTTPSize {
				return false
			}
			h.Size = int64(f.v)
			continue
		}
		switch f.num {
		case HTTPHeaders:
			if h.Headers == nil {
				h.Headers = make(map[string]string, d.countField(hf.start, hf.end, HTTPHeaders))
			}
			ok = d.mapEntry(f, h.Headers)
		case HTTPID:
			ok = d.setString(f, &h.Id)
		case HTTPMethod:
			ok = d.setString(f, &h.Method)
		case HTTPPath:
			ok = d.setString(f, &h.Path)
		case HTTPHost:
			ok = d.setString(f, &h.Host)
		case HTTPScheme:
			ok = d.setString(f, &h.Scheme)
		case HTTPQuery:
			ok = d.setString(f, &h.Query)
		case HTTPFragment:
			ok = d.setString(f, &h.Fragment)
		case HTTPProtocol:
			ok = d.setString(f, &h.Protocol)
		case HTTPBody:
			ok = d.setString(f, &h.Body)
		case HTTPRawBody:
			h.RawBody = d.bytes(f)
		case HTTPHeaderMap:
			if h.HeaderMap == nil {
				h.HeaderMap = &d.block().headerMap
			}
			ok = d.headerMap(f, h.HeaderMap)
		default:
			ok = false
		}
		if !ok {
			return false
		}
	}
	return true
}

func (d *crDecoder) headerMap(mf field, hm *corev3.HeaderMap) bool {
	if hm.Headers == nil {
		hm.Headers = make([]*corev3.HeaderValue, 0, d.countField(mf.start, mf.end, HeaderMapHeaders))
	}
	for i := mf.start; i < mf.end; {
		f, ok := d.next(&i, mf.end)
		if !ok || f.num != HeaderMapHeaders || f.typ != protowire.BytesType {
			return false
		}
		hv := &corev3.HeaderValue{}
		hm.Headers = append(hm.Headers, hv)
		for j := f.start; j < f.end; {
			g, ok := d.next(&j, f.end)
			if !ok || g.typ != protowire.BytesType {
				return false
			}
			switch g.num {
			case HeaderValueKey:
				ok = d.setString(g, &hv.Key)
			case HeaderValueValue:
				ok = d.setString(g, &hv.Value)
			case HeaderValueRawValue:
				hv.RawValue = d.bytes(g)
			default:
				ok = false
			}
			if !ok {
				return false
			}
		}
	}
	return true
}

// mapEntry decodes one map<string, string> entry into m. A missing key or
// value is the empty string and a repeated key keeps the last value, as in
// proto.Unmarshal.
func (d *crDecoder) mapEntry(ef field, m map[string]string) bool {
	var k, v string
	for i := ef.start; i < ef.end; {
		f, ok := d.next(&i, ef.end)
		if !ok || f.typ != protowire.BytesType {
			return false
		}
		switch f.num {
		case MapKey:
			ok = d.setString(f, &k)
		case MapValue:
			ok = d.setString(f, &v)
		default:
			ok = false
		}
		if !ok {
			return false
		}
	}
	m[k] = v
	return true
}

// countField counts the length-delimited fields numbered num in
// b[start:end], to size a map or slice once. It stops quietly at malformed
// input: the walk that follows reports it.
func (d *crDecoder) countField(start, end int, num protowire.Number) int {
	n := 0
	for i := start; i < end; {
		fn, typ, l := protowire.ConsumeTag(d.b[i:end])
		if l < 0 {
			break
		}
		i += l
		l = protowire.ConsumeFieldValue(fn, typ, d.b[i:end])
		if l < 0 {
			break
		}
		if fn == num && typ == protowire.BytesType {
			n++
		}
		i += l
	}
	return n
}
