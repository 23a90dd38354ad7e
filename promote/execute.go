package promote

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/dbha/dbha/topology"
)

// Engine carries out one engine's replication changes. Every method must
// be idempotent (a resumed promotion repeats the step it crashed in) and
// bounded by ctx. An error means the change may not have happened.
type Engine interface {
	// StopFollowing makes a replica receive nothing more from its source.
	StopFollowing(ctx context.Context, addr string) error
	// WaitApplied returns once addr has applied pos.
	WaitApplied(ctx context.Context, addr string, pos topology.Position) error
	// CatchUpFrom brings addr up to upto from another replica.
	CatchUpFrom(ctx context.Context, addr, source string, upto topology.Position) error
	// ApplyFromStream applies what dbha's store holds beyond addr's
	// position, up to upto, keeping GTIDs (or handing the WAL over).
	ApplyFromStream(ctx context.Context, addr string, upto topology.Position) error
	// Promote makes addr the writable primary.
	Promote(ctx context.Context, addr string) error
	// Repoint makes addr replicate from source.
	Repoint(ctx context.Context, addr, source string) error
	// Fence makes addr refuse writes and ends its client sessions; Unfence
	// lets it take writes again.
	Fence(ctx context.Context, addr string) error
	Unfence(ctx context.Context, addr string) error
	// Position returns what addr holds now; an error when it cannot be
	// asked (a dead old primary).
	Position(ctx context.Context, addr string) (topology.Position, error)
	// Rejoin makes a fenced former primary, which holds nothing primary
	// lacks, follow primary (MariaDB: a repoint; PostgreSQL: the
	// operator's rejoin command, which rewinds it). Keeper.Enforce calls
	// it; a failure is retried after a back-off.
	Rejoin(ctx context.Context, addr, primary string) error
}

// Coordinator is the cluster's shared state: the lock this promotion runs
// under and the endpoints clients follow.
type Coordinator interface {
	// Check returns an error once the lock is lost; Execute stops then.
	Check() error
	SetWriter(ctx context.Context, addr string) error
	SetReaders(ctx context.Context, addrs []string) error
}

// Journal keeps the record of a promotion as it runs, so that a dbha that
// crashes mid-way resumes from the recorded step.
type Journal interface {
	Save(ctx context.Context, r *Record) error
}

// Hooks run the operator's commands around a promotion. An error from the
// before phase vetoes the promotion; from the after phase it is recorded.
type Hooks interface {
	Run(ctx context.Context, phase Phase, r *Record) error
}

// Env is what Execute acts through.
type Env struct {
	Engine      Engine
	Coordinator Coordinator
	Journal     Journal
	Hooks       Hooks // may be nil
	// Leases are the guards' write leases (`dbha guard`); nil when the
	// cluster has no guards. A failover revokes the old primary's lease
	// before it promotes, and every promotion grants the new primary's
	// before it makes it writable.
	Leases Leases
	// Fencer runs promotion.fence_command; nil when none is configured.
	Fencer Fencer
	// StepTimeout bounds each step (catching up may take this long).
	StepTimeout time.Duration
	// OldPrimaryTimeout bounds, in a failover, every call towards the old
	// primary (asking whether it answers again, fencing it): it is dead,
	// hung or cut off, and no step waits on it longer than this. An old
	// primary that does not answer within it is taken as gone; the
	// recovery goes on and the keeper fences it when it returns. 0 means
	// DefaultOldPrimaryTimeout. A switchover's old primary is alive and
	// gets StepTimeout.
	OldPrimaryTimeout time.Duration
	Now               func() time.Time
	// BeforeStep, when set, is called with each step just before it runs
	// (after the lock is checked): a testing hook, through which the lab
	// crashes a manager exactly at a step. It must not change the record.
	BeforeStep func(p Plan, st Step)
}

// DefaultOldPrimaryTimeout is Env.OldPrimaryTimeout when it is not set.
const DefaultOldPrimaryTimeout = 500 * time.Millisecond

// Execute errors callers branch on.
var (
	ErrVetoed      = errors.New("a before-promote hook vetoed the promotion")
	ErrPrimaryBack = errors.New("the old primary answers again: the failover was not started")
)

