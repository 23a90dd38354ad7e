package promote

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dbha/dbha/topology"
)

var (
	noFallback = topology.Acknowledgement{SemiSync: true, WaitNoReplica: true, TimeoutMS: 1<<64 - 1, WaitPoint: "AFTER_SYNC"}
	fallsBack  = topology.Acknowledgement{SemiSync: true, WaitNoReplica: false, TimeoutMS: 10000, WaitPoint: "AFTER_SYNC"}
)

// fencingSnapshot is a MariaDB cluster whose primary db1 is lost; db2
// and db3 are its replicas (db3 unreachable when lost3).
func fencingSnapshot(lost3 bool) (topology.Snapshot, topology.Instance) {
	rep := func(addr string) topology.Instance {
		return topology.Instance{Addr: addr, Reachable: true, ReadOnly: true,
			Replication: &topology.Replication{Source: "db1"}}
	}
	db3 := rep("db3")
	if lost3 {
		db3 = topology.Instance{Addr: "db3", Error: "refused"}
	}
	old := topology.Instance{Addr: "db1", Error: "refused"}
	return topology.Snapshot{Cluster: "c", Engine: topology.MariaDB, Instances: []topology.Instance{old, rep("db2"), db3}}, old
}

func TestPlanFencing(t *testing.T) {
	acks := func(a topology.Acknowledgement) map[string]topology.Acknowledgement {
		return map[string]topology.Acknowledgement{"db1": a}
	}
	for _, tc := range []struct {
		name     string
		kind     Kind
		lost3    bool
		pol      FencingPolicy
		layers   []Layer
		lossless bool
		expect   string // a part of Expect
	}{
		{name: "nothing configured", kind: Failover, layers: []Layer{LayerReadOnly},
			expect: "else not fenced: two writers possible until it returns"},
		{name: "nothing configured, fencing required", kind: Failover, pol: FencingPolicy{Require: true},
			layers: []Layer{LayerReadOnly}, expect: "else the failover stops (promotion.require_fencing)"},
		{name: "leases first", kind: Failover, pol: FencingPolicy{Leases: true},
			layers: []Layer{LayerLease, LayerReadOnly}, expect: "its guard's lease, revoked"},
		{name: "fence command after read-only", kind: Failover, pol: FencingPolicy{Command: true},
			layers: []Layer{LayerReadOnly, LayerCommand}, expect: "a failing fence command stops the failover"},
		{name: "fence command that may fail", kind: Failover, pol: FencingPolicy{Command: true, ProceedOnCommandFailure: true},
			layers: []Layer{LayerReadOnly, LayerCommand}, expect: "the fence command, else not fenced"},
		{name: "every layer", kind: Failover, pol: FencingPolicy{Leases: true, Command: true, Acks: acks(noFallback)},
			layers: []Layer{LayerLease, LayerReadOnly, LayerCommand, LayerLossless}, lossless: true,
			expect: "else lossless commits: it cannot acknowledge alone"},
		{name: "lossless that falls back", kind: Failover, pol: FencingPolicy{Acks: acks(fallsBack)},
			layers: []Layer{LayerReadOnly}, expect: "rpl_semi_sync_master_wait_no_slave=OFF"},
		{name: "lossless settings never read", kind: Failover, pol: FencingPolicy{Acks: map[string]topology.Acknowledgement{"db2": noFallback}},
			layers: []Layer{LayerReadOnly}, expect: "not read while it answered"},
		{name: "lossless with three managers' streams acknowledging", kind: Failover, pol: FencingPolicy{Managers: 3, Acks: acks(noFallback)},
			layers: []Layer{LayerReadOnly}, expect: "each of the 3 managers' streams acknowledges its commits"},
		{name: "lossless with a replica out of reach", kind: Failover, lost3: true, pol: FencingPolicy{Acks: acks(noFallback)},
			layers: []Layer{LayerReadOnly}, expect: "db3 cannot be reached and may still acknowledge"},
		{name: "switchover", kind: Switchover, pol: FencingPolicy{Command: true, Acks: acks(noFallback)},
			layers: []Layer{LayerReadOnly}, expect: "read-only with its client sessions ended"},
		{name: "switchover with leases", kind: Switchover, pol: FencingPolicy{Leases: true},
			layers: []Layer{LayerReadOnly, LayerLease}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, old := fencingSnapshot(tc.lost3)
			f := PlanFencing(s, old, tc.kind, tc.pol)
			if !slices.Equal(f.Layers, tc.layers) || f.Lossless != tc.lossless {
				t.Errorf("layers %v lossless %v, want %v %v", f.Layers, f.Lossless, tc.layers, tc.lossless)
			}
			if !strings.Contains(f.Expect, tc.expect) {
				t.Errorf("expect %q, want it to say %q", f.Expect, tc.expect)
			}
		})
	}
}

