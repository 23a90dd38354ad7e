// Package postgres is dbha's engine adapter for PostgreSQL: the SQL that
// discovers an instance's role, WAL positions, timeline and WAL receiver,
// and the Controller that changes replication (promote, repoint, fence,
// restore_command for WAL only dbha holds).
//
// It reports what servers say and makes no decisions: roles, lag and forked
// timelines are worked out by topology.Build from what it returns.
package postgres
