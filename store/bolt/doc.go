// Package bolt is scopegate's default store: one embedded bbolt file, no
// server to run.
//
// Why bbolt rather than SQLite: it is pure Go (no cgo, so static builds and
// cross-compiling stay trivial), small (about 1 MB of binary against about
// 7 MB for the pure-Go SQLite port) and fast to compile, its transactions are
// ACID with a single writer, and our data is key → value (lookup and key →
// owners), which needs no query language. Deployments that need queries over
// their own tables, or several scopegate replicas sharing state, use
// store/postgres.
//
// Layout: one top-level bucket per concern ("ownership" now; revocations and
// the rest later, each in its own file), and inside it one bucket per lookup
// mapping key → owners.
package bolt
