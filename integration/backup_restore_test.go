package integration

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dbha/dbha/backup"
	"github.com/dbha/dbha/binlog"
	"github.com/dbha/dbha/topology"
)

// The restore tests write into a table of their own, back it up from a
// replica, and check what comes back row for row: the rows committed
// before the backup and not one after; then, with dbha's change stream
// running, a point-in-time restore to a position taken in the middle of a
// write load holds exactly the rows committed up to it.

const restoreTable = "dbha_restore_rows"

func TestPostgresBackupVerifyRestore(t *testing.T) {
	l := sharedLab(t)
	waitSnapshot(t, l, postgresCluster, "a healthy cluster", healthy)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	primary := adminPG(ctx, t, l, "postgres-1")
	exec1(ctx, t, primary, "DROP TABLE IF EXISTS "+restoreTable)
	exec1(ctx, t, primary, "CREATE TABLE "+restoreTable+" (id int PRIMARY KEY, note text)")
	t.Cleanup(func() { primary.Exec(context.Background(), "DROP TABLE IF EXISTS "+restoreTable) })
	exec1(ctx, t, primary, "INSERT INTO "+restoreTable+" SELECT g, md5(g::text) FROM generate_series(1, 500) g")
	before := pgRows(ctx, t, l, "postgres-1")

	// The stream holds the WAL a point-in-time restore replays.
	storeDir := t.TempDir()
	cfg := walConfig(t, l, storeDir, fixedPrimary(addr(t, l, "postgres-1")))
	cfg.Slot = "dbha_restore_test"
	_, stopStream := runStream(ctx, t, cfg)
	t.Cleanup(func() {
		stopStream()
		primary.Exec(context.Background(), "SELECT pg_drop_replication_slot('dbha_restore_test')")
	})
	waitUntil(t, time.Minute, "the replicas to have the rows", func() error { return pgCaughtUp(ctx, l) })

	repo := t.TempDir()
	e := pgBackup(ctx, t, l, repo, "b1")
	exec1(ctx, t, primary, "INSERT INTO "+restoreTable+" VALUES (100000, 'after the backup')")

	owner := verifyAndRestore(ctx, t, topology.Postgres, repo, e, before)
	if listed, _ := backup.List(context.Background(), backup.Dir(repo), postgresCluster); len(listed) != 1 || !listed[0].Verified() {
		t.Fatalf("the verification is not in the catalog: %+v", listed)
	}

	// A cluster laid out as Debian does keeps its configuration in /etc,
	// which no backup holds: a copy without it still opens.
	debian := filepath.Join(reachableDir(t), "debian")
	if _, err := backup.Restore(ctx, backup.Dir(repo), e, backup.RestoreOptions{To: debian, Owner: owner, Roles: []string{"dbha"}}); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"postgresql.conf", "pg_hba.conf", "pg_ident.conf"} {
		if err := os.Remove(filepath.Join(debian, f)); err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
	}
	if got := restoredRows(ctx, t, topology.Postgres, debian, owner); got != before {
		t.Fatalf("the copy without its configuration files: rows %.200s, want %.200s", got, before)
	}

	// Point in time: one writer numbers its rows in order while others
	// write elsewhere; the target is taken right after row k commits.
	exec1(ctx, t, primary, "DELETE FROM "+restoreTable+" WHERE id = 100000")
	const k = 1150
	target, at := pgLoadWithTarget(ctx, t, l, "postgres-1", 1001, k)
	st := waitMariaStatus(t, storeDir, "the stream to hold the target", func(st binlog.Status) error {
		if st.Position.LSN() < target {
			return fmt.Errorf("stream at %s", st.Position)
		}
		return nil
	})
	// The same rows whether the target is the LSN or the time (to the
	// microsecond) right after row k's commit.
	for _, until := range []string{target.String(), at.Format(time.RFC3339Nano)} {
		pitr, _ := restoreUntil(ctx, t, topology.Postgres, repo, e, owner, until, storeDir)
		if got, want := restoredIDs(ctx, t, topology.Postgres, pitr, owner), idRange(500, k); got != want {
			t.Fatalf("restored to %s: ids %s, want %s (rows 1..500 and the load's rows up to %d)", until, got, want, k)
		}
	}
	// Beyond what the store holds, or before the backup: refused, with
	// what this backup reaches.
	beyond := (st.Position.LSN() + 1<<30).String()
	early := (e.StopPosition.LSN() - 1).String()
	for _, tc := range []struct{ until, why string }{{beyond, "holds up to"}, {early, "is consistent only from"}} {
		until, err := backup.ParseTarget(topology.Postgres, tc.until)
		if err != nil {
			t.Fatal(err)
		}
		_, err = backup.Restore(ctx, backup.Dir(repo), e, backup.RestoreOptions{To: filepath.Join(reachableDir(t), "refused"), Owner: owner, Roles: []string{"dbha"}, Until: until, Store: storeDir})
		if err == nil || !strings.Contains(err.Error(), tc.why) || !strings.Contains(err.Error(), "reaches LSNs from") {
			t.Errorf("restore to %s: %v; want it refused (%s) with the reachable range", tc.until, err, tc.why)
		}
	}
}

