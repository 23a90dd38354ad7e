package integration

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestPausedClusterIsNotFailedOver: with lab-mariadb paused (`dbha pause`),
// a killed primary is found dead and reported (FailoverPaused turns
// critical) but not replaced; `dbha resume` lets the waiting recovery go.
func TestPausedClusterIsNotFailedOver(t *testing.T) {
	bin := dbhaBinary(t)
	t.Parallel()
	l := binLab(t, bin)
	c := consulClient(t, l)
	if r := dbhaCLI(t, bin, l, "pause", "--cluster", mariadbCluster, "--reason", "kernel upgrade"); r.code != 0 || !strings.Contains(r.stdout, "paused by") {
		t.Fatalf("dbha pause: %s", r)
	}
	run := startDbhaRun(t, bin, l, "maintainer")
	first := addr(t, l, "mariadb-1")
	waitPublishedWriter(t, c, mariadbCluster, first)
	waitUntil(t, 30*time.Second, "the manager to see the pause", func() error {
		if logLine(run.log(), `"msg":"finding appeared"`, `"code":"FailoverPaused","severity":"warning"`) == "" {
			return fmt.Errorf("no FailoverPaused finding yet")
		}
		return nil
	})
	killTree(t, l, "mariadb-1")
	waitUntil(t, 30*time.Second, "the dead primary reported, and not recovered", func() error {
		if logLine(run.log(), `"msg":"automatic failover is paused: no recovery starts"`, `"code":"DeadPrimary"`) == "" ||
			logLine(run.log(), `"msg":"finding appeared"`, `"code":"FailoverPaused","severity":"critical"`) == "" {
			return fmt.Errorf("not yet")
		}
		return nil
	})
	time.Sleep(3 * time.Second) // cycles go on; none recovers
	if strings.Contains(run.log(), `"msg":"recovered"`) {
		t.Fatalf("a paused cluster was failed over:\n%s", run.log())
	}
	if w, err := c.Writer(t.Context(), mariadbCluster); err != nil || len(w) != 1 || w[0] != first {
		t.Fatalf("the writer moved while paused: %v, %v", w, err)
	}
	if r := dbhaCLI(t, bin, l, "resume", "--cluster", mariadbCluster); r.code != 0 || !strings.Contains(r.stdout, "resumed") {
		t.Fatalf("dbha resume: %s", r)
	}
	rec := waitRecoveryOf(t, bin, l, mariadbCluster, first, 60*time.Second)
	t.Logf("resumed: %s replaced %s with %s", rec.ID, first, rec.Plan.NewPrimary)
}
