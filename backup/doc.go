// Package backup owns dbha's backups: which instance a backup is taken
// from, the catalog of backups with their positions, verification by
// restore, retention and reseeding (the runs of mariadb-backup and
// pg_basebackup land with the backup issue's later work).
//
// Choosing a source and pruning are pure functions of a snapshot or of the
// catalog. This package must not promote or repoint anything.
package backup