// verifyAndRestore verifies backup e, restores it, and checks that the
// restored test table is before, row for row. It returns the account the
// throwaway servers run as.
func verifyAndRestore(ctx context.Context, t *testing.T, engine topology.Engine, repo string, e backup.Entry, before string) backup.Owner {
	t.Helper()
	owner, err := backup.LookupOwner(backup.DefaultOwner(engine))
	if err != nil {
		t.Fatal(err)
	}
	verified, err := backup.Verify(ctx, backup.Dir(repo), e, backup.VerifyOptions{Owner: owner, Roles: []string{"dbha"}})
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	v := verified.Verification
	t.Logf("verify in %.2fs: %s", v.Seconds, v.Detail)
	deep := "CHECK TABLE passed on all"
	if engine == topology.Postgres {
		deep = "pg_amcheck passed"
	}
	if !v.OK || !strings.Contains(v.Detail, deep) || strings.Contains(v.Detail, "all 0 tables") {
		t.Fatalf("verification = %+v", v)
	}
	dir := filepath.Join(reachableDir(t), "restored")
	start := time.Now()
	r, err := backup.Restore(ctx, backup.Dir(repo), e, backup.RestoreOptions{To: dir, Owner: owner, Roles: []string{"dbha"}})
	if err != nil {
		t.Fatalf("restore: %v", err)
	}
	t.Logf("restore in %v: %s at %s", time.Since(start).Round(time.Millisecond), r.Detail, r.Position)
	if got := restoredRows(ctx, t, engine, dir, owner); got != before {
		t.Fatalf("the restored table differs from the source at the backup's point:\n got %.200s\nwant %.200s", got, before)
	}
	return owner
}

// restoreUntil restores backup e replayed to target from the store, and
// returns the directory and what the restore reported.
func restoreUntil(ctx context.Context, t *testing.T, engine topology.Engine, repo string, e backup.Entry, owner backup.Owner, target, store string) (string, backup.Restored) {
	t.Helper()
	dir := filepath.Join(reachableDir(t), "pitr")
	until, err := backup.ParseTarget(engine, target)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	r, err := backup.Restore(ctx, backup.Dir(repo), e, backup.RestoreOptions{To: dir, Owner: owner, Roles: []string{"dbha"}, Until: until, Store: store})
	if err != nil {
		t.Fatalf("point-in-time restore: %v", err)
	}
	t.Logf("point-in-time restore to %s in %v: %s", target, time.Since(start).Round(time.Millisecond), r.Detail)
	return dir, r
}

