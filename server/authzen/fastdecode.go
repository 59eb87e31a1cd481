package authzen

import (
	"bytes"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/valyala/fastjson"
)

// The fast decoder. encoding/json reflects over the structs and allocates
// for every member, and checkMembers then parses the body a second time;
// together they were most of an evaluation's cost. The fast decoder
// parses the body once with a pooled fastjson parser, checks the member
// names and reads the members scopegate needs in one walk, and copies the
// strings it keeps into one allocation.
//
// It decides nothing on its own: for any body it does not read exactly
// as encoding/json would, it declines and the slow path (decodeSlow, then
// checkMembers) decodes the body and words any error. It declines when
//
//   - the body is not strict JSON (fastjson.Validate), nests deeper than
//     fastjson parses, or is not valid UTF-8;
//   - a string holds a \uD800–\uDFFF escape (encoding/json turns a lone
//     surrogate into U+FFFD, fastjson keeps it as written);
//   - an object, at any depth, has more than smallObject members, or two
//     member names strings.EqualFold treats as equal, or a member whose
//     name matches one scopegate reads only in another case;
//   - a member scopegate reads has a JSON type its field does not take.
//
// So every body it accepts decodes to what encoding/json would have made
// of it (FuzzFastDecode compares the two), and every refusal is worded by
// the slow path.

// fastDecoder is a parser and the strings waiting to be copied out of
// its buffer.
type fastDecoder struct {
	p       fastjson.Parser
	pending []pendingString
}

// pendingString is a string member's value, still in the parser's buffer,
// and where it goes.
type pendingString struct {
	dst *string
	b   []byte
}

// maxPooledPending bounds the pending list a pooled decoder keeps.
const maxPooledPending = 4096

var fastDecoders = sync.Pool{New: func() any { return new(fastDecoder) }}

// evalBlock holds everything one evaluation points to, so decoding it
// costs one allocation.
type evalBlock struct {
	s      Subject
	sp     SubjectProps
	a      Action
	ap     ActionProps
	r      Resource
	rp     ResourceProps
	token  string
	method string
	path   string
	opts   Options
}

// fastEvaluations decodes body (a single evaluation when !batch) the fast
// way. ok is false when the fast decoder declines (see above).
func fastEvaluations(body []byte, batch bool) (out *Evaluations, ok bool) {
	if !fastEligible(body) {
		return nil, false
	}
	d := fastDecoders.Get().(*fastDecoder)
	defer d.release()
	v, err := d.p.ParseBytes(body)
	if err != nil {
		return nil, false
	}
	o, err := v.Object()
	if err != nil {
		return nil, false
	}
	var blocks []evalBlock
	var items *fastjson.Value
	if batch {
		items = o.Get("evaluations")
	}
	if items != nil && items.Type() == fastjson.TypeArray {
		a, _ := items.Array()
		out = new(Evaluations)
		blocks = make([]evalBlock, 1+len(a))
		out.Evaluations = make([]Evaluation, len(a))
	} else {
		// One allocation for the request and all it points to.
		one := new(struct {
			evs Evaluations
			blk [1]evalBlock
		})
		out, blocks = &one.evs, one.blk[:]
	}
	if !d.evaluation(o, &out.Evaluation, &blocks[0], batch, out, blocks[1:]) {
		return nil, false
	}
	d.copyStrings()
	return out, true
}

// fastEligible reports whether body can take the fast path at all.
func fastEligible(body []byte) bool {
	if !utf8.Valid(body) || hasSurrogateEscape(body) {
		return false
	}
	return fastjson.ValidateBytes(body) == nil
}

// hasSurrogateEscape reports whether body holds a \uD… escape (or text
// that reads like one, such as an escaped backslash before "uD": such a
// body only takes the slow path).
func hasSurrogateEscape(body []byte) bool {
	for {
		i := bytes.IndexByte(body, '\\')
		if i < 0 || i+2 >= len(body) {
			return false
		}
		if body[i+1] == 'u' && (body[i+2] == 'd' || body[i+2] == 'D') {
			return true
		}
		body = body[i+1:]
	}
}

