package integration

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dbha/dbha/backup"
	"github.com/dbha/dbha/binlog"
	mysqlstream "github.com/dbha/dbha/binlog/mysql"
	"github.com/dbha/dbha/topology"
)

// TestRetentionKeepsTheOldestBackupsWindow: with a store retention of one
// second, `dbha run` removes the store files that end before the oldest
// backup, and keeps, past max_age, every file from the backup's position
// on: the backup's point-in-time window survives (keep_backups, the
// default).
func TestRetentionKeepsTheOldestBackupsWindow(t *testing.T) {
	bin := dbhaBinary(t)
	t.Parallel()
	l := binLab(t, bin)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	run := startDbhaRun(t, bin, l, "keeper", "DBHA_CLUSTERS_0_STREAM_RETENTION_MAX_AGE=1s")
	store := binlog.Dir(filepath.Join(l.Dir, "state"), mariadbCluster)
	primary := mysqlDB(t, l, "mariadb-1")
	mustExec(t, primary, "CREATE TABLE dbha_lab.dbha_keep (id INT PRIMARY KEY)")
	storeHolds(t, l, store, "mariadb-1") // the stream runs before the first file ends
	rotate := func(from, to int) {
		for i := from; i <= to; i++ {
			mustExec(t, primary, fmt.Sprintf("INSERT INTO dbha_lab.dbha_keep VALUES (%d)", i))
			mustExec(t, primary, "FLUSH BINARY LOGS")
		}
		storeHolds(t, l, store, "mariadb-1")
	}
	rotate(1, 3) // files that end before the backup
	first := openMariaStore(t, store)
	waitReplicasHave(ctx, t, l, "mariadb-1")
	e := backupRunCLI(t, bin, l, mariadbCluster)
	rotate(4, 6)

	// Retention runs at most once a minute.
	waitUntil(t, 150*time.Second, "retention to remove store files", func() error {
		if !strings.Contains(run.log(), `"msg":"retention removed store files"`) {
			return fmt.Errorf("nothing removed yet")
		}
		return nil
	})
	st := openMariaStore(t, store)
	if len(st.Files()) >= len(first.Files())+3 {
		t.Errorf("store files %v: none removed (it began with %v)", st.Files(), first.Files())
	}
	if o, err := topology.Compare(st.Start(), e.Position); err != nil || (o != topology.Behind && o != topology.Equal) {
		t.Fatalf("the store starts at %s, past the backup's %s (%v): its window was not kept", st.Start(), e.Position, err)
	}
	if o, err := topology.Compare(first.Start(), st.Start()); err != nil || o != topology.Behind {
		t.Errorf("the store still starts at %s, as before the backup: nothing before the backup was removed", st.Start())
	}
	w, err := backup.PITRWindow(e, store)
	if err != nil || w.From.String() != e.Position.String() {
		t.Fatalf("the backup's window after retention: %+v, %v", w, err)
	}
	t.Logf("after retention the store holds %v from %s; backup %s's window is %s to %s", st.Files(), st.Start(), e.ID, w.From, w.To)
}

func openMariaStore(t *testing.T, dir string) *mysqlstream.Store {
	t.Helper()
	st, err := mysqlstream.OpenStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	return st
}
