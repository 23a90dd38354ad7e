package guard

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// Server is the guard's own database server.
type Server interface {
	// State says whether the server takes writes now; ServerUnknown when it
	// does not answer within ctx.
	State(ctx context.Context) ServerState
	// Fence makes the server refuse writes and ends its client sessions,
	// within ctx. An error means the server may still take writes.
	Fence(ctx context.Context) error
}

// Lease is the guard's side of its instance's lease in the cluster's store
// (consul.GuardLease). Only the guard's loop calls it, one call at a time,
// each bounded by its ctx.
type Lease interface {
	// Read reads the grant as it concerns the guard's instance. An error
	// comes with State GrantUnknown.
	Read(ctx context.Context) (GrantRead, error)
	// Renew takes or keeps the lease, in one write that fails unless the
	// grant is still at grantIndex. Only a nil error is a renewal.
	Renew(ctx context.Context, grantIndex uint64) error
	// Release leaves the lease unheld with fenced=true, unless the grant
	// changed from grantIndex.
	Release(ctx context.Context, grantIndex uint64) error
	// WaitChange returns once the grant is no longer at grantIndex (nil),
	// or when ctx ends (its error), or at once with an error when Consul
	// cannot be asked. It lets a guard see a revocation without waiting
	// for its next round.
	WaitChange(ctx context.Context, grantIndex uint64) error
}

// VIP is the cluster's virtual writer address on the guard's host
// (vip.Address): held while the guard holds a valid lease on a writable
// server, dropped otherwise. Both calls are idempotent and local.
type VIP interface {
	Hold() error
	Drop() error
}

// GrantRead is what Lease.Read found.
type GrantRead struct {
	State GrantState
	// Index is the grant's ModifyIndex, which a renewal checks.
	Index uint64
	// Confirmed: the lease was released with fenced=true after the grant
	// was written.
	Confirmed bool
}

// Guard is one instance's guard. Run it once.
type Guard struct {
	server Server
	lease  Lease
	ttl    time.Duration
	log    *slog.Logger
	now    func() time.Time

	held       bool
	lastRenew  time.Time // send time of the last successful renewal; zero after a release
	grantIndex uint64    // the grant's index at the last read; 0 when unknown or absent
	said       string    // the last decision logged

	vip      VIP  // nil: none
	vipKnown bool // vipOn is what the host has (false after a failed change)
	vipOn    bool
}

// HoldVIP makes the guard hold v while its lease is valid and its server
// writable; call it before Run.
func (g *Guard) HoldVIP(v VIP) { g.vip = v }

