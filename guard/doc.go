// Package guard is the optional agent beside a database server (`dbha
// guard`): it holds the server's write lease in Consul while the server
// is the cluster's writable primary and the cluster's grant names it, and
// makes its own server read-only, ending its client sessions, when it can
// no longer renew that lease — cut off from Consul, Consul down, or the
// grant withdrawn by a failover. That is what lets dbha promote a new
// primary while the old one cannot be reached, without two writers
// (promote.Leases is dbha's side of the protocol).
//
// The protocol. dbha (the manager) writes the cluster's grant
// (dbha/<cluster>/grant) with a check-and-set: it names the one instance
// that may be writable, or none. A guard renews its lease
// (dbha/<cluster>/lease/<addr>) with one Consul transaction that checks the
// grant still names its instance at the index the guard read. A renewal
// sent at time s (the guard's monotonic clock) lets the server stay
// writable until s + TTL; the guard fences it so that the fence is done by
// then (it starts fencing at s + TTL - Margin(TTL)). A revocation is a new
// grant: every renewal sent after it fails its check, so once dbha has
// stored a revocation and waited TTL×1.1 (plus a little) on its own
// monotonic clock, the old primary's guard has fenced it — or has released
// its lease earlier with fenced=true, which dbha takes as confirmation.
//
// The clock-rate assumption: the guard's clock and dbha's run at rates
// within 10% of each other (dbha's waits are stretched by that much). Wall
// clocks, and their offsets, do not matter: each side measures only its
// own durations. The guarantee holds while the guard runs: a guard killed
// while its server is cut off cannot fence it, so run it under a
// supervisor that restarts it (systemd Restart=always), and a guard that
// starts fences a writable server unless its first renewal succeeds.
//
// The guard never makes its server writable; dbha does (a promotion, or the
// keeper). It decides nothing about failover. Its decisions are the pure
// Decide; Guard.Run is the I/O around it.
package guard
