package promote

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/dbha/dbha/topology"
)

// Store keeps what several dbha managers share about recoveries: the
// cluster's lock, the anti-flap block, the records, the endpoints. Consul
// in production (consul.RecoveryStore).
type Store interface {
	// Acquire takes the cluster's lock, or fails with an error wrapping
	// ErrLocked when another manager holds it.
	Acquire(ctx context.Context, cluster, owner string) (Lease, error)
	// Blocked returns the cluster's anti-flap block, ok=false when none
	// (`dbha recover ack` removes it); SetBlocked replaces it.
	Blocked(ctx context.Context, cluster string) (b Block, ok bool, err error)
	SetBlocked(ctx context.Context, cluster string, b Block) error
	// Paused returns the cluster's maintenance mode, ok=false when none.
	Paused(ctx context.Context, cluster string) (p Pause, ok bool, err error)
	// Consistency: what consistency checks found.
	Consistency
	// Save stores a record (and marks it the cluster's recovery in
	// progress until it is Done).
	Save(ctx context.Context, r *Record) error
	// Unfinished returns the cluster's recovery in progress, or nil.
	Unfinished(ctx context.Context, cluster string) (*Record, error)
	// Latest returns the cluster's most recent recovery, finished or not,
	// or nil when it has had none.
	Latest(ctx context.Context, cluster string) (*Record, error)
	// Writer returns the instances the writer endpoint names (one, or
	// none before the first publication).
	Writer(ctx context.Context, cluster string) ([]string, error)
	SetWriter(ctx context.Context, cluster, addr string) error
	SetReaders(ctx context.Context, cluster string, addrs []string) error
}

// Consistency reads what consistency checks (dbha checksum) found of a
// cluster. Every Store is one; a keeper that only plans may be given one
// without a Store (RecoverEnv.Consistency). Calls may run concurrently.
type Consistency interface {
	// Inconsistent returns the replicas that consistency checks found
	// different from the primary, with why (none: nil). An error means
	// the summary could not be read, not that a replica is consistent.
	Inconsistent(ctx context.Context, cluster string) (map[string]string, error)
}

// Lease is a held cluster lock.
type Lease interface {
	Check() error
	Release() error
	ID() string
}

// ErrLocked: another manager holds the cluster's lock; Recover did nothing.
var ErrLocked = errors.New("another dbha manager holds the cluster's lock")

// RecoverEnv is what Recover needs beyond the plan.
type RecoverEnv struct {
	Store Store
	// Consistency is where a keeper without a Store, one that only plans
	// (`dbha promote --dry-run`, the console's switchover page), reads
	// what consistency checks found; with a Store, the Store is read.
	// With neither, a plan says that it was not read.
	Consistency Consistency
	Engine      Engine
	Hooks       Hooks
	Manager     string
	// Discover takes a fresh snapshot; Recover calls it once the lock is
	// held, so the plan is made from what is true now. An instance in
	// bounds is probed under a timeout of its own (topology.Discover).
	Discover    func(ctx context.Context, bounds ...topology.Bound) topology.Snapshot
	StepTimeout time.Duration
	// OldPrimaryTimeout bounds every call towards a failover's old
	// primary (see Env.OldPrimaryTimeout).
	OldPrimaryTimeout time.Duration
	// RecheckTimeout bounds the recovery's own question whether the old
	// primary answers again, when the monitor's probe found it silent
	// moments before (Trigger.UnansweredAt): a host that came back answers
	// a dial and a query well within it (promotion.recheck_timeout);
	// DefaultRecheckTimeout when zero.
	RecheckTimeout time.Duration
	// Streams is dbha's change stream of the cluster in this process, cut
	// from the old primary while a failover runs; nil when none runs here.
	Streams Streams
	// SaveDir is where a rewind saves the transactions it undoes.
	SaveDir string
	// Reseed rebuilds an instance from the newest verified backup and
	// attaches it to the writer (`dbha backup reseed`); the keeper calls it
	// for a former primary whose rewind was refused. nil: never without an
	// operator (promotion.reseed off).
	Reseed func(ctx context.Context, addr string) error
	// BlockFor is the anti-flap window after an automatic recovery
	// (promotion.block_for); 0 sets no block.
	BlockFor time.Duration
	// Leases and Fencer are Env's: the guards' write leases (nil: no
	// guards; the keeper also grants the writer it publishes, and reopens
	// a writer its guard fenced) and promotion.fence_command (nil: none).
	Leases Leases
	Fencer Fencer
	// RequireFencing (promotion.require_fencing) and
	// ProceedOnFenceFailure (promotion.fence_failure: proceed) complete
	// the FencingPolicy a Keeper plans with.
	RequireFencing        bool
	ProceedOnFenceFailure bool
	// Managers is how many managers stream from the primary (and, in
	// lossless mode, acknowledge its commits): manager.members.
	Managers int
	// Acks keeps the commit settings the keeper saw beyond this process
	// (see AckMemory); nil keeps them in memory only.
	Acks AckMemory
	Now  func() time.Time
	// BeforeStep is Env.BeforeStep for every recovery this env runs: a
	// testing hook (the lab's crash at a step); nil in production.
	BeforeStep func(p Plan, st Step)
}

