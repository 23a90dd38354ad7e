package promote_test

import (
	"context"
	"errors"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/dbha/dbha/promote"
	"github.com/dbha/dbha/promote/promotetest"
	"github.com/dbha/dbha/topology"
)

// failingRejoin makes every Rejoin fail, counting the attempts.
type failingRejoin struct {
	*promotetest.Cluster
	attempts int
}

func (f *failingRejoin) Rejoin(context.Context, string, string) error {
	f.attempts++
	return errors.New("pg_rewind: could not find common ancestor")
}

type keeperRig struct {
	cluster *promotetest.Cluster
	addrs   []string
	store   *promotetest.Store
	now     time.Time
	engine  promote.Engine
	keeper  *promote.Keeper
}

func newKeeperRig(t *testing.T, engine func(*promotetest.Cluster) promote.Engine) *keeperRig {
	t.Helper()
	c, addrs, err := promotetest.NewCluster(3)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	r := &keeperRig{cluster: c, addrs: addrs, store: promotetest.NewStore(), now: time.Date(2026, 12, 6, 1, 0, 0, 0, time.UTC)}
	var e promote.Engine = c
	if engine != nil {
		e = engine(c)
	}
	r.engine = e
	r.keeper = promote.NewKeeper("c", r.envWith(nil), func() promote.Request { return promote.Request{} }, nil)
	return r
}

// envWith is the rig's environment, with leases (nil: none).
func (r *keeperRig) envWith(leases promote.Leases) promote.RecoverEnv {
	return promote.RecoverEnv{Store: r.store, Engine: r.engine, Manager: "m1", StepTimeout: time.Second,
		Discover: func(ctx context.Context, _ ...topology.Bound) topology.Snapshot {
			return topology.Discover(ctx, topology.Cluster{Name: "c", Engine: topology.MariaDB, Instances: r.addrs}, r.cluster, time.Second)
		},
		Now: func() time.Time { return r.now }, Leases: leases}
}

func TestKeeperPublish(t *testing.T) {
	ctx := context.Background()
	r := newKeeperRig(t, nil)
	a, b := r.addrs[0], r.addrs[1]
	if err := r.keeper.Publish(ctx, b, nil); !errors.Is(err, promote.ErrBusy) {
		t.Fatalf("publish of a writer the fresh snapshot does not show: %v, want ErrBusy", err)
	}
	if err := r.keeper.Publish(ctx, a, []string{b}); err != nil {
		t.Fatal(err)
	}
	release := r.store.Hold("c", "m2")
	if err := r.keeper.Publish(ctx, a, nil); !errors.Is(err, promote.ErrBusy) {
		t.Fatalf("publish while another manager holds the lock: %v, want ErrBusy", err)
	}
	release()

	// The writer endpoint names a that cannot be reached; b became writable
	// outside a failover: the writer is not moved.
	r.cluster.Kill(a)
	if err := r.cluster.Promote(ctx, b); err != nil {
		t.Fatal(err)
	}
	err := r.keeper.Publish(ctx, b, nil)
	if err == nil || !strings.Contains(err.Error(), "cannot be reached") {
		t.Fatalf("publish away from an unreachable writer: %v, want a refusal", err)
	}
	if w, _ := r.store.Writer(ctx, "c"); len(w) != 1 || w[0] != a {
		t.Fatalf("writer %v, want it left on %s", w, a)
	}
}

// grants records the grants a keeper makes (promote.Leases); holder is
// what the stored grant names ("" with stored false: none stored), until
// the keeper grants.
type grants struct {
	to     []string
	fail   error
	holder string
	stored bool
}

func (g *grants) Grant(_ context.Context, _, addr string) error {
	if g.fail != nil {
		return g.fail
	}
	g.to = append(g.to, addr)
	g.holder, g.stored = addr, true
	return nil
}

func (g *grants) Holder(context.Context, string) (string, bool, error) {
	return g.holder, g.stored, g.fail
}

func (g *grants) Revoke(context.Context, string, string) (promote.Revocation, error) {
	return promote.Revocation{}, errors.New("the keeper does not revoke")
}

