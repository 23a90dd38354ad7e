package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"reflect"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dbha/dbha/drill"
	"github.com/dbha/dbha/promote"
	"github.com/dbha/dbha/topology"
)

// Safety tests of promotion, through the dbha binary as an operator runs
// it: `dbha promote`, `dbha recover`, `dbha drill`, and `dbha run` as child
// processes that the tests kill. Each test has a lab of its own.

func TestDryRunChangesNothing(t *testing.T) {
	bin := dbhaBinary(t)
	t.Parallel()
	l := binLab(t, bin)
	c := consulClient(t, l)

	// A `dbha run` first, so that Consul holds endpoints and observations
	// to compare; it stops before anything is recorded.
	run := startDbhaRun(t, bin, l, "dry-run-watcher")
	for _, e := range labEngines {
		waitUntil(t, 30*time.Second, e.cluster+": endpoints and observations published", func() error {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			w, _ := c.Writer(ctx, e.cluster)
			r, _ := c.Readers(ctx, e.cluster)
			peers, _ := c.Peers(ctx, e.cluster, "test")
			if !slices.Equal(w, []string{addr(t, l, e.kind+"-1")}) || len(r) != 2 || len(peers) != 1 {
				return fmt.Errorf("writer %v, readers %v, observations %+v", w, r, peers)
			}
			return nil
		})
	}
	run.stop(t, syscall.SIGTERM)
	for _, e := range labEngines {
		waitHealthy(t, l, e.cluster, 30*time.Second, "healthy", healthy)
	}

	before := recordState(t, l, c)
	if len(before.KV) == 0 {
		t.Fatal("no Consul key under dbha/<cluster>/ to compare")
	}
	for _, e := range labEngines {
		primary := addr(t, l, e.kind+"-1")
		r := dbhaCLI(t, bin, l, "promote", "--cluster", e.cluster, "--dry-run")
		if r.code != 0 || !strings.Contains(r.stdout, "switchover of "+e.cluster) || !strings.Contains(r.stdout, "steps:") {
			t.Errorf("%s: promote --dry-run: %s", e.cluster, r)
		}
		r = dbhaCLI(t, bin, l, "promote", "--cluster", e.cluster, "--dry-run", "-o", "json")
		var plan promote.Plan
		if err := json.Unmarshal([]byte(r.stdout), &plan); r.code != 0 || err != nil {
			t.Fatalf("%s: promote --dry-run -o json (%v): %s", e.cluster, err, r)
		}
		promotes := slices.ContainsFunc(plan.Steps, func(s promote.Step) bool {
			return s.Action == promote.ActPromote && s.Target == plan.NewPrimary
		})
		if plan.Kind != promote.Switchover || plan.OldPrimary != primary || plan.NewPrimary == "" || plan.NewPrimary == primary || !promotes {
			t.Errorf("%s: plan %s of %s -> %s with %d steps (promote step: %v)", e.cluster, plan.Kind, plan.OldPrimary, plan.NewPrimary, len(plan.Steps), promotes)
		}
		t.Logf("%s: dry run plans %s -> %s in %d steps", e.cluster, plan.OldPrimary, plan.NewPrimary, len(plan.Steps))
	}
	after := recordState(t, l, c)
	if !reflect.DeepEqual(before, after) {
		b, _ := json.MarshalIndent(before, "", "  ")
		a, _ := json.MarshalIndent(after, "", "  ")
		t.Errorf("the dry runs changed the lab:\nbefore:\n%s\nafter:\n%s", b, a)
	}
}

