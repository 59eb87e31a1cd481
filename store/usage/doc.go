// Package usage tracks, per OAuth client, which scopes its tokens carry and
// which of them actually satisfied a route, so that grants nobody exercises
// can be found and withdrawn (least privilege).
//
// The Aggregator counts in memory, fed by the audit pipeline's goroutine
// (never by the decision path), and with a Store persists its counts
// periodically, adding them to what every replica persisted: reports read
// the store, so they cover all replicas and survive restarts.
package usage