// A PostgreSQL standby still streaming from the old primary does not rule
// lossless commits out: the failover stops its walreceiver before the
// promotion, as it stops a MariaDB replica's IO thread. One that cannot be
// reached (and so cannot be stopped) does.
func TestPlanFencingPostgresStandbyStillStreaming(t *testing.T) {
	old := topology.Instance{Addr: "pg1", Error: "timeout"}
	s := topology.Snapshot{Engine: topology.Postgres, Instances: []topology.Instance{old,
		{Addr: "pg2", Reachable: true, Replication: &topology.Replication{Source: "pg1", IORunning: true}},
		{Addr: "pg3", Reachable: true, Replication: &topology.Replication{Source: "pg1"}}}}
	sync := topology.Acknowledgement{StandbyNames: `ANY 1 ("dbha", "pg2", "pg3")`, SynchronousCommit: "on"}
	f := PlanFencing(s, old, Failover, FencingPolicy{Acks: map[string]topology.Acknowledgement{"pg1": sync}})
	if !f.Lossless || !strings.Contains(f.LosslessWhy, "stops following it before the promotion") {
		t.Fatalf("lossless %v: %s", f.Lossless, f.LosslessWhy)
	}
	s.Instances[1] = topology.Instance{Addr: "pg2", Error: "timeout"}
	if f := PlanFencing(s, old, Failover, FencingPolicy{Acks: map[string]topology.Acknowledgement{"pg1": sync}}); f.Lossless || !strings.Contains(f.LosslessWhy, "pg2 cannot be reached") {
		t.Fatalf("a standby that cannot be stopped, yet lossless holds: %s", f.LosslessWhy)
	}
}

func TestSecure(t *testing.T) {
	guarded := &Revocation{Guarded: true, Released: true}
	unguarded := &Revocation{}
	for _, tc := range []struct {
		name    string
		f       Fencing
		o       FenceOutcome
		layer   Layer
		wantErr error
	}{
		{name: "read-only", o: FenceOutcome{ReadOnly: true}, layer: LayerReadOnly},
		{name: "guarded lease", o: FenceOutcome{Revocation: guarded}, layer: LayerLease},
		{name: "unguarded lease does not count", o: FenceOutcome{Revocation: unguarded}, layer: LayerNone},
		{name: "fence command", o: FenceOutcome{Revocation: unguarded, Command: "ok"}, layer: LayerCommand},
		{name: "fence command failed, stop", f: Fencing{StopOnCommandFailure: true}, o: FenceOutcome{Command: "exit status 1"},
			layer: LayerNone, wantErr: ErrFenceFailed},
		{name: "fence command failed, proceed", o: FenceOutcome{Command: "exit status 1"}, layer: LayerNone},
		{name: "fence command failed, lossless holds", f: Fencing{Lossless: true, StopOnCommandFailure: true},
			o: FenceOutcome{Command: "exit status 1"}, layer: LayerLossless},
		{name: "lossless", f: Fencing{Lossless: true}, layer: LayerLossless},
		{name: "none", layer: LayerNone},
		{name: "none, required", f: Fencing{Require: true}, layer: LayerNone, wantErr: ErrNotFenced},
		{name: "required, fenced", f: Fencing{Require: true}, o: FenceOutcome{ReadOnly: true}, layer: LayerReadOnly},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, err := Secure(tc.f, tc.o)
			if l != tc.layer || !errors.Is(err, tc.wantErr) || (tc.wantErr == nil) != (err == nil) {
				t.Errorf("Secure = %q, %v; want %q, %v", l, err, tc.layer, tc.wantErr)
			}
		})
	}
}