func TestSwitchover(t *testing.T) {
	bin := dbhaBinary(t)
	t.Parallel()
	l := binLab(t, bin)
	c := consulClient(t, l)
	for _, e := range labEngines {
		t.Run(e.cluster, func(t *testing.T) {
			oldNode, newNode, otherNode := e.kind+"-1", e.kind+"-2", e.kind+"-3"
			old, next, other := addr(t, l, oldNode), addr(t, l, newNode), addr(t, l, otherNode)
			waitHealthy(t, l, e.cluster, 30*time.Second, "healthy", healthy)
			writeRows(t, l, oldNode, 20)
			rows, highest := rowCount(t, l, oldNode, 1<<40)

			start := time.Now()
			r := dbhaCLI(t, bin, l, "promote", "--cluster", e.cluster, "--to", next)
			if r.code != 0 {
				t.Fatalf("promote --to %s: %s", next, r)
			}
			t.Logf("switchover %s -> %s: the command took %v", old, next, time.Since(start).Round(time.Millisecond))

			s := discover(t, l, e.cluster)
			if p, _ := s.Instance(next); p.Role != topology.RolePrimary || p.ReadOnly || p.Replication != nil {
				t.Errorf("new primary %s: role %s read_only %v replication %+v", next, p.Role, p.ReadOnly, p.Replication)
			}
			if o, _ := s.Instance(other); o.Replication == nil || o.Replication.Source != next {
				t.Errorf("%s does not replicate from the new primary: %+v", other, o.Replication)
			}
			o, _ := s.Instance(old)
			if e.kind == KindMariaDB {
				if o.Replication == nil || o.Replication.Source != next || !o.ReadOnly {
					t.Errorf("old primary %s: read_only %v replication %+v, want a read-only replica of %s", old, o.ReadOnly, o.Replication, next)
				}
			} else {
				// A running PostgreSQL primary becomes a standby only by a
				// restart after pg_rewind: dbha leaves it fenced and
				// detached, out of both services, for the rejoin_command.
				t.Logf("old primary after the switchover: role %s, read_only %v, replication %+v", o.Role, o.ReadOnly, o.Replication)
				if !o.ReadOnly || o.Replication != nil {
					t.Errorf("old primary %s: read_only %v replication %+v, want fenced and detached", old, o.ReadOnly, o.Replication)
				}
				if err := hasProblem(s, topology.InstanceDetached, old, ""); err != nil {
					t.Error(err)
				}
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				readers, err := c.Readers(ctx, e.cluster)
				cancel()
				if err != nil || slices.Contains(readers, old) {
					t.Errorf("reader service %v (%v) names the detached old primary %s", readers, err, old)
				}
				rejoin := time.Now()
				run := startDbhaRun(t, bin, l, "switchover-rejoiner")
				waitHealthy(t, l, e.cluster, 90*time.Second, "the old primary back as a standby", rejoined(next, old))
				t.Logf("dbha run rejoined %s as a standby of %s in %v", old, next, time.Since(rejoin).Round(time.Millisecond))
				run.stop(t, syscall.SIGTERM)
			}

			if got := resolveWriter(t, l, e.cluster); !slices.Equal(got, []string{next}) {
				t.Errorf("the writer resolves to %v through Consul DNS, want [%s]", got, next)
			}
			if n, _ := rowCount(t, l, newNode, highest); n != rows {
				t.Errorf("new primary holds %d of the %d rows written before the switchover", n, rows)
			}
			writeRows(t, l, newNode, 5)
			waitHealthy(t, l, e.cluster, 30*time.Second, "the new primary replicated to both", rejoined(next, old))

			recs := recoveryList(t, bin, l, e.cluster)
			if len(recs) != 1 {
				t.Fatalf("want one recovery:%s", describeRecords(recs))
			}
			rec := recs[0]
			if rec.Kind != promote.Switchover || !rec.Done || rec.Aborted || rec.Error != "" || rec.Plan.NewPrimary != next ||
				rec.Ledger.Transactions != 0 || rec.Ledger.Bytes != 0 {
				t.Errorf("recovery record:%s ledger %+v", describeRecords(recs), rec.Ledger)
			}
			t.Logf("record: writer moved %.3fs after the start; ledger lost %d trx / %d bytes; repointed %v",
				rec.RTOSeconds, rec.Ledger.Transactions, rec.Ledger.Bytes, rec.Repointed)
			for _, st := range rec.Steps {
				if st.Note != "" {
					t.Logf("  step %d %s %s: %s", st.N, st.Action, st.Target, st.Note)
				}
			}
		})
	}
}

