package envoy

import (
	"encoding/json"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/scopegate/scopegate/decision"
)

// Names of the headers and metadata keys scopegate sends. They are part of
// the public contract (proxies and access logs match on them).
const (
	// HeaderReason carries the deny reason code to the client, so it
	// survives proxies that drop the body.
	HeaderReason = "x-scopegate-reason"
	// HeaderWWWAuthenticate carries the RFC 6750 challenge of a deny.
	HeaderWWWAuthenticate = "www-authenticate"

	headerContentType = "content-type"
	contentTypeJSON   = "application/json"

	// Default upstream header names, used when a decision carries no policy
	// (the compiler fills the policy's Upstream with these defaults too).
	DefaultSubjectHeader = "x-scopegate-subject"
	DefaultClientHeader  = "x-scopegate-client"
	DefaultScopesHeader  = "x-scopegate-scopes"

	// Dynamic metadata keys, emitted by Envoy under the
	// envoy.filters.http.ext_authz namespace.
	MetaRoute         = "route"
	MetaPolicyVersion = "policy_version"
	MetaSubject       = "subject"
	MetaClientID      = "client_id"
	MetaScopesUsed    = "scopes_used"
	// MetaScopesMissing is, on an insufficient_scope deny, what the
	// challenge's scope names (decision.Decision.MissingScopes).
	MetaScopesMissing = "scopes_missing"
	MetaReason        = "reason"
	MetaMessage       = "message"
)

// maxDetailsPerSlot bounds how many distinct deny messages are cached for
// one (route, code) pair; further ones are built per request. Deny messages
// are almost always constants, so this is never reached in practice, and it
// bounds memory if some message ever carried request data.
const maxDetailsPerSlot = 8

// numCodes is the number of reason codes, for per-code tables.
var numCodes = len(decision.Codes())

// Immutable pieces shared by every response. Sharing is safe because a
// CheckResponse is only read after it is built: grpc marshals it, and
// protobuf's marshaller updates its size cache atomically.
var (
	okStatus       = &rpcstatus.Status{Code: int32(codes.OK)}
	stripAuthz     = []string{hdrAuthorization}
	okReasonValue  = structpb.NewStringValue(decision.OK.String())
	emptyListValue = structpb.NewListValue(&structpb.ListValue{})
)

// ResponderOptions configure a Responder.
type ResponderOptions struct {
	// Realm is the realm of Bearer challenges; default DefaultRealm. It is
	// made safe for a quoted-string.
	Realm string
}

// Responder turns decisions into ext_authz v3 CheckResponses. It is safe
// for concurrent use.
//
// Denies do not depend on the token, only on (policy, route, code,
// message), so a deny's CheckResponse is built once and then shared by
// every request that gets the same deny: a deny costs a map lookup and no
// allocation. Shared responses are never modified after they are cached;
// callers must not modify a returned CheckResponse either. The cache
// belongs to one policy at a time and is dropped when decisions start
// coming from another (a reload), so it does not keep old policies alive.
//
// Allows carry the token's subject, client and scopes, so they are built
// per request.
type Responder struct {
	realm string
	cache atomic.Pointer[denyCache]
}

// NewResponder returns a Responder.
func NewResponder(opts ResponderOptions) *Responder {
	realm := opts.Realm
	if realm == "" {
		realm = DefaultRealm
	}
	return &Responder{realm: quotable(realm)}
}

// Realm returns the realm the Responder's challenges name.
func (r *Responder) Realm() string { return r.realm }

// Response returns the CheckResponse for d. The result may be shared with
// other requests: treat it as read-only.
//
//   - Allow: gRPC status OK and an OkHttpResponse that sets the subject,
//     client and scopes headers on the upstream request (always, with an
//     empty value when there is none, so a header forged by the client is
//     overwritten), removes Authorization when the policy says
//     strip_authorization, and dynamic metadata describing the decision.
//   - Deny: gRPC status UNAUTHENTICATED (HTTP 401), INVALID_ARGUMENT (400)
//     or PERMISSION_DENIED (403 and others) with the reason code as message,
//     and a DeniedHttpResponse with that HTTP status, x-scopegate-reason,
//     the WWW-Authenticate challenge if any and a small JSON body. Envoy
//     only looks at denied_response.status for the HTTP status; the gRPC
//     code is for other clients and logs.
//   - Internal error: gRPC status INTERNAL and an error_response (not
//     denied_response) without a status, so Envoy counts an ext_authz error
//     and applies failure_mode_allow and status_on_error.
func (r *Responder) Response(d *decision.Decision) *authv3.CheckResponse {
	if d.Allow {
		return r.allow(d)
	}
	resp := r.deny(d).resp
	if d.DPoPNonce != "" {
		// The nonce changes with the time window: the cached deny is
		// copied, never changed.
		resp = proto.CloneOf(resp)
		dr := resp.GetDeniedResponse()
		dr.Headers = append(dr.Headers, headerOption(strings.ToLower(HeaderDPoPNonce), d.DPoPNonce))
	}
	return resp
}