// fakeLeases stands in for our own Leases interface.
type fakeLeases struct {
	revocation Revocation
	err        error
	calls      *[]string
}

func (l fakeLeases) Revoke(_ context.Context, cluster, addr string) (Revocation, error) {
	*l.calls = append(*l.calls, "revoke "+addr)
	return l.revocation, l.err
}

func (l fakeLeases) Grant(_ context.Context, cluster, addr string) error {
	*l.calls = append(*l.calls, "grant "+addr)
	return nil
}

func (l fakeLeases) Holder(context.Context, string) (string, bool, error) { return "", false, nil }

// fakeFencer stands in for our own Fencer interface.
type fakeFencer struct {
	err   error
	calls *[]string
}

func (f fakeFencer) Fence(_ context.Context, cluster, addr string) error {
	*f.calls = append(*f.calls, "fence-command "+addr)
	return f.err
}

// unreachableOld is an engine whose old primary db1 answers nothing.
func unreachableOld(t *testing.T) *fakeEngine {
	return &fakeEngine{positions: map[string]topology.Position{"db2": mariaPos(t, "0-1-12")},
		failOn: map[string]error{"fence db1": errors.New("db1: connection refused")}}
}

// fencedFailover plans failoverPlan's failover with pol and runs it; its
// calls interleave the engine's, the leases' and the fence command's.
func fencedFailover(t *testing.T, pol FencingPolicy, leases *fakeLeases, fencer *fakeFencer) (*Record, *fakeCoord, []string, error) {
	t.Helper()
	rep := func(addr, pos string) topology.Instance {
		p := mariaPos(t, pos)
		return topology.Instance{Addr: addr, Reachable: true, ReadOnly: true, Received: p, Applied: p, Current: p, History: p,
			Replication: &topology.Replication{Source: "db1", SQLRunning: true}}
	}
	s := topology.Build("c", topology.MariaDB, []topology.Instance{{Addr: "db1", Error: "refused"}, rep("db2", "0-1-12"), rep("db3", "0-1-8")}, time.Unix(0, 0))
	p, err := MakePlan(s, Request{Fencing: pol})
	if err != nil {
		t.Fatal(err)
	}
	var calls []string
	e := &recordingEngine{fakeEngine: unreachableOld(t), calls: &calls}
	env := Env{Engine: e, Coordinator: &fakeCoord{}, Journal: &fakeJournal{}, Now: func() time.Time { return time.Unix(100, 0) }}
	if leases != nil {
		leases.calls = &calls
		env.Leases = leases
	}
	if fencer != nil {
		fencer.calls = &calls
		env.Fencer = fencer
	}
	r := NewRecord("r1", "m", "DeadPrimary", p, time.Unix(100, 0))
	err = Execute(context.Background(), env, r)
	return r, env.Coordinator.(*fakeCoord), calls, err
}

// recordingEngine logs the fake engine's calls into a shared list.
type recordingEngine struct {
	*fakeEngine
	mu    sync.Mutex
	calls *[]string
}

func (e *recordingEngine) log(call string, err error) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	*e.calls = append(*e.calls, call)
	return err
}
func (e *recordingEngine) StopFollowing(ctx context.Context, a string) error {
	return e.log("stop "+a, e.fakeEngine.StopFollowing(ctx, a))
}
func (e *recordingEngine) Promote(ctx context.Context, a string) error {
	return e.log("promote "+a, e.fakeEngine.Promote(ctx, a))
}
func (e *recordingEngine) Fence(ctx context.Context, a string) error {
	return e.log("fence "+a, e.fakeEngine.Fence(ctx, a))
}
func (e *recordingEngine) Repoint(ctx context.Context, a, s string) error {
	return e.log("repoint "+a+" "+s, e.fakeEngine.Repoint(ctx, a, s))
}

