package promote

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dbha/dbha/topology"
)

// fakeEngine records calls; it stands in for our own Engine interface.
type fakeEngine struct {
	mu        sync.Mutex // stop-following steps run together
	calls     []string
	failOn    map[string]error // "action target" → error
	positions map[string]topology.Position
}

func (f *fakeEngine) call(action, target string, extra ...string) error {
	c := strings.TrimSpace(action + " " + target + " " + strings.Join(extra, " "))
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, c)
	return f.failOn[action+" "+target]
}

func (f *fakeEngine) StopFollowing(_ context.Context, a string) error { return f.call("stop", a) }
func (f *fakeEngine) WaitApplied(_ context.Context, a string, p topology.Position) error {
	return f.call("wait", a, p.String())
}
func (f *fakeEngine) CatchUpFrom(_ context.Context, a, s string, p topology.Position) error {
	return f.call("catchup", a, s, p.String())
}
func (f *fakeEngine) ApplyFromStream(_ context.Context, a string, p topology.Position) error {
	return f.call("stream", a, p.String())
}
func (f *fakeEngine) Promote(_ context.Context, a string) error { return f.call("promote", a) }
func (f *fakeEngine) Repoint(_ context.Context, a, s string) error {
	return f.call("repoint", a, s)
}
func (f *fakeEngine) Rejoin(_ context.Context, a, p string) error {
	return f.call("rejoin", a, p)
}
func (f *fakeEngine) Fence(_ context.Context, a string) error   { return f.call("fence", a) }
func (f *fakeEngine) Unfence(_ context.Context, a string) error { return f.call("unfence", a) }
func (f *fakeEngine) Position(_ context.Context, a string) (topology.Position, error) {
	if p, ok := f.positions[a]; ok {
		return p, nil
	}
	return topology.Position{}, fmt.Errorf("%s: connection refused", a)
}

type fakeCoord struct {
	checks, loseAt int
	writer         string
	readers        []string
}

func (c *fakeCoord) Check() error {
	c.checks++
	if c.loseAt > 0 && c.checks >= c.loseAt {
		return errors.New("lock lost")
	}
	return nil
}
func (c *fakeCoord) SetWriter(_ context.Context, a string) error    { c.writer = a; return nil }
func (c *fakeCoord) SetReaders(_ context.Context, a []string) error { c.readers = a; return nil }

type fakeJournal struct{ saves []int }

func (j *fakeJournal) Save(_ context.Context, r *Record) error {
	j.saves = append(j.saves, r.Next)
	return nil
}

type fakeHooks struct{ veto error }

func (h fakeHooks) Run(_ context.Context, phase Phase, _ *Record) error {
	if phase == BeforePromote {
		return h.veto
	}
	return nil
}