// Streams is dbha's change stream of a cluster as a recovery needs it
// (binlog.Hold in production). Cut ends the stream's connection to addr at
// once and returns when what the store holds of addr is final; the stream
// does not connect to addr again until release is called, and then
// follows whatever instance is the primary. Cuts may nest and run
// concurrently.
type Streams interface {
	Cut(addr string) (release func())
}

// cut cuts env's stream from addr, when there is a stream and an address.
func (env RecoverEnv) cut(addr string) (release func()) {
	if env.Streams == nil || addr == "" {
		return func() {}
	}
	return env.Streams.Cut(addr)
}

// Trigger says why a recovery runs.
type Trigger struct {
	Reason string // "DeadPrimary", "manual switchover", ...
	// Automatic: the daemon's own decision. Only an automatic recovery
	// honours the anti-flap block, and only one sets it: a planned
	// switchover or an operator's promotion neither flaps nor may strand
	// the next failover.
	Automatic bool
	Detected  time.Time // when the failure was confirmed (RTO starts here)
	Evidence  any       // the findings and votes, kept in the record
	// Primary is the primary the monitor watched; it names the old primary
	// when the fresh snapshot cannot.
	Primary string
	// UnansweredAt is when the monitor's last probe of Primary ended
	// without an answer (zero: it answered, or no monitor ran). A recovery
	// planned less than OldPrimaryTimeout after it asks the old primary
	// again only under RecheckTimeout: the monitor has just waited out a
	// whole probe timeout on it, and a host that came back meanwhile (a
	// flap) answers a fresh dial at once.
	UnansweredAt time.Time
	// Quorum is the voters' count an operator's failover was judged by
	// (dbha promote); nil when none was taken. The daemon's automatic
	// recoveries need no such field: only a finding that held the quorum
	// calls for one.
	Quorum *QuorumCount
}

// QuorumCount is the voters' count on a lost primary, as the checks made
// it: whether a strict majority said the primary is lost, and who voted
// what.
type QuorumCount struct {
	Held    bool   `json:"held"`
	Summary string `json:"summary"`
}

// ErrNoQuorum: an operator's failover was asked for while no strict
// majority of the cluster's voters says the primary is lost; --force
// overrides it, and the record says so.
var ErrNoQuorum = errors.New("no quorum: a strict majority of the cluster's voters does not say the primary is lost")

// quorumAllows refuses a failover the voters do not back unless forced,
// and returns what a forced one overrides, for the record.
func quorumAllows(p Plan, req Request, t Trigger) (overridden string, err error) {
	if p.Kind != Failover || t.Quorum == nil || t.Quorum.Held {
		return "", nil
	}
	if !req.Force {
		return "", fmt.Errorf("%w (%s); this side may be cut off from a primary that still takes writes. "+
			"If you know the primary is down, --force overrides the quorum", ErrNoQuorum, t.Quorum.Summary)
	}
	return t.Quorum.Summary, nil
}

