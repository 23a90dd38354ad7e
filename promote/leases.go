package promote

import (
	"context"
	"time"
)

// Leases are the write leases that guards beside the database servers
// hold (`dbha guard`): a server is writable only while its guard holds
// the cluster's grant for it, renewed well within a TTL. A guard that
// cannot renew — cut off from Consul, Consul down, the grant withdrawn —
// makes its server read-only and ends its client sessions before the TTL
// runs out. That is what lets a failover promote a new primary while the
// old one cannot be reached, without two writers.
//
// Methods may be called concurrently for different clusters. An error
// from Revoke means addr must not be taken as unable to write: the
// revocation may or may not be stored, and the wait did not complete. An
// error from Grant means the grant may not be stored: addr must not be
// made writable.
//
// Whoever makes an instance writable grants it first (a promotion, a
// switchover that gives the old primary its role back, the keeper's
// publish): its guard fences a writable server the grant does not name.
// consul.Leases is the implementation; its waits assume the guard's and
// dbha's clocks run at rates within 10% of each other.
type Leases interface {
	// Revoke withdraws addr's right to be writable in cluster, and
	// returns once addr's guard can no longer keep it writable: at once
	// when the guard has released its lease (it saw the revocation and
	// fenced its server), else once the lease's TTL, stretched by the
	// clock-rate margin, has passed since the revocation was stored.
	// Guarded false: no guard holds or has held a lease for addr, so the
	// lease layer does not protect this cluster from it; Revoke then
	// returns at once (the revocation is stored all the same, so a guard
	// started later does not take the grant back).
	Revoke(ctx context.Context, cluster, addr string) (Revocation, error)
	// Grant gives addr the right to be writable, before it is made
	// writable (a promotion) or when the writer endpoint is first
	// published.
	Grant(ctx context.Context, cluster, addr string) error
	// Holder is the instance cluster's grant names ("" once revoked);
	// stored is false when no grant was ever stored (no writer was ever
	// granted: a cluster dbha has not published yet).
	Holder(ctx context.Context, cluster string) (addr string, stored bool, err error)
}

// Revocation is what Revoke found and waited for, for the audit record.
type Revocation struct {
	// Guarded: a guard held (or had held) addr's lease.
	Guarded bool `json:"guarded"`
	// Released: the guard released its lease, confirming its server is
	// fenced; otherwise the lease ran out (Waited).
	Released bool          `json:"released,omitempty"`
	Waited   time.Duration `json:"waited,omitempty"`
	TTL      time.Duration `json:"ttl,omitempty"`
}