// StepResult is what one step did.
type StepResult struct {
	N        int       `json:"n"`
	Action   Action    `json:"action"`
	Target   string    `json:"target,omitempty"`
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished"`
	Error    string    `json:"error,omitempty"`
	Note     string    `json:"note,omitempty"`
}

// Record is a promotion's audit record and its resume point.
type Record struct {
	ID       string       `json:"id"`
	Cluster  string       `json:"cluster"`
	Kind     Kind         `json:"kind"`
	Manager  string       `json:"manager"`
	Lease    string       `json:"lease,omitempty"`
	Reason   string       `json:"reason"`
	Evidence any          `json:"evidence,omitempty"`
	Detected time.Time    `json:"detected,omitzero"`
	Started  time.Time    `json:"started"`
	Finished time.Time    `json:"finished,omitzero"`
	Plan     Plan         `json:"plan"`
	Steps    []StepResult `json:"steps"`
	// Next is the number of the first step not yet done.
	Next int  `json:"next"`
	Done bool `json:"done"`
	// Aborted: the recovery stopped before it changed anything (a vetoing
	// hook, the old primary back); it is over and is not resumed.
	Aborted bool   `json:"aborted,omitempty"`
	Error   string `json:"error,omitempty"`
	// WriterMoved is when the writer endpoint named the new primary; RTO
	// runs from Detected (or Started) to it.
	WriterMoved time.Time `json:"writer_moved,omitzero"`
	RTOSeconds  float64   `json:"rto_seconds,omitempty"`
	Ledger      Ledger    `json:"ledger"`
	// Repointed are the replicas that follow the new primary.
	Repointed []string `json:"repointed,omitempty"`
	// Fence is what the fencing steps did to the old primary before the
	// promotion, and which layer secured it.
	Fence FenceOutcome `json:"fence"`
	// NotFenced says why a failover promoted with nothing securing the old
	// primary: two writers are possible until it returns; it is kept out
	// of the writer service, and the keeper fences it when it returns.
	NotFenced string `json:"not_fenced,omitempty"`
	// QuorumOverridden: an operator forced this failover while no strict
	// majority of the voters said the primary was lost; the count then.
	QuorumOverridden string `json:"quorum_overridden,omitempty"`
	// Automatic: the daemon started it on its own (Trigger.Automatic);
	// only such a recovery sets the anti-flap block when it is done.
	Automatic bool `json:"automatic,omitempty"`
}

// Ledger is the loss ledger: what the old primary was last seen holding
// against what the new primary holds once promoted.
type Ledger struct {
	LastSeen     topology.Position `json:"last_seen"`
	NewPrimary   topology.Position `json:"new_primary"`
	Transactions int64             `json:"lost_transactions"`
	Bytes        int64             `json:"lost_bytes"`
	// Rewound lists what was undone on the old primary when it came back
	// holding transactions nobody else had received, and where they are
	// saved: acknowledged writes this recovery lost, kept for the operator.
	Rewound []topology.Rewound `json:"rewound,omitempty"`
}

// NewRecord starts the record of a promotion about to run.
func NewRecord(id, manager, reason string, p Plan, now time.Time) *Record {
	return &Record{ID: id, Cluster: p.Cluster, Kind: p.Kind, Manager: manager, Reason: reason,
		Started: now, Plan: p, Next: 1, Ledger: Ledger{LastSeen: p.Loss.LastSeen}}
}

// Execute carries out the plan's steps from r.Next on, saving the record
// after each. The caller holds the cluster's lock (Coordinator.Check) and
// releases it afterwards. On error the record keeps the failed step as
// r.Next: running Execute again retries it.
func Execute(ctx context.Context, env Env, r *Record) error {
	x := executor{env: env, r: r, p: r.Plan}
	if x.env.Now == nil {
		x.env.Now = time.Now
	}
	r.Error = "" // a resumed recovery starts clean; a new failure is recorded again
	for r.Next <= len(r.Plan.Steps) {
		st := r.Plan.Steps[r.Next-1]
		if err := env.Coordinator.Check(); err != nil {
			x.lockLost = true
			return x.fail(ctx, st, fmt.Errorf("before step %d (%s): %w", st.N, st.Action, err))
		}
		if env.BeforeStep != nil {
			env.BeforeStep(r.Plan, st)
		}
		res := StepResult{N: st.N, Action: st.Action, Target: st.Target, Started: x.env.Now()}
		if st.Action == ActStopFollowing {
			x.startStops(ctx, st.N)
		}
		sctx, cancel := context.WithTimeout(ctx, x.timeout())
		note, err := x.run(sctx, st)
		cancel()
		res.Finished, res.Note = x.env.Now(), note
		if err != nil {
			res.Error = err.Error()
			r.Steps = append(r.Steps, res)
			return x.fail(ctx, st, fmt.Errorf("step %d (%s %s): %w", st.N, st.Action, st.Target, err))
		}
		r.Steps = append(r.Steps, res)
		r.Next++
		if err := env.Journal.Save(ctx, r); err != nil {
			return fmt.Errorf("record step %d: %w", st.N, err)
		}
	}
	r.Done, r.Finished = true, x.env.Now()
	return env.Journal.Save(ctx, r)
}