func pgBackup(ctx context.Context, t *testing.T, l *Lab, repo, id string) backup.Entry {
	t.Helper()
	source, err := backup.ChooseSource(discover(t, l, postgresCluster), backup.SourcePolicy{})
	if err != nil {
		t.Fatal(err)
	}
	pw, err := readPassword(l.Secret("postgres-dbha"))
	if err != nil {
		t.Fatal(err)
	}
	e, err := backup.RunPostgres(ctx, backup.Job{Repo: backup.Dir(repo), ID: id, Cluster: postgresCluster, Source: source.Addr, User: "dbha", Password: pw})
	if err != nil {
		t.Fatalf("backup: %v", err)
	}
	return e
}

func pgCaughtUp(ctx context.Context, l *Lab) error {
	want, err := l.AdminPostgres(ctx, "postgres-1")
	if err != nil {
		return err
	}
	defer want.Close(ctx)
	var lsn string
	if err := want.QueryRow(ctx, "SELECT pg_current_wal_lsn()::text").Scan(&lsn); err != nil {
		return err
	}
	for _, n := range []string{"postgres-2", "postgres-3"} {
		c, err := l.AdminPostgres(ctx, n)
		if err != nil {
			return err
		}
		var behind bool
		err = c.QueryRow(ctx, "SELECT pg_last_wal_replay_lsn() < $1::pg_lsn", lsn).Scan(&behind)
		c.Close(ctx)
		if err != nil || behind {
			return fmt.Errorf("%s behind %s (%v)", n, lsn, err)
		}
	}
	return nil
}

// pgRows dumps the test table of a lab node, ordered.
func pgRows(ctx context.Context, t *testing.T, l *Lab, name string) string {
	t.Helper()
	c := adminPG(ctx, t, l, name)
	var s string
	if err := c.QueryRow(ctx, "SELECT coalesce(string_agg(id || ':' || note, ',' ORDER BY id), '') FROM "+restoreTable).Scan(&s); err != nil {
		t.Fatal(err)
	}
	return s
}

// pgLoadWithTarget runs a write load on the primary node: one session
// inserts rows from, from+1, ... from+299 in order, each its own
// transaction, and right after row k reads the WAL position and the
// clock; three more sessions write to another table all along. It returns
// that position and time.
func pgLoadWithTarget(ctx context.Context, t *testing.T, l *Lab, node string, from, k int) (topology.LSN, time.Time) {
	t.Helper()
	noise := adminPG(ctx, t, l, node)
	exec1(ctx, t, noise, "CREATE TABLE IF NOT EXISTS dbha_restore_noise (id serial PRIMARY KEY, at timestamptz DEFAULT now())")
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 3 {
		c := adminPG(ctx, t, l, node)
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				c.Exec(ctx, "INSERT INTO dbha_restore_noise DEFAULT VALUES")
			}
		})
	}
	w := adminPG(ctx, t, l, node)
	var target topology.LSN
	var at time.Time
	for id := from; id < from+300; id++ {
		exec1(ctx, t, w, fmt.Sprintf("INSERT INTO %s VALUES (%d, 'load')", restoreTable, id))
		if id == k {
			target = currentLSN(ctx, t, w)
			// Between row k's commit and row k+1's, to the microsecond.
			if err := w.QueryRow(ctx, "SELECT clock_timestamp()").Scan(&at); err != nil {
				t.Fatal(err)
			}
		}
	}
	close(stop)
	wg.Wait()
	exec1(ctx, t, noise, "DROP TABLE dbha_restore_noise")
	return target, at
}

// restoredRows starts a throwaway server on a restored directory and dumps
// the test table, ordered.
func restoredRows(ctx context.Context, t *testing.T, engine topology.Engine, dir string, owner backup.Owner) string {
	t.Helper()
	srv, err := backup.StartServer(ctx, engine, dir, backup.ServerOptions{Owner: owner, Roles: []string{"dbha"}})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Stop()
	return dumpRows(ctx, t, serverDB(t, srv, engine), engine)
}

