// Package checks decides whether a cluster's primary is dead, and what else
// is wrong, from evidence gathered along several independent paths: dbha's
// own probes of the primary, each replica's replication link to it, dbha's
// change stream, other dbha managers' observations and an optional
// external command.
//
// The decision is pure: Tracker.Observe folds one probe cycle's raw
// observations into Evidence (counting consecutive failures, learning when
// each replica last heard from the primary), and Analyze turns Evidence into
// typed Findings through a rule table. Neither does I/O or reads a clock.
// A primary that only dbha cannot reach is a partition of dbha, never a dead
// primary.
//
// The probes that do I/O (dbha's TCP connect, the operator's check
// command) are in checks/probe, so that this package, which config imports
// for its Policy, stays free of I/O.
//
// This package must not change any server; recovery belongs to promote.
package checks