// With leases, the writer is granted before it is published; a grant that
// cannot be stored publishes nothing.
func TestKeeperPublishGrants(t *testing.T) {
	ctx := context.Background()
	g := &grants{}
	r := newKeeperRig(t, nil)
	a, b := r.addrs[0], r.addrs[1]
	r.keeper = promote.NewKeeper("c", r.envWith(g), func() promote.Request { return promote.Request{} }, nil)
	if err := r.keeper.Publish(ctx, b, nil); !errors.Is(err, promote.ErrBusy) {
		t.Fatalf("publish of a writer the fresh snapshot does not show: %v, want ErrBusy", err)
	}
	if len(g.to) != 0 {
		t.Fatalf("granted %v for a writer that is not the writable primary", g.to)
	}
	if err := r.keeper.Publish(ctx, a, []string{b}); err != nil {
		t.Fatal(err)
	}
	if len(g.to) != 1 || g.to[0] != a {
		t.Fatalf("grants %v, want [%s]", g.to, a)
	}

	g.fail = errors.New("consul: connection refused")
	r.store = promotetest.NewStore()
	r.keeper = promote.NewKeeper("c", r.envWith(g), func() promote.Request { return promote.Request{} }, nil)
	if err := r.keeper.Publish(ctx, a, nil); err == nil || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("publish with a failing grant: %v, want its error", err)
	}
	if w, _ := r.store.Writer(ctx, "c"); len(w) != 0 {
		t.Fatalf("writer %v published without its grant", w)
	}
}

// A writer its guard fenced (it could not renew its lease) is granted
// and made writable again by Enforce when the cluster uses leases, and
// left read-only without them.
func TestKeeperEnforceReopensAFencedWriter(t *testing.T) {
	ctx := context.Background()
	for _, withLeases := range []bool{true, false} {
		g := &grants{}
		r := newKeeperRig(t, nil)
		a := r.addrs[0]
		var leases promote.Leases
		if withLeases {
			leases = g
		}
		r.keeper = promote.NewKeeper("c", r.envWith(leases), func() promote.Request { return promote.Request{} }, nil)
		if err := r.store.SetWriter(ctx, "c", a); err != nil {
			t.Fatal(err)
		}
		if err := r.cluster.Fence(ctx, a); err != nil { // what its guard does
			t.Fatal(err)
		}
		if err := r.keeper.Enforce(ctx); err != nil {
			t.Fatalf("leases %v: %v", withLeases, err)
		}
		if got := !r.cluster.Node(a).ReadOnly; got != withLeases {
			t.Fatalf("leases %v: writer writable again = %v", withLeases, got)
		}
		if withLeases && (len(g.to) != 1 || g.to[0] != a) {
			t.Fatalf("grants %v, want [%s] before the writer is reopened", g.to, a)
		}
	}
}

// A primary its guard fenced before any writer was published (the guard
// could not confirm a grant in time) is reopened by Enforce, then
// published, when the cluster uses leases and its grant was never stored
// or names it; never while the grant names another instance, nor without
// leases.
func TestKeeperEnforceReopensAnUnpublishedPrimary(t *testing.T) {
	ctx := context.Background()
	cases := []struct {
		name     string
		leases   bool
		holder   string // "-": no grant stored; "a": the primary
		reopened bool
	}{
		{"no grant stored", true, "-", true},
		{"the grant names it", true, "a", true},
		{"the grant names another", true, "b", false},
		{"the grant is revoked", true, "", false},
		{"without leases", false, "-", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := newKeeperRig(t, nil)
			a, b := r.addrs[0], r.addrs[1]
			g := &grants{}
			switch tc.holder {
			case "-":
			case "a":
				g.holder, g.stored = a, true
			case "b":
				g.holder, g.stored = b, true
			default:
				g.holder, g.stored = tc.holder, true
			}
			var leases promote.Leases
			if tc.leases {
				leases = g
			}
			r.keeper = promote.NewKeeper("c", r.envWith(leases), func() promote.Request { return promote.Request{} }, nil)
			if err := r.cluster.Fence(ctx, a); err != nil { // what its guard does
				t.Fatal(err)
			}
			err := r.keeper.Enforce(ctx)
			if got := !r.cluster.Node(a).ReadOnly; got != tc.reopened {
				t.Fatalf("primary writable again = %v (enforce: %v), want %v", got, err, tc.reopened)
			}
			if !tc.reopened {
				if len(g.to) != 0 {
					t.Fatalf("granted %v", g.to)
				}
				if tc.leases && (err == nil || !strings.Contains(err.Error(), "left to the operator")) {
					t.Fatalf("enforce: %v, want the grant named as the reason", err)
				}
				return
			}
			if err != nil || len(g.to) != 1 || g.to[0] != a {
				t.Fatalf("enforce: %v; grants %v, want [%s] before it is reopened", err, g.to, a)
			}
			if err := r.keeper.Publish(ctx, a, nil); err != nil {
				t.Fatal(err)
			}
			if w, _ := r.store.Writer(ctx, "c"); len(w) != 1 || w[0] != a {
				t.Fatalf("writer %v, want %s published", w, a)
			}
		})
	}
}

