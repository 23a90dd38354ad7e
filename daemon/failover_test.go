package daemon

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dbha/dbha/checks"
	"github.com/dbha/dbha/config"
	"github.com/dbha/dbha/promote"
	"github.com/dbha/dbha/promote/promotetest"
	"github.com/dbha/dbha/topology"
)

// failoverRig is a monitor whose cluster is simulated (promotetest.Cluster
// is both its prober and its engine) and whose keeper is the real
// promote.Keeper over an in-memory store: automatic failover end to end,
// without building the binary. Integration tests run the same path
// against real servers and Consul.
type failoverRig struct {
	t       *testing.T
	cluster *promotetest.Cluster
	addrs   []string
	store   *promotetest.Store
	keeper  *promote.Keeper
	m       *Monitor
}

func newFailoverRig(t *testing.T, autoFailover bool, opts ...func(*promote.RecoverEnv, *promotetest.Cluster)) *failoverRig {
	return newFailoverRigOf(t, 3, autoFailover, opts...)
}

// newFailoverRigOf is a rig of n instances. Its requests carry what a
// change stream would have seen of the primaries (all the simulated
// cluster ever wrote), as `dbha run` gives them: without it, a former
// primary left as the only replica would hold its own old writes, which
// no other source holds, as errant.
func newFailoverRigOf(t *testing.T, n int, autoFailover bool, opts ...func(*promote.RecoverEnv, *promotetest.Cluster)) *failoverRig {
	t.Helper()
	c, addrs, err := promotetest.NewCluster(n)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	seen, err := topology.ParseMariaDB("0-1-10")
	if err != nil {
		t.Fatal(err)
	}
	store := promotetest.NewStore()
	discover := func(ctx context.Context, bounds ...topology.Bound) topology.Snapshot {
		return topology.Discover(ctx, topology.Cluster{Name: "c", Engine: topology.MariaDB, Instances: addrs}, c, time.Second, bounds...)
	}
	env := promote.RecoverEnv{Store: store, Engine: c, Manager: "m1", Discover: discover,
		StepTimeout: 5 * time.Second, BlockFor: time.Hour}
	for _, o := range opts {
		o(&env, c)
	}
	keeper := promote.NewKeeper("c", env, func() promote.Request { return promote.Request{LastSeen: seen} }, nil)
	cfg := config.Cluster{Name: "c", Engine: "mariadb", Instances: addrs,
		Promotion: config.Promotion{AutoFailover: &autoFailover}}
	m := New(Options{Manager: "m1", Interval: 10 * time.Millisecond, ProbeTimeout: time.Second,
		Policy: checks.DefaultPolicy(), Clusters: []Cluster{{Config: cfg, Prober: c, Keeper: keeper}}})
	return &failoverRig{t: t, cluster: c, addrs: addrs, store: store, keeper: keeper, m: m}
}

// recoveries cycles until the cluster has n recovery records, at most
// eight cycles, and returns them.
func (r *failoverRig) recoveries(n int) []*promote.Record {
	r.t.Helper()
	recs := r.store.Records("c")
	for i := 0; i < 8 && len(recs) < n; i++ {
		r.cycle()
		recs = r.store.Records("c")
	}
	if len(recs) != n {
		r.t.Fatalf("%d recoveries, want %d:%s (calls %v)", len(recs), n, describe(recs), r.cluster.Calls())
	}
	return recs
}

func describe(recs []*promote.Record) string {
	var out string
	for _, rec := range recs {
		out += fmt.Sprintf("\n  %s %s %s -> %s done %v automatic %v error %q", rec.ID, rec.Kind, rec.Plan.OldPrimary, rec.Plan.NewPrimary, rec.Done, rec.Automatic, rec.Error)
	}
	return out
}

// finding returns the cluster's current finding with code, if any.
func (r *failoverRig) finding(code checks.Code) (checks.Finding, bool) {
	st, _ := r.m.State("c")
	i := slices.IndexFunc(st.Findings, func(f checks.Finding) bool { return f.Code == code })
	if i < 0 {
		return checks.Finding{}, false
	}
	return st.Findings[i], true
}