type executor struct {
	env Env
	r   *Record
	p   Plan
	// lockLost: another manager may be carrying the recovery on; this one
	// must not touch anything, not even to roll back.
	lockLost bool
	// silent is why the old primary did not answer, at silentAt (checkBack
	// asked, or the discovery that planned this failover did): a fence step
	// within the bound of that answer does not wait it out again.
	silent   error
	silentAt time.Time
	// stops holds, by step number, the outcome of each stop-following
	// step of a run started together (startStops).
	stops map[int]chan error
}

// startStops starts every stop-following step of the run of them that
// begins at step n, each bounded by the step timeout; each step then
// takes its outcome in turn. A replica's stop may wait on the old primary
// (a semi-sync replica's IO thread asks it, on the way out, to end its
// dump thread: about a second on a silent host), and one replica's wait
// need not follow another's. A run already started is not started again.
func (x *executor) startStops(ctx context.Context, n int) {
	if _, ok := x.stops[n]; ok {
		return
	}
	if x.stops == nil {
		x.stops = map[int]chan error{}
	}
	for _, st := range x.p.Steps[n-1:] {
		if st.Action != ActStopFollowing {
			break
		}
		done := make(chan error, 1)
		x.stops[st.N] = done
		go func() {
			sctx, cancel := context.WithTimeout(ctx, x.timeout())
			defer cancel()
			done <- x.env.Engine.StopFollowing(sctx, st.Target)
		}()
	}
}

func (x *executor) timeout() time.Duration {
	if x.env.StepTimeout > 0 {
		return x.env.StepTimeout
	}
	return 30 * time.Second
}

func (x *executor) fail(ctx context.Context, st Step, err error) error {
	x.r.Error = err.Error()
	if x.p.Kind == Switchover && !x.promoted() && !x.lockLost {
		// A switchover that fails before the candidate is promoted gives the
		// old primary its writes back: a planned change must never leave
		// the cluster without a writer. Its lease first, or its guard would
		// fence it again.
		if uerr := x.giveBack(context.WithoutCancel(ctx)); uerr != nil {
			err = fmt.Errorf("%w; and the old primary could not be made writable again: %v", err, uerr)
		} else {
			err = fmt.Errorf("%w; rolled back: %s takes writes again", err, x.p.OldPrimary)
		}
		x.r.Error = err.Error()
		x.r.Done, x.r.Aborted, x.r.Finished = true, true, x.env.Now()
	}
	if !x.changed() {
		x.r.Done, x.r.Aborted, x.r.Finished = true, true, x.env.Now()
	}
	if jerr := x.env.Journal.Save(context.WithoutCancel(ctx), x.r); jerr != nil {
		return errors.Join(err, jerr)
	}
	return err
}

