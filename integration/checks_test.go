package integration

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/dbha/dbha/checks"
	"github.com/dbha/dbha/daemon"
)

// Fault-injection tests of failure detection: an in-process daemon.Monitor
// watches real servers while the test kills, freezes, partitions or stops
// them, as `dbha run` would.

func TestDeadPrimaryOnKill(t *testing.T) {
	t.Parallel()
	l := ownLab(t)
	for _, c := range labEngines {
		t.Run(c.cluster, func(t *testing.T) {
			m, _ := runMonitor(t, daemon.Options{Clusters: monitored(t, l, c.cluster)}, true)
			waitState(t, m, c.cluster, "a healthy cluster", 30*time.Second, noFindings)
			primary := c.kind + "-1"
			killed := time.Now()
			if err := l.Signal(primary, syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			st := waitState(t, m, c.cluster, "DeadPrimary", 15*time.Second, showing(checks.DeadPrimary))
			t.Logf("kill -9 of %s: DeadPrimary after %v", primary, detection(st, killed))
			f, _ := findingOf(st, checks.DeadPrimary)
			if f.Action != checks.Recover || f.Instance != addr(t, l, primary) {
				t.Errorf("DeadPrimary on %q with action %q, want %s and recover", f.Instance, f.Action, addr(t, l, primary))
			}
			if !hasVote(f, checks.PathManager, checks.Dead) || !hasVote(f, checks.PathReplica, checks.Dead) {
				t.Errorf("DeadPrimary without dead votes from dbha and a replica:%s", describeFindings(st.Findings))
			}
		})
	}
}

func TestHungPrimaryOnFreeze(t *testing.T) {
	t.Parallel()
	l := ownLab(t)
	for _, c := range labEngines {
		t.Run(c.cluster, func(t *testing.T) {
			m, fl := runMonitor(t, daemon.Options{Clusters: monitored(t, l, c.cluster)}, true)
			waitState(t, m, c.cluster, "a healthy cluster", 30*time.Second, noFindings)
			primary := c.kind + "-1"
			frozen := time.Now()
			if err := l.Freeze(primary); err != nil {
				t.Fatal(err)
			}
			thawed := false
			t.Cleanup(func() {
				if !thawed {
					l.Thaw(primary)
				}
			})
			// The frozen server sends no heartbeat, no keepalive: every
			// replica's link goes silent (and later drops), while dbha's
			// probes connect and time out. Once every replica has lost it,
			// the primary is dead, with or without a PrimaryHung on the way.
			dead := waitState(t, m, c.cluster, "DeadPrimary", 30*time.Second, showing(checks.DeadPrimary))
			t.Logf("freeze of %s: DeadPrimary after %v", primary, detection(dead, frozen))
			for _, code := range []checks.Code{checks.PrimaryHung, checks.DeadPrimaryAndSomeReplicas} {
				if early := fl.appeared(c.cluster, code); len(early) > 0 {
					t.Logf("on the way: %s at %v: %s", code, early[0].At.Sub(frozen).Round(time.Millisecond), early[0].Summary)
				}
			}
			f, _ := findingOf(dead, checks.DeadPrimary)
			if f.Action != checks.Recover || f.Instance != addr(t, l, primary) {
				t.Errorf("DeadPrimary on %q with action %q, want %s and recover", f.Instance, f.Action, addr(t, l, primary))
			}
			replicas := 0
			for _, v := range f.Votes {
				switch {
				case v.Path == checks.PathReplica && v.Verdict != checks.Dead:
					t.Errorf("DeadPrimary while replica %s votes %s: %s", v.Source, v.Verdict, v.Detail)
				case v.Path == checks.PathReplica:
					replicas++
					t.Logf("replica %s: %s", v.Source, v.Detail)
				case v.Path == checks.PathManager && v.Verdict == checks.Alive:
					t.Errorf("DeadPrimary while dbha's own probe answers: %s", v.Detail)
				}
			}
			if replicas != 2 {
				t.Errorf("DeadPrimary with %d replica votes, want both replicas':%s", replicas, describeFindings(dead.Findings))
			}

			thawed = true
			if err := l.Thaw(primary); err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			waitState(t, m, c.cluster, "the findings cleared after thaw", 30*time.Second, noFindings)
			t.Logf("thaw: findings cleared after %v", time.Since(start).Round(time.Millisecond))
		})
	}
}

// cutDbha drops what root's sockets (dbha: this test process) send to a
// loopback port, so dbha loses the primary while the replicas, which run as
// the lab user, keep replicating. heal removes the rule; it also runs when
// the test ends, however it ends, and checks that the rule is gone.
func cutDbha(t *testing.T, port int) (heal func()) {
	t.Helper()
	comment := fmt.Sprintf("dbha-test-%d", os.Getpid())
	rule := []string{"OUTPUT", "-p", "tcp", "-d", labHost, "--dport", strconv.Itoa(port),
		"-m", "owner", "--uid-owner", "0", "-m", "comment", "--comment", comment, "-j", "DROP"}
	if out, err := iptables(append([]string{"-A"}, rule...)...); err != nil {
		t.Fatalf("iptables -A: %v\n%s", err, out)
	}
	var once sync.Once
	heal = func() {
		once.Do(func() {
			if out, err := iptables(append([]string{"-D"}, rule...)...); err != nil {
				t.Errorf("remove the iptables rule for port %d: %v\n%s", port, err, out)
			}
			out, err := iptables("-S", "OUTPUT")
			for _, line := range strings.Split(out, "\n") {
				if strings.Contains(line, comment) && strings.Contains(line, "--dport "+strconv.Itoa(port)+" ") {
					t.Errorf("iptables rule still present: %s", line)
				}
			}
			if err != nil {
				t.Errorf("iptables -S: %v", err)
			}
		})
	}
	t.Cleanup(heal)
	return heal
}

func iptables(args ...string) (string, error) {
	out, err := exec.Command("iptables", append([]string{"-w", "10"}, args...)...).CombinedOutput()
	return string(out), err
}

func TestPartitionOfDbhaOnly(t *testing.T) {
	t.Parallel()
	l := ownLab(t)
	for _, c := range labEngines {
		t.Run(c.cluster, func(t *testing.T) {
			m, fl := runMonitor(t, daemon.Options{Clusters: monitored(t, l, c.cluster)}, true)
			waitState(t, m, c.cluster, "a healthy cluster", 30*time.Second, noFindings)
			n, err := l.Node(c.kind + "-1")
			if err != nil {
				t.Fatal(err)
			}
			cut := time.Now()
			heal := cutDbha(t, n.Port)
			var unreachable time.Duration
			for time.Since(cut) < 8*time.Second {
				st, _ := m.State(c.cluster)
				if f, ok := findingOf(st, checks.UnreachablePrimary); ok && unreachable == 0 {
					unreachable = detection(st, cut)
					t.Logf("UnreachablePrimary after %v: %s", unreachable, f.Summary)
				}
				time.Sleep(50 * time.Millisecond)
			}
			heal()
			if unreachable == 0 {
				st, _ := m.State(c.cluster)
				t.Errorf("no UnreachablePrimary during an 8 s cut of dbha alone; findings now:%s", describeFindings(st.Findings))
			}
			if dead := fl.appeared(c.cluster, checks.DeadPrimary, checks.DeadPrimaryAndSomeReplicas); len(dead) > 0 {
				t.Errorf("a partition of dbha alone was taken for a death: %+v", dead)
			}
			waitState(t, m, c.cluster, "the findings cleared after the cut", 30*time.Second, noFindings)
		})
	}
}

func TestReplicaDownFinding(t *testing.T) {
	l := sharedLab(t)
	for _, c := range labEngines {
		t.Run(c.cluster, func(t *testing.T) {
			waitSnapshot(t, l, c.cluster, "a healthy cluster", healthy)
			m, fl := runMonitor(t, daemon.Options{Clusters: monitored(t, l, c.cluster)}, true)
			waitState(t, m, c.cluster, "no findings", 30*time.Second, noFindings)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			node := c.kind + "-3"
			t.Cleanup(func() { // a no-op unless the test failed half-way
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				defer cancel()
				l.Start(ctx, node)
			})
			if err := l.Stop(ctx, node); err != nil {
				t.Fatal(err)
			}
			down := addr(t, l, node)
			st := waitState(t, m, c.cluster, "ReplicaUnreachable", 15*time.Second, showing(checks.ReplicaUnreachable))
			// A few more cycles: nothing about the primary may follow.
			until := st.Cycles + 8
			st = waitState(t, m, c.cluster, "8 more cycles", 15*time.Second, func(st daemon.State) error {
				if st.Cycles < until {
					return fmt.Errorf("at cycle %d", st.Cycles)
				}
				return nil
			})
			if err := l.Start(ctx, node); err != nil {
				t.Fatal(err)
			}
			if len(st.Findings) != 1 || st.Findings[0].Instance != down {
				t.Errorf("want only ReplicaUnreachable on %s, got:%s", down, describeFindings(st.Findings))
			}
			other := []checks.Code{checks.DeadPrimary, checks.DeadPrimaryAndSomeReplicas, checks.UnreachablePrimary, checks.PrimaryHung, checks.ReplicationStopped}
			if e := fl.appeared(c.cluster, other...); len(e) > 0 {
				t.Errorf("a stopped replica raised %+v", e)
			}
			waitSnapshot(t, l, c.cluster, "healthy after restart", healthy)
			waitState(t, m, c.cluster, "the finding cleared", 30*time.Second, noFindings)
		})
	}
}

func TestReplicationStoppedFinding(t *testing.T) {
	l := sharedLab(t)
	waitSnapshot(t, l, "lab-mariadb", "a healthy cluster", healthy)
	m, _ := runMonitor(t, daemon.Options{Clusters: monitored(t, l, "lab-mariadb")}, true)
	waitState(t, m, "lab-mariadb", "no findings", 30*time.Second, noFindings)
	replica := adminDB(t, l, "mariadb-2")
	r2 := addr(t, l, "mariadb-2")
	stoppedWith := func(text string) func(daemon.State) error {
		return func(st daemon.State) error {
			if f, ok := findingOf(st, checks.ReplicationStopped); ok && f.Instance == r2 && strings.Contains(f.Summary, text) {
				return nil
			}
			return fmt.Errorf("no ReplicationStopped on %s saying %q; findings:%s", r2, text, describeFindings(st.Findings))
		}
	}

	t.Run("stopped by hand", func(t *testing.T) {
		mustExec(t, replica, "STOP SLAVE SQL_THREAD")
		defer mustExec(t, replica, "START SLAVE SQL_THREAD")
		st := waitState(t, m, "lab-mariadb", "the stopped SQL thread", 15*time.Second, stoppedWith("applying is No"))
		f, _ := findingOf(st, checks.ReplicationStopped)
		t.Logf("%s: %s", f.Code, f.Summary)
	})
	waitState(t, m, "lab-mariadb", "no findings", 30*time.Second, noFindings)

	t.Run("stopped by an error", func(t *testing.T) {
		mustExec(t, replica, "SET SESSION sql_log_bin = 0", "INSERT INTO dbha_lab.heartbeat (id) VALUES (3000000)", "SET SESSION sql_log_bin = 1")
		mustExec(t, adminDB(t, l, "mariadb-1"), "INSERT INTO dbha_lab.heartbeat (id) VALUES (3000000)")
		defer mustExec(t, replica, "SET SESSION sql_log_bin = 0", "DELETE FROM dbha_lab.heartbeat WHERE id = 3000000", "SET SESSION sql_log_bin = 1", "START SLAVE")
		st := waitState(t, m, "lab-mariadb", "the SQL error", 15*time.Second, stoppedWith("Duplicate entry"))
		f, _ := findingOf(st, checks.ReplicationStopped)
		t.Logf("%s: %s", f.Code, f.Summary)
	})
	waitSnapshot(t, l, "lab-mariadb", "healthy again", healthy)
	waitState(t, m, "lab-mariadb", "no findings", 30*time.Second, noFindings)
}

func TestPrimaryFlap(t *testing.T) {
	t.Parallel()
	l := ownLab(t)
	policy := checks.DefaultPolicy()
	policy.Failures = 40 // 10 s at 250 ms: more than a restart takes
	for _, c := range labEngines {
		t.Run(c.cluster, func(t *testing.T) {
			m, fl := runMonitor(t, daemon.Options{Policy: policy, Clusters: monitored(t, l, c.cluster)}, true)
			waitState(t, m, c.cluster, "a healthy cluster", 30*time.Second, noFindings)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			primary := c.kind + "-1"
			// Sample the consecutive failures the whole time the primary is
			// away (killing waits for the old processes to be reaped, which
			// may itself take a while).
			var worst atomic.Int64
			stop := make(chan struct{})
			sampled := make(chan struct{})
			go func() {
				defer close(sampled)
				for {
					st, _ := m.State(c.cluster)
					if f := int64(st.Evidence.Manager.Failures); f > worst.Load() {
						worst.Store(f)
					}
					select {
					case <-stop:
						return
					case <-time.After(20 * time.Millisecond):
					}
				}
			}()
			killed := time.Now()
			killTree(t, l, primary)
			// Down for at least a second: long enough that the default
			// policy (2 failures) would call it dead, well within this one's 40.
			time.Sleep(time.Second - time.Since(killed))
			if err := l.Start(ctx, primary); err != nil {
				t.Fatal(err)
			}
			t.Logf("%s killed and serving again after %v", primary, time.Since(killed).Round(time.Millisecond))
			waitState(t, m, c.cluster, "the findings cleared after the flap", 30*time.Second, noFindings)
			close(stop)
			<-sampled
			waitSnapshot(t, l, c.cluster, "the replicas reconnected", healthy)
			t.Logf("healthy again %v after the kill; at most %d consecutive failed probes (policy: %d)",
				time.Since(killed).Round(time.Millisecond), worst.Load(), policy.Failures)
			if dead := fl.appeared(c.cluster, checks.DeadPrimary, checks.DeadPrimaryAndSomeReplicas); len(dead) > 0 {
				t.Errorf("a flap within the threshold was taken for a death: %+v", dead)
			}
			if worst.Load() < int64(checks.DefaultPolicy().Failures) {
				t.Errorf("the flap failed only %d probes: the default policy would not have called it dead either, so it tests nothing", worst.Load())
			}
		})
	}
}