// cycle runs one monitor cycle and returns the findings' codes.
func (r *failoverRig) cycle() []checks.Code {
	r.m.Cycle(context.Background())
	st, _ := r.m.State("c")
	var codes []checks.Code
	for _, f := range st.Findings {
		codes = append(codes, f.Code)
	}
	return codes
}

func (r *failoverRig) writer() string {
	w, _ := r.store.Writer(context.Background(), "c")
	if len(w) != 1 {
		return ""
	}
	return w[0]
}

// TestAutomaticFailover: detection → recover → publish → enforce, through
// the monitor's dispatch and the real keeper: a vanished primary is
// confirmed by dbha and both replicas, the best replica is promoted and
// published, the other follows it; the old primary, back writable, is
// fenced, and once fenced and following nobody it rejoins.
func TestAutomaticFailover(t *testing.T) {
	r := newFailoverRig(t, true)
	a, b, c := r.addrs[0], r.addrs[1], r.addrs[2]

	if codes := r.cycle(); len(codes) != 0 {
		t.Fatalf("healthy cluster: findings %v", codes)
	}
	if w, rd := r.writer(), r.store.Readers("c"); w != a || !slices.Equal(rd, []string{b, c}) {
		t.Fatalf("published writer %q readers %v, want %s and [%s %s]", w, rd, a, b, c)
	}

	r.cluster.Kill(a)
	var recs []*promote.Record
	for i := 0; i < 5 && len(recs) == 0; i++ {
		r.cycle()
		recs = r.store.Records("c")
	}
	if len(recs) != 1 {
		t.Fatalf("after the primary vanished: %d recoveries, want 1 (calls %v)", len(recs), r.cluster.Calls())
	}
	rec := recs[0]
	if !rec.Done || rec.Error != "" || rec.Reason != string(checks.DeadPrimary) || rec.Plan.OldPrimary != a {
		t.Fatalf("recovery %+v: want done, for DeadPrimary of %s", rec, a)
	}
	next := rec.Plan.NewPrimary
	other := c
	if next == c {
		other = b
	}
	if next != b && next != c {
		t.Fatalf("promoted %q, want one of the replicas", next)
	}
	if w := r.writer(); w != next {
		t.Fatalf("writer %q after the recovery, want %s", w, next)
	}
	if n := r.cluster.Node(other); n.Source != next || n.Halted {
		t.Errorf("the other replica %s follows %q (halted %v), want %s", other, n.Source, n.Halted, next)
	}
	if codes := r.cycle(); slices.Contains(codes, checks.DeadPrimary) {
		t.Fatalf("after the recovery: findings %v", codes)
	}

	// The old primary returns as it died: writable, following nobody.
	if err := r.cluster.Start(a, false); err != nil {
		t.Fatal(err)
	}
	codes := r.cycle()
	if !slices.Contains(codes, checks.TwoWritablePrimaries) {
		t.Fatalf("old primary back writable: findings %v, want TwoWritablePrimaries", codes)
	}
	if n := r.cluster.Node(a); !n.ReadOnly {
		t.Fatalf("old primary %s still writable after the cycle that saw two writers (calls %v)", a, r.cluster.Calls())
	}
	codes = r.cycle()
	if !slices.Contains(codes, checks.InstanceDetached) {
		t.Fatalf("old primary fenced and following nobody: findings %v, want InstanceDetached", codes)
	}
	if n := r.cluster.Node(a); n.Source != next {
		t.Fatalf("old primary %s follows %q after enforcement, want %s (calls %v)", a, n.Source, next, r.cluster.Calls())
	}
	if codes := r.cycle(); len(codes) != 0 {
		t.Fatalf("cluster healed: findings %v", codes)
	}
	if w, rd := r.writer(), r.store.Readers("c"); w != next || len(rd) != 2 || !slices.Contains(rd, a) || !slices.Contains(rd, other) {
		t.Errorf("endpoints after healing: writer %q readers %v, want %s and the two others", w, rd, next)
	}
	if got := r.store.Moves; !slices.Equal(got, []string{"c=" + a, "c=" + next}) {
		t.Errorf("writer moves %v, want exactly two: to %s, then to %s", got, a, next)
	}
}