// New returns the guard of server, holding lease with the given TTL (at
// least MinTTL).
func New(server Server, lease Lease, ttl time.Duration, log *slog.Logger) (*Guard, error) {
	if ttl < MinTTL {
		return nil, fmt.Errorf("guard ttl %v: at least %v", ttl, MinTTL)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Guard{server: server, lease: lease, ttl: ttl, log: log, now: time.Now}, nil
}

// Run runs rounds until ctx ends. It returns nil then: leaving the lease
// as it is (the server, if writable, stays so, unguarded: a supervisor
// must restart the guard).
func (g *Guard) Run(ctx context.Context) error {
	g.log.Info("guard started", "ttl", g.ttl.String(), "margin", Margin(g.ttl).String(), "period", Period(g.ttl).String())
	for {
		d := g.Round(ctx)
		g.wait(ctx, d.Next)
		if ctx.Err() != nil {
			if g.held {
				g.log.Warn("guard stopped while holding the lease: its server is not guarded until a guard runs again")
			}
			// No guard would take the address off after a failover.
			g.syncVIP(false, "the guard stopped")
			return nil
		}
	}
}

// wait returns at next, or earlier when the grant changes (a revocation is
// then confirmed, or fenced for, at once).
func (g *Guard) wait(ctx context.Context, next time.Time) {
	wctx, cancel := context.WithDeadline(ctx, next)
	defer cancel()
	if g.grantIndex != 0 && g.lease.WaitChange(wctx, g.grantIndex) == nil {
		return
	}
	<-wctx.Done()
}

// Round runs one round: read the grant, then the server (in that order, so
// that a read-only server confirmed against a grant was read-only after
// that grant was written), decide, act. Every call is bounded so that the
// round cannot outlast the lease.
func (g *Guard) Round(ctx context.Context) Decision {
	start := g.now()
	if o := g.observe(ServerWritable, GrantRead{State: GrantUnknown}); Overdue(o) {
		g.grantIndex = 0 // not read: the wait after this round does not watch a stale index
		d := g.fence(ctx, Decide(o))
		g.say(d, nil)
		return d
	}
	bound := start.Add(Period(g.ttl))
	if Valid(g.lastRenew, start, g.ttl) {
		bound = earliest(bound, fencePoint(g.lastRenew, g.ttl))
	}
	// Each read has its own half of the round's bound: a silent Consul
	// must not leave the server unasked (and so unfenced).
	half := bound.Sub(start) / 2
	rctx, cancel := context.WithTimeout(ctx, half)
	grant, gerr := g.lease.Read(rctx)
	cancel()
	sctx, cancel := context.WithTimeout(ctx, max(half, bound.Sub(g.now())))
	state := g.server.State(sctx)
	cancel()
	if gerr != nil {
		grant = GrantRead{State: GrantUnknown}
	}
	g.grantIndex = grant.Index
	o := g.observe(state, grant)
	d := Decide(o)
	switch d.Action {
	case Renew:
		send := g.now()
		actx, cancel := context.WithDeadline(ctx, d.Deadline)
		err := g.lease.Renew(actx, grant.Index)
		cancel()
		if err == nil {
			g.held, g.lastRenew = true, send
			break
		}
		// A renewal that failed proves nothing: decide again without it.
		gerr = err
		o = g.observe(state, GrantRead{State: GrantUnknown})
		d = Decide(o)
		if d.Action == Fence {
			d = g.fence(ctx, d)
		}
	case Fence:
		d = g.fence(ctx, d)
	case Release:
		actx, cancel := context.WithTimeout(ctx, Period(g.ttl))
		err := g.lease.Release(actx, grant.Index)
		cancel()
		if err != nil {
			g.log.Warn("release the lease", "err", err)
			break
		}
		g.held, g.lastRenew = false, time.Time{}
		g.log.Info("lease released: the server refuses writes", "grant", string(grant.State))
	}
	g.say(d, gerr)
	if d.Action != Fence { // a fence dropped it already
		// Held with a valid lease, whether or not the server answered this
		// round: an unanswered probe changes nothing a client could see
		// until the lease runs out.
		g.syncVIP(state != ServerReadOnly && g.held && Valid(g.lastRenew, g.now(), g.ttl), d.Reason)
	}
	return d
}

// syncVIP puts the writer's address on the host or takes it off, when
// that changes what the host has (or may have: at the first round, and
// after a change that failed).
func (g *Guard) syncVIP(want bool, why string) {
	if g.vip == nil || g.vipKnown && g.vipOn == want {
		return
	}
	change, what := g.vip.Drop, "writer address dropped"
	if want {
		change, what = g.vip.Hold, "writer address held and announced"
	}
	if err := change(); err != nil {
		g.vipKnown = false
		g.log.Error("the writer address could not be changed", "hold", want, "err", err)
		return
	}
	if !g.vipKnown || g.vipOn != want {
		g.log.Warn(what, "why", why)
	}
	g.vipKnown, g.vipOn = true, want
}

func (g *Guard) observe(state ServerState, grant GrantRead) Observation {
	return Observation{Server: state, Grant: grant.State, Confirmed: grant.Confirmed, Held: g.held,
		LastRenew: g.lastRenew, Now: g.now(), TTL: g.ttl}
}

// fence fences the server within the decision's deadline. The lease stays
// held until a round sees the server read-only and releases it (at once
// after a fence that succeeded, a period later after one that failed).
// Only ServerState and the grant's read decide the rounds after; a fence
// that failed is tried again by Overdue's rule.
func (g *Guard) fence(ctx context.Context, d Decision) Decision {
	// Clients of the writer's address go elsewhere first.
	g.syncVIP(false, d.Reason)
	fctx, cancel := context.WithDeadline(ctx, d.Deadline)
	defer cancel()
	start := g.now()
	err := g.server.Fence(fctx)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			err = fmt.Errorf("not done within the lease: %w", err)
		}
		g.log.Error("fence the server", "why", d.Reason, "err", err)
		d.Next = start.Add(Period(g.ttl))
		return d
	}
	g.log.Warn("fenced the server: read-only, client sessions ended", "why", d.Reason, "took", g.now().Sub(start).String())
	// The lease has ended: a later round that finds the server writable
	// again (made so by someone) fences it unless a renewal succeeds.
	g.lastRenew = time.Time{}
	return d
}

// say logs a decision when it differs from the last one logged.
func (g *Guard) say(d Decision, err error) {
	key := string(d.Action) + " " + d.Reason
	if key == g.said || d.Action == Fence {
		return
	}
	g.said = key
	args := []any{"action", string(d.Action), "why", d.Reason}
	if err != nil {
		args = append(args, "err", err)
	}
	g.log.Info("guard", args...)
}