func TestErrantReplicaNotPromotedWithoutForce(t *testing.T) {
	bin := dbhaBinary(t)
	t.Parallel()
	l := binLab(t, bin)
	const cluster = "lab-mariadb"
	waitHealthy(t, l, cluster, 30*time.Second, "healthy", healthy)
	r2, r3 := addr(t, l, "mariadb-2"), addr(t, l, "mariadb-3")
	// A write straight on the replica: admin may write under read_only.
	mustExec(t, adminDB(t, l, "mariadb-2"), "INSERT INTO dbha_lab.heartbeat (id) VALUES (5000000)")
	if err := l.Signal("mariadb-1", syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}

	view := func() map[string]instanceState {
		out := map[string]instanceState{}
		for _, in := range discover(t, l, cluster).Instances {
			is := instanceState{Reachable: in.Reachable, Role: in.Role, ReadOnly: in.ReadOnly, Current: in.Current.String()}
			if in.Replication != nil {
				is.ReplicationConfigured, is.Source, is.SQLRunning = true, in.Replication.Source, in.Replication.SQLRunning
			}
			out[in.Addr] = is
		}
		return out
	}
	before := view()
	r := dbhaCLI(t, bin, l, "promote", "--cluster", cluster, "--to", r2)
	out := r.stdout + r.stderr
	if r.code != 1 || !strings.Contains(out, "errant") || !strings.Contains(out, "0-2-") {
		t.Errorf("promote --to the errant replica: want exit 1 naming its errant transaction 0-2-N: %s", r)
	}
	t.Logf("refused: %s", strings.TrimSpace(out))
	if after := view(); !reflect.DeepEqual(before, after) {
		t.Errorf("the refused promotion changed the cluster:\nbefore %+v\nafter  %+v", before, after)
	}
	if in := before[r2]; !in.ReadOnly || !in.ReplicationConfigured {
		t.Errorf("%s before: %+v", r2, in)
	}
	if recs := recoveryList(t, bin, l, cluster); len(recs) != 0 {
		t.Errorf("a refused promotion left records:%s", describeRecords(recs))
	}

	r = dbhaCLI(t, bin, l, "promote", "--cluster", cluster, "--to", r2, "--force", "-o", "json")
	var rec promote.Record
	if err := json.Unmarshal([]byte(r.stdout), &rec); r.code != 0 || err != nil {
		t.Fatalf("promote --force (%v): %s", err, r)
	}
	forced := strings.Join(rec.Plan.Forced, "; ")
	if !rec.Done || rec.Plan.NewPrimary != r2 || !strings.Contains(forced, "errant transactions 0-2-") {
		t.Errorf("forced promotion: done %v new primary %s forced %q", rec.Done, rec.Plan.NewPrimary, forced)
	}
	t.Logf("forced past: %s", forced)
	recs := recoveryList(t, bin, l, cluster)
	if len(recs) != 1 || !slices.Equal(recs[0].Plan.Forced, rec.Plan.Forced) {
		t.Errorf("the record does not keep what was forced:%s", describeRecords(recs))
	}
	waitHealthy(t, l, cluster, 30*time.Second, "the other replica following the forced primary", func(s topology.Snapshot) error {
		p, _ := s.Instance(r2)
		o, _ := s.Instance(r3)
		if s.Primary != r2 || p.ReadOnly || o.Replication == nil || o.Replication.Source != r2 {
			return fmt.Errorf("primary %q (read_only %v), %s follows %+v", s.Primary, p.ReadOnly, r3, o.Replication)
		}
		if cmp, err := topology.Compare(o.Current, p.Current); err != nil || cmp != topology.Equal {
			return fmt.Errorf("%s at %s, primary at %s", r3, o.Current, p.Current)
		}
		return nil
	})
}