func TestExecuteFenceCommandBeforePromotion(t *testing.T) {
	r, c, calls, err := fencedFailover(t, FencingPolicy{Command: true}, nil, &fakeFencer{})
	if err != nil {
		t.Fatal(err)
	}
	// Planned just now: its discovery found db1 silent, so the fence does
	// not dial it again; the fence command runs at once.
	want := []string{"fence-command db1", "stop db2", "stop db3", "promote db2", "repoint db3 db2"}
	if !slices.Equal(stopsInOrder(calls), want) {
		t.Fatalf("calls = %q\nwant %q", calls, want)
	}
	if r.Fence.SecuredBy != LayerCommand || r.NotFenced != "" || !r.Done || c.writer != "db2" {
		t.Errorf("fence %+v not fenced %q done %v writer %q", r.Fence, r.NotFenced, r.Done, c.writer)
	}
}

func TestExecuteFenceCommandFailureAbortsBeforeAnyChange(t *testing.T) {
	r, c, calls, err := fencedFailover(t, FencingPolicy{Command: true}, nil, &fakeFencer{err: errors.New("exit status 2: machine API refused")})
	if !errors.Is(err, ErrFenceFailed) {
		t.Fatalf("err = %v, want ErrFenceFailed", err)
	}
	if want := []string{"fence-command db1"}; !slices.Equal(stopsInOrder(calls), want) {
		t.Fatalf("calls = %q\nwant %q: nothing may change after a failed fence", calls, want)
	}
	if !r.Done || !r.Aborted || c.writer != "" {
		t.Errorf("done %v aborted %v writer %q: want an aborted recovery that moved nothing", r.Done, r.Aborted, c.writer)
	}
	if !strings.Contains(r.Error, "machine API refused") || !strings.Contains(r.Error, "fence_failure") {
		t.Errorf("the record does not say why: %q", r.Error)
	}
}

func TestExecuteFenceCommandFailureProceeds(t *testing.T) {
	r, c, _, err := fencedFailover(t, FencingPolicy{Command: true, ProceedOnCommandFailure: true}, nil, &fakeFencer{err: errors.New("exit status 2")})
	if err != nil {
		t.Fatal(err)
	}
	if c.writer != "db2" || r.Fence.SecuredBy != LayerNone || !strings.Contains(r.NotFenced, "two writers possible") {
		t.Errorf("writer %q fence %+v not fenced %q", c.writer, r.Fence, r.NotFenced)
	}
}

func TestExecuteUnfencedFailover(t *testing.T) {
	for _, tc := range []struct {
		name    string
		require bool
	}{{"proceeds by default", false}, {"stops when fencing is required", true}} {
		t.Run(tc.name, func(t *testing.T) {
			r, c, calls, err := fencedFailover(t, FencingPolicy{Require: tc.require}, nil, nil)
			if tc.require {
				if !errors.Is(err, ErrNotFenced) || !r.Aborted || c.writer != "" || len(calls) != 0 {
					t.Fatalf("err %v aborted %v writer %q calls %q", err, r.Aborted, c.writer, calls)
				}
				if !strings.Contains(r.Error, "require_fencing") {
					t.Errorf("the record does not say why: %q", r.Error)
				}
				return
			}
			if err != nil || c.writer != "db2" {
				t.Fatalf("err %v writer %q", err, c.writer)
			}
			if !strings.Contains(r.NotFenced, "not fenced: two writers possible until it returns") {
				t.Errorf("not fenced = %q", r.NotFenced)
			}
		})
	}
}

