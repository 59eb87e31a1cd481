package authzen

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/netip"
	"strconv"
	"strings"

	"github.com/scopegate/scopegate/decision"
)

// AuthZEN 1.0 (OpenID Authorization API) endpoints and names.
const (
	EvaluationPath   = "/access/v1/evaluation"
	EvaluationsPath  = "/access/v1/evaluations"
	ConfigurationURI = "/.well-known/authzen-configuration"

	// Evaluation semantics of a batch (options.evaluations_semantic).
	ExecuteAll          = "execute_all"
	DenyOnFirstDeny     = "deny_on_first_deny"
	PermitOnFirstPermit = "permit_on_first_permit"

	// Resource types whose id is the request path.
	pathTypeHTTP = "http_path"
	pathType     = "path"
)

// maxMethodLen bounds an action name taken as an HTTP method.
const maxMethodLen = 32

// Subject is an AuthZEN Subject. Only the properties scopegate
// reads are decoded; any others are accepted and ignored.
type Subject struct {
	Type       string        `json:"type"`
	ID         string        `json:"id"`
	Properties *SubjectProps `json:"properties,omitempty"`
}

// SubjectProps are the subject properties scopegate reads.
type SubjectProps struct {
	// Token is the subject's OAuth access token (without "Bearer ").
	// A pointer, so an explicit "" (no token) differs from an absent one.
	Token *string `json:"token,omitempty"`
	// IPAddress is the client address (AuthZEN's common ip_address
	// property).
	IPAddress string `json:"ip_address,omitempty"`
	// ClientCertificate is the client's certificate, in any form the
	// decision core reads (URL-encoded PEM, PEM, RFC 9440 ":base64:").
	ClientCertificate string `json:"client_certificate,omitempty"`
	// TokenType is how the client presented Token: "Bearer" (the
	// default) or "DPoP" (RFC 9449: Authorization: DPoP <token>).
	TokenType string `json:"token_type,omitempty"`
	// DPoP is the request's DPoP proof header (RFC 9449), as the client
	// sent it (several header lines joined by commas are refused, as
	// RFC 9449 wants exactly one). It makes TokenType DPoP when TokenType
	// is absent.
	DPoP string `json:"dpop,omitempty"`
}

// Resource is an AuthZEN Resource.
type Resource struct {
	Type       string         `json:"type"`
	ID         string         `json:"id"`
	Properties *ResourceProps `json:"properties,omitempty"`
}

// ResourceProps are the resource properties scopegate reads.
type ResourceProps struct {
	// Path is the HTTP request path (with query, if any) to authorize.
	Path *string `json:"path,omitempty"`
	// Host is the Host of the request.
	Host string `json:"host,omitempty"`
	// Scheme is the URI scheme the client used ("https"). With Host and
	// Path it is the URI a DPoP proof's htu must name.
	Scheme string `json:"scheme,omitempty"`
}

// Action is an AuthZEN Action.
type Action struct {
	Name       string       `json:"name"`
	Properties *ActionProps `json:"properties,omitempty"`
}

// ActionProps are the action properties scopegate reads.
type ActionProps struct {
	// Method is the HTTP method; it wins over the action name.
	Method *string `json:"method,omitempty"`
}

// Evaluation is one access evaluation request: the 4-tuple. In a
// batch, a nil member takes the batch's default.
type Evaluation struct {
	Subject  *Subject        `json:"subject,omitempty"`
	Action   *Action         `json:"action,omitempty"`
	Resource *Resource       `json:"resource,omitempty"`
	Context  json.RawMessage `json:"context,omitempty"`
}

// Evaluations is an access evaluations (batch) request. Its
// top-level 4-tuple gives defaults to every item; an item's own member
// replaces the default as a whole.
type Evaluations struct {
	Evaluation
	Evaluations []Evaluation `json:"evaluations"`
	Options     *Options     `json:"options,omitempty"`
}

// Options are the options of a batch request.
type Options struct {
	EvaluationsSemantic string `json:"evaluations_semantic,omitempty"`
}

// Error is a request scopegate cannot evaluate: Field names the
// member at fault (dotted, e.g. "evaluations[1].action.name").
type Error struct {
	Field   string
	Message string
}

func (e *Error) Error() string {
	if e.Field == "" {
		return e.Message
	}
	return e.Field + ": " + e.Message
}

// ParseEvaluation decodes an access evaluation request body.
func ParseEvaluation(body []byte) (*Evaluation, *Error) {
	if err := checkObject(body); err != nil {
		return nil, err
	}
	if evs, ok := fastEvaluations(body, false); ok {
		return &evs.Evaluation, nil
	}
	var ev Evaluation
	if err := decodeSlow(body, &ev); err != nil {
		return nil, err
	}
	return &ev, nil
}

