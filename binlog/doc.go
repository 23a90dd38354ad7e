// Package binlog owns dbha's change streams: a replication client of each
// cluster's primary that keeps the primary's binlog (MariaDB/MySQL, package
// binlog/mysql) or WAL (PostgreSQL, package binlog/postgres; the families
// are named as in topology/) in a store on dbha's own disk, so that dbha
// knows positions and lag without polling replicas hard, and holds the
// events a replica may lack when the primary dies.
//
// This package holds what both engines share: the Status a running stream
// publishes and the Tracker that keeps and publishes it, the Store interface
// commands read, the retention decision, the ClusterView that tells a
// stream its primary and the replicas' positions retention keeps for, the
// Hold through which a recovery cuts a stream from the primary it
// replaces, and the store's place and size under state_dir. It must not know about Consul
// or failover policy, nor read the configuration: the ClusterView is given
// a discovery function.
package binlog
