// Package mysql is dbha's engine adapter for MariaDB and MySQL: the SQL that
// discovers an instance's role, positions and replication link, and (later)
// the replication control statements.
//
// It reports what servers say, read column by column by name because the
// column order of SHOW ... STATUS changes between versions. It makes no
// decisions: roles, lag and errant transactions are worked out by
// topology.Build from what it returns.
package mysql
