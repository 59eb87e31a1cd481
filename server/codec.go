package server

import (
	"fmt"
	"sync"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/protoadapt"

	"github.com/scopegate/scopegate/envoy/wire"
)

// StreamWorkers is the number of goroutines that run calls, reused from
// call to call. Without them gRPC starts a goroutine per call, and every
// such goroutine grows its stack (copying it) on the way down the
// decision path: about a tenth of the CPU of a cached check under load.
// Calls beyond StreamWorkers in flight get their own goroutine as before,
// so the number bounds nothing; 64 covers the calls a PDP has in flight at
// tens of thousands of checks a second. Idle workers cost their stacks.
const StreamWorkers = 64

// codecName is the content-subtype the codec answers to: it replaces the
// standard protobuf codec, so clients see no difference on the wire.
const codecName = "proto"

// Codec is the server's gRPC codec. It is the standard protobuf codec
// with the decision path's messages made cheaper:
//
//   - The served ext_authz Check's request (an *extAuthzInput) is scanned
//     once (wire.ScanCheckRequest) and only the fields the translation
//     reads are decoded, and checked for valid UTF-8, into the
//     decision.Request (envoy.RequestFromOffsets): the headers no decision
//     reads are never materialised. A request the scan does not cover, or
//     in which a field the translation reads is not valid UTF-8, is decoded
//     whole, as below, which rejects what proto.Unmarshal rejects.
//   - An ext_authz CheckRequest is decoded by a hand-written decoder
//     (wire.DecodeCheckRequest) that copies the message once and makes every
//     string field a substring of that copy, instead of allocating each
//     header name and value. Anything it does not recognize (unknown
//     fields, TLS or metadata attributes, invalid UTF-8, malformed input)
//     falls back to proto.Unmarshal, so the result is always what
//     proto.Unmarshal would produce. go-control-plane ships no UnmarshalVT
//     (its vtprotobuf files generate marshalling only), which is why the
//     decoder is ours.
//   - An ext_authz CheckResponse is written straight into a pooled buffer
//     by wire.AppendCheckResponse (an allow straight from its decision, by
//     wire.AppendAllow), without reflection and without allocating,
//     again falling back to proto.Marshal on anything it does not cover.
//   - A message with vtprotobuf marshalling (SizeVT plus
//     MarshalToSizedBufferVT or MarshalToSizedBufferVTStrict, which
//     go-control-plane compiles in under the "vtprotobuf" build tag) is
//     marshalled with it; a message with UnmarshalVT is decoded with it.
//
// Every other message goes through the protobuf runtime, as with the
// default codec. Marshalled messages land in pooled buffers, which gRPC
// returns to the pool once they are written (the default codec allocates a
// new buffer for every message under 1 KiB).
type Codec struct{}

var _ encoding.CodecV2 = Codec{}

// Name implements encoding.CodecV2.
func (Codec) Name() string { return codecName }

// vtMarshaler is vtprotobuf's marshalling, as protoc-gen-go-vtproto
// generates it without the "strict" feature.
type vtMarshaler interface {
	SizeVT() int
	MarshalToSizedBufferVT([]byte) (int, error)
}

// vtStrictMarshaler is the same with the "strict" feature, the only form
// go-control-plane generates.
type vtStrictMarshaler interface {
	SizeVT() int
	MarshalToSizedBufferVTStrict([]byte) (int, error)
}

type vtUnmarshaler interface {
	UnmarshalVT([]byte) error
}

// Marshal implements encoding.CodecV2.
func (Codec) Marshal(v any) (mem.BufferSlice, error) {
	switch m := v.(type) {
	case *authv3.CheckResponse:
		buf := respBuffers.Get(respBufferSize)
		if b, ok := wire.AppendCheckResponse((*buf)[:0], m); ok {
			return respBuffers.wrap(buf, b), nil
		}
		respBuffers.Put(buf)
	case *allowReply:
		buf := respBuffers.Get(respBufferSize)
		if b, ok := wire.AppendAllow((*buf)[:0], &m.d); ok {
			return respBuffers.wrap(buf, b), nil
		}
		respBuffers.Put(buf)
		v = m.responder.Response(&m.d)
	case vtStrictMarshaler:
		return marshalVT(m.SizeVT(), m.MarshalToSizedBufferVTStrict)
	case vtMarshaler:
		return marshalVT(m.SizeVT(), m.MarshalToSizedBufferVT)
	}
	msg := messageOf(v)
	if msg == nil {
		return nil, fmt.Errorf("proto codec: cannot marshal %T: not a protobuf message", v)
	}
	// Size first so that MarshalAppend can reuse the cached sizes
	// (UseCachedSize): the message is not modified between the two calls.
	size := proto.Size(msg)
	pool := bufferPoolFor(size)
	buf := pool.Get(size)
	out, err := proto.MarshalOptions{UseCachedSize: true}.MarshalAppend((*buf)[:0], msg)
	if err != nil {
		pool.Put(buf)
		return nil, err
	}
	*buf = out
	return mem.BufferSlice{mem.NewBuffer(buf, pool)}, nil
}

