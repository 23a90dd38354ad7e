package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/dbha/dbha/drill"
)

// TestFaultsOnHosts is the part of the fault matrix (make faults,
// docs/faults.md) that every `make test` runs: on a lab of hosts with one
// manager, one run each of host-down and isolate against both engines,
// and the minority split — {manager, one replica} cut off from {primary,
// the other replica, the clients}. Each drill is `dbha drill --hosts`, as
// an operator runs it, with 8 writers through Consul DNS.
//
// What it asserts is what dbha promises today, the minority side never
// promoting among it (quorum). Where it does not keep a promise yet, the
// test logs the measured figure and docs/faults.md says so in its row: an
// isolated old primary without a guard keeps acknowledging the writes of
// the clients that still reach it.
func TestFaultsOnHosts(t *testing.T) {
	bin := dbhaBinary(t)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	start := time.Now()
	l := upLab(t, ctx, Options{Hosts: true, Managers: 1, Binary: bin, Progress: testLog{t}})
	t.Logf("hosts lab up in %v", time.Since(start).Round(time.Millisecond))
	t.Cleanup(func() { purge(t, l) })

	for _, cluster := range []string{mariadbCluster, postgresCluster} {
		t.Run(cluster+"/host-down", func(t *testing.T) {
			sum := hostsDrill(ctx, t, bin, l, cluster, "--fault", "host-down")
			run := onlyRun(t, sum)
			// A vanished host is failed over, nothing else takes writes
			// (its processes are frozen and its packets dropped), and the
			// cluster is whole once it returns.
			if run.NewPrimary == "" || run.NewPrimary == run.OldPrimary {
				t.Errorf("no failover: %s -> %q: %s", run.OldPrimary, run.NewPrimary, run.Error)
			}
			if run.TwoWriters.Happened() {
				t.Errorf("a frozen host acknowledged writes after the new primary's first: %+v", run.TwoWriters)
			}
			if !run.Recovered || !run.AfterHeal.Whole {
				t.Errorf("not whole after the heal: %s (%s)", run.AfterHeal.Summary(), run.Error)
			}
		})
		t.Run(cluster+"/isolate", func(t *testing.T) {
			sum := hostsDrill(ctx, t, bin, l, cluster, "--fault", "isolate")
			run := onlyRun(t, sum)
			// Promised: a primary cut off from dbha and its replicas is
			// replaced, and after the heal there is one writable primary.
			// This lab has no fencing layer (no guard, no fence command,
			// commits acknowledged alone): the old primary keeps its
			// clients' writes until they reconnect, and `dbha check` warns
			// so — logged, not asserted. With guards the isolated primary
			// fences itself (TestHostsLabGuards); with lossless commits it
			// cannot acknowledge alone (TestLosslessMariaDBPrimaryCannotCommitAlone).
			if run.NewPrimary == "" || run.NewPrimary == run.OldPrimary {
				t.Errorf("no failover: %s -> %q: %s", run.OldPrimary, run.NewPrimary, run.Error)
			}
			if len(run.AfterHeal.Writable) > 1 {
				t.Errorf("two writable servers after the heal: %v", run.AfterHeal.Writable)
			}
			t.Logf("isolate without a fencing layer: the old primary acknowledged %d write(s) after the new primary's first (window %.3fs); %d acknowledged write(s) lost",
				run.TwoWriters.OldAfterNew, run.TwoWriters.WindowSeconds, run.LostRows)
		})
		t.Run(cluster+"/split-minority", func(t *testing.T) {
			sum := hostsDrill(ctx, t, bin, l, cluster, "--fault", "split", "--sides", "manager-1,replica-1|primary,replica-2,clients")
			run := onlyRun(t, sum)
			if run.ExpectFailover {
				t.Fatalf("the drill expects a failover from a minority side: %+v", run.Fault)
			}
			// Promised: {manager, replica 1} hold 2 of the 4 voters, no
			// majority: nothing is promoted, nothing acknowledged is lost,
			// and the split heals into the one writable primary it had.
			if run.FalseFailover || (run.NewPrimary != "" && run.NewPrimary != run.OldPrimary) {
				t.Errorf("the minority side promoted: %s -> %q", run.OldPrimary, run.NewPrimary)
			}
			if run.LostRows > 0 {
				t.Errorf("%d acknowledged write(s) lost", run.LostRows)
			}
			if len(run.AfterHeal.Writable) != 1 || !run.AfterHeal.Whole {
				t.Errorf("not whole after the heal: %s", run.AfterHeal.Summary())
			}
		})
	}
}

// hostsDrill runs one `dbha drill --hosts` run and returns its summary.
// Exit 1 is a drill that missed a target: its summary is returned all the
// same, for the caller to judge.
func hostsDrill(ctx context.Context, t *testing.T, bin string, l *Lab, cluster string, args ...string) drill.Summary {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	argv := append([]string{"--config", l.ConfigPath, "drill", "--hosts", "--cluster", cluster, "--runs", "1", "-o", "json"}, args...)
	cmd := exec.CommandContext(ctx, bin, argv...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && (!errors.As(err, &ee) || ee.ExitCode() != 1) {
		t.Fatalf("dbha drill %v: %v\n%s", args, err, stderr.String())
	}
	var sum drill.Summary
	if err := json.Unmarshal(stdout.Bytes(), &sum); err != nil {
		t.Fatalf("drill -o json does not parse: %v\nstdout: %s\nstderr: %s", err, stdout.String(), stderr.String())
	}
	t.Logf("dbha drill %v (exit %v):\n%s", args, err, stderr.String())
	t.Cleanup(func() {
		if t.Failed() {
			log, _ := os.ReadFile(filepath.Join(l.Dir, "logs", "manager-1.log"))
			t.Logf("manager-1 log, last 8 KiB:\n%s", lastBytes(log, 8<<10))
		}
	})
	return sum
}

func onlyRun(t *testing.T, s drill.Summary) drill.Run {
	t.Helper()
	if len(s.Runs) != 1 {
		t.Fatalf("%d runs reported, want 1", len(s.Runs))
	}
	r := s.Runs[0]
	t.Logf("run: %s", r.Line())
	return r
}

func lastBytes(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}