// Recover runs one recovery of a cluster end to end under its lock: it
// resumes a recovery a crashed manager left unfinished, or plans from a
// fresh snapshot (an automatic one avoiding what the anti-flap block
// forbids), records the intent, executes, sets the block after an
// automatic recovery and releases the lock. An automatic recovery the
// block leaves without a candidate fails with a *BlockedError. It returns
// the record (also when execution failed part-way: the record says where).
func Recover(ctx context.Context, env RecoverEnv, cluster string, req Request, t Trigger) (*Record, error) {
	if env.Now == nil {
		env.Now = time.Now
	}
	lease, err := env.Store.Acquire(ctx, cluster, env.Manager)
	if err != nil {
		return nil, err
	}
	defer lease.Release()

	rec, err := env.Store.Unfinished(ctx, cluster)
	if err != nil {
		return nil, fmt.Errorf("read the recovery in progress: %w", err)
	}
	if rec == nil {
		if rec, err = start(ctx, env, cluster, req, t); err != nil {
			return nil, err
		}
	}
	return finish(ctx, env, cluster, lease, rec)
}

// Resume finishes the cluster's recovery in progress, if a manager that
// crashed left one; it returns nil, nil when there is none. It takes the
// lock like Recover and honours no block: a half-done recovery is always
// finished, because stopping half-way is what leaves two writers or none.
func Resume(ctx context.Context, env RecoverEnv, cluster string) (*Record, error) {
	if env.Now == nil {
		env.Now = time.Now
	}
	rec, err := env.Store.Unfinished(ctx, cluster)
	if err != nil || rec == nil {
		return nil, err
	}
	lease, err := env.Store.Acquire(ctx, cluster, env.Manager)
	if err != nil {
		return nil, err
	}
	defer lease.Release()
	if rec, err = env.Store.Unfinished(ctx, cluster); err != nil || rec == nil {
		return nil, err // another manager finished it meanwhile
	}
	return finish(ctx, env, cluster, lease, rec)
}

// finish executes a recorded recovery under the lease and, when it was
// automatic, sets the anti-flap block once it is done.
//
// A failover runs with dbha's stream cut from the old primary: the store
// is final while the candidate catches up from it, and a hung primary that
// wakes up meanwhile adds nothing to it. Once the recovery ends the stream
// follows the new primary.
func finish(ctx context.Context, env RecoverEnv, cluster string, lease Lease, rec *Record) (*Record, error) {
	if rec.Kind == Failover {
		defer env.cut(rec.Plan.OldPrimary)()
	}
	rec.Lease = lease.ID()
	if back, err := rollBackIfBack(ctx, env, rec); back {
		return rec, err
	}
	if err := fenceIfBack(ctx, env, rec); err != nil {
		return rec, err
	}
	exec := Env{Engine: env.Engine, Coordinator: coordinator{lease: lease, store: env.Store, cluster: cluster},
		Journal: env.Store, Hooks: env.Hooks, Leases: env.Leases, Fencer: env.Fencer,
		StepTimeout: env.StepTimeout, OldPrimaryTimeout: env.OldPrimaryTimeout, Now: env.Now, BeforeStep: env.BeforeStep}
	if err := Execute(ctx, exec, rec); err != nil {
		return rec, err
	}
	if rec.Automatic && env.BlockFor > 0 {
		if err := env.Store.SetBlocked(ctx, cluster, NewBlock(rec, env.Now(), env.BlockFor)); err != nil {
			return rec, fmt.Errorf("set the anti-flap block: %w", err)
		}
	}
	return rec, nil
}

// start plans and records the intent of a new recovery; an automatic one
// first learns from the anti-flap block which candidates to avoid.
func start(ctx context.Context, env RecoverEnv, cluster string, req Request, t Trigger) (*Record, error) {
	var b Block
	if t.Automatic {
		// Read under the lock: a pause set before it was taken is seen
		// by whichever manager recovers.
		p, paused, err := env.Store.Paused(ctx, cluster)
		if err != nil {
			return nil, fmt.Errorf("read whether the cluster is paused: %w", err)
		}
		if paused {
			return nil, &PausedError{Cluster: cluster, Pause: p}
		}
		if b, req.Avoid, err = antiFlap(ctx, env, cluster); err != nil {
			return nil, err
		}
	}
	if req.LastPrimary == "" {
		req.LastPrimary = t.Primary
	}
	req = withConsistency(ctx, env.consistency(), cluster, req)
	s := env.Discover(ctx, t.recheck(env.Now(), oldBound(env), recheckBound(env))...)
	plan, err := MakePlan(s, req)
	if err != nil {
		return nil, blockedOr(err, s, req, cluster, b)
	}
	if err := stillLost(plan, t); err != nil {
		return nil, err
	}
	overridden, err := quorumAllows(plan, req, t)
	if err != nil {
		return nil, err
	}
	rec := NewRecord(NewID(cluster, env.Now()), env.Manager, t.Reason, plan, env.Now())
	rec.Detected, rec.Evidence, rec.Automatic = t.Detected, t.Evidence, t.Automatic
	rec.QuorumOverridden = overridden
	if err := env.Store.Save(ctx, rec); err != nil {
		return nil, fmt.Errorf("record the intent: %w", err)
	}
	return rec, nil
}

