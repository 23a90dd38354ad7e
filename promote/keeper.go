package promote

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/dbha/dbha/topology"
)

// ErrBusy from a Keeper means the cluster is changing (a recovery holds its
// lock or is unfinished, or the topology moved under the lock): nothing was
// done; the caller tries again on its next cycle.
var ErrBusy = errors.New("the cluster is changing")

// Keeper keeps one cluster at one writer, through recoveries and between
// them: it publishes the endpoints, recovers a lost primary, resumes a
// recovery a crashed manager left, fences writable instances the writer
// endpoint does not name, and rejoins the old primary. `dbha run`,
// `dbha promote` and `dbha drill` all act through it. Its methods may be
// called concurrently; the cluster's lock in the Store orders what they
// change.
type Keeper struct {
	env     RecoverEnv
	cluster string
	request func() Request
	log     *slog.Logger
	// RejoinBackoff is how long a failed rejoin is not tried again: a
	// rewind is heavy, and a failing one must not run every cycle.
	rejoinBackoff time.Duration

	mu           sync.Mutex
	rejoinFailed map[string]time.Time // instance → last failed rejoin
}

// NewKeeper returns the keeper of cluster. request gives, at each recovery,
// the operator's rules and what dbha's change stream holds of the primary;
// log receives what the keeper changes outside a recovery's record.
func NewKeeper(cluster string, env RecoverEnv, request func() Request, log *slog.Logger) *Keeper {
	if env.Now == nil {
		env.Now = time.Now
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Keeper{env: env, cluster: cluster, request: request, log: log,
		rejoinBackoff: 30 * time.Second, rejoinFailed: map[string]time.Time{}}
}

// Choice is what an operator adds to a recovery's request: the instance to
// promote, and whether the rules that exclude it may be overridden.
type Choice struct {
	To    string
	Force bool
}

func (k *Keeper) requestFor(c Choice) Request {
	req := k.request()
	req.To, req.Force = c.To, c.Force
	return req
}

// Plan makes the plan a recovery would run now, changing nothing: what
// `dbha promote --dry-run` prints.
func (k *Keeper) Plan(ctx context.Context, c Choice) (Plan, error) {
	return MakePlan(k.env.Discover(ctx), k.requestFor(c))
}

// Recover replaces the primary under the cluster's lock (see Recover).
func (k *Keeper) Recover(ctx context.Context, t Trigger, c Choice) (*Record, error) {
	return Recover(ctx, k.env, k.cluster, k.requestFor(c), t)
}

// Resume finishes the recovery a crashed manager left unfinished (see
// Resume); nil, nil when there is none.
func (k *Keeper) Resume(ctx context.Context) (*Record, error) {
	return Resume(ctx, k.env, k.cluster)
}

// Publish points the writer endpoint at writer and the reader endpoint at
// readers, when a snapshot taken under the lock still shows writer as the
// writable primary. It never moves the writer away from an instance that
// cannot be reached: that instance may be alive behind a partition, and
// moving writers is a failover's job, which fences first.
func (k *Keeper) Publish(ctx context.Context, writer string, readers []string) error {
	return k.underLock(ctx, func(fresh topology.Snapshot) error {
		if p, err := fresh.WritablePrimary(); err != nil || p != writer {
			return ErrBusy // the next cycle publishes what it settles on
		}
		current, err := k.env.Store.Writer(ctx, k.cluster)
		if err != nil {
			return err
		}
		if len(current) == 1 && current[0] != writer {
			if in, ok := fresh.Instance(current[0]); !ok || !in.Reachable {
				return fmt.Errorf("the writer endpoint names %s, which cannot be reached; it is not moved to %s outside a failover", current[0], writer)
			}
		}
		if err := k.env.Store.SetWriter(ctx, k.cluster, writer); err != nil {
			return err
		}
		return k.env.Store.SetReaders(ctx, k.cluster, readers)
	})
}

// Enforce keeps one writer and brings a former primary back, as the pure
// Enforce decides from a snapshot taken under the lock: writable
// instances the writer endpoint does not name are fenced; the latest
// recovery's old primary, back and fenced, rejoins.
func (k *Keeper) Enforce(ctx context.Context) error {
	return k.underLock(ctx, func(fresh topology.Snapshot) error { return k.enforce(ctx, fresh) })
}

// underLock runs fn holding the cluster's lock, only when no recovery is in
// progress, and with a snapshot taken under the lock: a recovery between
// its promote and its move-writer steps has a writable new primary the
// writer endpoint does not name yet, which an unlocked Enforce, or one
// acting on a snapshot from before the recovery, would fence. While another
// manager (or a recovery) holds the lock, fn is skipped with ErrBusy: the
// holder keeps the cluster in order.
func (k *Keeper) underLock(ctx context.Context, fn func(topology.Snapshot) error) error {
	lease, err := k.env.Store.Acquire(ctx, k.cluster, k.env.Manager)
	if errors.Is(err, ErrLocked) {
		return ErrBusy
	}
	if err != nil {
		return err
	}
	defer lease.Release()
	if rec, err := k.env.Store.Unfinished(ctx, k.cluster); err != nil || rec != nil {
		if err == nil {
			err = ErrBusy
		}
		return err
	}
	return fn(k.env.Discover(ctx))
}

func (k *Keeper) enforce(ctx context.Context, s topology.Snapshot) error {
	writers, err := k.env.Store.Writer(ctx, k.cluster)
	if err != nil || len(writers) != 1 {
		return err
	}
	writer := writers[0]
	latest, err := k.env.Store.Latest(ctx, k.cluster)
	if err != nil {
		return err
	}
	e := Enforce(s, writer, latest)
	for _, addr := range e.Fence {
		if err := k.env.Engine.Fence(ctx, addr); err != nil {
			return fmt.Errorf("fence %s (the writer is %s): %w", addr, writer, err)
		}
		k.log.Warn("fenced a writable instance that is not the writer", "instance", addr, "writer", writer)
	}
	switch {
	case e.Hold != "":
		k.log.Warn("the old primary stays fenced", "instance", latest.Plan.OldPrimary, "why", e.Hold)
	case e.Rejoin != "":
		return k.rejoin(ctx, e.Rejoin, writer)
	}
	return nil
}

// rejoin makes a fenced former primary follow primary; after a failure,
// not again for rejoinBackoff.
func (k *Keeper) rejoin(ctx context.Context, addr, primary string) error {
	k.mu.Lock()
	failed := k.rejoinFailed[addr]
	k.mu.Unlock()
	if !failed.IsZero() && k.env.Now().Sub(failed) < k.rejoinBackoff {
		return nil
	}
	if err := k.env.Engine.Rejoin(ctx, addr, primary); err != nil {
		k.mu.Lock()
		k.rejoinFailed[addr] = k.env.Now()
		k.mu.Unlock()
		return fmt.Errorf("rejoin %s as a replica of %s (not tried again for %v): %w", addr, primary, k.rejoinBackoff, err)
	}
	k.mu.Lock()
	delete(k.rejoinFailed, addr)
	k.mu.Unlock()
	k.log.Warn("the old primary rejoined as a replica", "instance", addr, "primary", primary)
	return nil
}
