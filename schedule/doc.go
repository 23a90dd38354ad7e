// Package schedule turns a cron spec into the instants a cluster's
// scheduled runs start at (today: `dbha run`'s backups), the same on every
// manager: times are UTC unless the spec names a zone, @every slots are
// aligned to multiples of the interval, and the jitter of a slot is a hash
// of the cluster and the slot, not a random draw.
//
// Everything here is pure: no clock is read, the caller passes "after".
// This package must not import any dbha package nor do I/O, so that config
// can validate a spec without pulling in what runs the backups.
package schedule