// run carries out one step and returns a note for the record.
func (x *executor) run(ctx context.Context, st Step) (string, error) {
	e := x.env.Engine
	switch st.Action {
	case ActLock:
		return "lease held", nil
	case ActHookBefore:
		return "", x.hook(ctx, BeforePromote, true)
	case ActStopFollowing:
		return x.stopFollowing(ctx, st)
	case ActFence:
		return x.fence(ctx, st)
	case ActRevokeLease:
		return x.revokeLease(ctx, st)
	case ActFenceCommand:
		return x.fenceCommand(ctx, st)
	case ActSecure:
		return x.secure()
	case ActGrantLease:
		if x.env.Leases == nil {
			return "", errors.New("the plan grants a write lease, but this manager has no leases configured")
		}
		return "", x.env.Leases.Grant(ctx, x.p.Cluster, st.Target)
	case ActWaitApplied:
		return x.waitApplied(ctx, st)
	case ActApply:
		if st.Source == StreamSource {
			return "", e.ApplyFromStream(ctx, st.Target, st.Position)
		}
		return "", e.CatchUpFrom(ctx, st.Target, st.Source, st.Position)
	case ActPromote:
		return x.promote(ctx, st)
	case ActRepoint:
		return x.repoint(ctx, st)
	case ActMoveWriter:
		if err := x.env.Coordinator.SetWriter(ctx, st.Target); err != nil {
			return "", err
		}
		x.r.WriterMoved = x.env.Now()
		from := x.r.Started
		if !x.r.Detected.IsZero() {
			from = x.r.Detected
		}
		x.r.RTOSeconds = x.r.WriterMoved.Sub(from).Seconds()
		return "", nil
	case ActUpdateReaders:
		return "", x.env.Coordinator.SetReaders(ctx, x.r.Repointed)
	case ActHookAfter:
		if err := x.hook(ctx, AfterPromote, false); err != nil {
			return "after-promote hook failed: " + err.Error(), nil
		}
		return "", nil
	case ActUnlock:
		if x.r.Automatic {
			return "the caller releases the lock and sets the anti-flap block", nil
		}
		return "the caller releases the lock; a recovery that was not automatic sets no anti-flap block", nil
	}
	return "", fmt.Errorf("unknown action %q", st.Action)
}

func (x *executor) hook(ctx context.Context, phase Phase, veto bool) error {
	if x.env.Hooks == nil {
		return nil
	}
	err := x.env.Hooks.Run(ctx, phase, x.r)
	if err != nil && veto {
		return fmt.Errorf("%w: %v", ErrVetoed, err)
	}
	return err
}

// towardsOld bounds a call to the old primary: in a failover by
// OldPrimaryTimeout, so that no step waits on a dead or hung host (a hung
// server's kernel still accepts connections, and only a deadline ends the
// wait for its greeting); in a switchover by the step's own timeout.
func (x *executor) towardsOld(ctx context.Context) (context.Context, context.CancelFunc, time.Duration) {
	if x.p.Kind != Failover {
		return ctx, func() {}, 0
	}
	d := x.oldBound()
	octx, cancel := context.WithTimeout(ctx, d)
	return octx, cancel, d
}

// oldBound is OldPrimaryTimeout, or its default.
func (x *executor) oldBound() time.Duration {
	if x.env.OldPrimaryTimeout <= 0 {
		return DefaultOldPrimaryTimeout
	}
	return x.env.OldPrimaryTimeout
}

// checkBack runs before a failover's first fencing step: an old primary
// that answers again means there is nothing to fail over. The question
// is bounded (towardsOld): an old primary that cannot answer it in time
// is not back. A plan made less than that bound ago already asked (its
// discovery found the old primary unreachable, or the plan would not be
// a failover): asking again, or dialling it to fence it, would only add
// a wait on a vanished host to every failover. A resumed or retried
// recovery asks.
func (x *executor) checkBack(ctx context.Context, st Step) error {
	if x.p.Kind != Failover || st.N != x.firstFencingStep() || x.started() {
		return nil
	}
	if age := x.env.Now().Sub(x.r.Started); age < x.oldBound() {
		x.silent, x.silentAt = fmt.Errorf("it did not answer the discovery that planned this failover %v ago", age.Round(time.Millisecond)), x.r.Started
		return nil
	}
	octx, cancel, _ := x.towardsOld(ctx)
	_, err := x.env.Engine.Position(octx, x.p.OldPrimary)
	cancel()
	if err == nil {
		return ErrPrimaryBack
	}
	x.silent, x.silentAt = fmt.Errorf("it did not answer within %v: %w", x.oldBound(), err), x.env.Now()
	return nil
}

// stillSilent reports whether the old primary was found silent less than
// the bound ago: a fence attempt now would wait out the same bound.
func (x *executor) stillSilent() bool {
	return x.silent != nil && x.p.Kind == Failover && x.env.Now().Sub(x.silentAt) < x.oldBound()
}