func (d *fastDecoder) release() {
	clear(d.pending)
	d.pending = d.pending[:0]
	if cap(d.pending) > maxPooledPending {
		d.pending = nil
	}
	fastDecoders.Put(d)
}

// copyStrings copies every pending string into one allocation and points
// each destination at its part.
func (d *fastDecoder) copyStrings() {
	n := 0
	for _, p := range d.pending {
		n += len(p.b)
	}
	var sb strings.Builder
	sb.Grow(n)
	for _, p := range d.pending {
		sb.Write(p.b)
	}
	all, off := sb.String(), 0
	for _, p := range d.pending {
		*p.dst = all[off : off+len(p.b)]
		off += len(p.b)
	}
}

// str reads a string member into *dst: a string, or null (left as it is).
func (d *fastDecoder) str(v *fastjson.Value, dst *string) bool {
	switch v.Type() {
	case fastjson.TypeString:
		b, _ := v.StringBytes()
		if len(b) > 0 {
			d.pending = append(d.pending, pendingString{dst: dst, b: b})
		}
		return true
	case fastjson.TypeNull:
		return true
	}
	return false
}

// strPtr reads a *string member: a string sets *dst to store (holding the
// value), null sets it to nil.
func (d *fastDecoder) strPtr(v *fastjson.Value, dst **string, store *string) bool {
	switch v.Type() {
	case fastjson.TypeNull:
		*dst = nil
		return true
	case fastjson.TypeString:
		*store = ""
		*dst = store
		return d.str(v, store)
	}
	return false
}

// object reads an object member: it reports the object, nil for null,
// and false for another type.
func object(v *fastjson.Value) (*fastjson.Object, bool) {
	switch v.Type() {
	case fastjson.TypeObject:
		o, _ := v.Object()
		return o, true
	case fastjson.TypeNull:
		return nil, true
	}
	return nil, false
}

// members visits o's members after checking their names: none twice in
// any case, and none matching one of known only in another case. visit
// is called with the index in known of a known member, or -1.
func members(o *fastjson.Object, known []string, visit func(i int, v *fastjson.Value) bool) bool {
	if o.Len() > smallObject {
		return false
	}
	var small [smallObject][]byte
	names := small[:0]
	ok := true
	o.Visit(func(k []byte, v *fastjson.Value) {
		if !ok {
			return
		}
		for _, n := range names {
			if bytes.EqualFold(n, k) {
				ok = false
				return
			}
		}
		names = append(names, k)
		idx := -1
		for i, name := range known {
			if string(k) == name {
				idx = i
				break
			}
			if strings.EqualFold(name, string(k)) {
				ok = false
				return
			}
		}
		if idx < 0 {
			ok = anyValue(v)
			return
		}
		ok = visit(idx, v)
	})
	return ok
}

// anyValue checks the member names of a value scopegate does not read.
func anyValue(v *fastjson.Value) bool {
	switch v.Type() {
	case fastjson.TypeObject:
		o, _ := v.Object()
		return members(o, nil, nil)
	case fastjson.TypeArray:
		a, _ := v.Array()
		for _, e := range a {
			if !anyValue(e) {
				return false
			}
		}
	}
	return true
}

// The member names of each object scopegate reads, as the structs' json
// tags spell them (TestFastSchema checks them against evaluationSchema).
var (
	evaluationMembers  = []string{"subject", "action", "resource", "context"}
	evaluationsMembers = []string{"subject", "action", "resource", "context", "evaluations", "options"}
	subjectMembers     = []string{"type", "id", "properties"}
	subjectProps       = []string{"token", "ip_address", "client_certificate", "token_type", "dpop"}
	actionMembers      = []string{"name", "properties"}
	actionProps        = []string{"method"}
	resourceMembers    = []string{"type", "id", "properties"}
	resourceProps      = []string{"path", "host", "scheme"}
	optionsMembers     = []string{"evaluations_semantic"}
)

