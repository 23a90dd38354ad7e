package promote_test

import (
	"context"
	"testing"
	"time"

	"github.com/dbha/dbha/promote"
	"github.com/dbha/dbha/promote/promotetest"
	"github.com/dbha/dbha/topology"
)

// An automatic failover started moments after the monitor's probe found
// the primary silent asks it again under the short recheck bound; one whose
// probe is older than old_primary_timeout, or an operator's, gives it the
// whole probe timeout. Either way the old primary is asked: a host that
// came back (a flap) is never failed over.
func TestRecoverRechecksTheOldPrimaryBriefly(t *testing.T) {
	for _, tc := range []struct {
		name string
		age  time.Duration
		want time.Duration // the old primary's bound; 0: the probe timeout
	}{{"fresh", 50 * time.Millisecond, 150 * time.Millisecond}, {"stale", 2 * time.Second, 0}} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			c, addrs, err := promotetest.NewCluster(3)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(c.Close)
			a := addrs[0]
			var bounds []topology.Bound
			env := promote.RecoverEnv{Store: promotetest.NewStore(), Engine: c, Manager: "m1", StepTimeout: time.Second, RecheckTimeout: 150 * time.Millisecond,
				Discover: func(ctx context.Context, b ...topology.Bound) topology.Snapshot {
					bounds = append(bounds, b...)
					return topology.Discover(ctx, topology.Cluster{Name: "c", Engine: topology.MariaDB, Instances: addrs}, c, time.Second, b...)
				}}
			k := promote.NewKeeper("c", env, func() promote.Request { return promote.Request{} }, nil)
			trigger := promote.Trigger{Reason: "DeadPrimary", Automatic: true, Primary: a, UnansweredAt: time.Now().Add(-tc.age)}

			// Back meanwhile (a flap): asked, it answers, nothing is promoted.
			if _, err := k.Recover(ctx, trigger, promote.Choice{}); err == nil {
				t.Fatal("an automatic recovery of a primary that answers again did not refuse")
			}
			c.Kill(a)
			rec, err := k.Recover(ctx, trigger, promote.Choice{})
			if err != nil || !rec.Done || rec.Kind != promote.Failover {
				t.Fatalf("failover: %+v, %v", rec, err)
			}
			for _, b := range bounds {
				if b.Addr != a || b.Timeout != tc.want {
					t.Errorf("bound %+v, want %s under %v", b, a, tc.want)
				}
			}
			if (len(bounds) == 2) != (tc.want > 0) {
				t.Errorf("bounds %+v: want one per recovery when fresh, none when stale", bounds)
			}
		})
	}
}
