// Package store is scopegate's persistence layer: the data the decision engine
// needs that does not live in the policy file, starting with ownership (which
// subject owns which resource) and later revocations, client grants and usage.
//
// The package itself holds only interfaces, options and backend-neutral
// helpers, so the decision engine and the commands can depend on it without
// linking a database driver. Each backend lives in its own subpackage and
// adapts one dependency to these interfaces:
//
//   - store/bolt: an embedded single-file store (the default; no server).
//   - store/postgres: PostgreSQL, either scopegate's own tables or the
//     operator's tables through configured queries.
//   - store/cache: a caching, request-coalescing decorator for the read path.
//   - store/open: picks a backend from a DSN; only commands import it.
//   - store/storetest: the conformance suite every backend runs.
//
// Reads fail closed: a backend that cannot answer returns an error, which the
// engine turns into a deny (ownership_unavailable); it never guesses.
package store
