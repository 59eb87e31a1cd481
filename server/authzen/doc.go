// Package authzen translates the AuthZEN 1.0 Authorization API (OpenID
// Foundation) to and from scopegate's decision model: an access evaluation
// request's JSON (subject, action, resource, context) becomes a
// decision.Request, and a decision.Decision becomes an evaluation
// response with an AuthZEN Reason Object.
//
// It is a pure translator: it parses and builds JSON and does no I/O. The
// HTTP listener, the request limits and the funnel that decides, meters
// and audits live in package server (http_authzen.go), which calls these
// functions.
//
// Bodies are decoded strictly (members.go): a member named twice, or in a
// case encoding/json would fold, is refused, so scopegate decides the very
// request every other reader of the body sees.
package authzen