// recheck is the bound of the recovery's probe of the old primary: the
// short recheck when the monitor found it silent less than fresh ago,
// none (the probe timeout) otherwise.
func (t Trigger) recheck(now time.Time, fresh, recheck time.Duration) []topology.Bound {
	if t.Primary == "" || t.UnansweredAt.IsZero() || now.Sub(t.UnansweredAt) >= fresh {
		return nil
	}
	return []topology.Bound{{Addr: t.Primary, Timeout: recheck}}
}

// DefaultRecheckTimeout is RecheckTimeout's default: a host back on a
// local network answers a dial and a query in a few milliseconds.
const DefaultRecheckTimeout = 200 * time.Millisecond

func recheckBound(env RecoverEnv) time.Duration {
	if env.RecheckTimeout <= 0 {
		return DefaultRecheckTimeout
	}
	return env.RecheckTimeout
}

// ErrNothingToRecover: an automatic recovery found, under the lock, a
// cluster that no longer needs it (the primary it was called for is back,
// or another recovery already replaced it).
var ErrNothingToRecover = errors.New("the cluster no longer needs the recovery it was called for")

// stillLost refuses an automatic recovery whose fresh plan is not a
// failover of the primary the detection lost: a trigger is evidence from
// before the lock was taken, and an automatic recovery must never turn
// into a switchover of a healthy primary.
func stillLost(p Plan, t Trigger) error {
	if !t.Automatic {
		return nil
	}
	switch {
	case p.Kind != Failover:
		return fmt.Errorf("%w: %s answers as the primary (the failure seen was of %s)", ErrNothingToRecover, p.OldPrimary, orUnknown(t.Primary))
	case t.Primary != "" && p.OldPrimary != t.Primary:
		return fmt.Errorf("%w: the primary is now %s, not %s", ErrNothingToRecover, p.OldPrimary, t.Primary)
	}
	return nil
}

func orUnknown(s string) string {
	if s == "" {
		return "an unknown primary"
	}
	return s
}

// antiFlap reads the cluster's block and what it forbids an automatic
// recovery now (see AntiFlap).
func antiFlap(ctx context.Context, env RecoverEnv, cluster string) (Block, []Avoid, error) {
	b, ok, err := env.Store.Blocked(ctx, cluster)
	if err != nil {
		return b, nil, fmt.Errorf("read the anti-flap block: %w", err)
	}
	if !ok {
		return Block{}, nil, nil
	}
	avoid, refuseAll := AntiFlap(b, env.Now())
	if refuseAll {
		return b, nil, &BlockedError{Cluster: cluster, Block: b, Until: b.Until}
	}
	return b, avoid, nil
}

// blockedOr turns a planning failure into a *BlockedError when the block
// is what left no candidate: the same plan without the avoided instances
// would have one. Otherwise err stands (the cluster has no candidate
// whatever the block says).
func blockedOr(err error, s topology.Snapshot, req Request, cluster string, b Block) error {
	if len(req.Avoid) == 0 || !errors.Is(err, ErrNoCandidate) {
		return err
	}
	free := req
	free.Avoid = nil
	unblocked, ferr := MakePlan(s, free)
	if ferr != nil {
		return err
	}
	e := &BlockedError{Cluster: cluster, Block: b, Until: b.Until}
	for _, a := range req.Avoid {
		if slices.ContainsFunc(unblocked.Candidates, func(c Candidate) bool { return c.Addr == a.Addr && !c.Excluded }) {
			e.Avoided = append(e.Avoided, a)
		}
	}
	return e
}

