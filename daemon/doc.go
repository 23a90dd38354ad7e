// Package daemon is `dbha run`: the loop that probes every cluster along
// every path at a fixed interval, feeds checks.Analyze and reports what it
// finds (structured logs, an HTTP API, Prometheus metrics). It also runs
// each cluster's scheduled backups: when a slot comes, which manager takes
// it, and cancelling and retrying a backup that a failover cuts short; the
// backup itself, and the choice of its source, are the backup package's.
//
// It holds no decision logic of its own: what is wrong is decided in
// checks, what to do about it in promote. Each cluster is watched by its
// own goroutine, so one unreachable cluster never stalls another.
package daemon
