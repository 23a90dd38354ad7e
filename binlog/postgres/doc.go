// Package postgres is dbha's PostgreSQL change stream: a physical replication
// client of a cluster's primary that keeps the primary's WAL on dbha's own
// disk, written the way pg_receivewal writes it, so that pg_waldump reads it,
// a restore_command can hand it to a standby that is being promoted, and
// dbha knows how far every standby is behind.
//
// # The store
//
// A stream's store directory (binlog.Dir(state_dir, cluster)) holds:
//
//	status.json          the stream's binlog.Status, rewritten every second
//	wal-store.json       the identity of the cluster the WAL came from
//	wal.lock             held (flock) by the one process streaming into the store
//	wal/                 WAL exactly as pg_receivewal writes it, and nothing else:
//	  <24 hex>           complete segments, byte-identical to the primary's
//	  <24 hex>.partial   the segment being written, zero-padded to the segment
//	                     size; also the last segment of a timeline that was
//	                     left before it was complete
//	  <8 hex>.history    timeline history files
//	arrivals/<24 hex>    per segment: when each stretch of its WAL arrived
//	forked/tl<N>-<time>/ WAL of a timeline number that a later primary created
//	                     again with another history: set aside, kept as it was
//
// # What it owns and what it must not do
//
// Stream (streamer.go, session.go) connects, chooses where to start
// (plan.go, a pure function), writes segments (segments.go) and reports its
// flush position to the primary only once it is fsynced (feedback.go). Store
// (store.go) is the read side that `dbha stream status|events` use; it never
// writes. Retention (retention.go) deletes only complete segments that no
// standby still lacks.
//
// Rewinder (rewind.go, save.go, fork.go) is a one-shot reader, not part of
// the stream: before a former primary is rewound, it copies the WAL the
// former primary holds beyond the new primary's timeline switch into a
// directory of its own under dbha's state, without a slot and without
// changing either server, then has the rejoin command run.
//
// The package must not decide failover, talk to Consul, or decode WAL
// records: it holds bytes and positions. Transactions therefore lists LSN
// ranges per segment, not commits.
package postgres