// ParseEvaluations decodes an access evaluations request body and
// checks its options.
func ParseEvaluations(body []byte) (*Evaluations, *Error) {
	if err := checkObject(body); err != nil {
		return nil, err
	}
	ev, ok := fastEvaluations(body, true)
	if !ok {
		ev = new(Evaluations)
		if err := decodeSlow(body, ev); err != nil {
			return nil, err
		}
	}
	if ev.Options != nil {
		switch ev.Options.EvaluationsSemantic {
		case "", ExecuteAll, DenyOnFirstDeny, PermitOnFirstPermit:
		default:
			return nil, &Error{Field: "options.evaluations_semantic", Message: "unknown value " + strconv.Quote(clip(ev.Options.EvaluationsSemantic)) + ": use execute_all, deny_on_first_deny or permit_on_first_permit"}
		}
	}
	return ev, nil
}

// Semantic returns the batch's evaluation semantic (execute_all by
// default).
func (ev *Evaluations) Semantic() string {
	if ev.Options == nil || ev.Options.EvaluationsSemantic == "" {
		return ExecuteAll
	}
	return ev.Options.EvaluationsSemantic
}

// Item returns the i-th evaluation with the batch defaults applied.
func (ev *Evaluations) Item(i int) Evaluation {
	it := ev.Evaluations[i]
	if it.Subject == nil {
		it.Subject = ev.Subject
	}
	if it.Action == nil {
		it.Action = ev.Action
	}
	if it.Resource == nil {
		it.Resource = ev.Resource
	}
	if it.Context == nil {
		it.Context = ev.Context
	}
	return it
}

// checkObject refuses a body that is not a JSON object at all.
func checkObject(body []byte) *Error {
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return &Error{Message: "the body must be a JSON object"}
	}
	return nil
}

