package promote_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dbha/dbha/promote"
	"github.com/dbha/dbha/promote/promotetest"
	"github.com/dbha/dbha/topology"
)

var t0 = time.Date(2026, 12, 6, 1, 0, 0, 0, time.UTC)

// TestAntiFlap is the anti-flap rule: within the window it avoids the
// instance that lost the primary role and the instances that failed in
// the blocking recovery, nothing else; past it, nothing.
func TestAntiFlap(t *testing.T) {
	block := promote.Block{Until: t0.Add(30 * time.Minute), Recovery: "r1", Reason: "DeadPrimary", At: t0,
		OldPrimary: "a:1", NewPrimary: "b:1"}
	withFailed := block
	withFailed.Failed = []string{"d:1", "a:1", "d:1"}
	legacy := promote.Block{Until: t0.Add(30 * time.Minute), Recovery: "r0", Reason: "DeadPrimary"}
	cases := []struct {
		name      string
		block     promote.Block
		now       time.Time
		avoid     map[string]string // instance → what its reason says
		refuseAll bool
	}{
		{name: "the old primary is avoided, 40 s after", block: block, now: t0.Add(40 * time.Second),
			avoid: map[string]string{"a:1": "lost the primary role in recovery r1 40s ago; promoting it back within promotion.block_for would be flapping"}},
		{name: "instances that failed in the recovery are avoided, once each", block: withFailed, now: t0.Add(time.Minute),
			avoid: map[string]string{"a:1": "lost the primary role in recovery r1 1m0s ago", "d:1": "failed in recovery r1 1m0s ago"}},
		{name: "the last minute of the window still avoids", block: block, now: block.Until.Add(-time.Second),
			avoid: map[string]string{"a:1": "lost the primary role"}},
		{name: "the window ended: nothing is avoided", block: withFailed, now: block.Until},
		{name: "long after the window: nothing is avoided", block: withFailed, now: block.Until.Add(time.Hour)},
		{name: "a block naming no instance refuses every automatic recovery", block: legacy, now: t0.Add(time.Minute), refuseAll: true},
		{name: "a block naming no instance ends with its window", block: legacy, now: legacy.Until},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			avoid, refuseAll := promote.AntiFlap(tc.block, tc.now)
			if refuseAll != tc.refuseAll {
				t.Errorf("refuseAll = %v, want %v", refuseAll, tc.refuseAll)
			}
			if len(avoid) != len(tc.avoid) {
				t.Fatalf("avoid = %+v, want %d instances: %v", avoid, len(tc.avoid), tc.avoid)
			}
			for _, a := range avoid {
				want, ok := tc.avoid[a.Addr]
				if !ok || !strings.Contains(a.Reason, want) {
					t.Errorf("avoids %s: %q; want a reason saying %q", a.Addr, a.Reason, want)
				}
			}
			for _, uninvolved := range []string{"b:1", "c:1"} {
				if slices.ContainsFunc(avoid, func(a promote.Avoid) bool { return a.Addr == uninvolved }) {
					t.Errorf("avoids %s, which did not lose the role or fail", uninvolved)
				}
			}
		})
	}
}

// TestNewBlockNamesWhatFailed: the block of a finished recovery names its
// old and new primary and the instances a step failed on.
func TestNewBlockNamesWhatFailed(t *testing.T) {
	plan := promote.Plan{Cluster: "c", OldPrimary: "a:1", NewPrimary: "b:1", Steps: []promote.Step{
		{N: 1, Action: promote.ActPromote, Target: "b:1"},
		{N: 2, Action: promote.ActRepoint, Target: "c:1", Source: "b:1"},
		{N: 3, Action: promote.ActRepoint, Target: "d:1", Source: "b:1"},
		{N: 4, Action: promote.ActFence, Target: "a:1"},
		{N: 5, Action: promote.ActUnlock}}}
	cases := []struct {
		name   string
		steps  []promote.StepResult
		repo   []string
		failed []string
	}{
		{name: "every step went well", repo: []string{"c:1", "d:1"}},
		{name: "a replica not repointed failed", repo: []string{"c:1"}, failed: []string{"d:1"}},
		{name: "a step that failed before a resume finished it", repo: []string{"c:1", "d:1"},
			steps: []promote.StepResult{{N: 1, Action: promote.ActPromote, Target: "b:1", Error: "timeout"}}, failed: []string{"b:1"}},
		{name: "the old primary is the old primary, not a failure", repo: []string{"c:1", "d:1"},
			steps: []promote.StepResult{{N: 4, Action: promote.ActFence, Target: "a:1", Error: "refused"}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rec := &promote.Record{ID: "r1", Reason: "DeadPrimary", Plan: plan, Steps: tc.steps, Repointed: tc.repo,
				Next: len(plan.Steps) + 1, Done: true}
			b := promote.NewBlock(rec, t0, time.Minute)
			want := promote.Block{Until: t0.Add(time.Minute), Recovery: "r1", Reason: "DeadPrimary", At: t0,
				OldPrimary: "a:1", NewPrimary: "b:1", Failed: tc.failed}
			if b.Until != want.Until || b.At != want.At || b.Recovery != want.Recovery || b.OldPrimary != want.OldPrimary ||
				b.NewPrimary != want.NewPrimary || !slices.Equal(b.Failed, want.Failed) {
				t.Errorf("block %+v, want %+v", b, want)
			}
		})
	}
}