// TestNoAutomaticFailoverWhenOff: with auto_failover off a confirmed dead
// primary is reported and nothing changes.
func TestNoAutomaticFailoverWhenOff(t *testing.T) {
	r := newFailoverRig(t, false)
	r.cycle()
	r.cluster.Kill(r.addrs[0])
	var codes []checks.Code
	for range 4 {
		codes = r.cycle()
	}
	if !slices.Contains(codes, checks.DeadPrimary) {
		t.Fatalf("findings %v, want DeadPrimary", codes)
	}
	if recs := r.store.Records("c"); len(recs) != 0 || r.writer() != r.addrs[0] {
		t.Fatalf("with auto_failover off: %d recoveries, writer %q; want none and %s", len(recs), r.writer(), r.addrs[0])
	}
	for _, call := range r.cluster.Calls() {
		t.Errorf("engine called with auto_failover off: %s", call)
	}
}

// TestNothingWhileAnotherManagerHoldsTheLock: while another manager holds
// the cluster's lock, this one neither recovers nor fences; once it is
// released, the recovery happens.
func TestNothingWhileAnotherManagerHoldsTheLock(t *testing.T) {
	r := newFailoverRig(t, true)
	r.cycle()
	release := r.store.Hold("c", "m2")
	r.cluster.Kill(r.addrs[0])
	for range 4 {
		r.cycle()
	}
	if recs := r.store.Records("c"); len(recs) != 0 || len(r.cluster.Calls()) != 0 {
		t.Fatalf("while m2 holds the lock: %d recoveries, calls %v; want none", len(recs), r.cluster.Calls())
	}
	release()
	r.cycle()
	if recs := r.store.Records("c"); len(recs) != 1 || !recs[0].Done {
		t.Fatalf("after m2 released the lock: recoveries %+v, want one done", recs)
	}
}

// TestFailoverAfterSwitchover: a planned switchover a → b through the
// keeper sets no anti-flap block, so when b dies the automatic failover
// happens, and may promote a: it gave the role up, it did not fail.
func TestFailoverAfterSwitchover(t *testing.T) {
	r := newFailoverRig(t, true)
	ctx := context.Background()
	a, b := r.addrs[0], r.addrs[1]
	r.cycle()
	sw, err := r.keeper.Recover(ctx, promote.Trigger{Reason: "requested with dbha promote"}, promote.Choice{To: b})
	if err != nil || sw.Kind != promote.Switchover || sw.Automatic || r.writer() != b {
		t.Fatalf("switchover to %s: %+v, %v; writer %q", b, sw, err, r.writer())
	}
	if blk, ok, _ := r.store.Blocked(ctx, "c"); ok {
		t.Fatalf("the switchover set the anti-flap block %+v", blk)
	}
	if codes := r.cycle(); len(codes) != 0 {
		t.Fatalf("after the switchover: findings %v", codes)
	}

	r.cluster.Kill(b)
	recs := r.recoveries(2)
	rec := recs[1]
	if !rec.Done || rec.Error != "" || !rec.Automatic || rec.Plan.OldPrimary != b || rec.Plan.NewPrimary != a {
		t.Fatalf("failover after the switchover:%s; want %s replaced by %s (first in order, a healthy replica)", describe(recs), b, a)
	}
	if w := r.writer(); w != a {
		t.Errorf("writer %q, want %s", w, a)
	}
	if _, ok := r.finding(checks.RecoveryBlocked); ok {
		t.Errorf("RecoveryBlocked after an unblocked failover")
	}
}

