// Package mysql is dbha's engine adapter for MariaDB and MySQL: the SQL that
// discovers an instance's role, positions and replication link (both
// flavors), and the Controller that changes replication. The controller's
// statements are per flavor: MariaDB's in mariadb_control.go; MySQL's in
// mysql_control.go, which refuses every change with ErrUnsupported until
// MySQL's own statements are written and tested.
//
// It reports what servers say, read column by column by name because the
// column order of SHOW ... STATUS changes between versions. It makes no
// decisions: roles, lag and errant transactions are worked out by
// topology.Build from what it returns.
package mysql