// WWWAuthenticate returns the challenge of a deny ("" for none), with the
// Responder's realm. It reuses the deny cache, so it allocates nothing for
// a deny seen before.
func (r *Responder) WWWAuthenticate(d *decision.Decision) string {
	if d.Allow {
		return ""
	}
	return r.deny(d).challenge
}

// UpstreamHeader is one header an allow sets on the upstream request.
type UpstreamHeader struct {
	Name  string
	Value string
}

// UpstreamHeaders returns the headers an allow sets on the upstream
// request: subject, client and granted scopes (space-separated), named by
// the policy's upstream section. All three are always returned, with empty
// values when the decision has no token (a public route), so that a proxy
// overwrites any header of that name the client sent.
func UpstreamHeaders(d *decision.Decision) [3]UpstreamHeader {
	names := UpstreamNames(d.Policy)
	var out [3]UpstreamHeader
	out[0].Name, out[1].Name, out[2].Name = names.SubjectHeader, names.ClientHeader, names.ScopesHeader
	if t := d.Token; t != nil {
		out[0].Value = t.Subject
		out[1].Value = t.ClientID
		out[2].Value = t.ScopeString
		if out[2].Value == "" && len(t.Scopes) > 0 { // a Token built by hand
			out[2].Value = strings.Join(t.Scopes, " ")
		}
	}
	return out
}

// HintHeaders returns the SMART on FHIR restriction headers of an allow on
// a SMART route (decision.HintFHIRRestriction, decision.HintFHIRPatient)
// that carry a value; a hint the decision does not carry is not sent (see
// HintHeadersToRemove). It returns nil for every other route. It
// allocates; SMART routes only.
func HintHeaders(d *decision.Decision) []UpstreamHeader {
	if !d.Allow || !d.Route.IsSMART() {
		return nil
	}
	hints := d.UpstreamHints()
	if len(hints) == 0 {
		return nil
	}
	out := make([]UpstreamHeader, 0, len(hints))
	for _, name := range hintNames {
		if v := hints[name]; v != "" {
			out = append(out, UpstreamHeader{Name: name, Value: v})
		}
	}
	return out
}

// HintHeadersToRemove returns the hint header names an allow on a SMART
// route does not set, which ext_authz lists in headers_to_remove so that
// a copy the client sent never reaches the FHIR server. nil for other
// routes.
func HintHeadersToRemove(d *decision.Decision) []string {
	if !d.Allow || !d.Route.IsSMART() {
		return nil
	}
	hints := d.UpstreamHints()
	var out []string
	for _, name := range hintNames {
		if hints[name] == "" {
			out = append(out, name)
		}
	}
	return out
}

// hintNames are the SMART hint headers, in the order they are sent.
var hintNames = [2]string{decision.HintFHIRRestriction, decision.HintFHIRPatient}

// UpstreamNames returns the upstream header names of p (subject, client,
// scopes), the defaults filled in for a nil policy or an unset name. Every
// protocol that sets upstream headers names them by it.
func UpstreamNames(p *decision.Policy) decision.UpstreamSpec {
	var u decision.UpstreamSpec
	if p != nil {
		u = p.Upstream
	}
	if u.SubjectHeader == "" {
		u.SubjectHeader = DefaultSubjectHeader
	}
	if u.ClientHeader == "" {
		u.ClientHeader = DefaultClientHeader
	}
	if u.ScopesHeader == "" {
		u.ScopesHeader = DefaultScopesHeader
	}
	return u
}

// allowBlock holds every message of an allow response in one allocation.
type allowBlock struct {
	resp   authv3.CheckResponse
	wrap   authv3.CheckResponse_OkResponse
	ok     authv3.OkHttpResponse
	opts   [3]corev3.HeaderValueOption
	vals   [3]corev3.HeaderValue
	ptrs   [3]*corev3.HeaderValueOption
	md     structpb.Struct
	str    [4]structpb.Value
	strK   [4]structpb.Value_StringValue
	scopes structpb.Value
	listK  structpb.Value_ListValue
	list   structpb.ListValue
}

