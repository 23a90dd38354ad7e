// Package promote replaces a cluster's primary: a failover when the primary
// is dead, a planned switchover when it is alive.
//
// MakePlan is a pure function of a topology snapshot and a request. It ranks the
// candidates with the reasons for each rank, works out the exact gap of
// every replica and where each missing event will come from (the
// candidate's relay log or received WAL, another replica, dbha's change
// stream store), states the expected loss, and lists the steps. Execute
// carries out exactly those steps over small engine interfaces, re-checking
// the cluster lock before each irreversible one, so that `dbha promote
// --dry-run` prints what would really happen.
//
// Before the new primary takes writes, a failover secures the old one in
// layers that PlanFencing chooses and Secure judges (both pure): its
// guard's write lease revoked (Leases), read-only if it answers within a
// bound, the operator's fence command (Fencer), commits that cannot be
// acknowledged without another server; the record says which held, or
// that none did.
//
// This package must not discover topology itself: it is handed a snapshot.
package promote
