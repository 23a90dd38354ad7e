package guard

import (
	"fmt"
	"time"
)

// ServerState is what a round saw of the guard's own server.
type ServerState string

const (
	// ServerWritable: the server answered and takes writes (read_only off,
	// not a standby).
	ServerWritable ServerState = "writable"
	// ServerReadOnly: the server answered and refuses writes (read-only,
	// a replica or a standby).
	ServerReadOnly ServerState = "read-only"
	// ServerUnknown: the server did not answer.
	ServerUnknown ServerState = "unknown"
)

// GrantState is what a round read of the cluster's grant, as it concerns
// the guard's instance.
type GrantState string

const (
	// GrantMine: the grant names the guard's instance.
	GrantMine GrantState = "mine"
	// GrantOther: the grant names another instance, or none (revoked).
	GrantOther GrantState = "other"
	// GrantAbsent: no grant was ever stored: dbha does not use leases for
	// this cluster yet (no revocation either, so nothing relies on this
	// guard).
	GrantAbsent GrantState = "absent"
	// GrantUnknown: Consul did not answer, or a renewal failed.
	GrantUnknown GrantState = "unknown"
)

// Action is what a round does.
type Action string

const (
	// Wait: nothing this round.
	Wait Action = "wait"
	// Renew: renew the lease, checking that the grant still names the
	// instance; the renewal must return by Decision.Deadline.
	Renew Action = "renew"
	// Fence: make the server read-only and end its client sessions, done
	// by Decision.Deadline; then the next round releases the lease.
	Fence Action = "fence"
	// Release: the server refuses writes; release the lease with
	// fenced=true (the confirmation a revocation waits for).
	Release Action = "release"
)

// Observation is what one round knows: what it saw and what the guard
// remembers. Times are the guard's own monotonic clock (time.Now()).
type Observation struct {
	Server ServerState
	Grant  GrantState
	// Confirmed: the lease was last released with fenced=true after the
	// grant was last written (a revocation is confirmed already).
	Confirmed bool
	// Held: a renewal succeeded since the lease was last released.
	Held bool
	// LastRenew is when the last successful renewal was SENT; zero when
	// none succeeded in this process.
	LastRenew time.Time
	Now       time.Time
	TTL       time.Duration
}

// Decision is what a round does, and when the next round starts.
type Decision struct {
	Action Action
	Reason string
	// Deadline bounds the action: a renewal returns by it, a fence is done
	// by it.
	Deadline time.Time
	// Next is when the next round starts at the latest.
	Next time.Time
}

// Margin is how long before a lease's end the guard starts fencing: the
// time a fence is given to finish (and the round to wake up).
func Margin(ttl time.Duration) time.Duration { return ttl / 4 }

// Period is the time between rounds.
func Period(ttl time.Duration) time.Duration { return ttl / 3 }

// MinTTL is the shortest lease a guard accepts: below it a round, a Consul
// transaction and a fence do not fit in the margins.
const MinTTL = 500 * time.Millisecond

// Valid reports whether a renewal sent at lastRenew still lets the server
// be writable at now: until the fence point, lastRenew + ttl - Margin.
func Valid(lastRenew, now time.Time, ttl time.Duration) bool {
	return !lastRenew.IsZero() && now.Before(fencePoint(lastRenew, ttl))
}

// Overdue reports whether a round must fence before it asks anything: the
// guard holds a lease whose fence point has passed, so no read of Consul
// or of the server may delay the fence (Decide, given a writable server
// and an unknown grant, says Fence then).
func Overdue(o Observation) bool {
	return o.Held && !o.LastRenew.IsZero() && !Valid(o.LastRenew, o.Now, o.TTL)
}

func fencePoint(lastRenew time.Time, ttl time.Duration) time.Time {
	return lastRenew.Add(ttl - Margin(ttl))
}

// Decide is one round of the guard: pure, from what the round saw. A
// writable server is kept writable only while a renewal, checked against
// the grant, was sent less than ttl - Margin ago, or while Consul says
// nothing yet (no grant ever stored); otherwise it is fenced so that the
// fence is done within the lease. The guard never makes its server
// writable.
func Decide(o Observation) Decision {
	period := Period(o.TTL)
	valid := Valid(o.LastRenew, o.Now, o.TTL)
	next := o.Now.Add(period)
	if valid {
		next = earliest(next, fencePoint(o.LastRenew, o.TTL))
	}
	d := Decision{Action: Wait, Next: next}
	fence := func(reason string) Decision {
		// Done within the lease while one runs; else as soon as it can.
		deadline := o.Now.Add(Margin(o.TTL))
		if end := o.LastRenew.Add(o.TTL); !o.LastRenew.IsZero() && end.After(o.Now) {
			deadline = end
		}
		// The next round releases the lease at once.
		return Decision{Action: Fence, Reason: reason, Deadline: deadline, Next: o.Now}
	}
	switch o.Server {
	case ServerReadOnly:
		switch {
		case o.Grant == GrantUnknown || o.Grant == GrantAbsent:
			d.Reason = "the server refuses writes"
		case o.Held:
			d.Action, d.Reason = Release, "the server refuses writes: the lease is released"
		case o.Grant == GrantOther && !o.Confirmed:
			d.Action, d.Reason = Release, "the grant changed: confirming the server refuses writes"
		case o.Grant == GrantMine:
			// A promotion is under way: the lease (and the writer's
			// address) should follow the server's opening without a
			// whole period's delay.
			d.Reason = "the grant names this instance, which refuses writes yet"
			d.Next = earliest(next, o.Now.Add(period/5))
		default:
			d.Reason = "the server refuses writes"
		}
		return d
	case ServerUnknown:
		if !valid && o.Held {
			return fence("the server does not answer and the lease ran out: trying to fence it")
		}
		d.Reason = "the server does not answer: the lease is not renewed"
		return d
	}
	switch o.Grant {
	case GrantMine:
		d.Action, d.Reason = Renew, "the grant names this instance"
		d.Deadline = o.Now.Add(period)
		if valid {
			d.Deadline = earliest(d.Deadline, fencePoint(o.LastRenew, o.TTL))
		}
		return d
	case GrantOther:
		return fence("the grant names another instance, or none")
	case GrantAbsent:
		if o.Held {
			return fence("the grant was deleted")
		}
		d.Reason = "no grant stored yet: dbha does not use leases for this cluster; holding nothing"
		return d
	}
	if valid {
		d.Reason = fmt.Sprintf("cannot renew; the lease holds until %s from now", fencePoint(o.LastRenew, o.TTL).Sub(o.Now).Round(time.Millisecond))
		return d
	}
	if o.LastRenew.IsZero() {
		return fence("writable, and no renewal has succeeded: Consul cannot confirm the grant")
	}
	return fence(fmt.Sprintf("no renewal for %v (ttl %v)", o.Now.Sub(o.LastRenew).Round(time.Millisecond), o.TTL))
}

func earliest(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}