// scopeValue is a string Value and its oneof wrapper, allocated together.
type scopeValue struct {
	v structpb.Value
	k structpb.Value_StringValue
}

func (r *Responder) allow(d *decision.Decision) *authv3.CheckResponse {
	b := &allowBlock{}
	hdrs := UpstreamHeaders(d)
	for i := range hdrs {
		b.vals[i].Key = hdrs[i].Name
		b.vals[i].Value = hdrs[i].Value
		b.opts[i].Header = &b.vals[i]
		b.opts[i].AppendAction = corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD
		b.ptrs[i] = &b.opts[i]
	}
	b.ok.Headers = b.ptrs[:]
	if hints := HintHeaders(d); hints != nil {
		opts := make([]*corev3.HeaderValueOption, 0, len(b.ptrs)+len(hints))
		opts = append(opts, b.ptrs[:]...)
		for _, h := range hints {
			opts = append(opts, headerOption(h.Name, h.Value))
		}
		b.ok.Headers = opts
	}
	if d.Policy != nil && d.Policy.Upstream.StripAuthorization {
		b.ok.HeadersToRemove = stripAuthz
	}
	if rm := HintHeadersToRemove(d); rm != nil {
		b.ok.HeadersToRemove = append(slices.Clone(b.ok.HeadersToRemove), rm...)
	}
	b.wrap.OkResponse = &b.ok
	b.resp.Status = okStatus
	b.resp.HttpResponse = &b.wrap

	var route string
	if d.Route != nil {
		route = d.Route.Name
	}
	var subject, client string
	if d.Token != nil {
		subject, client = d.Token.Subject, d.Token.ClientID
	}
	fields := make(map[string]*structpb.Value, 6)
	for i, kv := range [4][2]string{
		{MetaRoute, route},
		{MetaPolicyVersion, d.PolicyVersion()},
		{MetaSubject, subject},
		{MetaClientID, client},
	} {
		b.strK[i].StringValue = kv[1]
		b.str[i].Kind = &b.strK[i]
		fields[kv[0]] = &b.str[i]
	}
	fields[MetaReason] = okReasonValue
	if used := d.ScopesUsed(); len(used) > 0 {
		vals := make([]scopeValue, len(used))
		ptrs := make([]*structpb.Value, len(used))
		for i, s := range used {
			vals[i].k.StringValue = s
			vals[i].v.Kind = &vals[i].k
			ptrs[i] = &vals[i].v
		}
		b.list.Values = ptrs
		b.listK.ListValue = &b.list
		b.scopes.Kind = &b.listK
		fields[MetaScopesUsed] = &b.scopes
	} else {
		fields[MetaScopesUsed] = emptyListValue
	}
	b.md.Fields = fields
	b.resp.DynamicMetadata = &b.md
	return &b.resp
}

// denyEntry is a prebuilt deny.
type denyEntry struct {
	detail    string
	resp      *authv3.CheckResponse
	challenge string
}

// denySlot holds the cached denies of one (route, code): an immutable
// slice replaced as a whole when an entry is added.
type denySlot = atomic.Pointer[[]*denyEntry]

// routeDenies holds one route's cached denies, one slot per code.
type routeDenies struct {
	slots []denySlot
}

func newRouteDenies() *routeDenies {
	return &routeDenies{slots: make([]denySlot, numCodes)}
}

// denyCache is the deny cache of one policy.
type denyCache struct {
	pol     *decision.Policy
	noRoute *routeDenies // denies without a matched route
	routes  sync.Map     // *decision.Route → *routeDenies
}

