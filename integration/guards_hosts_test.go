package integration

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/dbha/dbha/consul"
)

// TestHostsLabGuards brings a hosts lab up with guards (--guards) and checks the lease
// protocol end to end, with `dbha run` and `dbha guard` as processes on their hosts: the
// manager grants each cluster's primary, whose guard holds the lease while the replicas'
// guards confirm they hold nothing; a primary whose host is cut off from every other host
// (clients still reach it) is made read-only by its guard, which cannot renew.
func TestHostsLabGuards(t *testing.T) {
	bin := dbhaBinary(t)
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	l := upLab(t, ctx, Options{Hosts: true, Managers: 1, Guards: true, Binary: bin, Progress: testLog{t}})
	t.Cleanup(func() { purge(t, l) })
	if guards := l.nodesOfKind(KindGuard); len(guards) != len(databaseNodes) {
		t.Fatalf("%d guards, want one per database server (%d)", len(guards), len(databaseNodes))
	}
	for _, s := range l.Status(ctx) {
		if !s.Alive {
			t.Errorf("%s (%s on %s) is not running", s.Name, s.Addr, s.Host)
		}
	}
	c, err := consul.New(l.ConsulHTTP, "")
	if err != nil {
		t.Fatal(err)
	}

	for _, kind := range []string{KindMariaDB, KindPostgres} {
		cluster := guardCluster(kind + "-1")
		primary := addr(t, l, kind+"-1")
		eventually(t, cluster+": the manager's grant and the primary's lease", func() error {
			g, _, ok, err := c.ReadGrant(ctx, cluster)
			if err != nil || !ok || g.Instance != primary {
				return fmt.Errorf("grant %+v (stored %v, %v), want it to name %s", g, ok, err, primary)
			}
			v, session, ok, err := c.ReadLease(ctx, cluster, primary)
			if err != nil || !ok || session == "" || v.Renewals == 0 || v.Fenced {
				return fmt.Errorf("lease of %s: %+v held by %q (%v, %v)", primary, v, session, ok, err)
			}
			for _, r := range []string{kind + "-2", kind + "-3"} {
				v, session, ok, err := c.ReadLease(ctx, cluster, addr(t, l, r))
				if err != nil || !ok || session != "" || !v.Fenced {
					return fmt.Errorf("lease of replica %s: %+v held by %q (%v, %v)", r, v, session, ok, err)
				}
			}
			return nil
		})
	}

	cfg := labConfig(t, l)
	cl, _ := cfg.Cluster(mariadbCluster)
	prober := proberFor(t, cl)
	primary := addr(t, l, "mariadb-1")
	if err := l.Fault(ctx, FaultSpec{Name: FaultIsolate, Host: "mariadb-1"}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the isolated primary's guard to make it read-only", func() error {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		in := prober.Probe(pctx, primary)
		if !in.Reachable || !in.ReadOnly {
			return fmt.Errorf("the isolated primary: reachable %v, read-only %v (%s)", in.Reachable, in.ReadOnly, in.Error)
		}
		return nil
	})

	// The manager fails over: the new primary holds the grant and its guard the lease (a
	// guard that fenced it before it was granted is overruled by the keeper's reopen), it
	// takes writes, and the old primary stays read-only.
	deadline := time.Now().Add(2 * time.Minute)
	for {
		err := func() error {
			g, _, ok, err := c.ReadGrant(ctx, mariadbCluster)
			if err != nil || !ok || g.Instance == "" || g.Instance == primary {
				return fmt.Errorf("grant %+v (%v, %v)", g, ok, err)
			}
			v, session, _, err := c.ReadLease(ctx, mariadbCluster, g.Instance)
			if err != nil || session == "" || v.Fenced {
				return fmt.Errorf("lease of the new primary %s: %+v held by %q (%v)", g.Instance, v, session, err)
			}
			pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			if in := prober.Probe(pctx, g.Instance); !in.Reachable || in.ReadOnly {
				return fmt.Errorf("the new primary %s: reachable %v, read-only %v", g.Instance, in.Reachable, in.ReadOnly)
			}
			if in := prober.Probe(pctx, primary); !in.ReadOnly {
				return fmt.Errorf("the old primary %s is writable again", primary)
			}
			return nil
		}()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the failover: %v", err)
		}
		time.Sleep(500 * time.Millisecond)
	}
}