// firstFencingStep is the number of the plan's first step towards the
// old primary (0 when it has none).
func (x *executor) firstFencingStep() int {
	for _, s := range x.p.Steps {
		if s.Action == ActRevokeLease || s.Action == ActFence {
			return s.N
		}
	}
	return 0
}

// stopFollowing makes a replica receive nothing more from the old
// primary. When lossless commits are what secures the old primary, a
// replica that cannot be stopped may still acknowledge its commits: the
// failover stops there under require_fencing, else the record says two
// writers are possible.
func (x *executor) stopFollowing(ctx context.Context, st Step) (string, error) {
	var err error
	if done, ok := x.stops[st.N]; !ok {
		err = x.env.Engine.StopFollowing(ctx, st.Target)
	} else {
		select {
		case err = <-done:
		case <-ctx.Done():
			err = ctx.Err()
		}
	}
	if err == nil {
		return "", nil
	}
	if st.Target == x.p.NewPrimary {
		return "", err
	}
	if x.r.Fence.SecuredBy == LayerLossless {
		if x.p.Fencing.Require {
			return "", fmt.Errorf("%w: lossless commits secure the old primary only once every replica stopped following it: %v", ErrNotFenced, err)
		}
		x.r.NotFenced = fmt.Sprintf("not fenced: two writers possible until it returns (%s could not be stopped and may acknowledge its commits: %v)", st.Target, err)
	}
	return "could not stop it (it is repointed later): " + err.Error(), nil
}

// started reports whether this promotion stopped a replica yet.
func (x *executor) started() bool {
	for _, s := range x.r.Steps {
		if s.Action == ActStopFollowing && s.Error == "" {
			return true
		}
	}
	return false
}

// promoted reports whether the candidate was promoted.
func (x *executor) promoted() bool {
	for _, s := range x.r.Steps {
		if s.Action == ActPromote && s.Error == "" {
			return true
		}
	}
	return false
}

// changed reports whether any step that changes a server or Consul
// completed: until then a failed recovery is simply over. A failover's
// fencing steps change something only when they secured the old primary
// (a lease revoked with no guard, a fence that did not reach it, a
// failed command leave everything as it was).
func (x *executor) changed() bool {
	for _, s := range x.r.Steps {
		if s.Error != "" {
			continue
		}
		switch s.Action {
		case ActLock, ActHookBefore, ActSecure:
		case ActRevokeLease, ActFence, ActFenceCommand:
			if x.p.Kind == Switchover || x.r.Fence.secured() != "" {
				return true
			}
		default:
			return true
		}
	}
	return false
}

// fence makes the old primary refuse writes. In a failover the attempt is
// bounded (towardsOld) and its failure is recorded for the secure step to
// weigh; it is skipped once a lease secured the old primary.
func (x *executor) fence(ctx context.Context, st Step) (string, error) {
	if err := x.checkBack(ctx, st); err != nil {
		return "", err
	}
	if l := x.r.Fence.secured(); l != "" && x.p.Kind == Failover {
		return fmt.Sprintf("skipped: secured by %s", l), nil
	}
	if x.stillSilent() {
		return fmt.Sprintf("not dialled again: %v", x.silent), nil
	}
	octx, cancel, bound := x.towardsOld(ctx)
	err := x.env.Engine.Fence(octx, st.Target)
	cancel()
	if err == nil {
		x.r.Fence.ReadOnly = true
		return "read-only, client sessions ended", nil
	}
	if x.p.Kind == Switchover {
		return "", err // writes must stop before the candidate catches up
	}
	return fmt.Sprintf("not reachable within %v: %v", bound, err), nil
}

// revokeLease withdraws the old primary's write lease and waits, as
// Revoke does, until its guard cannot keep it writable. An error stops
// the promotion (the step is retried): the lease may still be held.
func (x *executor) revokeLease(ctx context.Context, st Step) (string, error) {
	if err := x.checkBack(ctx, st); err != nil {
		return "", err
	}
	if x.env.Leases == nil {
		return "", errors.New("the plan revokes a write lease, but this manager has no leases configured")
	}
	rev, err := x.env.Leases.Revoke(ctx, x.p.Cluster, st.Target)
	if err != nil {
		return "", fmt.Errorf("revoke the write lease: %w", err)
	}
	x.r.Fence.Revocation = &rev
	switch {
	case !rev.Guarded:
		return "no guard holds its lease: the lease does not secure it", nil
	case rev.Released:
		return "its guard fenced it and released the lease", nil
	}
	return fmt.Sprintf("its lease ran out after %v (TTL %v)", rev.Waited, rev.TTL), nil
}