func TestExecuteGuardedLeaseBeforePromotion(t *testing.T) {
	leases := &fakeLeases{revocation: Revocation{Guarded: true, Waited: 2 * time.Second, TTL: 2 * time.Second}}
	r, c, calls, err := fencedFailover(t, FencingPolicy{Leases: true, Command: true}, leases, &fakeFencer{})
	if err != nil {
		t.Fatal(err)
	}
	// The lease secured it: no bounded wait on the old primary, no fence
	// command; the new primary is granted before it is made writable.
	want := []string{"revoke db1", "stop db2", "stop db3", "grant db2", "promote db2", "repoint db3 db2"}
	if !slices.Equal(stopsInOrder(calls), want) {
		t.Fatalf("calls = %q\nwant %q", calls, want)
	}
	if r.Fence.SecuredBy != LayerLease || r.Fence.Revocation == nil || !r.Fence.Revocation.Guarded || c.writer != "db2" {
		t.Errorf("fence %+v writer %q", r.Fence, c.writer)
	}
}

func TestExecuteUnguardedLeaseFallsThrough(t *testing.T) {
	r, _, calls, err := fencedFailover(t, FencingPolicy{Leases: true, Command: true}, &fakeLeases{}, &fakeFencer{})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"revoke db1", "fence-command db1", "stop db2", "stop db3", "grant db2", "promote db2", "repoint db3 db2"}
	if !slices.Equal(stopsInOrder(calls), want) || r.Fence.SecuredBy != LayerCommand {
		t.Fatalf("calls = %q secured by %q\nwant %q", calls, r.Fence.SecuredBy, want)
	}
}

func TestExecuteLeaseRevokeErrorStops(t *testing.T) {
	r, c, _, err := fencedFailover(t, FencingPolicy{Leases: true}, &fakeLeases{err: errors.New("consul: no leader")}, nil)
	if err == nil || !strings.Contains(err.Error(), "no leader") || c.writer != "" || !r.Aborted {
		t.Fatalf("err %v writer %q aborted %v", err, c.writer, r.Aborted)
	}
}

func TestExecuteLosslessSecuresTheOldPrimary(t *testing.T) {
	pol := FencingPolicy{Require: true, Acks: map[string]topology.Acknowledgement{"db1": noFallback}}
	r, c, _, err := fencedFailover(t, pol, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if r.Fence.SecuredBy != LayerLossless || r.NotFenced != "" || c.writer != "db2" {
		t.Errorf("fence %+v not fenced %q writer %q", r.Fence, r.NotFenced, c.writer)
	}
}

func TestExecuteSwitchoverWithLeases(t *testing.T) {
	pr := mariaPos(t, "0-1-20")
	rep := topology.Instance{Addr: "db2", Reachable: true, ReadOnly: true, Received: pr, Applied: pr, Current: pr, History: pr,
		Replication: &topology.Replication{Source: "db1", IORunning: true, SQLRunning: true}}
	s := topology.Build("c", topology.MariaDB, []topology.Instance{{Addr: "db1", Reachable: true, Current: pr, History: pr}, rep}, time.Unix(0, 0))
	p, err := MakePlan(s, Request{Fencing: FencingPolicy{Leases: true}})
	if err != nil {
		t.Fatal(err)
	}
	var calls []string
	e := &recordingEngine{fakeEngine: &fakeEngine{positions: map[string]topology.Position{"db1": pr, "db2": pr},
		failOn: map[string]error{"promote db2": errors.New("boom")}}, calls: &calls}
	env := Env{Engine: e, Coordinator: &fakeCoord{}, Journal: &fakeJournal{}, Leases: fakeLeases{calls: &calls}}
	r := NewRecord("r1", "m", "switchover", p, time.Unix(100, 0))
	if err := Execute(context.Background(), env, r); err == nil {
		t.Fatal("the promotion's failure was not reported")
	}
	// Fenced, lease revoked, new primary granted; the failed promotion
	// gives the old primary its lease back before its writes.
	want := []string{"fence db1", "revoke db1", "grant db2", "promote db2", "grant db1"}
	if !slices.Equal(stopsInOrder(calls), want) {
		t.Fatalf("calls = %q\nwant %q", calls, want)
	}
	if last := e.fakeEngine.calls[len(e.fakeEngine.calls)-1]; last != "unfence db1" || !r.Aborted {
		t.Errorf("last engine call %q aborted %v: want the old primary writable again", last, r.Aborted)
	}
}

func TestFencingWarning(t *testing.T) {
	primary := func(ack *topology.Acknowledgement) topology.Snapshot {
		return topology.Snapshot{Engine: topology.MariaDB, Primary: "db1",
			Instances: []topology.Instance{{Addr: "db1", Reachable: true, Ack: ack}, {Addr: "db2", Reachable: true}}}
	}
	for _, tc := range []struct {
		name string
		s    topology.Snapshot
		pol  FencingPolicy
		warn string
	}{
		{"nothing", primary(&fallsBack), FencingPolicy{}, "two writers possible after an isolate"},
		{"settings unknown", primary(nil), FencingPolicy{}, "not read while it answered"},
		{"leases", primary(&fallsBack), FencingPolicy{Leases: true}, ""},
		{"fence command", primary(nil), FencingPolicy{Command: true}, ""},
		{"lossless", primary(&noFallback), FencingPolicy{}, ""},
		{"lossless last seen", primary(nil), FencingPolicy{Acks: map[string]topology.Acknowledgement{"db1": noFallback}}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := FencingWarning(tc.s, "db1", tc.pol)
			if (tc.warn == "") != (got == "") || !strings.Contains(got, tc.warn) {
				t.Errorf("FencingWarning = %q, want %q", got, tc.warn)
			}
		})
	}
}

