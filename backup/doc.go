// Package backup owns dbha's backups: which instance a backup is taken
// from, the runs of mariadb-backup and pg_basebackup, the catalog of
// backups with their positions, verification by restore, restores to a
// point from dbha's change-stream store, retention, and reseeding a replica.
//
// Choosing a source, choosing a reseed and pruning are pure functions of a
// snapshot or of the catalog. This package must not promote anything or
// repoint a working replica: the one replication change it makes is
// attaching an instance it rebuilt, through the Replication it is given.
package backup