// NewID names a recovery; ids sort by time.
func NewID(cluster string, now time.Time) string {
	var b [3]byte
	rand.Read(b[:])
	return fmt.Sprintf("%s-%s-%s", now.UTC().Format("20060102T150405.000Z"), cluster, hex.EncodeToString(b[:]))
}

// coordinator adapts the lease and the store to Execute's Coordinator.
type coordinator struct {
	lease   Lease
	store   Store
	cluster string
}

func (c coordinator) Check() error { return c.lease.Check() }
func (c coordinator) SetWriter(ctx context.Context, addr string) error {
	return c.store.SetWriter(ctx, c.cluster, addr)
}
func (c coordinator) SetReaders(ctx context.Context, addrs []string) error {
	return c.store.SetReaders(ctx, c.cluster, addrs)
}

// ErrRolledBack: a resumed failover found its old primary answering again
// before anything was promoted, and gave it its replicas back.
var ErrRolledBack = errors.New("the old primary answers again before the resumed failover promoted anyone: the failover was rolled back")

// rollBackIfBack: a failover resumed (or retried) after its first steps
// but before it promoted anyone, whose old primary answers again, is
// rolled back instead of finished: the replicas it stopped (MariaDB) follow
// the old primary again and the record ends, aborted. Finishing it would promote
// over a primary that the writer endpoint still names and that clients
// may have been writing to since it returned (a Consul outage or a crash
// can hold a recovery for as long as the lock's session lives): every
// such write would be lost. Execute asks this question only before the
// first stop-following step; a resumed recovery asks it here. back is
// false when the recovery is to go on (fresh, promoted already, or the
// old primary still does not answer within OldPrimaryTimeout).
func rollBackIfBack(ctx context.Context, env RecoverEnv, rec *Record) (back bool, err error) {
	if rec.Kind != Failover || rec.Done || len(rec.Steps) == 0 || stepDone(rec, ActPromote) {
		return false, nil
	}
	// Every replica the plan stops, not only those recorded: a step may
	// have run without being recorded (its manager died, or Consul failed,
	// before the record was saved). Repointing one that still follows the
	// old primary only restarts its replication.
	var stopped []string
	for _, s := range rec.Plan.Steps {
		if s.Action == ActStopFollowing {
			stopped = append(stopped, s.Target)
		}
	}
	if !oldPrimaryAnswers(ctx, env, rec) {
		return false, nil
	}
	var errs []error
	if err := giveBackSecured(ctx, env, rec); err != nil {
		errs = append(errs, err)
	}
	for _, addr := range stopped {
		started := env.Now()
		res := StepResult{N: len(rec.Plan.Steps) + 1, Action: ActRepoint, Target: addr, Started: started,
			Note: "rollback: follows the old primary " + rec.Plan.OldPrimary + " again"}
		if rerr := env.Engine.Repoint(ctx, addr, rec.Plan.OldPrimary); rerr != nil {
			res.Error = rerr.Error()
			errs = append(errs, fmt.Errorf("repoint %s to %s: %w", addr, rec.Plan.OldPrimary, rerr))
		}
		res.Finished = env.Now()
		rec.Steps = append(rec.Steps, res)
	}
	rec.Done, rec.Aborted, rec.Finished = true, true, env.Now()
	rec.Error = ErrRolledBack.Error()
	if len(errs) > 0 {
		rec.Error += fmt.Sprintf("; %d replica(s) not repointed (see the steps)", len(errs))
	}
	errs = append([]error{ErrRolledBack}, errs...)
	if jerr := env.Store.Save(context.WithoutCancel(ctx), rec); jerr != nil {
		errs = append(errs, fmt.Errorf("record the rollback: %w", jerr))
	}
	return true, errors.Join(errs...)
}

// giveBackSecured undoes what the fencing steps of a failover that is
// rolled back did to its old primary, which stays the primary: its write
// lease granted back (when it was revoked), read_only off (when it was
// fenced). Without it the rollback would leave the cluster no writer.
func giveBackSecured(ctx context.Context, env RecoverEnv, rec *Record) error {
	if rec.Fence.Revocation != nil && env.Leases != nil {
		if err := env.Leases.Grant(ctx, rec.Cluster, rec.Plan.OldPrimary); err != nil {
			return fmt.Errorf("grant %s its write lease back: %w", rec.Plan.OldPrimary, err)
		}
	}
	if rec.Fence.ReadOnly || rec.Fence.Revocation != nil || rec.Fence.Command == "ok" {
		if err := env.Engine.Unfence(ctx, rec.Plan.OldPrimary); err != nil {
			return fmt.Errorf("make %s writable again: %w", rec.Plan.OldPrimary, err)
		}
	}
	return nil
}