func TestTwoManagersOneRecovery(t *testing.T) {
	bin := dbhaBinary(t)
	t.Parallel()
	l := binLab(t, bin)
	c := consulClient(t, l)
	// A before-promote hook that takes a while keeps the winner holding the
	// lock long enough for the other manager to confirm the death too and
	// find the lock taken, rather than find the recovery already over.
	addBeforePromoteHook(t, l, "sleep", "2")
	runs := []*dbhaRun{startDbhaRun(t, bin, l, "manager-a"), startDbhaRun(t, bin, l, "manager-b")}
	for _, e := range labEngines {
		waitPublishedWriter(t, c, e.cluster, addr(t, l, e.kind+"-1"))
		waitUntil(t, 30*time.Second, e.cluster+": both managers' observations in Consul", func() error {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			peers, err := c.Peers(ctx, e.cluster, "test")
			if err != nil || len(peers) != 2 {
				return fmt.Errorf("peers %+v (%v)", peers, err)
			}
			return nil
		})
	}

	for _, e := range labEngines {
		killTree(t, l, e.kind+"-1")
	}
	newPrimary := map[string]string{}
	for _, e := range labEngines {
		rec := waitRecoveryDone(t, bin, l, e.cluster, 60*time.Second)
		newPrimary[e.cluster] = rec.Plan.NewPrimary
		t.Logf("%s: %s recovered %s -> %s, writer moved %.3fs after detection", e.cluster, rec.Manager, rec.Plan.OldPrimary, rec.Plan.NewPrimary, rec.RTOSeconds)
	}
	// Long enough for the other manager to act too, if it would.
	time.Sleep(3 * time.Second)
	checkOne := func(when string) {
		t.Helper()
		for _, e := range labEngines {
			if recs := recoveryList(t, bin, l, e.cluster); len(recs) != 1 || !recs[0].Done || recs[0].Error != "" {
				t.Errorf("%s %s: want exactly one finished recovery:%s", e.cluster, when, describeRecords(recs))
			}
			if w := writers(t, c, e.cluster); !slices.Equal(w, []string{newPrimary[e.cluster]}) {
				t.Errorf("%s %s: writer service names %v, want [%s]", e.cluster, when, w, newPrimary[e.cluster])
			}
		}
	}
	checkOne("after the failover")

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for _, e := range labEngines {
		if err := l.Start(ctx, e.kind+"-1"); err != nil {
			t.Fatal(err)
		}
	}
	for _, e := range labEngines {
		start := time.Now()
		waitHealthy(t, l, e.cluster, 90*time.Second, "the old primary rejoined", rejoined(newPrimary[e.cluster], addr(t, l, e.kind+"-1")))
		t.Logf("%s: healthy %v after the old primary started", e.cluster, time.Since(start).Round(time.Millisecond))
	}
	checkOne("after the old primary returned")

	for _, e := range labEngines {
		recovered := 0
		for _, p := range runs {
			n := len(p.records(e.cluster, "recovered"))
			recovered += n
			if n > 0 {
				continue
			}
			locked := p.records(e.cluster, "another manager is recovering")
			blocked := p.records(e.cluster, "automatic recovery blocked")
			t.Logf("%s: %s did not recover; it found the lock held %d times, then the anti-flap block %d times", e.cluster, p.manager, len(locked), len(blocked))
			if len(locked) == 0 {
				t.Errorf("%s: %s never logged that another manager held the lock", e.cluster, p.manager)
			}
		}
		if recovered != 1 {
			t.Errorf("%s: %d \"recovered\" log lines over both managers, want 1", e.cluster, recovered)
		}
	}
}

