package promote_test

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dbha/dbha/promote"
	"github.com/dbha/dbha/promote/promotetest"
	"github.com/dbha/dbha/topology"
)

// events is one ordered log of what the stream, the request and the
// engine saw.
type events struct {
	mu  sync.Mutex
	log []string
}

func (e *events) add(s string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.log = append(e.log, s)
}

func (e *events) all() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.log)
}

// Cut is promote.Streams.
func (e *events) Cut(addr string) func() {
	e.add("cut " + addr)
	return func() { e.add("release " + addr) }
}

// loggedEngine logs the engine's replication changes into the same log.
type loggedEngine struct {
	*promotetest.Cluster
	ev *events
}

func (l loggedEngine) StopFollowing(ctx context.Context, addr string) error {
	l.ev.add("stop-following " + addr)
	return l.Cluster.StopFollowing(ctx, addr)
}

func (l loggedEngine) Promote(ctx context.Context, addr string) error {
	l.ev.add("promote " + addr)
	return l.Cluster.Promote(ctx, addr)
}

func TestFailoverRunsWithTheStreamCutFromTheOldPrimary(t *testing.T) {
	ctx := context.Background()
	c, addrs, err := promotetest.NewCluster(3)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	ev := &events{}
	env := promote.RecoverEnv{Store: promotetest.NewStore(), Engine: loggedEngine{c, ev}, Manager: "m1", StepTimeout: time.Second, Streams: ev,
		Discover: func(ctx context.Context, _ ...topology.Bound) topology.Snapshot {
			return topology.Discover(ctx, topology.Cluster{Name: "c", Engine: topology.MariaDB, Instances: addrs}, c, time.Second)
		}}
	k := promote.NewKeeper("c", env, func() promote.Request { ev.add("request"); return promote.Request{} }, nil)
	a := addrs[0]

	// A live primary: nothing to recover; the cut is released at once.
	if _, err := k.Recover(ctx, promote.Trigger{Reason: "DeadPrimary", Automatic: true, Primary: a}, promote.Choice{}); err == nil {
		t.Fatal("an automatic recovery of a live primary did not refuse")
	}
	if got, want := ev.all(), []string{"cut " + a, "request", "release " + a}; !slices.Equal(got, want) {
		t.Fatalf("refused recovery: %q, want %q", got, want)
	}

	ev.log = nil
	c.Kill(a)
	rec, err := k.Recover(ctx, promote.Trigger{Reason: "DeadPrimary", Automatic: true, Primary: a}, promote.Choice{})
	if err != nil || !rec.Done || rec.Kind != promote.Failover {
		t.Fatalf("failover: %+v, %v", rec, err)
	}
	got := ev.all()
	// The stream is cut before the request reads what its store holds,
	// stays cut through every change, and is released only at the end.
	if len(got) < 4 || got[0] != "cut "+a || got[1] != "request" {
		t.Fatalf("failover began with %q: want the cut of %s, then the request", got, a)
	}
	cuts, releases, lastChange, firstRelease := 0, 0, -1, -1
	for i, e := range got {
		switch {
		case e == "cut "+a:
			cuts++
		case e == "release "+a:
			releases++
			if firstRelease < 0 {
				firstRelease = i
			}
		case strings.HasPrefix(e, "stop-following ") || strings.HasPrefix(e, "promote "):
			lastChange = i
		default:
			if e != "request" {
				t.Errorf("unexpected event %q", e)
			}
		}
	}
	if cuts == 0 || cuts != releases || lastChange < 0 || firstRelease < lastChange {
		t.Fatalf("events %q: want every change made while cut, and every cut released after the last change", got)
	}

	// An operator's switchover of the live new primary cuts nothing: its
	// old primary is alive and read once it is read-only.
	ev.log = nil
	if rec, err = k.Recover(ctx, promote.Trigger{Reason: "requested with dbha promote"}, promote.Choice{}); err != nil || rec.Kind != promote.Switchover {
		t.Fatalf("switchover: %+v, %v", rec, err)
	}
	for _, e := range ev.all() {
		if strings.HasPrefix(e, "cut ") {
			t.Fatalf("a switchover cut the stream: %q", ev.all())
		}
	}
}