// TestFailoverToAnUninvolvedReplica: automatic failover a → b; a returns
// as b's replica; b dies 12 s later in the lab's story. Promoting a back
// would flap, but c is healthy and took no part: c is promoted.
func TestFailoverToAnUninvolvedReplica(t *testing.T) {
	r := newFailoverRig(t, true)
	a, b, c := r.addrs[0], r.addrs[1], r.addrs[2]
	r.cycle()
	r.cluster.Kill(a)
	if recs := r.recoveries(1); recs[0].Plan.NewPrimary != b || !recs[0].Automatic {
		t.Fatalf("first failover:%s; want %s promoted", describe(recs), b)
	}
	if err := r.cluster.StartReplica(a, b); err != nil {
		t.Fatal(err)
	}
	if codes := r.cycle(); len(codes) != 0 {
		t.Fatalf("a back as a replica of b: findings %v", codes)
	}

	r.cluster.Kill(b)
	recs := r.recoveries(2)
	rec := recs[1]
	if !rec.Done || rec.Error != "" || rec.Plan.OldPrimary != b || rec.Plan.NewPrimary != c {
		t.Fatalf("second failover:%s; want %s replaced by the uninvolved %s", describe(recs), b, c)
	}
	i := slices.IndexFunc(rec.Plan.Candidates, func(cd promote.Candidate) bool { return cd.Addr == a })
	if i < 0 || !rec.Plan.Candidates[i].Excluded || !strings.Contains(strings.Join(rec.Plan.Candidates[i].Reasons, "; "), "would be flapping") {
		t.Errorf("the record's candidates %+v: want %s excluded as the one that just lost the role", rec.Plan.Candidates, a)
	}
	if w := r.writer(); w != c {
		t.Errorf("writer %q, want %s", w, c)
	}
	if n := r.cluster.Node(a); n.Source != c {
		t.Errorf("%s follows %q, want the new primary %s", a, n.Source, c)
	}
}

// TestFlapIsBlocked: two instances, a → b automatically, a back as b's
// replica, b dies: the only candidate just lost the role. The recovery is
// refused, a critical RecoveryBlocked finding names the block, its end and
// the command that lifts it, and nothing changes; once the block is lifted
// the recovery happens and the finding goes.
func TestFlapIsBlocked(t *testing.T) {
	r := newFailoverRigOf(t, 2, true)
	a, b := r.addrs[0], r.addrs[1]
	r.cycle()
	r.cluster.Kill(a)
	first := r.recoveries(1)[0]
	if first.Plan.NewPrimary != b {
		t.Fatalf("first failover promoted %s, want %s", first.Plan.NewPrimary, b)
	}
	if err := r.cluster.StartReplica(a, b); err != nil {
		t.Fatal(err)
	}
	if codes := r.cycle(); len(codes) != 0 {
		t.Fatalf("a back as a replica of b: findings %v", codes)
	}

	r.cluster.Kill(b)
	calls := len(r.cluster.Calls())
	var blocked checks.Finding
	var found bool
	for i := 0; i < 8 && !found; i++ {
		r.cycle()
		blocked, found = r.finding(checks.RecoveryBlocked)
	}
	if !found {
		st, _ := r.m.State("c")
		t.Fatalf("no RecoveryBlocked finding after b died: %+v", st.Findings)
	}
	if _, dead := r.finding(checks.DeadPrimary); !dead || blocked.Severity != checks.Critical || blocked.Action != checks.Report {
		t.Errorf("finding %+v: want a critical report beside DeadPrimary", blocked)
	}
	for _, want := range []string{first.ID, a, "blocked until", "`dbha recover ack --cluster c` lifts it"} {
		if !strings.Contains(blocked.Summary, want) {
			t.Errorf("summary %q does not say %q", blocked.Summary, want)
		}
	}
	r.cycle()
	if got := r.cluster.Calls()[calls:]; len(got) != 0 || len(r.store.Records("c")) != 1 || r.writer() != b {
		t.Fatalf("while blocked: calls %v, %d recoveries, writer %q; want nothing changed", got, len(r.store.Records("c")), r.writer())
	}

	r.store.ClearBlocked("c")
	recs := r.recoveries(2)
	if rec := recs[1]; !rec.Done || rec.Error != "" || rec.Plan.OldPrimary != b || rec.Plan.NewPrimary != a {
		t.Fatalf("after the block was lifted:%s; want %s replaced by %s", describe(recs), b, a)
	}
	if w := r.writer(); w != a {
		t.Errorf("writer %q, want %s", w, a)
	}
	r.cycle()
	if _, still := r.finding(checks.RecoveryBlocked); still {
		t.Errorf("RecoveryBlocked still reported after the recovery")
	}
}