// dumpRows writes the test table as id:note,id:note,... ordered by id.
func dumpRows(ctx context.Context, t *testing.T, db *sql.DB, engine topology.Engine) string {
	t.Helper()
	table := restoreTable
	if engine != topology.Postgres {
		table = "dbha_lab." + restoreTable
	}
	rows, err := db.QueryContext(ctx, "SELECT id, note FROM "+table+" ORDER BY id")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var id int
		var note string
		if err := rows.Scan(&id, &note); err != nil {
			t.Fatal(err)
		}
		out = append(out, fmt.Sprintf("%d:%s", id, note))
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return strings.Join(out, ",")
}

// restoredIDs gives the ids of the test table as ranges ("1-500,1001-1150").
func restoredIDs(ctx context.Context, t *testing.T, engine topology.Engine, dir string, owner backup.Owner) string {
	t.Helper()
	table := restoreTable
	if engine != topology.Postgres {
		table = "dbha_lab." + restoreTable
	}
	q := "SELECT id FROM " + table + " ORDER BY id" // every row, in order
	srv, err := backup.StartServer(ctx, engine, dir, backup.ServerOptions{Owner: owner, Roles: []string{"dbha"}})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Stop()
	db := serverDB(t, srv, engine)
	rows, err := db.QueryContext(ctx, q)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var ids []int
	for rows.Next() {
		var id int
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	return ranges(ids)
}

func serverDB(t *testing.T, srv *backup.Server, engine topology.Engine) *sql.DB {
	t.Helper()
	database := ""
	if engine == topology.Postgres {
		database = "dbha_lab"
	}
	db, err := srv.DB(database)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// ranges writes sorted ids as runs: 1-3,7,9-10.
func ranges(ids []int) string {
	var b strings.Builder
	for i := 0; i < len(ids); {
		j := i
		for j+1 < len(ids) && ids[j+1] == ids[j]+1 {
			j++
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		if i == j {
			fmt.Fprintf(&b, "%d", ids[i])
		} else {
			fmt.Fprintf(&b, "%d-%d", ids[i], ids[j])
		}
		i = j + 1
	}
	return b.String()
}

// idRange is what ranges gives for rows 1..base and 1001..k.
func idRange(base, k int) string { return fmt.Sprintf("1-%d,1001-%d", base, k) }

// reachableDir is a temporary directory the database servers' accounts
// may enter.
func reachableDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, d := range []string{dir, filepath.Dir(dir)} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestMariaDBBackupVerifyRestore(t *testing.T) {
	l := sharedLab(t)
	waitSnapshot(t, l, mariadbCluster, "a healthy cluster", healthy)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	primary := mysqlDB(t, l, "mariadb-1")
	mustExec(t, primary, "DROP TABLE IF EXISTS dbha_lab."+restoreTable)
	mustExec(t, primary, "CREATE TABLE dbha_lab."+restoreTable+" (id INT PRIMARY KEY, note VARCHAR(64))")
	t.Cleanup(func() { primary.Exec("DROP TABLE IF EXISTS dbha_lab." + restoreTable) })
	mustExec(t, primary, "INSERT INTO dbha_lab."+restoreTable+" SELECT seq, MD5(seq) FROM dbha_lab.seq_1_to_500")
	before := dumpRows(ctx, t, primary, topology.MariaDB)

	storeDir := t.TempDir()
	startMariaStream(t, l, storeDir, "mariadb-1")
	mariaHolds(t, l, storeDir, "mariadb-1")
	pos := mariaBinlogPos(t, l, "mariadb-1")
	for _, n := range []string{"mariadb-2", "mariadb-3"} {
		db := mysqlDB(t, l, n)
		waitUntil(t, time.Minute, n+" to have the rows", func() error { return replicaCaughtUp(ctx, db, pos) })
	}

	repo := t.TempDir()
	source, err := backup.ChooseSource(discover(t, l, mariadbCluster), backup.SourcePolicy{})
	if err != nil {
		t.Fatal(err)
	}
	n, err := l.NodeByAddr(source.Addr)
	if err != nil {
		t.Fatal(err)
	}
	pw, err := readPassword(l.Secret("mariadb-admin"))
	if err != nil {
		t.Fatal(err)
	}
	e, err := backup.RunMariaDB(ctx, backup.Job{Repo: backup.Dir(repo), ID: "b1", Cluster: mariadbCluster, Source: source.Addr,
		User: "admin", Password: pw, DataDir: n.DataDir})
	if err != nil {
		t.Fatalf("backup: %v", err)
	}
	mustExec(t, primary, "INSERT INTO dbha_lab."+restoreTable+" VALUES (100000, 'after the backup')")

	owner := verifyAndRestore(ctx, t, topology.MariaDB, repo, e, before)

	mustExec(t, primary, "DELETE FROM dbha_lab."+restoreTable+" WHERE id = 100000")
	target, k := mariaLoadWithTarget(ctx, t, l)
	waitMariaStatus(t, storeDir, "the stream to hold the target", func(st binlog.Status) error {
		if o, err := topology.Compare(st.Position, target); err != nil || o == topology.Behind {
			return fmt.Errorf("stream at %s, target %s", st.Position, target)
		}
		return nil
	})
	pitr, r := restoreUntil(ctx, t, topology.MariaDB, repo, e, owner, target.String(), storeDir)
	if got, want := restoredIDs(ctx, t, topology.MariaDB, pitr, owner), idRange(500, k); got != want {
		t.Fatalf("restored to %s: ids %s, want %s", target, got, want)
	}
	if r.Position.String() != target.String() {
		t.Errorf("restore reports %s, want %s", r.Position, target)
	}
}

// mariaLoadWithTarget is pgLoadWithTarget for MariaDB: the target is the
// GTID of row k's commit (@@last_gtid of the writer's session).
func mariaLoadWithTarget(ctx context.Context, t *testing.T, l *Lab) (topology.Position, int) {
	t.Helper()
	db := mysqlDB(t, l, "mariadb-1")
	mustExec(t, db, "CREATE TABLE IF NOT EXISTS dbha_lab.dbha_restore_noise (id INT AUTO_INCREMENT PRIMARY KEY, at TIMESTAMP(6) DEFAULT CURRENT_TIMESTAMP(6))")
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				db.ExecContext(ctx, "INSERT INTO dbha_lab.dbha_restore_noise () VALUES ()")
			}
		})
	}
	w, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	const k = 1150
	var target topology.Position
	for id := 1001; id <= 1300; id++ {
		if _, err := w.ExecContext(ctx, fmt.Sprintf("INSERT INTO dbha_lab.%s VALUES (%d, 'load')", restoreTable, id)); err != nil {
			t.Fatal(err)
		}
		if id == k {
			var g string
			if err := w.QueryRowContext(ctx, "SELECT @@last_gtid").Scan(&g); err != nil {
				t.Fatal(err)
			}
			if target, err = topology.ParseMariaDB(g); err != nil {
				t.Fatal(err)
			}
		}
	}
	close(stop)
	wg.Wait()
	mustExec(t, db, "DROP TABLE dbha_lab.dbha_restore_noise")
	return target, k
}