func TestKeeperEnforceWaitsForAnUnfinishedRecovery(t *testing.T) {
	ctx := context.Background()
	r := newKeeperRig(t, nil)
	a, b := r.addrs[0], r.addrs[1]
	if err := r.store.SetWriter(ctx, "c", b); err != nil {
		t.Fatal(err)
	}
	// A recovery between its promote and its move-writer steps: a is still
	// writable, the writer names b. Its manager runs it, holding the lock.
	// Enforce must not fence anything.
	if err := r.store.Save(ctx, &promote.Record{ID: "r1", Cluster: "c"}); err != nil {
		t.Fatal(err)
	}
	defer r.store.Hold("c", "m2")()
	if err := r.keeper.Enforce(ctx); !errors.Is(err, promote.ErrBusy) {
		t.Fatalf("enforce during a recovery: %v, want ErrBusy", err)
	}
	if calls := r.cluster.Calls(); len(calls) != 0 {
		t.Fatalf("enforce during a recovery changed %v", calls)
	}
	if n := r.cluster.Node(a); n.ReadOnly {
		t.Fatal("the primary was fenced during a recovery")
	}
}

func TestKeeperRejoinBacksOff(t *testing.T) {
	ctx := context.Background()
	var fr *failingRejoin
	r := newKeeperRig(t, func(c *promotetest.Cluster) promote.Engine { fr = &failingRejoin{Cluster: c}; return fr })
	a, b, c := r.addrs[0], r.addrs[1], r.addrs[2]
	// A finished failover from a to b; a is back, fenced, following nobody.
	for _, step := range []error{r.cluster.Promote(ctx, b), r.cluster.Repoint(ctx, c, b), r.cluster.Fence(ctx, a), r.store.SetWriter(ctx, "c", b)} {
		if step != nil {
			t.Fatal(step)
		}
	}
	rec := &promote.Record{ID: "r1", Cluster: "c", Done: true, Plan: promote.Plan{Cluster: "c", OldPrimary: a, NewPrimary: b}}
	if err := r.store.Save(ctx, rec); err != nil {
		t.Fatal(err)
	}
	if err := r.keeper.Enforce(ctx); err == nil || fr.attempts != 1 {
		t.Fatalf("first rejoin: err %v after %d attempts, want the failure after 1", err, fr.attempts)
	}
	r.now = r.now.Add(10 * time.Second)
	if err := r.keeper.Enforce(ctx); err != nil || fr.attempts != 1 {
		t.Fatalf("10 s after a failed rejoin: err %v, %d attempts; want no new attempt", err, fr.attempts)
	}
	r.now = r.now.Add(25 * time.Second)
	if err := r.keeper.Enforce(ctx); err == nil || fr.attempts != 2 {
		t.Fatalf("35 s after a failed rejoin: err %v, %d attempts; want a second attempt", err, fr.attempts)
	}
}

// TestAutomaticRecoveryNeverSwitchesOver: a trigger is evidence from
// before the lock; when the fresh plan finds the primary it was called for
// alive, or another primary in its place, an automatic recovery changes
// nothing. An operator's promotion of a live primary is a switchover.
func TestAutomaticRecoveryNeverSwitchesOver(t *testing.T) {
	ctx := context.Background()
	r := newKeeperRig(t, nil)
	a, b := r.addrs[0], r.addrs[1]
	for _, tc := range []struct {
		name    string
		primary string
	}{
		{"the primary it was called for answers again", a},
		{"another primary took over meanwhile", b},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec, err := r.keeper.Recover(ctx, promote.Trigger{Reason: "DeadPrimary", Automatic: true, Primary: tc.primary}, promote.Choice{})
			if !errors.Is(err, promote.ErrNothingToRecover) || rec != nil {
				t.Fatalf("automatic recovery of a live cluster: %+v, %v; want ErrNothingToRecover", rec, err)
			}
			if calls := r.cluster.Calls(); len(calls) != 0 {
				t.Fatalf("an automatic recovery of a live cluster changed %v", calls)
			}
		})
	}
	rec, err := r.keeper.Recover(ctx, promote.Trigger{Reason: "requested with dbha promote"}, promote.Choice{})
	if err != nil || rec.Kind != promote.Switchover || !rec.Done {
		t.Fatalf("operator's promotion of a live primary: %+v, %v; want a finished switchover", rec, err)
	}

	// The new primary dies; a trigger that names another instance as the
	// lost primary is stale, one that names it is acted on.
	next := rec.Plan.NewPrimary
	r.cluster.Kill(next)
	if _, err := r.keeper.Recover(ctx, promote.Trigger{Reason: "DeadPrimary", Automatic: true, Primary: a}, promote.Choice{}); !errors.Is(err, promote.ErrNothingToRecover) {
		t.Fatalf("automatic recovery called for %s while %s is the lost primary: %v; want ErrNothingToRecover", a, next, err)
	}
	rec, err = r.keeper.Recover(ctx, promote.Trigger{Reason: "DeadPrimary", Automatic: true, Primary: next}, promote.Choice{})
	if err != nil || rec.Kind != promote.Failover || rec.Plan.OldPrimary != next || !rec.Done {
		t.Fatalf("automatic recovery of the dead %s: %+v, %v; want a finished failover", next, rec, err)
	}
}