// decodeSlow decodes one JSON object into v with encoding/json, naming the
// field of a type error and refusing trailing data, duplicate members and
// member names that match only in another case (members.go). It takes
// every body the fast decoder (fastdecode.go) declines, and words every
// refusal.
func decodeSlow(body []byte, v any) *Error {
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(v); err != nil {
		return jsonError(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return &Error{Message: "the body holds data after its JSON object: send exactly one object"}
	}
	schema := evaluationSchema
	if _, batch := v.(*Evaluations); batch {
		schema = evaluationsSchema
	}
	return checkMembers(body, schema)
}

func jsonError(err error) *Error {
	var te *json.UnmarshalTypeError
	var se *json.SyntaxError
	switch {
	case errors.As(err, &te):
		field := te.Field
		if field == "" {
			field = "(body)"
		}
		return &Error{Field: field, Message: "must be " + jsonKind(te.Type.Kind().String()) + ", not a JSON " + te.Value}
	case errors.As(err, &se):
		return &Error{Message: "malformed JSON at byte " + strconv.FormatInt(se.Offset, 10) + ": " + se.Error()}
	case errors.Is(err, io.ErrUnexpectedEOF):
		return &Error{Message: "malformed JSON: the body ends inside a value"}
	}
	return &Error{Message: "malformed JSON: " + err.Error()}
}

func jsonKind(goKind string) string {
	switch goKind {
	case "string":
		return "a string"
	case "struct", "map", "ptr":
		return "an object"
	case "slice", "array":
		return "an array"
	case "bool":
		return "a boolean"
	}
	return "a " + goKind
}

// Request translates one evaluation into a decision request. field is the
// prefix of the evaluation's members in error messages ("" for a single
// evaluation, "evaluations[2]." in a batch). authorization holds the values
// of the HTTP call's Authorization header: they are the subject's token
// only when subject.properties.token is absent.
//
// The mapping:
//
//   - subject.properties.token → Authorization "Bearer <token>"; absent:
//     the call's Authorization header.
//   - subject.properties.ip_address → SourceIP;
//     subject.properties.client_certificate → ClientCertificate.
//   - action.properties.method, else action.name → Method (upper-cased;
//     it must be an HTTP method).
//   - resource.properties.path, else resource.id when resource.type is
//     "http_path" or "path" → Path. resource.properties.host → Host,
//     resource.properties.scheme → Scheme.
//   - subject.properties.dpop → the DPoP proof; with it (or with
//     subject.properties.token_type "DPoP") the token is presented as
//     "DPoP <token>", as a client sends a DPoP-bound token.
//   - context must be an object if present; it is otherwise not read.
func (ev *Evaluation) Request(field string, authorization []string, out *decision.Request) *Error {
	*out = decision.Request{}
	s, a, res := ev.Subject, ev.Action, ev.Resource
	switch {
	case s == nil:
		return &Error{Field: field + "subject", Message: "is required: an object with type and id"}
	case s.Type == "":
		return &Error{Field: field + "subject.type", Message: "is required: a non-empty string such as \"user\""}
	case a == nil:
		return &Error{Field: field + "action", Message: "is required: an object whose name is the HTTP method"}
	case res == nil:
		return &Error{Field: field + "resource", Message: "is required: an object naming the request path"}
	}
	if len(ev.Context) > 0 && !bytes.Equal(ev.Context, []byte("null")) && bytes.TrimSpace(ev.Context)[0] != '{' {
		return &Error{Field: field + "context", Message: "must be an object"}
	}

	// Method.
	method, mfield := a.Name, field+"action.name"
	if a.Properties != nil && a.Properties.Method != nil {
		method, mfield = *a.Properties.Method, field+"action.properties.method"
	}
	m, ok := httpMethod(method)
	if !ok {
		return &Error{Field: mfield, Message: strconv.Quote(clip(method)) + " is not an HTTP method: scopegate authorizes HTTP requests; send the method (GET, POST, …) as action.name or action.properties.method"}
	}
	out.Method = m

	// Path.
	switch {
	case res.Properties != nil && res.Properties.Path != nil:
		out.Path = *res.Properties.Path
	case res.Type == pathTypeHTTP || res.Type == pathType:
		out.Path = res.ID
	default:
		return &Error{Field: field + "resource", Message: "names no request path: set resource.properties.path, or use resource.type \"http_path\" with the path as resource.id"}
	}
	if res.Properties != nil {
		out.Host, out.Scheme = res.Properties.Host, res.Properties.Scheme
	}

	// Subject.
	p := s.Properties
	switch {
	case p != nil && p.Token != nil:
		if *p.Token != "" {
			scheme, err := p.scheme(field)
			if err != nil {
				return err
			}
			out.Authorization, out.AuthorizationCount = scheme+" "+*p.Token, 1
		}
	case len(authorization) > 0:
		out.Authorization, out.AuthorizationCount = authorization[0], len(authorization)
	}
	if p != nil {
		if p.IPAddress != "" {
			ip, err := netip.ParseAddr(p.IPAddress)
			if err != nil {
				return &Error{Field: field + "subject.properties.ip_address", Message: "is not an IP address: send the client's address without a port, e.g. 203.0.113.7 or 2001:db8::1"}
			}
			out.SourceIP = ip.Unmap()
		}
		out.ClientCertificate = p.ClientCertificate
		if p.DPoP != "" {
			out.DPoP, out.DPoPCount = p.DPoP, 1
		}
	}
	return nil
}

// scheme returns the Authorization scheme the token was presented with:
// DPoP when token_type says so, or when it is absent and a proof is given.
func (p *SubjectProps) scheme(field string) (string, *Error) {
	switch {
	case p.TokenType == "" && p.DPoP != "", strings.EqualFold(p.TokenType, "DPoP"):
		return "DPoP", nil
	case p.TokenType == "", strings.EqualFold(p.TokenType, "Bearer"):
		// With a proof too, as forward-auth takes Authorization: Bearer
		// with a DPoP header: a DPoP-bound token is then dpop_downgrade.
		return "Bearer", nil
	}
	return "", &Error{Field: field + "subject.properties.token_type", Message: strconv.Quote(clip(p.TokenType)) + " is not a token type scopegate reads: use \"Bearer\" or \"DPoP\""}
}

// httpMethod returns name as an HTTP method (upper-cased), or false when it
// is not an RFC 9110 token of letters.
func httpMethod(name string) (string, bool) {
	if name == "" || len(name) > maxMethodLen {
		return "", false
	}
	upper := true
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case 'A' <= c && c <= 'Z':
		case 'a' <= c && c <= 'z':
			upper = false
		default:
			return "", false
		}
	}
	if upper {
		return name, true
	}
	return strings.ToUpper(name), true
}