// TestBackupReseedCLI runs what an operator runs, on both engines: backup
// run, verify, a verify that names an altered file, and reseed of a
// replica, which then replicates and has the rows written after the
// backup.
func TestBackupReseedCLI(t *testing.T) {
	bin := dbhaBinary(t)
	// A lab of its own: the reseed restarts nodes through `dbha lab`, which
	// records their new PIDs on disk, not in the shared lab's memory.
	l := binLab(t, bin)
	for _, cluster := range []string{mariadbCluster, postgresCluster} {
		t.Run(cluster, func(t *testing.T) {
			kind := strings.TrimPrefix(cluster, "lab-")
			waitSnapshot(t, l, cluster, "a healthy cluster", healthy)
			run := func(args ...string) cliResult {
				t.Helper()
				return dbhaCLI(t, bin, l, append(args, "--cluster", cluster)...)
			}
			id := func(r cliResult) string {
				t.Helper()
				var doc struct {
					Backups []backup.Entry `json:"backups"`
				}
				if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil || r.code != 0 || len(doc.Backups) != 1 {
					t.Fatalf("backup run: %v\n%s", err, r)
				}
				return doc.Backups[0].ID
			}
			good := id(run("backup", "run", "-o", "json"))
			if r := run("backup", "verify", good); r.code != 0 || !strings.Contains(r.stdout, "verified true") {
				t.Fatalf("verify: %s", r)
			}

			// An altered file: verify names it, fails, and records the failure.
			bad := id(run("backup", "run", "-o", "json"))
			e := showBackup(t, bin, l, cluster, bad)
			altered := filepath.Join(backup.EntryDir(labRepo(l), cluster, bad), e.Files[0].Name)
			flipByte(t, altered)
			r := run("backup", "verify", bad)
			if r.code != 1 || !strings.Contains(r.stderr+r.stdout, e.Files[0].Name) {
				t.Fatalf("verify of an altered backup: %s", r)
			}
			if v := showBackup(t, bin, l, cluster, bad).Verification; v == nil || v.OK {
				t.Fatalf("the failed verification is not recorded: %+v", v)
			}

			// Rows written after the backup reach the reseeded replica from
			// the primary.
			writeMarker(t, l, kind)
			replica := addr(t, l, kind+"-3")
			r = run("backup", "reseed", "--instance", replica, "--force")
			if r.code != 0 {
				t.Fatalf("reseed: %s", r)
			}
			t.Logf("reseed: %s", strings.TrimSpace(r.stdout))
			n, err := l.NodeByAddr(replica)
			if err != nil {
				t.Fatal(err)
			}
			previous, _ := filepath.Glob(n.DataDir + ".before-reseed-*")
			if len(previous) != 1 {
				t.Fatalf("the former data directory was not kept aside: %v", previous)
			}
			os.RemoveAll(previous[0])
			if !strings.Contains(r.stdout, "rebuilt from backup "+good) {
				t.Errorf("reseed did not use the newest verified backup %s: %s", good, r.stdout)
			}
			waitSnapshot(t, l, cluster, "a healthy cluster after the reseed", healthy)
			waitUntil(t, time.Minute, "the marker row on the reseeded replica", func() error { return hasMarker(l, kind) })
		})
	}
}