// TestKeeperResumesARecoveryItsManagerLeft: a manager crashed at a step
// after the promotion (runtime.Goexit in BeforeStep stands for its kill -9:
// nothing more runs, nothing more is saved). The analysis of the other
// managers no longer sees a dead primary (the new one is writable), so only
// their Publish and Enforce take the lock: they must finish the recovery.
func TestKeeperResumesARecoveryItsManagerLeft(t *testing.T) {
	for _, at := range []promote.Action{promote.ActPromote, promote.ActRepoint, promote.ActMoveWriter, promote.ActFence, promote.ActUnlock} {
		t.Run(string(at), func(t *testing.T) {
			ctx := context.Background()
			r := newKeeperRig(t, nil)
			a, _ := r.failoverLeftAt(ctx, t, at)
			if err := r.keeper.Enforce(ctx); !errors.Is(err, promote.ErrBusy) {
				t.Fatalf("enforce with a recovery left: %v, want ErrBusy after resuming it", err)
			}
			if left, _ := r.store.Unfinished(ctx, "c"); left != nil {
				t.Fatalf("recovery %s still unfinished (next step %d, error %q)", left.ID, left.Next, left.Error)
			}
			rec, _ := r.store.Latest(ctx, "c")
			if !rec.Done || rec.Aborted {
				t.Fatalf("recovery done %v aborted %v, want done", rec.Done, rec.Aborted)
			}
			w, _ := r.store.Writer(ctx, "c")
			if len(w) != 1 || w[0] != rec.Plan.NewPrimary || w[0] == a {
				t.Fatalf("writer %v, want the new primary %s", w, rec.Plan.NewPrimary)
			}
			if n := r.cluster.Node(rec.Plan.NewPrimary); n.ReadOnly {
				t.Fatalf("the new primary %s is read-only", rec.Plan.NewPrimary)
			}
		})
	}
}

// TestResumedFailoverRollsBackWhenTheOldPrimaryIsBack: a failover left
// after its stop-following steps (its manager crashed, or lost Consul) is
// resumed once the old primary answers again, which clients may have been
// writing to through the unchanged writer endpoint: it must not promote
// over it, but give it its replicas back. With the old primary still
// dead, the same resume finishes the failover.
func TestResumedFailoverRollsBackWhenTheOldPrimaryIsBack(t *testing.T) {
	for _, back := range []bool{true, false} {
		t.Run(map[bool]string{true: "old primary back", false: "old primary still dead"}[back], func(t *testing.T) {
			ctx := context.Background()
			r := newKeeperRig(t, nil)
			a, _ := r.failoverLeftAt(ctx, t, promote.ActPromote)
			if back {
				if err := r.cluster.Start(a, false); err != nil {
					t.Fatal(err)
				}
			}
			_, err := r.keeper.Resume(ctx)
			rec, _ := r.store.Latest(ctx, "c")
			w, _ := r.store.Writer(ctx, "c")
			if !back {
				if err != nil || !rec.Done || rec.Aborted || len(w) != 1 || w[0] != rec.Plan.NewPrimary {
					t.Fatalf("resume with the old primary dead: err %v, done %v aborted %v, writer %v; want the failover finished", err, rec.Done, rec.Aborted, w)
				}
				return
			}
			if !errors.Is(err, promote.ErrRolledBack) {
				t.Fatalf("resume with the old primary back: %v, want ErrRolledBack", err)
			}
			if !rec.Done || !rec.Aborted {
				t.Fatalf("record done %v aborted %v, want a finished, aborted record", rec.Done, rec.Aborted)
			}
			if len(w) != 1 || w[0] != a {
				t.Fatalf("writer %v, want it left on the old primary %s", w, a)
			}
			for _, addr := range r.addrs[1:] {
				if n := r.cluster.Node(addr); !n.ReadOnly || n.Source != a || n.Halted {
					t.Errorf("%s: read-only %v, source %q, halted %v; want it following %s again", addr, n.ReadOnly, n.Source, n.Halted, a)
				}
			}
		})
	}
}

