package integration

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/dbha/dbha/promote"
	"github.com/dbha/dbha/topology"
)

// Healing after failovers, through the dbha binary: `dbha run` brings
// every instance that returns back to follow the writer, and its anti-flap
// rule blocks only a real flap. Each test has a lab of its own.

// waitRecoveryOf waits for a finished recovery that replaced old, and
// returns it.
func waitRecoveryOf(t *testing.T, bin string, l *Lab, cluster, old string, limit time.Duration) promote.Record {
	t.Helper()
	var rec promote.Record
	waitUntil(t, limit, cluster+": a finished recovery of "+old, func() error {
		recs := recoveryList(t, bin, l, cluster)
		for _, r := range recs {
			if r.Plan.OldPrimary == old && r.Done && !r.Aborted {
				rec = r
				return nil
			}
		}
		return fmt.Errorf("recoveries: %s", describeRecords(recs))
	})
	return rec
}

// nodeName is the lab name of the node at addr.
func nodeName(t *testing.T, l *Lab, addr string) string {
	t.Helper()
	n, err := l.NodeByAddr(addr)
	if err != nil {
		t.Fatal(err)
	}
	return n.Name
}

// allFollow accepts a healthy cluster whose primary is primary and in
// which every other instance replicates from it.
func allFollow(primary string) func(topology.Snapshot) error {
	return func(s topology.Snapshot) error {
		if s.Primary != primary {
			return fmt.Errorf("primary is %q, want %s", s.Primary, primary)
		}
		for _, in := range s.Instances {
			if in.Addr != primary && (in.Replication == nil || in.Replication.Source != primary) {
				return fmt.Errorf("%s does not replicate from %s", in.Addr, primary)
			}
		}
		return healthy(s)
	}
}

// TestTwoFailoversThenBothOldPrimariesRejoin: the primary dies, then the
// next one (the third instance took no part in the first recovery, so the
// anti-flap rule lets it be promoted); both old primaries are started
// again, and the cluster is back to one primary and two replicas with
// nobody's help.
func TestTwoFailoversThenBothOldPrimariesRejoin(t *testing.T) {
	bin := dbhaBinary(t)
	t.Parallel()
	l := binLab(t, bin, withWitness) // a primary lost with a replica down: 3 of 5 voters
	c := consulClient(t, l)
	startDbhaRun(t, bin, l, "heal-watcher")
	for _, e := range labEngines {
		t.Run(e.cluster, func(t *testing.T) {
			first := addr(t, l, e.kind+"-1")
			waitPublishedWriter(t, c, e.cluster, first)
			killTree(t, l, e.kind+"-1")
			rec1 := waitRecoveryOf(t, bin, l, e.cluster, first, 60*time.Second)
			second := rec1.Plan.NewPrimary
			waitPublishedWriter(t, c, e.cluster, second)
			killTree(t, l, nodeName(t, l, second))
			rec2 := waitRecoveryOf(t, bin, l, e.cluster, second, 60*time.Second)
			third := rec2.Plan.NewPrimary
			if third == first || third == second {
				t.Fatalf("second recovery promoted %s, want the instance that took no part (not %s or %s)", third, first, second)
			}
			waitPublishedWriter(t, c, e.cluster, third)

			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			started := time.Now()
			for _, old := range []string{first, second} {
				if err := l.Start(ctx, nodeName(t, l, old)); err != nil {
					t.Fatal(err)
				}
			}
			waitHealthy(t, l, e.cluster, 90*time.Second, "both old primaries follow "+third, allFollow(third))
			t.Logf("%s: both old primaries rejoined %s %v after they were started", e.cluster, third, time.Since(started).Round(time.Millisecond))
		})
	}
}