// The fence dials the old primary when it was last found silent longer
// ago than the bound (here: a lease revocation that took a second and
// found no guard); one that answers is read-only before anything changes.
func TestExecuteOldPrimaryFencedReadOnly(t *testing.T) {
	s := topology.Build("c", topology.MariaDB, []topology.Instance{{Addr: "db1", Error: "refused"},
		{Addr: "db2", Reachable: true, ReadOnly: true, Received: mariaPos(t, "0-1-12"), Applied: mariaPos(t, "0-1-12"),
			Replication: &topology.Replication{Source: "db1", SQLRunning: true}}}, time.Unix(0, 0))
	p, err := MakePlan(s, Request{Fencing: FencingPolicy{Leases: true}})
	if err != nil {
		t.Fatal(err)
	}
	var calls []string
	e := &recordingEngine{fakeEngine: &fakeEngine{positions: map[string]topology.Position{"db2": mariaPos(t, "0-1-12")}}, calls: &calls}
	now := time.Unix(100, 0)
	leases := &slowLeases{fakeLeases: fakeLeases{calls: &calls}, now: &now, takes: time.Second}
	env := Env{Engine: e, Coordinator: &fakeCoord{}, Journal: &fakeJournal{}, Leases: leases, Now: func() time.Time { return now }}
	r := NewRecord("r1", "m", "DeadPrimary", p, now)
	if err := Execute(context.Background(), env, r); err != nil {
		t.Fatal(err)
	}
	if len(calls) < 2 || calls[1] != "fence db1" || r.Fence.SecuredBy != LayerReadOnly || r.NotFenced != "" {
		t.Fatalf("calls %q fence %+v not fenced %q", calls, r.Fence, r.NotFenced)
	}
}

// slowLeases revokes as fakeLeases does, advancing a test clock by takes.
type slowLeases struct {
	fakeLeases
	now   *time.Time
	takes time.Duration
}

func (l *slowLeases) Revoke(ctx context.Context, cluster, addr string) (Revocation, error) {
	*l.now = l.now.Add(l.takes)
	return l.fakeLeases.Revoke(ctx, cluster, addr)
}

func TestAckFileRoundTrip(t *testing.T) {
	f := AckFile{Path: t.TempDir() + "/acks/c.json"}
	if got, err := f.Load(); err != nil || len(got) != 0 {
		t.Fatalf("a missing file: %v, %v", got, err)
	}
	want := map[string]topology.Acknowledgement{"db1": noFallback, "db2": fallsBack}
	if err := f.Save(want); err != nil {
		t.Fatal(err)
	}
	got, err := f.Load()
	if err != nil || got["db1"] != noFallback || got["db2"] != fallsBack || len(got) != 2 {
		t.Fatalf("Load = %v, %v", got, err)
	}
}