// marshalVT marshals with a vtprotobuf MarshalToSizedBuffer method, which
// fills its buffer from the end.
func marshalVT(size int, marshal func([]byte) (int, error)) (mem.BufferSlice, error) {
	pool := bufferPoolFor(size)
	buf := pool.Get(size)
	b := (*buf)[:size]
	n, err := marshal(b)
	if err != nil {
		pool.Put(buf)
		return nil, err
	}
	if n != size {
		// The message changed between SizeVT and the marshal: refuse
		// rather than send a truncated or shifted message.
		pool.Put(buf)
		return nil, fmt.Errorf("proto codec: message size changed while marshalling (%d, then %d bytes)", size, n)
	}
	*buf = b
	return mem.BufferSlice{mem.NewBuffer(buf, pool)}, nil
}

// Buffer sizes of marshalled messages. gRPC only recycles buffers of at
// least 1 KiB (smaller ones are plain garbage once written), and its
// default pool clears every buffer it hands out; responses are a few
// hundred bytes and written over in full, so the codec keeps its own pool
// of 2 KiB buffers that are neither too small to recycle nor cleared.
const (
	respBufferSize = 2 << 10
	maxPooledSize  = 16 << 10
)

// respBuffers recycles the buffers of marshalled messages up to
// maxPooledSize; larger ones come from gRPC's default pool.
var respBuffers = &dirtyPool{}

func bufferPoolFor(size int) mem.BufferPool {
	if size <= respBufferSize {
		return respBuffers
	}
	return mem.DefaultBufferPool()
}

// dirtyPool is a mem.BufferPool of respBufferSize buffers that are not
// cleared between uses: whoever takes one writes every byte it exposes.
type dirtyPool struct{ p sync.Pool }

var _ mem.BufferPool = (*dirtyPool)(nil)

// Get implements mem.BufferPool.
func (d *dirtyPool) Get(size int) *[]byte {
	if size > respBufferSize {
		b := make([]byte, size)
		return &b
	}
	if b, ok := d.p.Get().(*[]byte); ok {
		*b = (*b)[:size]
		return b
	}
	b := make([]byte, size, respBufferSize)
	return &b
}

// Put implements mem.BufferPool.
func (d *dirtyPool) Put(b *[]byte) {
	if cap(*b) == respBufferSize {
		d.p.Put(b)
	}
}

// wrap returns out, encoded into buf (or into a larger array it grew
// into), as a gRPC buffer that goes back to the pool once written.
func (d *dirtyPool) wrap(buf *[]byte, out []byte) mem.BufferSlice {
	if cap(out) != cap(*buf) {
		d.Put(buf)
		return mem.BufferSlice{mem.SliceBuffer(out)}
	}
	*buf = out
	return mem.BufferSlice{mem.NewBuffer(buf, d)}
}

// Unmarshal implements encoding.CodecV2.
func (Codec) Unmarshal(data mem.BufferSlice, v any) error {
	var b []byte
	if len(data) == 1 {
		// The usual case: one message in one buffer, read in place.
		b = data[0].ReadOnlyData()
	} else {
		buf := data.MaterializeToBuffer(mem.DefaultBufferPool())
		defer buf.Free()
		b = buf.ReadOnlyData()
	}
	switch m := v.(type) {
	case *extAuthzInput:
		return decodeExtAuthz(b, m)
	case *authv3.CheckRequest:
		if wire.DecodeCheckRequest(b, m) {
			return nil
		}
		return proto.Unmarshal(b, m)
	case vtUnmarshaler:
		return m.UnmarshalVT(b)
	}
	msg := messageOf(v)
	if msg == nil {
		return fmt.Errorf("proto codec: cannot unmarshal into %T: not a protobuf message", v)
	}
	return proto.Unmarshal(b, msg)
}

func messageOf(v any) proto.Message {
	switch m := v.(type) {
	case protoadapt.MessageV2:
		return m
	case protoadapt.MessageV1:
		return protoadapt.MessageV2Of(m)
	}
	return nil
}