func TestDispatch(t *testing.T) {
	dead := checks.Finding{Code: checks.DeadPrimary, Action: checks.Recover}
	two := checks.Finding{Code: checks.TwoWritablePrimaries, Action: checks.Enforce}
	lag := checks.Finding{Code: checks.ReplicaLagging}
	cases := []struct {
		name     string
		findings []checks.Finding
		auto     bool
		want     checks.Action
		code     checks.Code
	}{
		{"nothing found: publish", nil, true, checks.Report, ""},
		{"report-only findings: publish", []checks.Finding{lag}, true, checks.Report, ""},
		{"dead primary: recover", []checks.Finding{lag, dead}, true, checks.Recover, checks.DeadPrimary},
		{"recovery before enforcement", []checks.Finding{two, dead}, true, checks.Recover, checks.DeadPrimary},
		{"automatic failover off: enforce instead", []checks.Finding{two, dead}, false, checks.Enforce, checks.TwoWritablePrimaries},
		{"automatic failover off, nothing to enforce", []checks.Finding{dead}, false, checks.Report, ""},
		{"enforce", []checks.Finding{lag, two}, true, checks.Enforce, checks.TwoWritablePrimaries},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f, got := dispatch(tc.findings, tc.auto)
			if got != tc.want || f.Code != tc.code {
				t.Errorf("dispatch = %q on %q, want %q on %q", got, f.Code, tc.want, tc.code)
			}
		})
	}
}

// failOver kills the primary and cycles until a recovery is recorded; it
// returns the new primary.
func (r *failoverRig) failOver() string {
	r.t.Helper()
	old := r.writer()
	r.cluster.Kill(old)
	for range 5 {
		r.cycle()
		if recs := r.store.Records("c"); len(recs) > 0 && recs[len(recs)-1].Plan.OldPrimary == old && recs[len(recs)-1].Done {
			return recs[len(recs)-1].Plan.NewPrimary
		}
	}
	r.t.Fatalf("no recovery after %s died (calls %v)", old, r.cluster.Calls())
	return ""
}

func hasFinding(st State, code checks.Code, instance string) (checks.Finding, bool) {
	for _, f := range st.Findings {
		if f.Code == code && f.Instance == instance {
			return f, true
		}
	}
	return checks.Finding{}, false
}

// TestOldPrimaryWithATailIsRewound: the old primary returns holding
// writes nobody received; the keeper saves and undoes them, lists them in
// the recovery's ledger, and the instance follows the new primary.
func TestOldPrimaryWithATailIsRewound(t *testing.T) {
	r := newFailoverRig(t, true)
	a := r.addrs[0]
	r.cycle()
	next := r.failOver()
	r.cluster.SetTail(a, "0-7-12", "")
	if err := r.cluster.Start(a, true); err != nil {
		t.Fatal(err)
	}
	r.cycle()
	if n := r.cluster.Node(a); n.Source != next || n.Tail != "" {
		t.Fatalf("old primary after a cycle: %+v, want its tail undone and following %s (calls %v)", n, next, r.cluster.Calls())
	}
	recs := r.store.Records("c")
	rw := recs[len(recs)-1].Ledger.Rewound
	if len(rw) != 1 || rw[0].Instance != a || rw[0].Tail.String() != "0-7-12" || !rw[0].Undone || rw[0].File == "" {
		t.Fatalf("ledger rewound = %+v, want %s's tail 0-7-12 with its file", rw, a)
	}
	if codes := r.cycle(); len(codes) != 0 {
		t.Errorf("after the rewind: findings %v, want none", codes)
	}
}

