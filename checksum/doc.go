// Package checksum proves that replicas hold their primary's data: it
// checks every user table in chunks by key, each chunk's checksum taken on
// the primary compared with the same chunk on each replica at the same
// point of its history.
//
// MariaDB/MySQL replicas re-execute statements: as pt-table-checksum does,
// the primary computes each chunk's checksum in a REPLACE ... SELECT that
// is logged as a statement (binlog_format=STATEMENT for that session), so
// that each replica computes the same chunk when it applies that
// statement, after exactly the transactions the primary had committed
// before it; an UPDATE then copies the primary's result beside each
// replica's. PostgreSQL physical standbys replay WAL, not statements: a
// chunk's hash (its rows and their xmin, which a physical standby holds
// identically) is taken on the primary, then on each standby once it has
// replayed past the primary's WAL insert position read after it, then on
// the primary again; a difference counts only when the primary's two
// hashes agree, that is, when no commit changed the chunk in between, so
// the standby's read, somewhere in between, must have found the same rows;
// it is then confirmed, and its rows named, row by row (see Postgres).
//
// A run checkpoints each chunk (Checkpoint), so that one stopped resumes
// where it was; what it establishes is folded into a per-replica Summary
// (Merge) that promotion and the daemon read.
//
// The run (Run) chooses chunk sizes so that a chunk takes about the chunk
// time on the primary, pauses while a replica lags past a limit, and
// reports per table the chunks checked and those that differ, with their
// key range and the replicas. Decisions (chunk size, key ranges, the
// verdict) are pure; the engines do the I/O.
package checksum
