// Package topology holds dbha's model of a cluster: instances, their roles,
// replication positions and links, and the Snapshot that every decision in
// dbha is made from.
//
// Discover probes every instance of a cluster concurrently through an engine
// adapter (topology/mysql, topology/postgres) and hands what it saw to Build,
// a pure function that works out the primary, the replication tree, lag,
// errant transactions and the problems an operator must hear about.
//
// This package must not talk to Consul, change any server, or decide on a
// failover: it describes, others decide.
package topology