// recoverRig recovers a simulated cluster of n instances through
// promote.Recover with the in-memory store; its clock moves only when a
// test moves it.
type recoverRig struct {
	cluster *promotetest.Cluster
	addrs   []string
	store   *promotetest.Store
	now     time.Time
	env     promote.RecoverEnv
}

func newRecoverRig(t *testing.T, n int) *recoverRig {
	t.Helper()
	c, addrs, err := promotetest.NewCluster(n)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	r := &recoverRig{cluster: c, addrs: addrs, store: promotetest.NewStore(), now: t0}
	r.env = promote.RecoverEnv{Store: r.store, Engine: c, Manager: "m1", StepTimeout: time.Second, BlockFor: 30 * time.Minute,
		Discover: func(ctx context.Context, _ ...topology.Bound) topology.Snapshot {
			return topology.Discover(ctx, topology.Cluster{Name: "c", Engine: topology.MariaDB, Instances: addrs}, c, time.Second)
		},
		Now: func() time.Time { return r.now }}
	return r
}

// seen is what dbha's stream saw of the primaries: everything the
// simulated cluster holds. Without it, a former primary left alone would
// hold its own old writes, which no other source holds, as errant.
func seen(t *testing.T) promote.Request {
	t.Helper()
	p, err := topology.ParseMariaDB("0-1-10")
	if err != nil {
		t.Fatal(err)
	}
	return promote.Request{LastSeen: p}
}

// failover kills the primary and recovers automatically, as the daemon
// does.
func (r *recoverRig) failover(t *testing.T, primary string) (*promote.Record, error) {
	t.Helper()
	r.cluster.Kill(primary)
	return promote.Recover(context.Background(), r.env, "c", seen(t),
		promote.Trigger{Reason: "DeadPrimary", Automatic: true, Detected: r.now, Primary: primary})
}

func (r *recoverRig) block(t *testing.T) (promote.Block, bool) {
	t.Helper()
	b, ok, err := r.store.Blocked(context.Background(), "c")
	if err != nil {
		t.Fatal(err)
	}
	return b, ok
}

func TestSwitchoverSetsNoBlock(t *testing.T) {
	r := newRecoverRig(t, 3)
	a, b := r.addrs[0], r.addrs[1]
	rec, err := promote.Recover(context.Background(), r.env, "c", promote.Request{To: b}, promote.Trigger{Reason: "requested with dbha promote"})
	if err != nil || rec.Kind != promote.Switchover || rec.Automatic || rec.Plan.NewPrimary != b {
		t.Fatalf("switchover %s -> %s: %+v, %v", a, b, rec, err)
	}
	if blk, ok := r.block(t); ok {
		t.Fatalf("a planned switchover set the anti-flap block %+v", blk)
	}
	if next, err := r.failover(t, b); err != nil || next.Plan.NewPrimary == b {
		t.Fatalf("automatic failover right after the switchover: %+v, %v", next, err)
	}
}

func TestAutomaticFailoverSetsABlockNamingItsInstances(t *testing.T) {
	r := newRecoverRig(t, 3)
	a, b := r.addrs[0], r.addrs[1]
	rec, err := r.failover(t, a)
	if err != nil || !rec.Automatic || rec.Plan.NewPrimary != b {
		t.Fatalf("failover of %s: %+v, %v; want %s promoted", a, rec, err, b)
	}
	blk, ok := r.block(t)
	want := promote.Block{Until: t0.Add(30 * time.Minute), Recovery: rec.ID, Reason: "DeadPrimary", At: t0, OldPrimary: a, NewPrimary: b}
	if !ok || blk.Until != want.Until || blk.At != want.At || blk.Recovery != want.Recovery || blk.OldPrimary != a || blk.NewPrimary != b || len(blk.Failed) != 0 {
		t.Fatalf("block %+v (set %v), want %+v", blk, ok, want)
	}
}

// TestBlockAllowsAnUninvolvedCandidate: a → b automatically; a returns as
// a replica of b; b dies. a ranks first by configuration order, but it just
// lost the role: c, healthy and uninvolved, is promoted, and the record
// says why a was not.
func TestBlockAllowsAnUninvolvedCandidate(t *testing.T) {
	r := newRecoverRig(t, 3)
	a, b, c := r.addrs[0], r.addrs[1], r.addrs[2]
	if _, err := r.failover(t, a); err != nil {
		t.Fatal(err)
	}
	if err := r.cluster.StartReplica(a, b); err != nil {
		t.Fatal(err)
	}
	r.now = r.now.Add(12 * time.Second)
	rec, err := r.failover(t, b)
	if err != nil || rec.Plan.NewPrimary != c {
		t.Fatalf("second failover: %+v, %v; want %s promoted", rec, err, c)
	}
	i := slices.IndexFunc(rec.Plan.Candidates, func(cd promote.Candidate) bool { return cd.Addr == a })
	if i < 0 || !rec.Plan.Candidates[i].Excluded || !strings.Contains(strings.Join(rec.Plan.Candidates[i].Reasons, "; "), "lost the primary role in recovery") {
		t.Errorf("candidates %+v: want %s excluded as the one that just lost the role", rec.Plan.Candidates, a)
	}
	if blk, _ := r.block(t); blk.Recovery != rec.ID || blk.OldPrimary != b || blk.NewPrimary != c {
		t.Errorf("block %+v, want the second recovery's (%s -> %s)", blk, b, c)
	}
}