// clip shortens a caller's value for an error message.
func clip(s string) string {
	const n = 64
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// SubjectMismatch returns the message of a request_invalid deny when an
// allow's token names another principal than subject.id: a PEP asking
// "may alice…" with bob's token must not get bob's answer. It is "" when
// subject.id is empty, when there is no token (a public route), or when
// subject.id is the token's subject or client.
func (ev *Evaluation) SubjectMismatch(d *decision.Decision) string {
	if ev.Subject == nil || ev.Subject.ID == "" || d.Token == nil {
		return ""
	}
	if ev.Subject.ID == d.Token.Subject || ev.Subject.ID == d.Token.ClientID {
		return ""
	}
	return "subject.id names another principal than the access token's subject (sub) or client (client_id): send the token's subject as subject.id, or leave subject.id empty"
}

// Response is one access evaluation response.
type Response struct {
	Decision bool     `json:"decision"`
	Context  *Context `json:"context,omitempty"`
}

// Context is the context of an evaluation response: an AuthZEN
// Reason Object (id, reason_admin, reason_user) plus scopegate's own
// members, named as in its other protocols.
type Context struct {
	// ID is the reason code (AuthZEN Reason Object id), e.g.
	// "insufficient_scope"; Reason repeats it under scopegate's name.
	ID     string `json:"id"`
	Reason string `json:"reason"`
	// ReasonAdmin is the specific message, for operators; ReasonUser the
	// generic message of the code, safe to show a user. Both are AuthZEN
	// Reason Fields keyed by language tag.
	ReasonAdmin map[string]string `json:"reason_admin,omitempty"`
	ReasonUser  map[string]string `json:"reason_user,omitempty"`
	// Error is set for an evaluation scopegate could not run (AuthZEN's
	// per-evaluation error): the HTTP status and what to fix.
	Error *ErrorBody `json:"error,omitempty"`
	// HTTPStatus is the status a gateway enforcing this decision answers
	// with; WWWAuthenticate its challenge, if any.
	HTTPStatus      int      `json:"http_status"`
	WWWAuthenticate string   `json:"www_authenticate,omitempty"`
	Route           string   `json:"route,omitempty"`
	ScopesUsed      []string `json:"scopes_used,omitempty"`
	// ScopesMissing are, for an insufficient_scope deny, the scopes the
	// token lacks (or the alternatives of which it carries none): what the
	// challenge's scope attribute names.
	ScopesMissing []string `json:"scopes_missing,omitempty"`
	// DPoPNonce is, for a use_dpop_nonce deny, the nonce the client must
	// put in its next proof: what a gateway sends as the DPoP-Nonce header.
	DPoPNonce     string `json:"dpop_nonce,omitempty"`
	PolicyVersion string `json:"policy_version,omitempty"`
}

// ErrorBody is an error: of a whole request (the HTTP answer's body)
// or of one evaluation of a batch (context.error).
type ErrorBody struct {
	Status  int    `json:"status"`
	Error   string `json:"error,omitempty"`
	Field   string `json:"field,omitempty"`
	Message string `json:"message"`
}

// EvaluationsResponse is an access evaluations response.
type EvaluationsResponse struct {
	Evaluations []Response `json:"evaluations"`
}

// Result maps a decision onto an evaluation response. challenge is
// the deny's WWW-Authenticate value (envoy.Responder.WWWAuthenticate).
func Result(d *decision.Decision, challenge string) Response {
	code := d.Code
	if !d.Allow && code == decision.OK {
		// A deny must never claim OK: fail closed.
		code = decision.Internal
	}
	c := &Context{
		ID:            code.String(),
		Reason:        code.String(),
		HTTPStatus:    code.HTTPStatus(),
		PolicyVersion: d.PolicyVersion(),
		ScopesUsed:    d.ScopesUsed(),
	}
	if d.Allow {
		c.HTTPStatus = 200
	} else {
		msg := d.Detail
		if msg == "" {
			msg = code.Message()
		}
		c.ReasonAdmin = map[string]string{"en": msg}
		c.ReasonUser = map[string]string{"en": code.Message()}
		c.WWWAuthenticate = challenge
		c.ScopesMissing = d.MissingScopes()
		c.DPoPNonce = d.DPoPNonce
		if code == decision.Internal {
			c.Error = &ErrorBody{Status: c.HTTPStatus, Message: msg}
		}
	}
	if d.Route != nil {
		c.Route = d.Route.Name
	}
	return Response{Decision: d.Allow, Context: c}
}

// Invalid is the evaluation response of an item of a batch that
// could not be evaluated: decision false with a request_invalid reason and
// a per-evaluation error naming the field.
func Invalid(err *Error) Response {
	msg := err.Error()
	return Response{Context: &Context{
		ID:          decision.RequestInvalid.String(),
		Reason:      decision.RequestInvalid.String(),
		ReasonAdmin: map[string]string{"en": msg},
		ReasonUser:  map[string]string{"en": decision.RequestInvalid.Message()},
		Error:       &ErrorBody{Status: 400, Field: err.Field, Message: err.Message},
		HTTPStatus:  400,
	}}
}

// Metadata is the PDP metadata document served at
// /.well-known/authzen-configuration.
type Metadata struct {
	PolicyDecisionPoint       string `json:"policy_decision_point"`
	AccessEvaluationEndpoint  string `json:"access_evaluation_endpoint"`
	AccessEvaluationsEndpoint string `json:"access_evaluations_endpoint"`
}

// NewMetadata returns the metadata of a PDP whose base URL is base
// (scheme and authority, no trailing slash).
func NewMetadata(base string) Metadata {
	base = strings.TrimRight(base, "/")
	return Metadata{
		PolicyDecisionPoint:       base,
		AccessEvaluationEndpoint:  base + EvaluationPath,
		AccessEvaluationsEndpoint: base + EvaluationsPath,
	}
}