func mariaPos(t *testing.T, s string) topology.Position {
	t.Helper()
	p, err := topology.ParseMariaDB(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// failoverPlan plans db2 ahead of db3, with dbha's stream ahead of both.
func failoverPlan(t *testing.T) Plan {
	t.Helper()
	rep := func(addr, pos string) topology.Instance {
		p := mariaPos(t, pos)
		return topology.Instance{Addr: addr, Reachable: true, ReadOnly: true, Received: p, Applied: p, Current: p, History: p,
			Replication: &topology.Replication{Source: "db1", SQLRunning: true}}
	}
	s := topology.Build("c", topology.MariaDB, []topology.Instance{{Addr: "db1", Error: "refused"}, rep("db2", "0-1-10"), rep("db3", "0-1-8")}, time.Unix(0, 0))
	p, err := MakePlan(s, Request{Held: &Held{Position: mariaPos(t, "0-1-12"), From: "db1"}, LastSeen: mariaPos(t, "0-1-12")})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// switchoverPlan plans a switchover from a healthy db1 to db2, both at pr.
func switchoverPlan(t *testing.T, pr topology.Position) Plan {
	t.Helper()
	rep := topology.Instance{Addr: "db2", Reachable: true, ReadOnly: true, Received: pr, Applied: pr, Current: pr, History: pr,
		Replication: &topology.Replication{Source: "db1", IORunning: true, SQLRunning: true}}
	s := topology.Build("c", topology.MariaDB, []topology.Instance{{Addr: "db1", Reachable: true, Current: pr, History: pr}, rep}, time.Unix(0, 0))
	p, err := MakePlan(s, Request{})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func run(t *testing.T, p Plan, e *fakeEngine, c *fakeCoord, h Hooks, r *Record) error {
	t.Helper()
	if r == nil {
		r = NewRecord("r1", "m", "test", p, time.Unix(100, 0))
	}
	return Execute(context.Background(), Env{Engine: e, Coordinator: c, Journal: &fakeJournal{}, Hooks: h}, r)
}

func TestExecuteFailover(t *testing.T) {
	p := failoverPlan(t)
	e := &fakeEngine{positions: map[string]topology.Position{"db2": mariaPos(t, "0-1-12")}}
	c := &fakeCoord{}
	r := NewRecord("r1", "m", "DeadPrimary", p, time.Unix(100, 0))
	if err := run(t, p, e, c, fakeHooks{}, r); err != nil {
		t.Fatal(err)
	}
	// The plan is older than the bound: the old primary is asked whether
	// it is back, does not answer, and is not asked again to be fenced.
	want := []string{"stop db2", "stop db3", "stream db2 0-1-12", "promote db2", "repoint db3 db2"}
	if !slices.Equal(stopsInOrder(e.calls), want) {
		t.Fatalf("engine calls = %q\nwant %q", e.calls, want)
	}
	if r.Fence.SecuredBy != LayerNone || !strings.Contains(r.NotFenced, "two writers possible") {
		t.Errorf("fence outcome %+v, not fenced %q", r.Fence, r.NotFenced)
	}
	if c.writer != "db2" || !slices.Equal(c.readers, []string{"db3"}) {
		t.Errorf("writer %q readers %v", c.writer, c.readers)
	}
	if !r.Done || r.Next != len(p.Steps)+1 || len(r.Steps) != len(p.Steps) {
		t.Errorf("record not complete: done %v next %d steps %d", r.Done, r.Next, len(r.Steps))
	}
	if r.Ledger.NewPrimary.String() != "0-1-12" || r.Ledger.Transactions != 0 {
		t.Errorf("ledger = %+v", r.Ledger)
	}
	if c.checks != len(p.Steps) {
		t.Errorf("lock checked %d times for %d steps", c.checks, len(p.Steps))
	}
}

func TestExecuteStopsWhenTheLockIsLost(t *testing.T) {
	p := failoverPlan(t)
	e := &fakeEngine{positions: map[string]topology.Position{}}
	c := &fakeCoord{loseAt: 7}
	r := NewRecord("r1", "m", "test", p, time.Unix(100, 0))
	err := run(t, p, e, c, nil, r)
	if err == nil || !strings.Contains(err.Error(), "lock lost") {
		t.Fatalf("err = %v", err)
	}
	if r.Next != 7 || r.Done || r.Aborted || len(e.calls) != 2 {
		t.Fatalf("next %d done %v calls %q: want to stop before step 7", r.Next, r.Done, e.calls)
	}
	// A later run (the lock held again) resumes at step 7, not from the start.
	c.loseAt = 0
	if err := run(t, p, e, c, nil, r); err != nil {
		t.Fatal(err)
	}
	if e.calls[2] != "stream db2 0-1-12" || e.calls[3] != "promote db2" || !r.Done {
		t.Fatalf("resumed calls %q", e.calls)
	}
}

func TestExecuteVetoChangesNothing(t *testing.T) {
	p := failoverPlan(t)
	e := &fakeEngine{}
	r := NewRecord("r1", "m", "test", p, time.Unix(100, 0))
	err := run(t, p, e, &fakeCoord{}, fakeHooks{veto: errors.New("exit status 3")}, r)
	if !errors.Is(err, ErrVetoed) || len(e.calls) != 0 {
		t.Fatalf("err %v calls %q", err, e.calls)
	}
	if !r.Done || !r.Aborted {
		t.Fatalf("a vetoed recovery must be over, not resumable: %+v", r)
	}
}

func TestExecuteFailoverAbortsWhenThePrimaryIsBack(t *testing.T) {
	p := failoverPlan(t)
	e := &fakeEngine{positions: map[string]topology.Position{"db1": mariaPos(t, "0-1-12")}}
	err := run(t, p, e, &fakeCoord{}, nil, nil)
	if !errors.Is(err, ErrPrimaryBack) || len(e.calls) != 0 {
		t.Fatalf("err %v calls %q", err, e.calls)
	}
}

func TestExecuteSwitchoverWaitsForTheFinalPosition(t *testing.T) {
	pr := mariaPos(t, "0-1-20")
	p := switchoverPlan(t, pr)
	// Writes that landed between the plan and the fence: the final position is 0-1-23.
	e := &fakeEngine{positions: map[string]topology.Position{"db1": mariaPos(t, "0-1-23"), "db2": mariaPos(t, "0-1-23")}}
	if err := run(t, p, e, &fakeCoord{}, nil, nil); err != nil {
		t.Fatal(err)
	}
	want := []string{"fence db1", "wait db2 0-1-23", "promote db2", "repoint db1 db2"}
	if !slices.Equal(stopsInOrder(e.calls), want) {
		t.Fatalf("engine calls = %q\nwant %q", e.calls, want)
	}
}

func TestExecuteSurvivesAReplicaThatCannotBeRepointed(t *testing.T) {
	p := failoverPlan(t)
	e := &fakeEngine{positions: map[string]topology.Position{}, failOn: map[string]error{"repoint db3": errors.New("access denied")}}
	c := &fakeCoord{}
	r := NewRecord("r1", "m", "test", p, time.Unix(100, 0))
	if err := run(t, p, e, c, nil, r); err != nil {
		t.Fatal(err)
	}
	if len(c.readers) != 0 || c.writer != "db2" {
		t.Fatalf("readers %v writer %q", c.readers, c.writer)
	}
	if !slices.ContainsFunc(r.Steps, func(s StepResult) bool { return strings.Contains(s.Note, "not repointed") }) {
		t.Fatalf("the failed repoint is not recorded: %+v", r.Steps)
	}
}

func TestExecuteSwitchoverRollsBack(t *testing.T) {
	pr := mariaPos(t, "0-1-20")
	p := switchoverPlan(t, pr)
	e := &fakeEngine{positions: map[string]topology.Position{"db1": pr}, failOn: map[string]error{"wait db2": errors.New("timed out")}}
	r := NewRecord("r1", "m", "test", p, time.Unix(100, 0))
	err := run(t, p, e, &fakeCoord{}, nil, r)
	if err == nil || !strings.Contains(err.Error(), "rolled back") {
		t.Fatalf("err = %v", err)
	}
	if want := []string{"fence db1", "wait db2 0-1-20", "unfence db1"}; !slices.Equal(stopsInOrder(e.calls), want) {
		t.Fatalf("engine calls = %q, want %q", e.calls, want)
	}
	if !r.Done || !r.Aborted {
		t.Fatalf("a rolled-back switchover is over: %+v", r)
	}
}

func TestExecuteSwitchoverDoesNotRollBackWithoutTheLock(t *testing.T) {
	pr := mariaPos(t, "0-1-20")
	p := switchoverPlan(t, pr)
	e := &fakeEngine{positions: map[string]topology.Position{"db1": pr}}
	r := NewRecord("r1", "m", "test", p, time.Unix(100, 0))
	// The lock is lost after the fence: another manager may carry on.
	if err := run(t, p, e, &fakeCoord{loseAt: 4}, nil, r); err == nil {
		t.Fatal("no error after the lock was lost")
	}
	if slices.Contains(e.calls, "unfence db1") {
		t.Fatalf("rolled back without the lock: %q", e.calls)
	}
	if r.Done {
		t.Fatalf("the record must stay resumable: %+v", r)
	}
}

// hungOld is a fakeEngine whose old primary is hung: a call to it returns
// only when its context ends, and records the bound it was given.
type hungOld struct {
	fakeEngine
	old    string
	bounds []time.Duration // remaining time of each call's context at its start
}

func (h *hungOld) hang(ctx context.Context, action string) error {
	h.calls = append(h.calls, action+" "+h.old)
	d, ok := ctx.Deadline()
	if !ok {
		return fmt.Errorf("%s %s: called without a deadline", action, h.old)
	}
	h.bounds = append(h.bounds, time.Until(d))
	<-ctx.Done()
	return fmt.Errorf("%s %s: %w", action, h.old, ctx.Err())
}

func (h *hungOld) Position(ctx context.Context, a string) (topology.Position, error) {
	if a == h.old {
		return topology.Position{}, h.hang(ctx, "position")
	}
	return h.fakeEngine.Position(ctx, a)
}

func (h *hungOld) Fence(ctx context.Context, a string) error {
	if a == h.old {
		return h.hang(ctx, "fence")
	}
	return h.fakeEngine.Fence(ctx, a)
}

// StopFollowing fails with a context that ended, as a real engine does.
func (h *hungOld) StopFollowing(ctx context.Context, a string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return h.fakeEngine.StopFollowing(ctx, a)
}

func TestExecuteFailoverDoesNotWaitOnAHungOldPrimary(t *testing.T) {
	p := failoverPlan(t)
	e := &hungOld{fakeEngine: fakeEngine{positions: map[string]topology.Position{"db2": mariaPos(t, "0-1-12")}}, old: "db1"}
	c := &fakeCoord{}
	r := NewRecord("r1", "m", "DeadPrimary", p, time.Unix(100, 0))
	const bound = 50 * time.Millisecond
	// Calls to the old primary get the bound, not the step's timeout: a
	// step that waited out its own timeout on it would leave the next call
	// (stop db2) an ended context, and the recovery would fail.
	env := Env{Engine: e, Coordinator: c, Journal: &fakeJournal{}, StepTimeout: 2 * time.Second, OldPrimaryTimeout: bound}
	if err := Execute(context.Background(), env, r); err != nil {
		t.Fatal(err)
	}
	// One bounded wait on the hung old primary, not two: it did not answer
	// whether it is back, so it is not asked to be fenced.
	want := []string{"position db1", "stop db2", "stop db3", "stream db2 0-1-12", "promote db2", "repoint db3 db2"}
	if !slices.Equal(stopsInOrder(e.calls), want) {
		t.Fatalf("engine calls = %q\nwant %q", e.calls, want)
	}
	for i, b := range e.bounds {
		if b > bound {
			t.Errorf("call %d to the old primary had %v to run, want at most %v", i, b, bound)
		}
	}
	if !r.Done || c.writer != "db2" {
		t.Fatalf("recovery not finished: done %v writer %q", r.Done, c.writer)
	}
	if !strings.Contains(r.NotFenced, "fenced when it returns") {
		t.Errorf("the record does not say the old primary was not fenced: %q", r.NotFenced)
	}
}

func TestExecuteSwitchoverGivesTheOldPrimaryTheStepTimeout(t *testing.T) {
	pr := mariaPos(t, "0-1-20")
	p := switchoverPlan(t, pr)
	e := &hungOld{fakeEngine: fakeEngine{positions: map[string]topology.Position{"db2": pr}}, old: "db1"}
	r := NewRecord("r1", "m", "test", p, time.Unix(100, 0))
	env := Env{Engine: e, Coordinator: &fakeCoord{}, Journal: &fakeJournal{}, StepTimeout: 200 * time.Millisecond, OldPrimaryTimeout: time.Millisecond}
	// A live old primary that cannot be fenced stops a switchover: writes
	// must stop before the candidate catches up.
	if err := Execute(context.Background(), env, r); err == nil || !strings.Contains(err.Error(), "fence db1") {
		t.Fatalf("err = %v, want the fence's failure", err)
	}
	if len(e.bounds) != 1 || e.bounds[0] <= time.Millisecond {
		t.Errorf("the switchover's fence had %v to run, want the step timeout", e.bounds)
	}
}

// A failover planned moments ago does not ask the old primary again
// whether it is back, nor dial it to fence it: the plan's own discovery
// just found it unreachable, and on a vanished host each call only waits
// out its bound. A record planned longer ago than the bound (resumed,
// retried) asks.
func TestExecuteFreshFailoverDoesNotAskTheOldPrimaryAgain(t *testing.T) {
	for _, tc := range []struct {
		name  string
		age   time.Duration
		first string
	}{
		{name: "planned just now", age: 10 * time.Millisecond, first: "stop db2"},
		{name: "planned longer ago than the bound", age: 2 * time.Second, first: "position db1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := failoverPlan(t)
			e := &hungOld{fakeEngine: fakeEngine{positions: map[string]topology.Position{"db2": mariaPos(t, "0-1-12")}}, old: "db1"}
			started := time.Unix(100, 0)
			r := NewRecord("r1", "m", "DeadPrimary", p, started)
			env := Env{Engine: e, Coordinator: &fakeCoord{}, Journal: &fakeJournal{}, StepTimeout: time.Second,
				OldPrimaryTimeout: 50 * time.Millisecond, Now: func() time.Time { return started.Add(tc.age) }}
			if err := Execute(context.Background(), env, r); err != nil {
				t.Fatal(err)
			}
			if calls := stopsInOrder(e.calls); len(calls) == 0 || calls[0] != tc.first {
				t.Fatalf("engine calls = %q, want the first to be %q", e.calls, tc.first)
			}
			fence := r.Steps[slices.IndexFunc(r.Steps, func(s StepResult) bool { return s.Action == ActFence })]
			if !strings.Contains(fence.Note, "not dialled again: it did not answer") || !r.Done {
				t.Errorf("fence note %q, done %v: want the old primary found silent and the failover done", fence.Note, r.Done)
			}
		})
	}
}

// stopsInOrder sorts each run of "stop ..." calls: the stop-following steps
// of a run are started together, and their calls come in any order.
func stopsInOrder(calls []string) []string {
	out := slices.Clone(calls)
	for i := 0; i < len(out); {
		j := i
		for j < len(out) && strings.HasPrefix(out[j], "stop ") {
			j++
		}
		slices.Sort(out[i:j])
		i = max(j, i+1)
	}
	return out
}

// barrierStops is an engine whose StopFollowing returns only once every
// replica's stop has begun (or fails after a second): stops made one after
// the other never get through.
type barrierStops struct {
	*fakeEngine
	arrived chan struct{}
	n       int
}

func (b *barrierStops) StopFollowing(ctx context.Context, a string) error {
	b.arrived <- struct{}{}
	deadline := time.After(time.Second)
	for len(b.arrived) < b.n {
		select {
		case <-deadline:
			return fmt.Errorf("stop %s: the other replicas' stops did not begin", a)
		case <-time.After(time.Millisecond):
		}
	}
	return b.fakeEngine.StopFollowing(ctx, a)
}

// The replicas stop following the old primary together: a semi-sync
// replica's stop waits on the old primary for about a second, and two
// replicas must not wait two.
func TestExecuteStopsReplicasTogether(t *testing.T) {
	p := failoverPlan(t)
	e := &barrierStops{fakeEngine: &fakeEngine{positions: map[string]topology.Position{"db2": mariaPos(t, "0-1-12")}}, arrived: make(chan struct{}, 2), n: 2}
	c := &fakeCoord{}
	r := NewRecord("r1", "m", "DeadPrimary", p, time.Now())
	if err := Execute(context.Background(), Env{Engine: e, Coordinator: c, Journal: &fakeJournal{}, StepTimeout: 5 * time.Second}, r); err != nil {
		t.Fatal(err)
	}
	if c.writer != "db2" || !r.Done {
		t.Fatalf("writer %q done %v", c.writer, r.Done)
	}
	var stops []int
	for _, s := range r.Steps {
		if s.Action == ActStopFollowing {
			stops = append(stops, s.N)
		}
	}
	if len(stops) != 2 || stops[1] != stops[0]+1 {
		t.Fatalf("stop-following steps recorded %v, want two in plan order", stops)
	}
}
