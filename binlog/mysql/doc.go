// Package mysql keeps a copy of a MariaDB (tested) or MySQL primary's
// binlog on dbha's disk: a replication client with GTID auto-positioning
// that writes every transaction it receives to a store directory, follows
// the primary through switchovers, can act as a semi-sync replica, and
// answers positions and lag from what it holds. It owns the store's files;
// it must not know about Consul or failover policy, and it never decides
// which instance is the primary (Config.Primary says).
//
// TailCopier (tail.go) reads, the same way, a fenced former primary's
// unreplicated tail into a single binlog file for a rewind
// (topology/mysql.Controller.Rewind), and judges each event: only
// transactions of full-image row events can be undone.
//
// # Store layout
//
// A store directory (binlog.Dir(state_dir, cluster)) holds, like a server's
// binlog directory:
//
//	dbha-bin.000001 ...     real binlog files: fe 62 69 6e, the primary's
//	                        Format_description event, a Gtid_list event (MySQL:
//	                        Previous_gtids) with the position held before the
//	                        file, then the events as received
//	dbha-bin.000001.idx ... the file's transaction index (see index.go)
//	dbha-bin.index          the data files, oldest first ("./dbha-bin.000001")
//	status.json             the running stream's binlog.Status
//	stream.lock             held (flock) by the process writing the store
//
// Every event's end_log_pos is rewritten to its offset in the store's file
// and its CRC32 recomputed, so `mariadb-binlog --start-position` works on
// the store's offsets. Not stored: heartbeats, fake Rotate events and
// other artificial events, and the primary's own file bookkeeping
// (Rotate, Gtid_list, Binlog_checkpoint), which would describe the
// primary's files rather than the store's. A new file starts on every
// (re)connect, when the primary rotates, and when a file passes
// Config.MaxFileSize; a file left without any transaction is removed when
// the next one starts.
//
// # Decisions
//
//   - Raw mode with DisableRetrySync: go-mysql hands over undecoded events;
//     dbha decodes only GTID, Query and Xid events to find transactions
//     (assembler), and reconnects itself from the position on disk. go-mysql's
//     own retry would, in raw mode, resume from where it started and deliver
//     events twice.
//   - SynchronousEventHandler: events are written on go-mysql's reading
//     goroutine, before go-mysql sends the semi-sync ACK of an event.
//   - fsync: with semi-sync, before returning from the event that ends a
//     transaction (so the ACK follows the fsync); otherwise every 100 ms,
//     and always when a file is closed. Status.Position is the fsynced
//     position.
//   - Crash safety: a file is marked in use (LOG_EVENT_BINLOG_IN_USE_F, as
//     servers do) until its writer has cut any open transaction off,
//     fsynced and closed it. After a kill -9 the next start finds the
//     newest file still in use, scans it from its last index record, cuts
//     an incomplete transaction off and rebuilds missing index records
//     (repairStore), then resumes from the position of the last complete
//     transaction per domain: no gap, no duplicate.
//   - First start, with an empty store: from the primary's current
//     @@gtid_binlog_pos (MySQL @@gtid_executed); earlier transactions are
//     not held. The log says so.
//   - A position the primary cannot serve (ERROR 1236: binlogs purged, or
//     dbha holding what the primary does not have) marks the stream broken
//     with the missing range and what to do; Run returns ErrBroken. Nothing
//     is ever skipped.
//   - A failed write or fsync (a full disk) ends the connection before any
//     ACK, cuts the file back to its last fsync, and retries with backoff:
//     dbha never acknowledges what is not on disk.
//   - Retention: see Config.KeepFor and writer.prune.
package mysql
