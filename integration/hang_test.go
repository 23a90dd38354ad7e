package integration

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/dbha/dbha/binlog"
	"github.com/dbha/dbha/promote"
)

// TestFailoverOfAHungPrimary: each cluster's primary is frozen (SIGSTOP:
// its kernel still accepts connections, its server never answers), and
// `dbha run` replaces it with one recovery that does not wait on it: no
// attempt fails for want of an answer from the old primary, the replicas
// are stopped from following it, the fence of it gives up and is
// recorded, and dbha's stream follows the new primary. Thawed, the old
// primary is fenced and rejoins.
func TestFailoverOfAHungPrimary(t *testing.T) {
	bin := dbhaBinary(t)
	t.Parallel()
	l := binLab(t, bin)
	c := consulClient(t, l)
	startDbhaRun(t, bin, l, "hang-watcher")
	for _, e := range labEngines {
		waitPublishedWriter(t, c, e.cluster, addr(t, l, e.kind+"-1"))
		waitStreamFollows(t, l, e.cluster, addr(t, l, e.kind+"-1"))
	}
	frozen := map[string]bool{}
	t.Cleanup(func() {
		for name := range frozen {
			l.Thaw(name) // a frozen server would outlive the lab
		}
	})
	for _, e := range labEngines {
		if err := l.Freeze(e.kind + "-1"); err != nil {
			t.Fatal(err)
		}
		frozen[e.kind+"-1"] = true
	}

	recovered := map[string]promote.Record{}
	for _, e := range labEngines {
		old := addr(t, l, e.kind+"-1")
		rec := waitRecoveryOf(t, bin, l, e.cluster, old, 3*time.Minute)
		recovered[e.cluster] = rec
		if recs := recoveryList(t, bin, l, e.cluster); len(recs) != 1 {
			t.Errorf("%s: want the first attempt to finish, got:%s", e.cluster, describeRecords(recs))
		}
		for _, st := range rec.Steps {
			if st.Error != "" || strings.Contains(st.Note, "could not stop") || strings.Contains(st.Note, "not repointed") {
				t.Errorf("%s: step %d %s %s: error %q, note %q", e.cluster, st.N, st.Action, st.Target, st.Error, st.Note)
			}
		}
		if rec.NotFenced == "" {
			t.Errorf("%s: the hung old primary %s was fenced, or its failed fence not recorded: steps %+v", e.cluster, old, rec.Steps)
		}
		t.Logf("%s: %s replaced by %s; old primary not fenced: %s", e.cluster, old, rec.Plan.NewPrimary, rec.NotFenced)
		waitPublishedWriter(t, c, e.cluster, rec.Plan.NewPrimary)

		// Nobody follows the hung primary: the new one replicates from
		// nobody, the other replica from it.
		s := discover(t, l, e.cluster)
		for _, in := range s.Instances {
			switch {
			case in.Addr == old:
			case in.Addr == rec.Plan.NewPrimary:
				if in.Replication != nil || in.ReadOnly {
					t.Errorf("%s: new primary %s: read_only %v replication %+v", e.cluster, in.Addr, in.ReadOnly, in.Replication)
				}
			case in.Replication == nil || in.Replication.Source != rec.Plan.NewPrimary:
				t.Errorf("%s: %s follows %+v, want %s", e.cluster, in.Addr, in.Replication, rec.Plan.NewPrimary)
			}
		}
		waitStreamFollows(t, l, e.cluster, rec.Plan.NewPrimary)
	}

	for _, e := range labEngines {
		if err := l.Thaw(e.kind + "-1"); err != nil {
			t.Fatal(err)
		}
		delete(frozen, e.kind+"-1")
	}
	for _, e := range labEngines {
		waitHealthy(t, l, e.cluster, 2*time.Minute, "the thawed old primary fenced and rejoined",
			rejoined(recovered[e.cluster].Plan.NewPrimary, addr(t, l, e.kind+"-1")))
	}
}

// waitStreamFollows waits until the cluster's stream (of the `dbha run`
// under test) is connected to primary.
func waitStreamFollows(t *testing.T, l *Lab, cluster, primary string) {
	t.Helper()
	dir := binlog.Dir(labConfig(t, l).StateDir, cluster)
	waitUntil(t, 60*time.Second, cluster+": the stream following "+primary, func() error {
		st, err := binlog.ReadStatus(dir)
		if err != nil {
			return err
		}
		if !st.Connected || st.Primary != primary || st.Stale(time.Now()) {
			return fmt.Errorf("stream connected %v to %q (last error %q, updated %v)", st.Connected, st.Primary, st.LastError, st.UpdatedAt)
		}
		return nil
	})
}