// evaluation reads one evaluation object into ev, its pointees into blk.
// At the top of a batch (batch), it also reads the evaluations, each item
// into out.Evaluations with its block from items, and the options.
func (d *fastDecoder) evaluation(o *fastjson.Object, ev *Evaluation, blk *evalBlock, batch bool, out *Evaluations, items []evalBlock) bool {
	known := evaluationMembers
	if batch {
		known = evaluationsMembers
	}
	return members(o, known, func(i int, v *fastjson.Value) bool {
		switch i {
		case 0:
			return d.subject(v, ev, blk)
		case 1:
			return d.action(v, ev, blk)
		case 2:
			return d.resource(v, ev, blk)
		case 3:
			// Only its type is read (Request); it is kept compact.
			ev.Context = v.MarshalTo(nil)
			return anyValue(v)
		case 4:
			return d.items(v, out, items)
		default:
			so, ok := object(v)
			if !ok || so == nil {
				out.Options = nil
				return ok
			}
			out.Options = &blk.opts
			return members(so, optionsMembers, func(_ int, v *fastjson.Value) bool {
				return d.str(v, &blk.opts.EvaluationsSemantic)
			})
		}
	})
}

func (d *fastDecoder) items(v *fastjson.Value, out *Evaluations, blocks []evalBlock) bool {
	switch v.Type() {
	case fastjson.TypeNull:
		out.Evaluations = nil
		return true
	case fastjson.TypeArray:
	default:
		return false
	}
	a, _ := v.Array()
	if len(a) != len(out.Evaluations) {
		return false // a second "evaluations" member (refused by members)
	}
	for i, e := range a {
		o, ok := object(e)
		if !ok {
			return false
		}
		if o != nil && !d.evaluation(o, &out.Evaluations[i], &blocks[i], false, nil, nil) {
			return false
		}
	}
	return true
}

func (d *fastDecoder) subject(v *fastjson.Value, ev *Evaluation, blk *evalBlock) bool {
	o, ok := object(v)
	if !ok || o == nil {
		ev.Subject = nil
		return ok
	}
	s := &blk.s
	ev.Subject = s
	return members(o, subjectMembers, func(i int, v *fastjson.Value) bool {
		switch i {
		case 0:
			return d.str(v, &s.Type)
		case 1:
			return d.str(v, &s.ID)
		}
		po, ok := object(v)
		if !ok || po == nil {
			s.Properties = nil
			return ok
		}
		p := &blk.sp
		s.Properties = p
		return members(po, subjectProps, func(i int, v *fastjson.Value) bool {
			switch i {
			case 0:
				return d.strPtr(v, &p.Token, &blk.token)
			case 1:
				return d.str(v, &p.IPAddress)
			case 2:
				return d.str(v, &p.ClientCertificate)
			case 3:
				return d.str(v, &p.TokenType)
			}
			return d.str(v, &p.DPoP)
		})
	})
}

func (d *fastDecoder) action(v *fastjson.Value, ev *Evaluation, blk *evalBlock) bool {
	o, ok := object(v)
	if !ok || o == nil {
		ev.Action = nil
		return ok
	}
	a := &blk.a
	ev.Action = a
	return members(o, actionMembers, func(i int, v *fastjson.Value) bool {
		if i == 0 {
			return d.str(v, &a.Name)
		}
		po, ok := object(v)
		if !ok || po == nil {
			a.Properties = nil
			return ok
		}
		p := &blk.ap
		a.Properties = p
		return members(po, actionProps, func(_ int, v *fastjson.Value) bool {
			return d.strPtr(v, &p.Method, &blk.method)
		})
	})
}

func (d *fastDecoder) resource(v *fastjson.Value, ev *Evaluation, blk *evalBlock) bool {
	o, ok := object(v)
	if !ok || o == nil {
		ev.Resource = nil
		return ok
	}
	r := &blk.r
	ev.Resource = r
	return members(o, resourceMembers, func(i int, v *fastjson.Value) bool {
		switch i {
		case 0:
			return d.str(v, &r.Type)
		case 1:
			return d.str(v, &r.ID)
		}
		po, ok := object(v)
		if !ok || po == nil {
			r.Properties = nil
			return ok
		}
		p := &blk.rp
		r.Properties = p
		return members(po, resourceProps, func(i int, v *fastjson.Value) bool {
			switch i {
			case 0:
				return d.strPtr(v, &p.Path, &blk.path)
			case 1:
				return d.str(v, &p.Host)
			}
			return d.str(v, &p.Scheme)
		})
	})
}