func TestResumeAfterCrash(t *testing.T) {
	bin := dbhaBinary(t)
	t.Parallel()
	l := binLab(t, bin, withWitness) // mariadb-3 halted cannot vote: the witness makes 3 of 5
	const cluster = "lab-mariadb"
	c := consulClient(t, l)
	waitHealthy(t, l, cluster, 30*time.Second, "healthy", healthy)
	candidate, old := addr(t, l, "mariadb-2"), addr(t, l, "mariadb-1")

	// mariadb-3 stops receiving before the writes, so mariadb-2 is the most
	// advanced. mariadb-2 keeps receiving but cannot apply: a session holds
	// a read lock on the table the writes go to, and its SQL thread waits.
	// (STOP SLAVE SQL_THREAD would not do: dbha then stops the IO thread,
	// and MariaDB in GTID mode discards the relay log when either thread
	// is started again with both stopped, so what was received is gone.)
	mustExec(t, adminDB(t, l, "mariadb-3"), "STOP SLAVE IO_THREAD")
	lockConn, err := adminDB(t, l, "mariadb-2").Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer lockConn.Close()
	if _, err := lockConn.ExecContext(context.Background(), "LOCK TABLES dbha_lab.heartbeat READ"); err != nil {
		t.Fatal(err)
	}
	writeRows(t, l, "mariadb-1", 10)
	rows, highest := rowCount(t, l, "mariadb-1", 1<<40)
	waitHealthy(t, l, cluster, 30*time.Second, "mariadb-2 received everything, applied less", func(s topology.Snapshot) error {
		p, _ := s.Instance(old)
		in, _ := s.Instance(candidate)
		if got, err := topology.Compare(in.Received, p.Current); err != nil || got != topology.Equal {
			return fmt.Errorf("received %s, primary at %s", in.Received, p.Current)
		}
		if got, _ := topology.Compare(in.Applied, in.Received); got != topology.Behind {
			return fmt.Errorf("applied %s is not behind received %s", in.Applied, in.Received)
		}
		return nil
	})

	first := startDbhaRun(t, bin, l, "resume-first")
	waitPublishedWriter(t, c, cluster, old)
	killTree(t, l, "mariadb-1")
	var rec promote.Record
	waitUntil(t, 30*time.Second, "the recovery blocked at its wait-applied step", func() error {
		recs := recoveryList(t, bin, l, cluster)
		if len(recs) != 1 {
			return fmt.Errorf("recoveries:%s", describeRecords(recs))
		}
		rec = recs[0]
		if rec.Done || rec.Next < 1 || rec.Next > len(rec.Plan.Steps) || rec.Plan.Steps[rec.Next-1].Action != promote.ActWaitApplied {
			return fmt.Errorf("recoveries:%s", describeRecords(recs))
		}
		return nil
	})
	if rec.Plan.NewPrimary != candidate {
		t.Fatalf("the recovery promotes %s, want the most advanced %s", rec.Plan.NewPrimary, candidate)
	}
	t.Logf("recovery %s waits at step %d (%s %s)", rec.ID, rec.Next, rec.Plan.Steps[rec.Next-1].Action, rec.Plan.Steps[rec.Next-1].Target)
	first.stop(t, syscall.SIGKILL)
	if _, err := lockConn.ExecContext(context.Background(), "UNLOCK TABLES"); err != nil {
		t.Fatal(err)
	}

	restarted := time.Now()
	second := startDbhaRun(t, bin, l, "resume-second")
	rec = waitRecoveryDone(t, bin, l, cluster, 90*time.Second)
	t.Logf("the second dbha run finished the recovery %v after it started (it found the crashed manager's lock still held %d times)",
		time.Since(restarted).Round(time.Millisecond), len(second.records(cluster, "a recovery in progress waits")))
	if len(second.records(cluster, "resumed a recovery")) != 1 {
		t.Errorf("the second dbha run did not log \"resumed a recovery\"")
	}
	if recs := recoveryList(t, bin, l, cluster); len(recs) != 1 || recs[0].Error != "" || recs[0].Ledger.Transactions != 0 {
		t.Errorf("want one clean recovery:%s", describeRecords(recs))
	}
	if rec.Plan.NewPrimary != candidate || rec.Manager != "resume-first" {
		t.Errorf("recovery of %s by %s, want %s by resume-first (resumed, not a new one)", rec.Plan.NewPrimary, rec.Manager, candidate)
	}
	waitPublishedWriter(t, c, cluster, candidate)
	if n, _ := rowCount(t, l, "mariadb-2", highest); n != rows {
		t.Errorf("the new primary holds %d of %d rows", n, rows)
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := l.Start(ctx, "mariadb-1"); err != nil {
		t.Fatal(err)
	}
	waitHealthy(t, l, cluster, 60*time.Second, "the old primary rejoined", rejoined(candidate, old))
	if w := writers(t, c, cluster); !slices.Equal(w, []string{candidate}) {
		t.Errorf("writer service names %v, want [%s]", w, candidate)
	}
}

func TestOldPrimaryStaysFenced(t *testing.T) {
	bin := dbhaBinary(t)
	t.Parallel()
	l := binLab(t, bin)
	c := consulClient(t, l)
	startDbhaRun(t, bin, l, "fence-watcher")
	for _, e := range labEngines {
		waitPublishedWriter(t, c, e.cluster, addr(t, l, e.kind+"-1"))
	}
	for _, e := range labEngines {
		killTree(t, l, e.kind+"-1")
	}
	newPrimary := map[string]string{}
	stops := map[string]func() ([]writableWindow, int){}
	for _, e := range labEngines {
		rec := waitRecoveryDone(t, bin, l, e.cluster, 60*time.Second)
		newPrimary[e.cluster] = rec.Plan.NewPrimary
		waitPublishedWriter(t, c, e.cluster, rec.Plan.NewPrimary)
		stops[e.cluster] = watchOldPrimary(t, l, c, e.cluster, e.kind+"-1")
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	started := map[string]time.Time{}
	for _, e := range labEngines {
		if err := l.Start(ctx, e.kind+"-1"); err != nil {
			t.Fatal(err)
		}
		started[e.cluster] = time.Now()
	}
	for _, e := range labEngines {
		old := addr(t, l, e.kind+"-1")
		waitHealthy(t, l, e.cluster, 90*time.Second, "the old primary rejoined", rejoined(newPrimary[e.cluster], old))
		t.Logf("%s: %s rejoined %v after it was serving again", e.cluster, old, time.Since(started[e.cluster]).Round(time.Millisecond))
		windows, named := stops[e.cluster]()
		var total time.Duration
		for _, w := range windows {
			d := w.to.Sub(w.from)
			total += d
			t.Logf("%s: %s writable from %s for %v (last seen writable %v after it was serving)", e.cluster, old,
				w.from.Format("15:04:05.000"), d.Round(time.Millisecond), w.to.Sub(started[e.cluster]).Round(time.Millisecond))
		}
		if len(windows) == 0 {
			t.Logf("%s: %s was never seen writable", e.cluster, old)
		}
		// A few probe cycles (250 ms) to see it and fence it; polls add 50 ms.
		if total > 5*time.Second {
			t.Errorf("%s: %s was writable outside the writer service for %v", e.cluster, old, total)
		}
		if named > 0 {
			t.Errorf("%s: the writer service named the old primary %s in %d polls", e.cluster, old, named)
		}
		if w := writers(t, c, e.cluster); !slices.Equal(w, []string{newPrimary[e.cluster]}) {
			t.Errorf("%s: writer service names %v, want [%s]", e.cluster, w, newPrimary[e.cluster])
		}
	}
}

func TestNoFailoverOnUnreachablePrimary(t *testing.T) {
	bin := dbhaBinary(t)
	t.Parallel()
	l := binLab(t, bin)
	const cluster = "lab-mariadb"
	c := consulClient(t, l)
	primary := addr(t, l, "mariadb-1")
	run := startDbhaRun(t, bin, l, "partition-watcher")
	waitPublishedWriter(t, c, cluster, primary)
	n, err := l.Node("mariadb-1")
	if err != nil {
		t.Fatal(err)
	}

	nothingChanged := func(when string) {
		t.Helper()
		if recs := recoveryList(t, bin, l, cluster); len(recs) != 0 {
			t.Fatalf("%s: recoveries:%s", when, describeRecords(recs))
		}
		if w := writers(t, c, cluster); !slices.Equal(w, []string{primary}) {
			t.Fatalf("%s: writer service names %v, want [%s]", when, w, primary)
		}
	}
	cut := time.Now()
	heal := cutDbha(t, n.Port)
	for time.Since(cut) < 10*time.Second {
		nothingChanged("during the cut")
		time.Sleep(500 * time.Millisecond)
	}
	heal()
	if seen := run.appeared(cluster, "UnreachablePrimary"); len(seen) == 0 {
		t.Errorf("dbha run never reported UnreachablePrimary during a 10 s cut: the test tested nothing")
	} else {
		t.Logf("UnreachablePrimary %v after the cut", seen[0].Time.Sub(cut).Round(time.Millisecond))
	}
	healed := time.Now()
	waitUntil(t, 30*time.Second, "UnreachablePrimary cleared", func() error {
		for _, r := range run.records(cluster, "finding cleared") {
			if r.Code == "UnreachablePrimary" && r.Time.After(healed.Add(-time.Second)) {
				return nil
			}
		}
		return fmt.Errorf("not cleared yet")
	})
	for time.Since(healed) < 5*time.Second {
		nothingChanged("after the cut")
		time.Sleep(500 * time.Millisecond)
	}
	for _, code := range []string{"DeadPrimary", "DeadPrimaryAndSomeReplicas"} {
		if seen := run.appeared(cluster, code); len(seen) > 0 {
			t.Errorf("a cut of dbha alone raised %s", code)
		}
	}
	if rec := run.records(cluster, "recovered"); len(rec) > 0 {
		t.Errorf("dbha recovered a reachable primary")
	}
	waitHealthy(t, l, cluster, 30*time.Second, "healthy", healthy)
}

func TestDrill(t *testing.T) {
	bin := dbhaBinary(t)
	t.Parallel()
	l := binLab(t, bin)
	for _, e := range labEngines {
		t.Run(e.cluster, func(t *testing.T) {
			start := time.Now()
			r := runDrill(t, bin, l, e.cluster)
			if r.code != 0 && r.code != 1 {
				t.Fatalf("drill: %s", r)
			}
			var sum drill.Summary
			if err := json.Unmarshal([]byte(r.stdout), &sum); err != nil {
				t.Fatalf("drill -o json does not parse: %v\n%s", err, r)
			}
			t.Logf("drill of %s: %d runs in %v, exit %d", e.cluster, drillRuns, time.Since(start).Round(time.Millisecond), r.code)
			if len(sum.Runs) != drillRuns {
				t.Errorf("%d runs reported, want %d: %s", len(sum.Runs), drillRuns, r)
			}
			for _, run := range sum.Runs {
				t.Logf("run %d: %s -> %s, RTO %.3fs, %d of %d acknowledged rows lost, pass %v", run.N, run.OldPrimary, run.NewPrimary,
					run.RTOSeconds, run.LostRows, run.AckedRows, run.Pass)
				if run.Error != "" || run.OldPrimary == "" || run.NewPrimary == "" || run.NewPrimary == run.OldPrimary {
					t.Errorf("run %d did not recover: %s -> %s: %s", run.N, run.OldPrimary, run.NewPrimary, run.Error)
				}
			}
			t.Logf("median RTO %.3fs, max %.3fs, lost rows %d, pass %v", sum.MedianRTO, sum.MaxRTO, sum.LostRows, sum.Pass)
			if t.Failed() {
				log, _ := os.ReadFile(drillLog(l, e.cluster))
				t.Logf("drill stderr:\n%s\nmonitor log:\n%s", r.stderr, log)
			}
		})
	}
}