// TestResumedFailoverFencesTheOldPrimaryBackBeforeTheWriterMoves: a
// failover held between its promotion and the writer's move (its manager
// died, or Consul went away), whose old primary nothing secured and which
// came back writable meanwhile, fences it on resume before the writer
// moves: otherwise the clients that still reach it would write to a
// second primary while the new one takes writes.
func TestResumedFailoverFencesTheOldPrimaryBackBeforeTheWriterMoves(t *testing.T) {
	ctx := context.Background()
	r := newKeeperRig(t, nil)
	a, left := r.failoverLeftAt(ctx, t, promote.ActMoveWriter)
	if left.Fence.SecuredBy != promote.LayerNone {
		t.Fatalf("left %+v: want an unfinished recovery whose old primary nothing secured", left)
	}
	if err := r.cluster.Start(a, false); err != nil { // back, writable
		t.Fatal(err)
	}
	if _, err := r.keeper.Resume(ctx); err != nil {
		t.Fatal(err)
	}
	rec, _ := r.store.Latest(ctx, "c")
	w, _ := r.store.Writer(ctx, "c")
	if !rec.Done || rec.Aborted || len(w) != 1 || w[0] != rec.Plan.NewPrimary {
		t.Fatalf("resume: done %v aborted %v writer %v; want the failover finished on %s", rec.Done, rec.Aborted, w, rec.Plan.NewPrimary)
	}
	if n := r.cluster.Node(a); !n.ReadOnly {
		t.Errorf("the old primary %s is writable after the resumed failover moved the writer", a)
	}
	if !rec.Fence.ReadOnly || rec.NotFenced != "" {
		t.Errorf("record fence %+v, not fenced %q: want it fenced on resume", rec.Fence, rec.NotFenced)
	}
}

// crashBefore runs an automatic failover of primary under another
// manager, m0, that dies just before the first step of action: its record
// is left unfinished, as a killed manager leaves it. It reports whether
// the crash happened (false: the recovery ran to its end).
// failoverLeftAt makes the rig's first instance the writer, kills it, and
// runs a failover whose manager crashes before action; it returns the old
// primary and the recovery left unfinished.
func (r *keeperRig) failoverLeftAt(ctx context.Context, t *testing.T, action promote.Action) (string, *promote.Record) {
	t.Helper()
	a := r.addrs[0]
	if err := r.store.SetWriter(ctx, "c", a); err != nil {
		t.Fatal(err)
	}
	r.cluster.Kill(a)
	if !r.crashBefore(ctx, a, action) {
		t.Fatal("the recovery ran to its end: the crash did not happen")
	}
	left, err := r.store.Unfinished(ctx, "c")
	if err != nil || left == nil {
		t.Fatalf("no recovery left unfinished (%v)", err)
	}
	return a, left
}

func (r *keeperRig) crashBefore(ctx context.Context, primary string, action promote.Action) bool {
	crashed := promote.RecoverEnv{Store: r.store, Engine: r.cluster, Manager: "m0", StepTimeout: time.Second,
		Discover: func(ctx context.Context, _ ...topology.Bound) topology.Snapshot {
			return topology.Discover(ctx, topology.Cluster{Name: "c", Engine: topology.MariaDB, Instances: r.addrs}, r.cluster, time.Second)
		},
		Now: func() time.Time { return r.now },
		BeforeStep: func(_ promote.Plan, st promote.Step) {
			if st.Action == action {
				runtime.Goexit()
			}
		}}
	done, ended := make(chan struct{}), false
	go func() {
		defer close(done)
		_, _ = promote.Recover(ctx, crashed, "c", promote.Request{}, promote.Trigger{Reason: "DeadPrimary", Automatic: true, Primary: primary})
		ended = true
	}()
	<-done
	return !ended
}
