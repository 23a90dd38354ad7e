package promote_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/dbha/dbha/promote"
	"github.com/dbha/dbha/promote/promotetest"
	"github.com/dbha/dbha/topology"
)

// An automatic failover started moments after the monitor's probe found
// the primary silent plans from that answer instead of probing the old
// primary again; a trigger whose probe is older than the bound, or an
// operator's, lets the discovery ask.
func TestRecoverTakesTheMonitorsFreshProbeOfTheOldPrimary(t *testing.T) {
	for _, tc := range []struct {
		name  string
		age   time.Duration
		asked bool
	}{{"fresh", 50 * time.Millisecond, false}, {"stale", 2 * time.Second, true}} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			c, addrs, err := promotetest.NewCluster(3)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(c.Close)
			a := addrs[0]
			var known []string
			env := promote.RecoverEnv{Store: promotetest.NewStore(), Engine: c, Manager: "m1", StepTimeout: time.Second,
				Discover: func(ctx context.Context, k ...topology.Instance) topology.Snapshot {
					for _, in := range k {
						known = append(known, in.Addr)
					}
					return topology.Discover(ctx, topology.Cluster{Name: "c", Engine: topology.MariaDB, Instances: addrs}, c, time.Second, k...)
				}}
			k := promote.NewKeeper("c", env, func() promote.Request { return promote.Request{} }, nil)
			c.Kill(a)
			at := time.Now().Add(-tc.age)
			silent := c.Probe(ctx, a)
			silent.Addr = a
			rec, err := k.Recover(ctx, promote.Trigger{Reason: "DeadPrimary", Automatic: true, Primary: a, Unanswered: &silent, UnansweredAt: at}, promote.Choice{})
			if err != nil || !rec.Done || rec.Kind != promote.Failover {
				t.Fatalf("failover: %+v, %v", rec, err)
			}
			if asked := !slices.Contains(known, a); asked != tc.asked {
				t.Fatalf("the discovery asked the old primary: %v, want %v (known %q)", asked, tc.asked, known)
			}
			if !tc.asked && !rec.OldPrimarySilent.Equal(at) {
				t.Errorf("the record says the old primary was last found silent at %v, want the monitor's probe at %v", rec.OldPrimarySilent, at)
			}
			if tc.asked && !rec.OldPrimarySilent.After(at) {
				t.Errorf("the record says the old primary was last found silent at %v, want the discovery's, after %v", rec.OldPrimarySilent, at)
			}
		})
	}
}