// TestRefusedRewindIsACriticalFinding: a tail that cannot be undone
// safely leaves the instance fenced, says so with a critical finding
// naming the reseed command, is not tried again every cycle, and does not
// keep the endpoints from following the rest of the cluster.
func TestRefusedRewindIsACriticalFinding(t *testing.T) {
	r := newFailoverRig(t, true)
	a := r.addrs[0]
	r.cycle()
	next := r.failOver()
	r.cluster.SetTail(a, "0-7-11", "a DDL statement (CREATE TABLE) cannot be flashed back")
	if err := r.cluster.Start(a, true); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		r.cycle()
	}
	st, _ := r.m.State("c")
	f, ok := hasFinding(st, checks.RewindRefused, a)
	if !ok || f.Severity != checks.Critical || !strings.Contains(f.Summary, "CREATE TABLE") || !strings.Contains(f.Summary, "dbha backup reseed --cluster c --instance "+a) {
		t.Fatalf("findings %+v: want a critical RewindRefused on %s with the reason and the reseed command", st.Findings, a)
	}
	if _, ok := hasFinding(st, checks.InstanceDetached, a); !ok {
		t.Errorf("findings %+v: want InstanceDetached on %s", st.Findings, a)
	}
	rewinds := 0
	for _, c := range r.cluster.Calls() {
		if c == "rewind "+a {
			rewinds++
		}
	}
	if rewinds != 1 {
		t.Errorf("rewind of %s tried %d times in 3 cycles, want once", a, rewinds)
	}
	if n := r.cluster.Node(a); n.Tail == "" || n.Source != "" || !n.ReadOnly {
		t.Errorf("the refused instance changed: %+v", n)
	}
	if w, rd := r.writer(), r.store.Readers("c"); w != next || len(rd) != 1 || slices.Contains(rd, a) {
		t.Errorf("endpoints: writer %q readers %v, want %s and the one healthy replica", w, rd, next)
	}
}

