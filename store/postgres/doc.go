// Package postgres is the PostgreSQL store, for deployments that run several
// scopegate replicas on shared state or that keep ownership in their own
// tables.
//
// Ownership reads come from one of two places per lookup:
//
//   - an operator-configured query (store.PostgresOptions.OwnershipQueries),
//     so scopegate reads the application's own tables and nothing has to be
//     copied: "SELECT owner_id FROM orders WHERE id = $1". Such lookups are
//     read-only here;
//   - otherwise scopegate's own table, scopegate_ownership(lookup, key,
//     owner), created by Migrate and written through PutOwners/DeleteOwners.
//
// Every statement is prepared once per connection and cached
// (pgx.QueryExecModeCacheStatement), so a lookup is one round trip. Context
// deadlines are honoured: a lookup that outlives its deadline returns an
// error (the engine denies with ownership_unavailable) and the connection it
// used is discarded, never reused half-read.
//
// One file per concern: ownership.go now; revocations and the rest later.
package postgres