func (r *Responder) deny(d *decision.Decision) *denyEntry {
	c := r.cache.Load()
	if c == nil || c.pol != d.Policy {
		nc := &denyCache{pol: d.Policy, noRoute: newRouteDenies()}
		if r.cache.CompareAndSwap(c, nc) {
			c = nc
		} else if c = r.cache.Load(); c.pol != d.Policy {
			return r.buildDeny(d)
		}
	}
	if int(d.Code) >= numCodes {
		return r.buildDeny(d)
	}
	rd := c.noRoute
	if d.Route != nil {
		v, ok := c.routes.Load(d.Route)
		if !ok {
			v, _ = c.routes.LoadOrStore(d.Route, newRouteDenies())
		}
		rd = v.(*routeDenies)
	}
	slot := &rd.slots[d.Code]
	for {
		cur := slot.Load()
		if cur != nil {
			for _, e := range *cur {
				if e.detail == d.Detail {
					return e
				}
			}
			if len(*cur) >= maxDetailsPerSlot {
				return r.buildDeny(d)
			}
		}
		e := r.buildDeny(d)
		var next []*denyEntry
		if cur != nil {
			next = append(next, *cur...)
		}
		next = append(next, e)
		if slot.CompareAndSwap(cur, &next) {
			return e
		}
	}
}

// denyBody is the JSON body of a deny.
type denyBody struct {
	Allow   bool   `json:"allow"`
	Reason  string `json:"reason"`
	Message string `json:"message"`
	Route   string `json:"route"`
}

// GRPCCode returns the gRPC status code scopegate uses for a deny with the
// given HTTP status: UNAUTHENTICATED for 401, INVALID_ARGUMENT for 400,
// INTERNAL for 5xx, PERMISSION_DENIED otherwise.
func GRPCCode(httpStatus int) codes.Code {
	switch {
	case httpStatus == 401:
		return codes.Unauthenticated
	case httpStatus == 400:
		return codes.InvalidArgument
	case httpStatus >= 500:
		return codes.Internal
	default:
		return codes.PermissionDenied
	}
}

// buildDeny builds the deny for d without the cache.
func (r *Responder) buildDeny(d *decision.Decision) *denyEntry {
	code := d.Code
	if code == decision.OK {
		// A deny must never claim OK (that would be HTTP 200): fail closed.
		code = decision.Internal
	}
	dd := *d
	dd.Code = code
	challenge := buildChallenge(r.realm, &dd)
	msg := dd.Message()
	var route string
	if d.Route != nil {
		route = d.Route.Name
	}
	httpStatus := code.HTTPStatus()
	grpcCode := GRPCCode(httpStatus)

	hdrs := []*corev3.HeaderValueOption{
		headerOption(HeaderReason, code.String()),
		headerOption(headerContentType, contentTypeJSON),
	}
	if challenge != "" {
		hdrs = append(hdrs, headerOption(HeaderWWWAuthenticate, challenge))
	}
	body, err := json.Marshal(denyBody{Reason: code.String(), Message: msg, Route: route})
	if err != nil {
		// Marshalling four strings cannot fail; keep a valid body regardless.
		body = []byte(`{"allow":false,"reason":"internal"}`)
	}
	hr := &authv3.DeniedHttpResponse{
		Status:  &typev3.HttpStatus{Code: typev3.StatusCode(httpStatus)},
		Headers: hdrs,
		Body:    string(body),
	}
	resp := &authv3.CheckResponse{
		Status: &rpcstatus.Status{Code: int32(grpcCode), Message: code.String()},
		DynamicMetadata: &structpb.Struct{Fields: map[string]*structpb.Value{
			MetaReason:        structpb.NewStringValue(code.String()),
			MetaMessage:       structpb.NewStringValue(msg),
			MetaRoute:         structpb.NewStringValue(route),
			MetaPolicyVersion: structpb.NewStringValue(d.PolicyVersion()),
		}},
	}
	if missing := d.MissingScopes(); len(missing) > 0 {
		// Derived from the detail, as the challenge is: safe to cache.
		vals := make([]*structpb.Value, len(missing))
		for i, s := range missing {
			vals[i] = structpb.NewStringValue(s)
		}
		resp.DynamicMetadata.Fields[MetaScopesMissing] = structpb.NewListValue(&structpb.ListValue{Values: vals})
	}
	if grpcCode == codes.Internal {
		// No status: Envoy then answers with the operator's status_on_error,
		// as for a transport failure, so an internal error is told apart
		// from a deny the way the operator chose.
		hr.Status = nil
		resp.HttpResponse = &authv3.CheckResponse_ErrorResponse{ErrorResponse: hr}
	} else {
		resp.HttpResponse = &authv3.CheckResponse_DeniedResponse{DeniedResponse: hr}
	}
	return &denyEntry{detail: d.Detail, resp: resp, challenge: challenge}
}

func headerOption(name, value string) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{
		Header:       &corev3.HeaderValue{Key: name, Value: value},
		AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
	}
}