// fenceCommand runs promotion.fence_command, unless the old primary is
// already secured. A failure is recorded for the secure step to weigh.
func (x *executor) fenceCommand(ctx context.Context, st Step) (string, error) {
	if l := x.r.Fence.secured(); l != "" {
		return fmt.Sprintf("skipped: secured by %s", l), nil
	}
	if x.env.Fencer == nil {
		x.r.Fence.Command = "this manager has no promotion.fence_command"
		return "not run: " + x.r.Fence.Command, nil
	}
	if err := x.env.Fencer.Fence(ctx, x.p.Cluster, st.Target); err != nil {
		x.r.Fence.Command = err.Error()
		return "failed: " + err.Error(), nil
	}
	x.r.Fence.Command = "ok"
	return "fenced by the fence command", nil
}

// secure decides (Secure) whether the failover may promote. Its error
// stops the failover before any change, so the recovery is aborted.
func (x *executor) secure() (string, error) {
	l, err := Secure(x.p.Fencing, x.r.Fence)
	if err != nil {
		return "", err
	}
	x.r.Fence.SecuredBy = l
	if l == LayerNone {
		x.r.NotFenced = "not fenced: two writers possible until it returns (" + x.p.Fencing.LosslessWhy +
			"); kept out of the writer service, fenced when it returns"
		if x.r.Fence.Command != "" {
			x.r.NotFenced += "; the fence command failed: " + x.r.Fence.Command
		}
		return x.r.NotFenced, nil
	}
	note := "secured by " + string(l)
	if l == LayerLossless && x.r.Fence.Command != "" {
		note += "; the fence command failed: " + x.r.Fence.Command
	}
	return note, nil
}

// giveBack makes a switchover's old primary writable again: its lease
// back first (when this promotion revoked it), then read_only off.
func (x *executor) giveBack(ctx context.Context) error {
	if x.r.Fence.Revocation != nil && x.env.Leases != nil {
		if err := x.env.Leases.Grant(ctx, x.p.Cluster, x.p.OldPrimary); err != nil {
			return fmt.Errorf("grant its write lease back: %w", err)
		}
	}
	return x.env.Engine.Unfence(ctx, x.p.OldPrimary)
}

// waitApplied in a switchover waits for the old primary's final position,
// read now that it is read-only; otherwise for the planned position.
func (x *executor) waitApplied(ctx context.Context, st Step) (string, error) {
	pos := st.Position
	if x.p.Kind == Switchover && st.Source == x.p.OldPrimary {
		final, err := x.env.Engine.Position(ctx, x.p.OldPrimary)
		if err != nil {
			return "", fmt.Errorf("read the old primary's final position: %w", err)
		}
		pos = final
	}
	if err := x.env.Engine.WaitApplied(ctx, st.Target, pos); err != nil {
		return "", err
	}
	return "applied " + pos.String(), nil
}

func (x *executor) promote(ctx context.Context, st Step) (string, error) {
	if err := x.env.Engine.Promote(ctx, st.Target); err != nil {
		return "", err
	}
	pos, err := x.env.Engine.Position(ctx, st.Target)
	if err != nil {
		return "promoted; its position could not be read: " + err.Error(), nil
	}
	l := &x.r.Ledger
	l.NewPrimary = pos
	if !l.LastSeen.IsZero() {
		l.Transactions, l.Bytes = topology.TransactionsBehind(pos, l.LastSeen), topology.BytesBehind(pos, l.LastSeen)
	}
	return "holds " + pos.String(), nil
}

// repoint: a replica that cannot be repointed is recorded, not fatal; the
// new primary already serves.
func (x *executor) repoint(ctx context.Context, st Step) (string, error) {
	if err := x.env.Engine.Repoint(ctx, st.Target, st.Source); err != nil {
		return "not repointed: " + err.Error(), nil
	}
	x.r.Repointed = append(x.r.Repointed, st.Target)
	return "", nil
}