// flipByte inverts the byte in the middle of a file, keeping its size.
func flipByte(t *testing.T, path string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, st.Size()/2); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0xff
	if _, err := f.WriteAt(b, st.Size()/2); err != nil {
		t.Fatal(err)
	}
}

func showBackup(t *testing.T, bin string, l *Lab, cluster, id string) backup.Entry {
	t.Helper()
	r := dbhaCLI(t, bin, l, "backup", "show", id, "--cluster", cluster)
	var e backup.Entry
	if err := json.Unmarshal([]byte(r.stdout), &e); err != nil || r.code != 0 {
		t.Fatalf("backup show: %v\n%s", err, r)
	}
	return e
}

// labRepo is the lab's backup repository (state_dir/backups).
func labRepo(l *Lab) string { return filepath.Join(l.Dir, "state", "backups") }

const markerTable = "dbha_reseed_marker"

func writeMarker(t *testing.T, l *Lab, kind string) {
	t.Helper()
	ctx := context.Background()
	if kind == "postgres" {
		c := adminPG(ctx, t, l, "postgres-1")
		exec1(ctx, t, c, "CREATE TABLE IF NOT EXISTS "+markerTable+" (id int)")
		exec1(ctx, t, c, "INSERT INTO "+markerTable+" VALUES (1)")
		t.Cleanup(func() { c.Exec(context.Background(), "DROP TABLE IF EXISTS "+markerTable) })
		return
	}
	db := mysqlDB(t, l, "mariadb-1")
	mustExec(t, db, "CREATE TABLE IF NOT EXISTS dbha_lab."+markerTable+" (id INT PRIMARY KEY)", "INSERT INTO dbha_lab."+markerTable+" VALUES (1)")
	t.Cleanup(func() { db.Exec("DROP TABLE IF EXISTS dbha_lab." + markerTable) })
}

