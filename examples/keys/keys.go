// Package keys holds the published development keys of examples/keys, so
// that the scopegate binary can mint tokens the example policy accepts
// from any directory. They protect nothing: never use them in production.
package keys

import "embed"

// FS holds the development private keys (PEM) and jwks.json.
//
//go:embed *.pem jwks.json
var FS embed.FS
