package promote

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
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
	// rejoinBackoff is how long a failed rejoin or rewind is not tried
	// again.
	rejoinBackoff time.Duration

	mu        sync.Mutex
	troubles  map[string]Trouble // by instance: the last failed attempt to bring it back
	reseeding map[string]bool    // instances being reseeded now
	// acks are the commit settings each instance last answered with: a
	// failover plans with its old primary's, which it cannot ask then.
	acks     map[string]topology.Acknowledgement
	resumeAt time.Time // no resume of a left recovery before this (see resumeLeft)
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
	k := &Keeper{env: env, cluster: cluster, request: request, log: log,
		rejoinBackoff: 30 * time.Second, troubles: map[string]Trouble{}, reseeding: map[string]bool{},
		acks: map[string]topology.Acknowledgement{}}
	if env.Acks != nil {
		if kept, err := env.Acks.Load(); err == nil {
			k.acks = kept
		} else {
			k.log.Warn("the commit settings seen before are lost", "err", err)
		}
	}
	if discover := env.Discover; discover != nil {
		k.env.Discover = func(ctx context.Context, bounds ...topology.Bound) topology.Snapshot {
			s := discover(ctx, bounds...)
			k.remember(s)
			return s
		}
	}
	return k
}

// remember keeps the commit settings of every instance that answered,
// and stores them (env.Acks) when they changed.
func (k *Keeper) remember(s topology.Snapshot) {
	k.mu.Lock()
	defer k.mu.Unlock()
	changed := false
	for _, in := range s.Instances {
		if in.Reachable && in.Ack != nil && k.acks[in.Addr] != *in.Ack {
			k.acks[in.Addr] = *in.Ack
			changed = true
		}
	}
	if changed && k.env.Acks != nil {
		if err := k.env.Acks.Save(k.acks); err != nil {
			k.log.Warn("keep the commit settings seen", "err", err)
		}
	}
}

// fencing is the FencingPolicy the keeper's plans are made with.
func (k *Keeper) fencing() FencingPolicy {
	k.mu.Lock()
	defer k.mu.Unlock()
	acks := make(map[string]topology.Acknowledgement, len(k.acks))
	for a, v := range k.acks {
		acks[a] = v
	}
	return FencingPolicy{Leases: k.env.Leases != nil, Command: k.env.Fencer != nil, Managers: k.env.Managers,
		Require: k.env.RequireFencing, ProceedOnCommandFailure: k.env.ProceedOnFenceFailure, Acks: acks}
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
	req.Fencing = k.fencing()
	return req
}

// Plan makes the plan a recovery would run now, changing nothing: what
// `dbha promote --dry-run` prints. It reads what consistency checks found
// as a recovery does, from the Store, or from env.Consistency when the
// keeper only plans.
func (k *Keeper) Plan(ctx context.Context, c Choice) (Plan, error) {
	req := withConsistency(ctx, k.env.consistency(), k.cluster, k.requestFor(c))
	return MakePlan(k.env.Discover(ctx), req)
}