// memAcks stands in for our own AckMemory interface.
type memAcks struct {
	kept map[string]topology.Acknowledgement
}

func (m *memAcks) Load() (map[string]topology.Acknowledgement, error) {
	out := map[string]topology.Acknowledgement{}
	for k, v := range m.kept {
		out[k] = v
	}
	return out, nil
}
func (m *memAcks) Save(a map[string]topology.Acknowledgement) error {
	m.kept, _ = (&memAcks{a}).Load()
	return nil
}

// A keeper plans a failover with the commit settings its old primary last
// answered with: seen by this keeper, or kept by an earlier process.
func TestKeeperPlansWithTheOldPrimarysLastSettings(t *testing.T) {
	pos := mariaPos(t, "0-1-10")
	rep := func(addr string) topology.Instance {
		return topology.Instance{Addr: addr, Reachable: true, ReadOnly: true, Received: pos, Applied: pos, Current: pos, History: pos,
			Ack:         &topology.Acknowledgement{WaitNoReplica: true, TimeoutMS: noFallback.TimeoutMS, WaitPoint: "AFTER_SYNC"},
			Replication: &topology.Replication{Source: "db1", SQLRunning: true}}
	}
	primary := topology.Instance{Addr: "db1", Reachable: true, Current: pos, History: pos, Ack: &noFallback}
	alive := topology.Build("c", topology.MariaDB, []topology.Instance{primary, rep("db2"), rep("db3")}, time.Unix(0, 0))
	dead := topology.Build("c", topology.MariaDB, []topology.Instance{{Addr: "db1", Error: "refused"}, rep("db2"), rep("db3")}, time.Unix(0, 0))
	snap := alive
	mem := &memAcks{}
	env := RecoverEnv{Discover: func(context.Context, ...topology.Bound) topology.Snapshot { return snap }, Acks: mem}
	k := NewKeeper("c", env, func() Request { return Request{} }, nil)
	if _, err := k.Plan(context.Background(), Choice{}); err != nil { // a switchover: it sees db1 answer
		t.Fatal(err)
	}
	if mem.kept["db1"] != noFallback {
		t.Fatalf("the settings seen were not kept: %+v", mem.kept)
	}
	snap = dead
	for name, k := range map[string]*Keeper{"same keeper": k, "fresh process": NewKeeper("c", env, func() Request { return Request{} }, nil)} {
		p, err := k.Plan(context.Background(), Choice{})
		if err != nil {
			t.Fatal(err)
		}
		if p.Kind != Failover || !p.Fencing.Lossless {
			t.Errorf("%s: %s, lossless %v: %s", name, p.Kind, p.Fencing.Lossless, p.Fencing.LosslessWhy)
		}
	}
}

func TestForceOverridesTheFencingStop(t *testing.T) {
	s, _ := fencingSnapshot(false)
	pos := mariaPos(t, "0-1-10")
	for i := range s.Instances[1:] {
		in := &s.Instances[i+1]
		in.Received, in.Applied, in.Current, in.History = pos, pos, pos, pos
	}
	s = topology.Build("c", topology.MariaDB, s.Instances, time.Unix(0, 0))
	p, err := MakePlan(s, Request{To: "db2", Force: true, Fencing: FencingPolicy{Require: true, Command: true}})
	if err != nil {
		t.Fatal(err)
	}
	if p.Fencing.Require || p.Fencing.StopOnCommandFailure || len(p.Forced) != 1 || !strings.Contains(p.Forced[0], "require_fencing") {
		t.Fatalf("fencing %+v forced %q", p.Fencing, p.Forced)
	}
	if l, err := Secure(p.Fencing, FenceOutcome{Command: "exit status 1"}); l != LayerNone || err != nil {
		t.Fatalf("Secure = %q, %v: want a forced failover to proceed unfenced", l, err)
	}
}