// TestSwitchoverDoesNotBlockFailover: a planned switchover sets no
// anti-flap block, so the new primary's death is recovered at once.
func TestSwitchoverDoesNotBlockFailover(t *testing.T) {
	bin := dbhaBinary(t)
	t.Parallel()
	l := binLab(t, bin)
	c := consulClient(t, l)
	run := startDbhaRun(t, bin, l, "switchover-watcher")
	for _, e := range labEngines {
		t.Run(e.cluster, func(t *testing.T) {
			first := addr(t, l, e.kind+"-1")
			waitPublishedWriter(t, c, e.cluster, first)
			r := dbhaCLI(t, bin, l, "promote", "--cluster", e.cluster)
			if r.code != 0 {
				t.Fatalf("switchover: %s", r)
			}
			rec := waitRecoveryOf(t, bin, l, e.cluster, first, 30*time.Second)
			next := rec.Plan.NewPrimary
			waitPublishedWriter(t, c, e.cluster, next)
			// Until the old primary follows the new one (PostgreSQL rejoins
			// it through a rewind and a restart), it cannot vote: a death
			// then would be seen by 2 of 4 voters, no majority.
			waitHealthy(t, l, e.cluster, 90*time.Second, "every instance follows "+next, allFollow(next))
			// And as the daemon sees it: a replica it still finds detached
			// is one its keeper may be rejoining (stopped, rewound), which
			// cannot vote either.
			waitUntil(t, 30*time.Second, "the daemon to find no detached instance", func() error {
				return noneOpen(run.log(), e.cluster, "InstanceDetached")
			})
			killTree(t, l, nodeName(t, l, next))
			rec2 := waitRecoveryOf(t, bin, l, e.cluster, next, 60*time.Second)
			if rec2.Reason == "" || rec2.Plan.NewPrimary == next {
				t.Fatalf("after the switchover's new primary died: %+v", rec2)
			}
			t.Logf("%s: switchover to %s, then automatic failover to %s", e.cluster, next, rec2.Plan.NewPrimary)
		})
	}
}

// TestRealFlapIsBlocked: after an automatic failover A→B, with the third
// instance down, B dies: the only candidate is A, which just lost the
// role. The recovery is refused, a critical finding says what blocks and
// the command that lifts it, and once the operator lifts it A is promoted.
func TestRealFlapIsBlocked(t *testing.T) {
	bin := dbhaBinary(t)
	t.Parallel()
	l := binLab(t, bin, withWitness) // a primary lost with a replica down: 3 of 5 voters
	c := consulClient(t, l)
	run := startDbhaRun(t, bin, l, "flap-watcher")
	for _, e := range labEngines {
		t.Run(e.cluster, func(t *testing.T) {
			a := addr(t, l, e.kind+"-1")
			waitPublishedWriter(t, c, e.cluster, a)
			killTree(t, l, e.kind+"-1")
			rec := waitRecoveryOf(t, bin, l, e.cluster, a, 60*time.Second)
			b := rec.Plan.NewPrimary
			waitPublishedWriter(t, c, e.cluster, b)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			if err := l.Start(ctx, e.kind+"-1"); err != nil {
				t.Fatal(err)
			}
			waitHealthy(t, l, e.cluster, 90*time.Second, a+" rejoined", rejoined(b, a))
			for _, in := range []string{e.kind + "-2", e.kind + "-3"} {
				if addr(t, l, in) != b {
					killTree(t, l, in) // the instance that took no part
				}
			}
			killTree(t, l, nodeName(t, l, b))
			waitUntil(t, 60*time.Second, e.cluster+": a RecoveryBlocked finding", func() error {
				if len(run.appeared(e.cluster, "RecoveryBlocked")) == 0 {
					return fmt.Errorf("no RecoveryBlocked finding yet")
				}
				return nil
			})
			if recs := recoveryList(t, bin, l, e.cluster); recs[len(recs)-1].Plan.OldPrimary == b {
				t.Fatalf("a recovery of %s ran although it promotes back %s: %s", b, a, describeRecords(recs))
			}
			if !strings.Contains(run.log(), "dbha recover ack --cluster "+e.cluster) {
				t.Errorf("the log does not name the command that lifts the block")
			}
			if r := dbhaCLI(t, bin, l, "recover", "ack", "--cluster", e.cluster); r.code != 0 {
				t.Fatalf("recover ack: %s", r)
			}
			rec2 := waitRecoveryOf(t, bin, l, e.cluster, b, 60*time.Second)
			if rec2.Plan.NewPrimary != a {
				t.Fatalf("after the block was lifted %s was promoted, want %s", rec2.Plan.NewPrimary, a)
			}
		})
	}
}

// noneOpen fails while the daemon's log has a finding of code in cluster
// that appeared (for some instance) and has not cleared since.
func noneOpen(log, cluster, code string) error {
	open := map[string]bool{}
	for line := range strings.Lines(log) {
		if !strings.Contains(line, `"cluster":"`+cluster+`"`) || !strings.Contains(line, `"code":"`+code+`"`) {
			continue
		}
		instance := ""
		if i := strings.Index(line, `"instance":"`); i >= 0 {
			instance, _, _ = strings.Cut(line[i+len(`"instance":"`):], `"`)
		}
		switch {
		case strings.Contains(line, `"msg":"finding appeared"`):
			open[instance] = true
		case strings.Contains(line, `"msg":"finding cleared"`):
			delete(open, instance)
		}
	}
	if len(open) > 0 {
		return fmt.Errorf("%s still open for %v", code, open)
	}
	return nil
}