// TestBlockRefusesAFlap: two instances, a → b, a back as b's replica, b
// dies: promoting a back would flap. The automatic recovery is refused
// with what blocks, until when and how to lift it; a manual one is not
// refused; and once the window is over the automatic one goes ahead.
func TestBlockRefusesAFlap(t *testing.T) {
	r := newRecoverRig(t, 2)
	a, b := r.addrs[0], r.addrs[1]
	first, err := r.failover(t, a)
	if err != nil || first.Plan.NewPrimary != b {
		t.Fatalf("first failover: %+v, %v", first, err)
	}
	if err := r.cluster.StartReplica(a, b); err != nil {
		t.Fatal(err)
	}
	r.now = r.now.Add(40 * time.Second)
	calls := len(r.cluster.Calls())
	rec, err := r.failover(t, b)
	var blocked *promote.BlockedError
	if rec != nil || !errors.Is(err, promote.ErrBlocked) || !errors.As(err, &blocked) {
		t.Fatalf("flap: %+v, %v; want a *BlockedError", rec, err)
	}
	if blocked.Block.Recovery != first.ID || !blocked.Until.Equal(t0.Add(30*time.Minute)) ||
		len(blocked.Avoided) != 1 || blocked.Avoided[0].Addr != a || blocked.Lift() != "dbha recover ack --cluster c" {
		t.Errorf("blocked error %+v", blocked)
	}
	for _, want := range []string{first.ID, a, "40s ago", "2026-12-06T01:30:00Z", "`dbha recover ack --cluster c` lifts it"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if got := r.cluster.Calls()[calls:]; len(got) != 0 || len(r.store.Records("c")) != 1 {
		t.Fatalf("the refused recovery changed %v, or recorded %d recoveries", got, len(r.store.Records("c")))
	}

	manual, err := promote.Recover(context.Background(), r.env, "c", seen(t), promote.Trigger{Reason: "requested with dbha promote"})
	if err != nil || manual.Plan.NewPrimary != a {
		t.Fatalf("manual promotion during the block: %+v, %v; want %s promoted", manual, err, a)
	}
}

func TestBlockEndsWithItsWindow(t *testing.T) {
	r := newRecoverRig(t, 2)
	a, b := r.addrs[0], r.addrs[1]
	if _, err := r.failover(t, a); err != nil {
		t.Fatal(err)
	}
	if err := r.cluster.StartReplica(a, b); err != nil {
		t.Fatal(err)
	}
	r.now = r.now.Add(30 * time.Minute)
	if rec, err := r.failover(t, b); err != nil || rec.Plan.NewPrimary != a {
		t.Fatalf("failover once the window ended: %+v, %v; want %s promoted", rec, err, a)
	}
}

// TestBlockWithoutInstancesRefusesAll: a block an older dbha wrote names no
// instance; it refuses every automatic recovery until it ends.
func TestBlockWithoutInstancesRefusesAll(t *testing.T) {
	r := newRecoverRig(t, 3)
	old := promote.Block{Until: t0.Add(time.Minute), Recovery: "r0", Reason: "DeadPrimary"}
	if err := r.store.SetBlocked(context.Background(), "c", old); err != nil {
		t.Fatal(err)
	}
	_, err := r.failover(t, r.addrs[0])
	var blocked *promote.BlockedError
	if !errors.As(err, &blocked) || len(blocked.Avoided) != 0 || !strings.Contains(err.Error(), "blocks every automatic recovery") {
		t.Fatalf("failover under a block naming no instance: %v", err)
	}
	r.store.ClearBlocked("c")
	if rec, err := r.failover(t, r.addrs[0]); err != nil || !rec.Done {
		t.Fatalf("failover once the block was lifted: %+v, %v", rec, err)
	}
}

// TestNoCandidateIsNotBlamedOnTheBlock: when nothing could be promoted
// even without the block, the error is ErrNoCandidate, not ErrBlocked.
func TestNoCandidateIsNotBlamedOnTheBlock(t *testing.T) {
	r := newRecoverRig(t, 2)
	a, b := r.addrs[0], r.addrs[1]
	if _, err := r.failover(t, a); err != nil {
		t.Fatal(err)
	}
	_, err := r.failover(t, b) // a is still dead
	if !errors.Is(err, promote.ErrNoCandidate) || errors.Is(err, promote.ErrBlocked) {
		t.Fatalf("no replica at all: %v, want ErrNoCandidate and not ErrBlocked", err)
	}
}
