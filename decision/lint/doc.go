// Package lint checks a policy file for what loads but is still wrong:
// scope names that break the naming convention or the SMART grammar,
// catalog entries, segments and clients without owners, wildcard scopes in
// a production policy, catalog scopes no route uses, segments that overlap
// through implications, routes that can never match, grants that expired
// or are about to, deprecated scopes still required past their sunset. It
// also checks a policy against the API's OpenAPI 3 document, so that the
// two cannot drift apart. It is what `scopegate lint` runs.
//
// Every error the loader reports is a lint error too, with its line; lint
// adds its own findings after compiling the policy exactly as the server
// does (key sets aside: jwks_file must exist, jwks_url is not fetched). The
// package is pure: it reads the files it is given and nothing else.
package lint
