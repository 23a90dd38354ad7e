package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/dbha/dbha/backup"
	"github.com/dbha/dbha/binlog"
	"github.com/dbha/dbha/topology"
)

// TestPostgresPointInTimeAcrossFailover restores one backup to LSN and
// time targets before and after a failover that dbha's WAL store records
// (the second target is on the new primary's timeline): each restore
// holds exactly the rows committed up to its target, under a write load.
func TestPostgresPointInTimeAcrossFailover(t *testing.T) {
	bin := dbhaBinary(t)
	t.Parallel()
	l := binLab(t, bin)
	c := consulClient(t, l)
	startDbhaRun(t, bin, l, "pitr-watcher")
	first := addr(t, l, "postgres-1")
	waitPublishedWriter(t, c, postgresCluster, first)
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	store := binlog.Dir(filepath.Join(l.Dir, "state"), postgresCluster)

	primary := adminPG(ctx, t, l, "postgres-1")
	exec1(ctx, t, primary, "CREATE TABLE "+restoreTable+" (id int PRIMARY KEY, note text)")
	exec1(ctx, t, primary, "INSERT INTO "+restoreTable+" SELECT g, 'base' FROM generate_series(1, 50) g")
	e := backupRunCLI(t, bin, l, postgresCluster)
	t.Logf("backup %s at %s", e.ID, e.Position)

	lsn1, at1 := pgLoadWithTarget(ctx, t, l, "postgres-1", 1001, 1150)
	storeReaches(t, store, currentLSN(ctx, t, primary))

	killTree(t, l, "postgres-1")
	rec := waitRecoveryOf(t, bin, l, postgresCluster, first, 60*time.Second)
	next := nodeName(t, l, rec.Plan.NewPrimary)
	waitPublishedWriter(t, c, postgresCluster, rec.Plan.NewPrimary)
	// What the new primary took over of the first load is where the
	// second timeline begins: dbha loses nothing it saw, so all of it.
	before := pgIDs(ctx, t, l, next)
	if before != "1-50,1001-1300" {
		t.Errorf("the new primary %s holds %s of the first load, want 1-50,1001-1300", next, before)
	}
	lsn2, at2 := pgLoadWithTarget(ctx, t, l, next, 2001, 2150)
	storeReaches(t, store, currentLSN(ctx, t, adminPG(ctx, t, l, next)))

	owner, err := backup.LookupOwner(backup.DefaultOwner(topology.Postgres))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		target, want string
	}{
		{lsn1.String(), "1-50,1001-1150"},
		{at1.Format(time.RFC3339Nano), "1-50,1001-1150"},
		{lsn2.String(), before + ",2001-2150"},
		{at2.Format(time.RFC3339Nano), before + ",2001-2150"},
	} {
		dir, got := restoreUntil(ctx, t, topology.Postgres, labRepo(l), e, owner, tc.target, store)
		if ids := restoredIDs(ctx, t, topology.Postgres, dir, owner); ids != tc.want {
			t.Errorf("restored to %s: ids %s, want %s", tc.target, ids, tc.want)
		}
		if tc.target == lsn2.String() && got.Position.Timeline() < 2 {
			t.Errorf("restored to %s on timeline %d, want the new primary's", tc.target, got.Position.Timeline())
		}
	}
}

// storeReaches waits until dbha's WAL store holds lsn.
func storeReaches(t *testing.T, store string, lsn topology.LSN) {
	t.Helper()
	waitMariaStatus(t, store, "the store to hold "+lsn.String(), func(st binlog.Status) error {
		if st.Position.LSN() < lsn {
			return fmt.Errorf("store at %s", st.Position)
		}
		return nil
	})
}

// pgIDs gives the ids of the test table on node as ranges.
func pgIDs(ctx context.Context, t *testing.T, l *Lab, node string) string {
	t.Helper()
	rows, err := adminPG(ctx, t, l, node).Query(ctx, "SELECT id FROM "+restoreTable+" ORDER BY id")
	if err != nil {
		t.Fatal(err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int])
	if err != nil {
		t.Fatal(err)
	}
	return ranges(ids)
}

// backupRunCLI takes a backup of cluster with `dbha backup run` and
// returns its catalog entry.
func backupRunCLI(t *testing.T, bin string, l *Lab, cluster string) backup.Entry {
	t.Helper()
	r := dbhaCLI(t, bin, l, "backup", "run", "--cluster", cluster, "-o", "json")
	var out struct{ Backups []backup.Entry }
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil || r.code != 0 || len(out.Backups) != 1 {
		t.Fatalf("backup run: %v\n%s", err, r)
	}
	return out.Backups[0]
}