// TestRefusedRewindIsReseededWhenAuto: with promotion.reseed auto, a
// former primary whose tail cannot be undone is rebuilt (in the
// background, outside the cluster's lock) and follows the writer.
func TestRefusedRewindIsReseededWhenAuto(t *testing.T) {
	reseeded := make(chan string, 4)
	var primary string
	r := newFailoverRig(t, true, func(env *promote.RecoverEnv, c *promotetest.Cluster) {
		env.Reseed = func(ctx context.Context, addr string) error {
			err := c.Reseed(ctx, addr, primary)
			reseeded <- addr
			return err
		}
	})
	a := r.addrs[0]
	r.cycle()
	primary = r.failOver()
	r.cluster.SetTail(a, "0-7-11", "a DDL statement (CREATE TABLE) cannot be flashed back")
	if err := r.cluster.Start(a, true); err != nil {
		t.Fatal(err)
	}
	r.cycle() // the rewind is refused
	r.cycle() // the reseed starts
	select {
	case got := <-reseeded:
		if got != a {
			t.Fatalf("reseeded %s, want %s", got, a)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("no reseed of %s (calls %v)", a, r.cluster.Calls())
	}
	if n := r.cluster.Node(a); n.Source != primary || n.Tail != "" {
		t.Fatalf("after the reseed %s is %+v, want it following %s", a, n, primary)
	}
	waitNoFindings := func() []checks.Code {
		var codes []checks.Code
		for range 5 {
			if codes = r.cycle(); len(codes) == 0 {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		return codes
	}
	if codes := waitNoFindings(); len(codes) != 0 {
		t.Fatalf("after the reseed: findings %v, want none", codes)
	}
}

// failsFirstStop fails the first StopFollowing of each replica, as a
// stop-following step that ran out of time would (the replicas are
// stopped together: the candidate's failure fails the attempt).
type failsFirstStop struct {
	*promotetest.Cluster
	mu     sync.Mutex
	failed map[string]bool
}

func (f *failsFirstStop) StopFollowing(ctx context.Context, addr string) error {
	f.mu.Lock()
	first := !f.failed[addr]
	f.failed[addr] = true
	f.mu.Unlock()
	if first {
		return errors.New("STOP SLAVE IO_THREAD: context deadline exceeded")
	}
	return f.Cluster.StopFollowing(ctx, addr)
}

// TestRetriedRecoveryKeepsTheFirstDetection: the record of a recovery that
// succeeds at its second attempt counts its RTO from when the lost primary
// was first recovered for, not from its own attempt.
func TestRetriedRecoveryKeepsTheFirstDetection(t *testing.T) {
	r := newFailoverRig(t, true, func(env *promote.RecoverEnv, c *promotetest.Cluster) {
		env.Engine = &failsFirstStop{Cluster: c, failed: map[string]bool{}}
	})
	r.cycle()
	r.cluster.Kill(r.addrs[0])
	var recs []*promote.Record
	// The daemon waits 5 s after a failed attempt; 20 s bounds the wait.
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		r.cycle()
		if recs = r.store.Records("c"); len(recs) == 2 {
			break
		}
	}
	if len(recs) != 2 || recs[0].Done && !recs[0].Aborted || !recs[1].Done || recs[1].Aborted {
		t.Fatalf("want a failed attempt, then a finished recovery:%s", describe(recs))
	}
	if !recs[1].Detected.Equal(recs[0].Detected) {
		t.Errorf("the second attempt was detected at %v, the first at %v: want the first's", recs[1].Detected, recs[0].Detected)
	}
	if recs[1].RTOSeconds < recs[1].WriterMoved.Sub(recs[0].Started).Seconds() {
		t.Errorf("RTO %.1fs counts from the second attempt (the first started %v, the writer moved %v)", recs[1].RTOSeconds, recs[0].Started, recs[1].WriterMoved)
	}
}

// failingFencer is a fence command that always fails.
type failingFencer struct{ calls int }

func (f *failingFencer) Fence(context.Context, string, string) error {
	f.calls++
	return errors.New("exit status 1: the power API does not answer")
}

// TestStoppedRecoveryIsACriticalFinding: a failover that the fencing
// stops (a failing fence_command, fence_failure: stop) changes nothing,
// and the cluster, left without a writer, says why in a RecoveryStopped
// finding until a later attempt succeeds.
func TestStoppedRecoveryIsACriticalFinding(t *testing.T) {
	fencer := &failingFencer{}
	r := newFailoverRig(t, true, func(env *promote.RecoverEnv, _ *promotetest.Cluster) { env.Fencer = fencer })
	a := r.addrs[0]
	r.cycle()
	r.cluster.Kill(a)
	var f checks.Finding
	for i := 0; i < 8; i++ {
		r.cycle()
		var ok bool
		if f, ok = r.finding(checks.RecoveryStopped); ok {
			break
		}
	}
	if f.Code != checks.RecoveryStopped || f.Severity != checks.Critical || !strings.Contains(f.Summary, "the power API does not answer") {
		t.Fatalf("finding %+v, want a critical RecoveryStopped with the fence command's error (fence calls %d)", f, fencer.calls)
	}
	if w := r.writer(); w != a {
		t.Errorf("writer %q, want it left on %s: a stopped failover changes nothing", w, a)
	}
	for _, addr := range r.addrs[1:] {
		if n := r.cluster.Node(addr); n.Source != a {
			t.Errorf("replica %s follows %q, want %s still", addr, n.Source, a)
		}
	}
}
