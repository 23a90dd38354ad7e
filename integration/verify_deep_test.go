package integration

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dbha/dbha/backup"
	"github.com/dbha/dbha/topology"
)

// TestVerifyReadsEveryPage: a PostgreSQL standby whose table has a
// corrupt page in its middle (data checksums off, so pg_basebackup copies
// it as it is) yields a backup whose files match their checksums and whose
// server opens and answers a read of the table's first row; verify reads
// every page (pg_amcheck) and fails, naming the damage. It also reports
// the point-in-time window, and fails when dbha's store does not reach
// back to the backup.
func TestVerifyReadsEveryPage(t *testing.T) {
	bin := dbhaBinary(t)
	t.Parallel()
	l := binLab(t, bin)
	waitSnapshot(t, l, postgresCluster, "a healthy cluster", healthy)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	primary := adminPG(ctx, t, l, "postgres-1")
	exec1(ctx, t, primary, "CREATE TABLE dbha_verify_pages (id int PRIMARY KEY, note text)")
	exec1(ctx, t, primary, "INSERT INTO dbha_verify_pages SELECT g, repeat(md5(g::text), 4) FROM generate_series(1, 5000) g")
	// A checkpoint on the primary, replayed, lets the standby's own
	// (a restartpoint) start its next recovery after the rows: no full-page
	// image replayed at its restart covers the page damaged below.
	exec1(ctx, t, primary, "CHECKPOINT")
	waitUntil(t, time.Minute, "the standbys to have the rows and the checkpoint", func() error { return pgCaughtUp(ctx, l) })
	standby := adminPG(ctx, t, l, "postgres-3")
	var rel string
	if err := standby.QueryRow(ctx, "SELECT pg_relation_filepath('dbha_verify_pages')").Scan(&rel); err != nil {
		t.Fatal(err)
	}
	exec1(ctx, t, standby, "CHECKPOINT") // a restartpoint: the pages are in the file
	standby.Close(ctx)
	n3, err := l.Node("postgres-3")
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Stop(ctx, n3.Name); err != nil {
		t.Fatal(err)
	}
	// Page 10 of about a hundred: the tuples at its end (headers and
	// data) overwritten.
	f, err := os.OpenFile(filepath.Join(n3.DataDir, rel), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte(strings.Repeat("\xff", 400)), 11*8192-600); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if err := l.Start(ctx, n3.Name); err != nil {
		t.Fatal(err)
	}
	pw, err := readPassword(l.Secret("postgres-dbha"))
	if err != nil {
		t.Fatal(err)
	}
	repo := backup.Dir(t.TempDir())
	e, err := backup.RunPostgres(ctx, backup.Job{Repo: repo, ID: "corrupt", Cluster: postgresCluster, Source: n3.Addr(), User: "dbha", Password: pw})
	if err != nil {
		t.Fatalf("backup of the corrupt standby: %v", err)
	}
	owner, err := backup.LookupOwner(backup.DefaultOwner(topology.Postgres))
	if err != nil {
		t.Fatal(err)
	}
	v, err := backup.Verify(ctx, repo, e, backup.VerifyOptions{Owner: owner, Roles: []string{"dbha"}})
	if err == nil || !strings.Contains(err.Error(), "pg_amcheck") || v.Verified() {
		t.Fatalf("verify of a backup with a corrupt page: %v (%+v); want it failed by pg_amcheck", err, v.Verification)
	}
	t.Logf("verify: %v", err)

	// A sound backup of a sound standby verifies; on a host without the
	// cluster's store (a fresh machine), its window is said to be unknown.
	exec1(ctx, t, primary, "DROP TABLE dbha_verify_pages")
	waitUntil(t, time.Minute, "the standbys to drop the table", func() error { return pgCaughtUp(ctx, l) })
	good, err := backup.RunPostgres(ctx, backup.Job{Repo: repo, ID: "sound", Cluster: postgresCluster, Source: n3.Addr(), User: "dbha", Password: pw})
	if err != nil {
		t.Fatal(err)
	}
	v, err = backup.Verify(ctx, repo, good, backup.VerifyOptions{Owner: owner, Roles: []string{"dbha"}, Store: t.TempDir()})
	if err != nil || !strings.Contains(v.Verification.Detail, "pg_amcheck passed") || !strings.Contains(v.Verification.Detail, "point in time: not known here") {
		t.Fatalf("verify of a sound backup: %v (%+v)", err, v.Verification)
	}
}