// ErrOldPrimaryBack: a failover resumed after its promotion found the old
// primary, which nothing had secured, answering again, and could not fence
// it; the recovery waits rather than move the writer with two writable
// primaries.
var ErrOldPrimaryBack = errors.New("the old primary answers again, writable, and could not be fenced")

// fenceIfBack: a failover resumed after it promoted the new primary, whose
// old primary no fencing layer secured, fences the old primary first when
// it answers again (a Consul outage or a crash held the recovery between
// the promotion and the writer's move, and the host came back meanwhile):
// the writer endpoint may still name it, and every client that reaches it
// would write to a second primary. The question is bounded by
// OldPrimaryTimeout; an old primary still silent is left to the keeper, as
// before.
func fenceIfBack(ctx context.Context, env RecoverEnv, rec *Record) error {
	if rec.Kind != Failover || rec.Done || !stepDone(rec, ActPromote) || rec.Fence.secured() != "" {
		return nil
	}
	if !oldPrimaryAnswers(ctx, env, rec) {
		return nil
	}
	res := StepResult{N: len(rec.Plan.Steps) + 1, Action: ActFence, Target: rec.Plan.OldPrimary, Started: env.Now(),
		Note: "on resume: the old primary answers again; read-only and client sessions ended before the writer moves"}
	fctx, cancel := context.WithTimeout(ctx, max(env.StepTimeout, oldBound(env)))
	err := env.Engine.Fence(fctx, rec.Plan.OldPrimary)
	cancel()
	res.Finished = env.Now()
	if err != nil {
		res.Error = err.Error()
	} else {
		rec.Fence.ReadOnly, rec.NotFenced = true, ""
	}
	rec.Steps = append(rec.Steps, res)
	if jerr := env.Store.Save(context.WithoutCancel(ctx), rec); jerr != nil {
		return fmt.Errorf("record the fence on resume: %w", jerr)
	}
	if err != nil {
		return fmt.Errorf("%w: %v", ErrOldPrimaryBack, err)
	}
	return nil
}

// oldBound is env's OldPrimaryTimeout, or its default.
func oldBound(env RecoverEnv) time.Duration {
	if env.OldPrimaryTimeout <= 0 {
		return DefaultOldPrimaryTimeout
	}
	return env.OldPrimaryTimeout
}

// oldPrimaryAnswers asks a resumed failover's old primary where it is,
// bounded by OldPrimaryTimeout: whether it is back.
func oldPrimaryAnswers(ctx context.Context, env RecoverEnv, rec *Record) bool {
	octx, cancel := context.WithTimeout(ctx, oldBound(env))
	defer cancel()
	_, err := env.Engine.Position(octx, rec.Plan.OldPrimary)
	return err == nil
}

// stepDone reports whether rec holds a successful step of action a.
func stepDone(rec *Record, a Action) bool {
	for _, s := range rec.Steps {
		if s.Action == a && s.Error == "" {
			return true
		}
	}
	return false
}

// consistency is where env reads what consistency checks found: its
// Store, else its Consistency; nil when it has neither.
func (env RecoverEnv) consistency() Consistency {
	if env.Store != nil {
		return env.Store
	}
	return env.Consistency
}

// withConsistency adds to req what consistency checks found. A summary
// that cannot be read, or that src cannot give (nil), stops no promotion
// and makes no replica consistent: the plan says it was not read, so that
// a plan made without the summary never looks like one made with it.
func withConsistency(ctx context.Context, src Consistency, cluster string, req Request) Request {
	if src == nil {
		req.ConsistencyUnknown = "nothing to read them from (a plan made without the shared store)"
		return req
	}
	inc, err := src.Inconsistent(ctx, cluster)
	if err != nil {
		req.ConsistencyUnknown = err.Error()
		return req
	}
	req.Inconsistent = inc
	return req
}
