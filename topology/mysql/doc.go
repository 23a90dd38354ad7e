// Package mysql is dbha's engine adapter for MariaDB and MySQL: the SQL that
// discovers an instance's role, positions and replication link (both
// flavors), and the Controller that changes replication. The controller's
// statements are per flavor: MariaDB's in mariadb_control.go; MySQL's in
// mysql_control.go, which refuses every change with ErrUnsupported until
// MySQL's own statements are written and tested.
//
// Controller.Rewind (mariadb_rewind.go) turns a MariaDB former primary that
// holds transactions the new primary lacks back into a replica: its tail is
// saved (through a TailSaver, binlog/mysql's TailCopier, which reads it
// over the replication protocol), undone with mariadb-binlog --flashback,
// and its GTID state set back. What cannot be undone safely is refused
// with ErrCannotRewind and the reason.
//
// It reports what servers say, read column by column by name because the
// column order of SHOW ... STATUS changes between versions. It makes no
// decisions: roles, lag and errant transactions are worked out by
// topology.Build from what it returns.
package mysql