// Recover replaces the primary under the cluster's lock (see Recover).
// An automatic recovery first cuts dbha's stream from the primary the
// detection lost, so that the request reads what the store holds as
// final, before the lock is even asked for: nothing of the recovery waits
// for the stream's own read timeout on a dead or hung host. The cut ends
// with the recovery, whatever its outcome (when it finds nothing to
// recover, the stream reconnects to the same primary at once).
func (k *Keeper) Recover(ctx context.Context, t Trigger, c Choice) (*Record, error) {
	if t.Automatic {
		defer k.env.cut(t.Primary)()
	}
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
// moving writers is a failover's job, which fences first. With leases
// (RecoverEnv.Leases), the writer is granted its lease first.
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
		// The writable primary holds the grant (a no-op once it does), so
		// that its guard can renew its lease; a failover revokes it.
		if k.env.Leases != nil {
			if err := k.env.Leases.Grant(ctx, k.cluster, writer); err != nil {
				return err
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
//
// A recovery in progress found while holding the lock has no manager
// running it (a running one holds the lock): its manager crashed, or lost
// its lock or Consul mid-way. It is resumed here, then fn is skipped with
// ErrBusy, so that the next cycle acts on what the recovery left. No
// other path may be left to resume it: once the candidate is promoted the
// analysis no longer sees a dead primary, so no recovery is triggered,
// and a manager resumes at start-up only. A failed resume is not tried
// again before resumeBackoff.
func (k *Keeper) underLock(ctx context.Context, fn func(topology.Snapshot) error) error {
	lease, err := k.env.Store.Acquire(ctx, k.cluster, k.env.Manager)
	if errors.Is(err, ErrLocked) {
		return ErrBusy
	}
	if err != nil {
		return err
	}
	defer lease.Release()
	rec, err := k.env.Store.Unfinished(ctx, k.cluster)
	if err != nil {
		return err
	}
	if rec != nil {
		return k.resumeLeft(ctx, lease, rec)
	}
	return fn(k.env.Discover(ctx))
}

// resumeBackoff is how long after a failed resume underLock waits before
// trying again (the daemon's own resume at start-up retries as often).
const resumeBackoff = 5 * time.Second

// resumeLeft finishes rec, a recovery no manager runs, under lease (see
// underLock). It returns ErrBusy once it is done, or its error.
func (k *Keeper) resumeLeft(ctx context.Context, lease Lease, rec *Record) error {
	now := k.env.Now()
	k.mu.Lock()
	wait := now.Before(k.resumeAt)
	k.mu.Unlock()
	if wait {
		return ErrBusy
	}
	k.log.Warn("resuming a recovery no manager runs (its manager crashed or lost the lock)", "recovery", rec.ID, "next_step", rec.Next, "manager", rec.Manager)
	_, err := finish(ctx, k.env, k.cluster, lease, rec)
	if err != nil {
		k.mu.Lock()
		k.resumeAt = now.Add(resumeBackoff)
		k.mu.Unlock()
		return fmt.Errorf("resume recovery %s (not tried again for %v): %w", rec.ID, resumeBackoff, err)
	}
	k.log.Warn("resumed a recovery a previous manager left unfinished", "recovery", rec.ID, "done", rec.Done)
	return ErrBusy
}

func (k *Keeper) enforce(ctx context.Context, s topology.Snapshot) error {
	writers, err := k.env.Store.Writer(ctx, k.cluster)
	if err != nil || len(writers) > 1 {
		return err
	}
	var writer string // none published yet
	if len(writers) == 1 {
		writer = writers[0]
	}
	e := Enforce(s, writer)
	for _, addr := range e.Fence {
		if err := k.env.Engine.Fence(ctx, addr); err != nil {
			return fmt.Errorf("fence %s (the writer is %s): %w", addr, writer, err)
		}
		k.log.Warn("fenced a writable instance that is not the writer", "instance", addr, "writer", writer)
	}
	if e.Reopen != "" && k.env.Leases != nil {
		return k.reopen(ctx, e.Reopen, e.Unpublished)
	}
	var errs []error
	for _, addr := range e.Rejoin {
		if k.isReseeding(addr) {
			continue // the reseed attaches it itself
		}
		errs = append(errs, k.heal(ctx, addr, HealRejoin, func() error { return k.env.Engine.Rejoin(ctx, addr, writer) }))
	}
	for _, d := range e.Rewind {
		if k.needsReseed(d.Addr) {
			k.reseed(ctx, d.Addr)
			continue
		}
		errs = append(errs, k.heal(ctx, d.Addr, HealRewind, func() error { return k.rewind(ctx, d, writer) }))
	}
	k.forgetHealed(s)
	return errors.Join(errs...)
}

// reopen makes the writer writable again after its guard fenced it (it
// could not renew its lease): the grant first, so that its guard renews
// rather than fences it again. A guard that still cannot reach Consul
// fences it again at its next round; the next cycle tries once more.
// Unpublished (no writer named yet), the primary is reopened only when the
// cluster's grant was never stored or names it already, and the next
// cycle publishes it.
func (k *Keeper) reopen(ctx context.Context, writer string, unpublished bool) error {
	if unpublished {
		holder, stored, err := k.env.Leases.Holder(ctx, k.cluster)
		if err != nil {
			return fmt.Errorf("reopen the primary %s: %w", writer, err)
		}
		if stored && holder != writer {
			return fmt.Errorf("the primary %s is read-only and no writer is published, but the write grant names %q: left to the operator", writer, holder)
		}
	}
	if err := k.env.Leases.Grant(ctx, k.cluster, writer); err != nil {
		return fmt.Errorf("reopen the writer %s: %w", writer, err)
	}
	if err := k.env.Engine.Unfence(ctx, writer); err != nil {
		return fmt.Errorf("reopen the writer %s: %w", writer, err)
	}
	if unpublished {
		k.log.Warn("made the primary writable again before its first publication: it was read-only with no other writer, every instance following it (its guard fences it when Consul cannot confirm its grant)", "instance", writer)
		return nil
	}
	k.log.Warn("made the writer writable again: it was read-only with no other writer (its guard fences it when it cannot renew its lease)", "instance", writer)
	return nil
}

// HealAction names how an instance is brought back to follow the writer.
type HealAction string

const (
	HealRejoin HealAction = "rejoin"
	HealRewind HealAction = "rewind"
	HealReseed HealAction = "reseed"
)

// Trouble is an instance the keeper could not bring back: what it tried,
// why it failed, and whether trying again can help (a refused rewind
// cannot: the instance needs a reseed).
type Trouble struct {
	Instance string     `json:"instance"`
	Action   HealAction `json:"action"`
	Error    string     `json:"error"`
	Refused  bool       `json:"refused,omitempty"`
	Since    time.Time  `json:"since"`
	Retry    time.Time  `json:"retry,omitzero"` // no new attempt before this
}

// Troubles returns the instances the keeper tried and failed to bring
// back, in address order. The daemon turns them into findings.
func (k *Keeper) Troubles() []Trouble {
	k.mu.Lock()
	defer k.mu.Unlock()
	out := make([]Trouble, 0, len(k.troubles))
	for _, t := range k.troubles {
		if !k.reseeding[t.Instance] { // in hand: the log says so, and it is down meanwhile
			out = append(out, t)
		}
	}
	slices.SortFunc(out, func(a, b Trouble) int { return strings.Compare(a.Instance, b.Instance) })
	return out
}

// heal runs one attempt to bring addr back, unless an earlier one failed
// less than rejoinBackoff ago (a rewind or pg_rewind is heavy, and a failing
// one must not run every cycle) or was refused (it cannot succeed until the
// instance changes: it needs a reseed).
func (k *Keeper) heal(ctx context.Context, addr string, action HealAction, attempt func() error) error {
	now := k.env.Now()
	k.mu.Lock()
	t, failed := k.troubles[addr]
	k.mu.Unlock()
	if failed && t.Action == action && (t.Refused || now.Before(t.Retry)) {
		return nil
	}
	err := attempt()
	k.mu.Lock()
	defer k.mu.Unlock()
	if err == nil {
		delete(k.troubles, addr)
		return nil
	}
	if !failed || t.Action != action {
		t = Trouble{Instance: addr, Action: action, Since: now}
	}
	t.Error, t.Refused, t.Retry = err.Error(), errors.Is(err, ErrCannotRewind), now.Add(k.rejoinBackoff)
	k.troubles[addr] = t
	if t.Refused {
		return fmt.Errorf("%s %s: %w", action, addr, err)
	}
	return fmt.Errorf("%s %s (not tried again for %v): %w", action, addr, k.rejoinBackoff, err)
}

func (k *Keeper) isReseeding(addr string) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.reseeding[addr]
}

// needsReseed: addr's rewind was refused, or a reseed of it failed, and
// the keeper may reseed it.
func (k *Keeper) needsReseed(addr string) bool {
	if k.env.Reseed == nil {
		return false
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	t, ok := k.troubles[addr]
	return ok && (t.Action == HealReseed || (t.Action == HealRewind && t.Refused))
}

// reseed rebuilds addr from a backup in the background: it takes minutes
// (stop, restore, start, attach), and the cluster's lock, under which
// Enforce runs, must not wait for it, or a failover would. One reseed of
// an instance at a time; a failed one is retried after rejoinBackoff.
func (k *Keeper) reseed(ctx context.Context, addr string) {
	now := k.env.Now()
	k.mu.Lock()
	t := k.troubles[addr]
	if k.reseeding[addr] || (t.Action == HealReseed && now.Before(t.Retry)) {
		k.mu.Unlock()
		return
	}
	k.reseeding[addr] = true
	k.mu.Unlock()
	k.log.Warn("reseeding a former primary whose transactions cannot be undone (promotion.reseed: auto)", "instance", addr, "why", t.Error)
	go func() {
		err := k.env.Reseed(ctx, addr)
		k.mu.Lock()
		defer k.mu.Unlock()
		delete(k.reseeding, addr)
		if err == nil {
			delete(k.troubles, addr)
			k.log.Warn("reseeded a former primary from a backup; it follows the writer", "instance", addr)
			return
		}
		if t.Action != HealReseed {
			t = Trouble{Instance: addr, Action: HealReseed, Since: k.env.Now()}
		}
		t.Error, t.Refused, t.Retry = err.Error(), false, k.env.Now().Add(k.rejoinBackoff)
		k.troubles[addr] = t
		k.log.Error("reseed of a former primary failed", "instance", addr, "retry_in", k.rejoinBackoff.String(), "err", err)
	}()
}

// forgetHealed drops the troubles of instances that no longer need the
// keeper: back to replicating (healed by hand, or reseeded), or gone.
func (k *Keeper) forgetHealed(s topology.Snapshot) {
	k.mu.Lock()
	defer k.mu.Unlock()
	for addr := range k.troubles {
		if k.reseeding[addr] {
			continue // it is down, then attached: the reseed says how it ended
		}
		if in, ok := s.Instance(addr); !ok || !in.Reachable || in.Replication != nil {
			delete(k.troubles, addr)
		}
	}
}

// Rewinder is what an engine that can rewind a former primary offers: the
// transactions addr holds beyond primary are saved under saveDir, undone on
// addr, and addr follows primary (MariaDB: the transactions, undone with
// flashback; PostgreSQL: the WAL beyond the fork, then pg_rewind through
// the rejoin command). A result without File means addr held nothing to
// save after all. An error wrapping ErrCannotRewind means the transactions
// cannot be undone safely (DDL, a non-row event, a write of unknown
// origin): nothing on addr changed, and it needs a reseed.
type Rewinder interface {
	Rewind(ctx context.Context, addr, primary, saveDir string) (topology.Rewound, error)
}

// ErrCannotRewind: an instance holds transactions that cannot be undone
// safely; it needs a reseed from a backup.
var ErrCannotRewind = topology.ErrCannotRewind

// rewind undoes what a former primary holds beyond the writer, saving it
// first, and lists what it undid in the loss ledger of the recovery that
// made it a former primary (the latest one that did).
func (k *Keeper) rewind(ctx context.Context, d Divergent, writer string) error {
	rw, ok := k.env.Engine.(Rewinder)
	if !ok {
		return fmt.Errorf("%w: this engine cannot rewind; it holds %s, which %s lacks", ErrCannotRewind, d.Errant, writer)
	}
	res, err := rw.Rewind(ctx, d.Addr, writer, k.env.SaveDir)
	if err != nil {
		return err
	}
	res.Instance = d.Addr
	if res.File == "" {
		k.log.Info("rejoined a former primary that held nothing the new primary lacked", "instance", d.Addr, "primary", writer)
		return nil
	}
	k.log.Warn("rewound an instance that held what the writer lacked (a former primary, or a replica a partition left on it): the transactions are saved and undone, and it follows the writer",
		"instance", d.Addr, "primary", writer, "transactions", res.Transactions, "bytes", res.Bytes, "tail", res.Tail.String(), "saved_to", res.File)
	if err := k.ledger(ctx, res); err != nil {
		k.log.Error("record the rewind in the recovery's ledger", "instance", d.Addr, "saved_to", res.File, "err", err)
	}
	return nil
}

// ledger adds a rewind to the latest recovery's loss ledger when that
// recovery replaced the rewound instance.
func (k *Keeper) ledger(ctx context.Context, res topology.Rewound) error {
	latest, err := k.env.Store.Latest(ctx, k.cluster)
	if err != nil || latest == nil || latest.Plan.OldPrimary != res.Instance {
		return err
	}
	latest.Ledger.Rewound = append(latest.Ledger.Rewound, res)
	return k.env.Store.Save(ctx, latest)
}
