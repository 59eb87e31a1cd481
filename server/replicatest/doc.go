// Package replicatest holds the integration tests of scopegate replicas as
// real processes: two `scopegate serve` sharing one PostgreSQL, and one
// node on its embedded store file. The tests build the binary once, start
// it on loopback ports, revoke through the Admin API of one process and
// measure how long the other takes to deny. The package has no non-test
// code; the PostgreSQL tests skip unless SCOPEGATE_TEST_POSTGRES names a
// database, and the outage drill also needs SCOPEGATE_TEST_PG_CONTROL=1.
package replicatest