func hasMarker(l *Lab, kind string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var n int
	if kind == "postgres" {
		c, err := l.AdminPostgres(ctx, "postgres-3")
		if err != nil {
			return err
		}
		defer c.Close(ctx)
		if err := c.QueryRow(ctx, "SELECT count(*) FROM "+markerTable).Scan(&n); err != nil {
			return err
		}
	} else {
		db, err := l.AdminMySQL("mariadb-3")
		if err != nil {
			return err
		}
		defer db.Close()
		if err := db.QueryRowContext(ctx, "SELECT count(*) FROM dbha_lab."+markerTable).Scan(&n); err != nil {
			return err
		}
	}
	if n != 1 {
		return fmt.Errorf("%d marker rows", n)
	}
	return nil
}

// TestBackupSourceDiesMidRun kills the source standby while pg_basebackup
// copies it (throttled, so that it is caught in the middle): the backup
// is recorded failed with the tool's reason and leaves no partial files.
func TestBackupSourceDiesMidRun(t *testing.T) {
	l := sharedLab(t)
	waitSnapshot(t, l, postgresCluster, "a healthy cluster", healthy)
	pw, err := readPassword(l.Secret("postgres-dbha"))
	if err != nil {
		t.Fatal(err)
	}
	repo := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	done := startBackup(ctx, backup.Job{Repo: backup.Dir(repo), ID: "b1", Cluster: postgresCluster, Source: addr(t, l, "postgres-3"),
		User: "dbha", Password: pw, MaxRate: 1 << 20})
	data := filepath.Join(backup.EntryDir(repo, postgresCluster, "b1"), "data")
	waitUntil(t, 30*time.Second, "pg_basebackup to be copying", func() error {
		if size, _ := binlog.DirBytes(data); size < 1<<20 {
			return fmt.Errorf("%d bytes copied", size)
		}
		return nil
	})
	if err := l.Signal("postgres-3", syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := l.Start(context.Background(), "postgres-3"); err != nil {
			t.Errorf("restart postgres-3: %v", err)
		}
		waitSnapshot(t, l, postgresCluster, "a healthy cluster again", healthy)
	})
	var r backupResult
	select {
	case r = <-done:
	case <-ctx.Done():
		t.Fatal("the backup did not end after its source died")
	}
	t.Logf("backup after its source died: %v", r.err)
	if r.err == nil || r.e.Status != backup.Failed || !strings.Contains(r.e.Error, "pg_basebackup") {
		t.Fatalf("entry %+v, err %v", r.e, r.err)
	}
	if _, err := os.Stat(data); !os.IsNotExist(err) {
		t.Errorf("partial files left behind: %v", err)
	}
	if listed, _ := backup.List(context.Background(), backup.Dir(repo), postgresCluster); len(listed) != 1 || listed[0].Status != backup.Failed || listed[0].Error == "" {
		t.Fatalf("catalog = %+v", listed)
	}
}

// TestBackupRepositoryFull takes a backup into a repository too small for
// it (a 3 MB tmpfs): recorded failed with the reason, no partial files.
func TestBackupRepositoryFull(t *testing.T) {
	l := sharedLab(t)
	repo := t.TempDir()
	if err := syscall.Mount("tmpfs", repo, "tmpfs", 0, "size=3m"); err != nil {
		t.Fatalf("mount a small tmpfs: %v", err)
	}
	t.Cleanup(func() { syscall.Unmount(repo, syscall.MNT_DETACH) })
	pw, err := readPassword(l.Secret("postgres-dbha"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	e, err := backup.RunPostgres(ctx, backup.Job{Repo: backup.Dir(repo), ID: "b1", Cluster: postgresCluster, Source: addr(t, l, "postgres-2"), User: "dbha", Password: pw})
	t.Logf("backup into a full repository: %v", err)
	if err == nil || e.Status != backup.Failed || !strings.Contains(e.Error, "No space left") {
		t.Fatalf("entry %+v, err %v", e, err)
	}
	if _, err := os.Stat(filepath.Join(backup.EntryDir(repo, postgresCluster, "b1"), "data")); !os.IsNotExist(err) {
		t.Errorf("partial files left behind: %v", err)
	}
	if listed, _ := backup.List(context.Background(), backup.Dir(repo), postgresCluster); len(listed) != 1 || listed[0].Status != backup.Failed {
		t.Fatalf("catalog = %+v", listed)
	}
}

// TestBackupCancelledEndsItsTools cancels a throttled PostgreSQL backup in
// the middle: pg_basebackup and the child that streams its WAL are both
// gone when the run returns (killing the parent alone left the child
// streaming, and the run waiting on it), and the entry is failed with no
// partial files.
func TestBackupCancelledEndsItsTools(t *testing.T) {
	l := sharedLab(t)
	pw, err := readPassword(l.Secret("postgres-dbha"))
	if err != nil {
		t.Fatal(err)
	}
	repo := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := startBackup(ctx, backup.Job{Repo: backup.Dir(repo), ID: "cancelled", Cluster: postgresCluster, Source: addr(t, l, "postgres-2"),
		User: "dbha", Password: pw, MaxRate: 256 << 10})
	data := filepath.Join(backup.EntryDir(repo, postgresCluster, "cancelled"), "data")
	waitUntil(t, 30*time.Second, "pg_basebackup and its WAL streamer to be running", func() error {
		if n := len(toolProcesses("dbha cancelled")); n < 2 {
			return fmt.Errorf("%d processes", n)
		}
		return nil
	})
	cancel()
	var r backupResult
	select {
	case r = <-done:
	case <-time.After(30 * time.Second):
		t.Fatalf("the backup did not return 30 s after it was cancelled; processes %v", toolProcesses("dbha cancelled"))
	}
	t.Logf("cancelled backup: %v", r.err)
	if left := toolProcesses("dbha cancelled"); len(left) > 0 {
		t.Errorf("pg_basebackup processes left running: %v", left)
	}
	if r.err == nil || r.e.Status != backup.Failed {
		t.Fatalf("entry %+v, err %v", r.e, r.err)
	}
	if _, err := os.Stat(data); !os.IsNotExist(err) {
		out, _ := exec.Command("find", filepath.Dir(data), "-ls").CombinedOutput()
		t.Errorf("partial files left behind: %v\n%s", err, out)
	}
}

// backupResult is what a PostgreSQL backup run in the background returned.
type backupResult struct {
	e   backup.Entry
	err error
}

// startBackup runs job in the background; its result comes on the channel.
func startBackup(ctx context.Context, job backup.Job) <-chan backupResult {
	done := make(chan backupResult, 1)
	go func() {
		e, err := backup.RunPostgres(ctx, job)
		done <- backupResult{e, err}
	}()
	return done
}

// toolProcesses lists the live processes (not zombies) with arg among
// their arguments, by PID.
func toolProcesses(arg string) []int {
	dirs, _ := os.ReadDir("/proc")
	var out []int
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", d.Name(), "cmdline"))
		if err != nil || !slices.Contains(strings.Split(string(cmdline), "\x00"), arg) {
			continue
		}
		if stat, err := os.ReadFile(filepath.Join("/proc", d.Name(), "stat")); err == nil && strings.Contains(string(stat), ") Z ") {
			continue
		}
		out = append(out, pid)
	}
	return out
}
