package integration

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/dbha/dbha/checksum"
)

// checksumLoad runs writers against the primary until stop is called:
// each inserts rows and updates others, as an application would.
func checksumLoad(t *testing.T, exec func(ctx context.Context, writer int, i int64) error, writers int) (count func() int64, stop func() int64) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var done atomic.Int64
	for w := range writers {
		wg.Go(func() {
			for i := int64(0); ctx.Err() == nil && i < 1_000_000; i++ {
				if err := exec(ctx, w, i); err != nil && ctx.Err() == nil {
					t.Errorf("writer %d: %v", w, err)
					return
				}
				done.Add(1)
				time.Sleep(2 * time.Millisecond)
			}
		})
	}
	return done.Load, func() int64 { cancel(); wg.Wait(); return done.Load() }
}

// checkUnderLoad runs dbha checksum on cluster three times while the load
// writes, and checks that each found no difference, compared everything,
// and overlapped writes.
func checkUnderLoad(t *testing.T, bin string, l *Lab, cluster string, writes func() int64) []checksum.Report {
	t.Helper()
	var out []checksum.Report
	for run := 1; run <= 3; run++ {
		before := writes()
		r := dbhaCLI(t, bin, l, "checksum", "--cluster", cluster, "--chunk-time", "20ms", "-o", "json")
		during := writes() - before
		rep := checksumReport(t, r)
		if r.code != 0 || rep.Differences() != 0 || !rep.Complete() || len(rep.Replicas) != 2 {
			t.Fatalf("run %d under load: exit %d, report %+v\n%s", run, r.code, rep, r.stderr)
		}
		if during == 0 {
			t.Fatalf("run %d: no write during the check", run)
		}
		var chunks int
		var rows int64
		for _, tr := range rep.Tables {
			chunks, rows = chunks+tr.Chunks, rows+tr.Rows
		}
		var changing int64
		for _, tr := range rep.Tables {
			changing += tr.Changing
		}
		t.Logf("run %d: %d tables, %d chunks, %d rows in %v, %d writes meanwhile: no difference (%d rows changed while compared)", run,
			len(rep.Tables), chunks, rows, rep.Finished.Sub(rep.Started).Round(time.Millisecond), during, changing)
		out = append(out, rep)
	}
	return out
}

func checksumReport(t *testing.T, r cliResult) checksum.Report {
	t.Helper()
	var rep checksum.Report
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("dbha checksum -o json: %v\nstdout:\n%s\nstderr:\n%s", err, r.stdout, r.stderr)
	}
	return rep
}

// startChecksum starts `dbha checksum --cluster cluster -o json args...`
// in the background: done gets its result once it exits. A run still
// going when the test ends is killed.
func startChecksum(t *testing.T, bin string, l *Lab, cluster string, args ...string) (done <-chan cliResult, proc *os.Process) {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"--config", l.ConfigPath, "checksum", "--cluster", cluster, "-o", "json"}, args...)...)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	result := make(chan cliResult, 1)
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		close(exited)
		result <- cliResult{stdout: stdout.String(), stderr: stderr.String(), code: cmd.ProcessState.ExitCode()}
	}()
	t.Cleanup(func() {
		select {
		case <-exited:
		default:
			cmd.Process.Kill()
			<-exited
		}
	})
	return result, cmd.Process
}

// inChunk says whether key lies in (d.Lower, d.Upper] for an integer key.
func inChunk(d checksum.Difference, key int) bool {
	atoi := func(k checksum.Key) int { n, _ := strconv.Atoi(k[0]); return n }
	return (d.Lower == nil || atoi(d.Lower) < key) && (d.Upper == nil || key <= atoi(d.Upper))
}

// MariaDB: checksums under a write load find no difference, run after run;
// a row changed on one replica alone (sql_log_bin=0) is found in the
// right table, chunk and replica; a table without a key, an empty one and
// a composite key are each checked.
func TestChecksumMariaDB(t *testing.T) {
	bin := dbhaBinary(t)
	l := binLab(t, bin)
	ctx := t.Context()
	db := mysqlDB(t, l, "mariadb-1")
	for _, q := range []string{
		"CREATE DATABASE ck",
		"CREATE TABLE ck.items (id INT PRIMARY KEY, v VARCHAR(64) NOT NULL, n INT NULL)",
		"CREATE TABLE ck.pairs (a INT NOT NULL, b VARCHAR(16) NOT NULL, v INT, PRIMARY KEY (a, b))",
		"CREATE TABLE ck.nokey (v INT)",
		"CREATE TABLE ck.empty (id INT PRIMARY KEY)",
		"INSERT INTO ck.items SELECT seq, CONCAT('item-', seq), IF(seq % 7 = 0, NULL, seq) FROM mysql.seq_1_to_20000",
		"INSERT INTO ck.pairs SELECT seq % 50, CONCAT('b', seq), seq FROM mysql.seq_1_to_3000",
		"INSERT INTO ck.nokey SELECT seq FROM mysql.seq_1_to_100",
	} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	writes, stop := checksumLoad(t, func(ctx context.Context, w int, i int64) error {
		id := 100_000 + w*1_000_000 + int(i)
		if _, err := db.ExecContext(ctx, "INSERT INTO ck.items VALUES (?, 'new', ?)", id, i); err != nil {
			return err
		}
		_, err := db.ExecContext(ctx, "UPDATE ck.items SET n = COALESCE(n, 0) + 1 WHERE id = ?", 1+(int(i)*37+w*101)%20000)
		if err != nil {
			return err
		}
		_, err = db.ExecContext(ctx, "UPDATE ck.pairs SET v = v + 1 WHERE a = ? LIMIT 3", (int(i)+w)%50)
		return err
	}, 4)
	defer stop()
	for run, rep := range checkUnderLoad(t, bin, l, mariadbCluster, writes) {
		tables := map[string]checksum.TableReport{}
		for _, tr := range rep.Tables {
			tables[tr.Table] = tr
		}
		if items := tables["ck.items"]; items.Chunks < 2 || items.Rows < 20000 {
			t.Errorf("run %d: ck.items in %d chunks, %d rows: want several chunks over every row", run, items.Chunks, items.Rows)
		}
		if tables["ck.nokey"].Chunks != 1 || tables["ck.nokey"].Rows != 100 || tables["ck.empty"].Chunks != 1 || tables["ck.pairs"].Rows != 3000 {
			t.Errorf("run %d: tables %+v", run, tables)
		}
	}
	t.Logf("%d writes during the three runs", stop())

	// A row changed on mariadb-3 alone.
	replica := addr(t, l, "mariadb-3")
	rdb := mysqlDB(t, l, "mariadb-3")
	conn, err := rdb.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for _, q := range []string{"SET SESSION sql_log_bin = 0", "UPDATE ck.items SET v = 'changed on the replica' WHERE id = 12345"} {
		if _, err := conn.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	r := dbhaCLI(t, bin, l, "checksum", "--cluster", mariadbCluster, "--chunk-time", "50ms", "-o", "json")
	rep := checksumReport(t, r)
	if r.code != 1 || rep.Differences() != 1 {
		t.Fatalf("after a change on %s alone: exit %d, %d differences\n%s", replica, r.code, rep.Differences(), r.stdout)
	}
	for _, tr := range rep.Tables {
		for _, d := range tr.Differences {
			if tr.Table != "ck.items" || d.Replica != replica || !inChunk(d, 12345) || d.PrimaryRows != d.ReplicaRows {
				t.Errorf("difference %s %+v: want ck.items, %s, the chunk holding id 12345", tr.Table, d, replica)
			}
		}
	}
	// The difference is recorded in Consul: a promotion to mariadb-3 is
	// refused without --force, its dry run plans the same, and dbha run
	// reports it as a finding.
	c := consulClient(t, l)
	if inc, err := c.Inconsistent(ctx, mariadbCluster); err != nil || !strings.Contains(inc[replica], "ck.items") {
		t.Fatalf("what Consul holds of the checksum: %v, %v", inc, err)
	}
	if r := dbhaCLI(t, bin, l, "promote", "--cluster", mariadbCluster, "--to", replica); r.code == 0 || !strings.Contains(r.stderr, "differs from the primary") {
		t.Errorf("a switchover to the inconsistent %s: exit %d\n%s%s", replica, r.code, r.stdout, r.stderr)
	}
	checkDryRunConsistency(t, bin, l, mariadbCluster, replica, "ck.items")
	run := startDbhaRun(t, bin, l, "checksum-test")
	waitUntil(t, 30*time.Second, "dbha run to report ReplicaInconsistent", func() error {
		if f := run.appeared(mariadbCluster, "ReplicaInconsistent"); len(f) == 0 {
			return errors.New("not reported yet")
		}
		return nil
	})

	// pt-table-checksum on the same data finds the same table, replica and row.
	ptDiffs := ptTableChecksum(t, l, "ck")
	if len(ptDiffs) != 1 || ptDiffs[0].replica != "mariadb-3" || ptDiffs[0].table != "ck.items" || !ptDiffs[0].holds(12345) {
		t.Errorf("pt-table-checksum's differences %+v: want ck.items on mariadb-3, the chunk holding id 12345", ptDiffs)
	}
	text := dbhaCLI(t, bin, l, "checksum", "--cluster", mariadbCluster, "--table", "ck.items", "--table", "ck.nosuch", "--rows")
	if text.code != 1 || !strings.Contains(text.stdout, "DIFFERENT: ck.items chunk") || !strings.Contains(text.stdout, "skipped: ck.nosuch") ||
		!strings.Contains(text.stdout, "  row 12345\n") {
		t.Errorf("text output with --rows: exit %d\n%s", text.code, text.stdout)
	}
	// A table named that does not exist is a usage error when nothing differs.
	if r := dbhaCLI(t, bin, l, "checksum", "--cluster", mariadbCluster, "--table", "ck.empty", "--table", "ck.nosuch"); r.code != 2 || !strings.Contains(r.stderr, "no such table: ck.nosuch") {
		t.Errorf("a missing table named: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}

	// A busy primary: four sessions in SLEEP, two more than --max-load
	// allows over what runs now (Threads_running counts the replication
	// dump threads too, as pt-table-checksum's --max-load does). The run
	// says it pauses, and finishes once they are done.
	threadsRunning := func() (int, error) {
		var name string
		var n int
		err := db.QueryRowContext(ctx, "SHOW GLOBAL STATUS LIKE 'Threads_running'").Scan(&name, &n)
		return n, err
	}
	base, err := threadsRunning()
	if err != nil {
		t.Fatal(err)
	}
	var sleepers sync.WaitGroup
	for range 4 {
		sleepers.Go(func() {
			if _, err := db.ExecContext(ctx, "SELECT SLEEP(3)"); err != nil {
				t.Error(err)
			}
		})
	}
	waitUntil(t, 10*time.Second, "the sleeping sessions", func() error {
		if n, err := threadsRunning(); err != nil || n < base+4 {
			return fmt.Errorf("%d threads running (%v)", n, err)
		}
		return nil
	})
	// The run's own session is not counted: base (with this test's) + 1.
	limit := strconv.Itoa(base + 1)
	busy := dbhaCLI(t, bin, l, "checksum", "--cluster", mariadbCluster, "--table", "ck.empty", "--max-load", limit)
	sleepers.Wait()
	if busy.code != 0 || !strings.Contains(busy.stderr, "checksum paused: ") || !strings.Contains(busy.stderr, "run statements on the primary, more than "+limit) {
		t.Errorf("a check while the primary is busy: exit %d\n%s%s", busy.code, busy.stdout, busy.stderr)
	}

	// --rows names the rows of a composite key that differ: one deleted
	// and one changed on mariadb-3 alone.
	for _, q := range []string{"DELETE FROM ck.pairs WHERE a = 7 AND b = 'b7'", "UPDATE ck.pairs SET v = -1 WHERE a = 8 AND b = 'b1058'"} {
		if _, err := conn.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	r = dbhaCLI(t, bin, l, "checksum", "--cluster", mariadbCluster, "--table", "ck.pairs", "--rows", "--chunk-time", "20ms", "-o", "json")
	rep = checksumReport(t, r)
	var named []string
	for _, tr := range rep.Tables {
		for _, d := range tr.Differences {
			if d.Replica != replica {
				t.Errorf("ck.pairs differs on %s: %+v", d.Replica, d)
			}
			for _, k := range d.Keys {
				named = append(named, k.String())
			}
		}
	}
	slices.Sort(named)
	if r.code != 1 || !slices.Equal(named, []string{"7,b7", "8,b1058"}) {
		t.Errorf("--rows on ck.pairs: exit %d, rows named %q, want 7,b7 and 8,b1058\n%s", r.code, named, r.stdout)
	}
	// Each run's whole report is kept in state_dir, the newest last.
	reports, _ := filepath.Glob(filepath.Join(labConfig(t, l).StateDir, "checksum", "reports", mariadbCluster, "*.json"))
	if len(reports) < 5 {
		t.Fatalf("reports kept: %v, want one per run", reports)
	}
	b, err := os.ReadFile(reports[len(reports)-1])
	if kept := (checksum.Report{}); err != nil || json.Unmarshal(b, &kept) != nil || !kept.Started.Equal(rep.Started) || kept.Differences() != rep.Differences() {
		t.Errorf("the newest report kept (%v) is not the last run's: %s", err, b)
	}

	// The replica mended, a check of the tables clears it everywhere.
	var v7, v8 int
	if err := db.QueryRowContext(ctx, "SELECT (SELECT v FROM ck.pairs WHERE a = 7 AND b = 'b7'), (SELECT v FROM ck.pairs WHERE a = 8 AND b = 'b1058')").Scan(&v7, &v8); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{"UPDATE ck.items SET v = 'item-12345' WHERE id = 12345",
		fmt.Sprintf("INSERT INTO ck.pairs VALUES (7, 'b7', %d)", v7),
		fmt.Sprintf("UPDATE ck.pairs SET v = %d WHERE a = 8 AND b = 'b1058'", v8)} {
		if _, err := conn.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	if r := dbhaCLI(t, bin, l, "checksum", "--cluster", mariadbCluster, "--table", "ck.items", "--table", "ck.pairs"); r.code != 0 {
		t.Fatalf("after mending the row: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if inc, err := c.Inconsistent(ctx, mariadbCluster); err != nil || len(inc) != 0 {
		t.Errorf("Consul after the clean check: %v, %v", inc, err)
	}
	waitUntil(t, 30*time.Second, "dbha run to clear ReplicaInconsistent", func() error {
		for _, r := range run.records(mariadbCluster, "finding cleared") {
			if r.Code == "ReplicaInconsistent" {
				return nil
			}
		}
		return errors.New("not cleared yet")
	})
}

// PostgreSQL: checksums under a write load find no difference, run after
// run; a row changed in a standby's data file while it was stopped (the
// only way a standby's data changes) is found in the right chunk.
func TestChecksumPostgres(t *testing.T) {
	bin := dbhaBinary(t)
	l := binLab(t, bin)
	ctx := t.Context()
	conn, err := l.AdminPostgres(ctx, "postgres-1")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	for _, q := range []string{
		"CREATE TABLE items (id int PRIMARY KEY, v text NOT NULL, n int)",
		"CREATE TABLE pairs (a int NOT NULL, b text NOT NULL, v int, PRIMARY KEY (a, b))",
		"CREATE TABLE nokey (v int)",
		"CREATE TABLE empty (id int PRIMARY KEY)",
		"INSERT INTO items SELECT g, 'item-' || g, CASE WHEN g % 7 = 0 THEN NULL ELSE g END FROM generate_series(1, 20000) g",
		"UPDATE items SET v = 'DBHA-MARKER-AAAA' WHERE id = 12345",
		"INSERT INTO pairs SELECT g % 50, 'b' || g, g FROM generate_series(1, 3000) g",
		"INSERT INTO nokey SELECT g FROM generate_series(1, 100) g",
	} {
		if _, err := conn.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	writer, err := l.AdminPostgres(ctx, "postgres-1")
	if err != nil {
		t.Fatal(err)
	}
	defer writer.Close(context.Background())
	var mu sync.Mutex // one pgx.Conn, several writers
	writes, stop := checksumLoad(t, func(ctx context.Context, w int, i int64) error {
		mu.Lock()
		defer mu.Unlock()
		if _, err := writer.Exec(ctx, "INSERT INTO items VALUES ($1, 'new', $2)", 100_000+w*1_000_000+int(i), i); err != nil {
			return err
		}
		_, err := writer.Exec(ctx, "UPDATE items SET n = coalesce(n, 0) + 1 WHERE id = $1", 1+(int(i)*37+w*101)%20000)
		if err != nil {
			return err
		}
		_, err = writer.Exec(ctx, "UPDATE pairs SET v = v + 1 WHERE a = $1", (int(i)+w)%50)
		return err
	}, 4)
	defer stop() // before the writers' connection closes, should the test fail
	for run, rep := range checkUnderLoad(t, bin, l, postgresCluster, writes) {
		tables := map[string]checksum.TableReport{}
		for _, tr := range rep.Tables {
			tables[tr.Table] = tr
		}
		if items := tables["dbha_lab.public.items"]; items.Chunks < 2 || items.Rows < 20000 {
			t.Errorf("run %d: items in %d chunks, %d rows; tables %+v", run, items.Chunks, items.Rows, tables)
		}
		empty, ok := tables["dbha_lab.public.empty"]
		if tables["dbha_lab.public.nokey"].Rows != 100 || tables["dbha_lab.public.pairs"].Rows != 3000 || !ok || empty.Chunks != 1 || empty.Rows != 0 || empty.Error != "" {
			t.Errorf("run %d: tables %+v", run, tables)
		}
	}
	t.Logf("%d writes during the three runs", stop())

	// Change the marker row in postgres-3's data file: checkpoint (so that
	// no full-page image in WAL after it overwrites the page again at
	// restart), stop, edit, start.
	if _, err := conn.Exec(ctx, "CHECKPOINT"); err != nil {
		t.Fatal(err)
	}
	var rel string
	if err := conn.QueryRow(ctx, "SELECT pg_relation_filepath('items')").Scan(&rel); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 30*time.Second, "postgres-3 to replay the checkpoint", func() error {
		sc, err := l.AdminPostgres(ctx, "postgres-3")
		if err != nil {
			return err
		}
		defer sc.Close(context.Background())
		_, err = sc.Exec(ctx, "CHECKPOINT") // a restartpoint
		return err
	})
	standby, err := l.Node("postgres-3")
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Stop(ctx, "postgres-3"); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(standby.DataDir, rel)
	edited := 0
	for _, seg := range []string{path, path + ".1"} {
		b, err := os.ReadFile(seg)
		if err != nil {
			continue
		}
		if n := strings.Count(string(b), "DBHA-MARKER-AAAA"); n > 0 {
			edited += n
			if err := os.WriteFile(seg, []byte(strings.ReplaceAll(string(b), "DBHA-MARKER-AAAA", "DBHA-MARKER-BBBB")), 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	if edited == 0 {
		t.Fatalf("the marker row is not in %s", path)
	}
	if err := l.Start(ctx, "postgres-3"); err != nil {
		t.Fatal(err)
	}
	r := dbhaCLI(t, bin, l, "checksum", "--cluster", postgresCluster, "--table", "dbha_lab.public.items", "-o", "json")
	rep := checksumReport(t, r)
	want := addr(t, l, "postgres-3")
	if r.code != 1 || rep.Differences() != 1 {
		t.Fatalf("after editing %s's data file: exit %d, report %s", want, r.code, r.stdout)
	}
	d := rep.Tables[0].Differences[0]
	if d.Replica != want || !inChunk(d, 12345) || len(d.Keys) != 1 || d.Keys[0].String() != "12345" {
		t.Errorf("difference %+v: want %s, the chunk holding id 12345, and that row", d, want)
	}

	// dbha run checks on its schedule (checksum.schedule), and exports
	// what the checks found.
	ports, err := freePorts(1)
	if err != nil {
		t.Fatal(err)
	}
	token := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(token, []byte("metrics-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	run := startDbhaRun(t, bin, l, "checksummer", "DBHA_CLUSTERS_1_CHECKSUM_SCHEDULE=@every 3s",
		fmt.Sprintf("DBHA_HTTP_LISTEN=127.0.0.1:%d", ports[0]), "DBHA_HTTP_TOKEN_FILE="+token)
	waitUntil(t, time.Minute, "two scheduled checks and their metrics", func() error {
		if n := len(run.records(postgresCluster, "scheduled checksum done")); n < 2 {
			return fmt.Errorf("%d scheduled checks done", n)
		}
		if len(run.appeared(postgresCluster, "ReplicaInconsistent")) == 0 {
			return errors.New("no ReplicaInconsistent finding yet")
		}
		code, body := get(t, fmt.Sprintf("http://127.0.0.1:%d", ports[0]), "/metrics", "metrics-token")
		if code != 200 || len(metricLines(body, "dbha_checksum_differences", `instance="`+want+`"`)) != 1 ||
			len(metricLines(body, "dbha_checksum_last_run_timestamp_seconds", `cluster="`+postgresCluster+`"`)) != 1 {
			return fmt.Errorf("metrics %d without the checksum's", code)
		}
		return nil
	})
}

// ptDifference is a chunk pt-table-checksum found different on a replica.
type ptDifference struct {
	replica, table string
	lower, upper   string // inclusive bounds, as pt writes them ("" for none)
}

func (d ptDifference) holds(key int) bool {
	lo, errLo := strconv.Atoi(d.lower)
	hi, errHi := strconv.Atoi(d.upper)
	return (d.lower == "" || errLo == nil && lo <= key) && (d.upper == "" || errHi == nil && key <= hi)
}

// ptTableChecksum runs pt-table-checksum (percona-toolkit, from Debian) over database db of
// the lab's MariaDB cluster, with the admin account from a defaults file (never a password
// in its arguments), and reads back each replica's differing chunks.
func ptTableChecksum(t *testing.T, l *Lab, db string) []ptDifference {
	t.Helper()
	pw, err := readPassword(l.Secret("mariadb-admin"))
	if err != nil {
		t.Fatal(err)
	}
	cnf := filepath.Join(t.TempDir(), "pt.cnf")
	if err := os.WriteFile(cnf, []byte("[client]\nuser=admin\npassword="+pw+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	primary, err := l.Node("mariadb-1")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "pt-table-checksum", "--databases="+db, "--recursion-method=hosts", "--no-check-binlog-format",
		fmt.Sprintf("h=%s,P=%d,F=%s", primary.Host, primary.Port, cnf))
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("pt-table-checksum: %v\n%s", err, out)
	}
	// Its exit status is a bit field: 16 is "differences found"; others are errors.
	if code := cmd.ProcessState.ExitCode(); code&^16 != 0 {
		t.Fatalf("pt-table-checksum exited %d:\n%s", code, out)
	}
	t.Logf("pt-table-checksum:\n%s", out)
	var diffs []ptDifference
	for _, r := range []string{"mariadb-2", "mariadb-3"} {
		rows, err := mysqlDB(t, l, r).QueryContext(ctx, `SELECT CONCAT(db, '.', tbl), COALESCE(lower_boundary, ''), COALESCE(upper_boundary, '')
			FROM percona.checksums WHERE master_cnt <> this_cnt OR master_crc <> this_crc OR ISNULL(master_crc) <> ISNULL(this_crc) ORDER BY db, tbl, chunk`)
		if err != nil {
			t.Fatalf("%s: read pt-table-checksum's results: %v", r, err)
		}
		for rows.Next() {
			d := ptDifference{replica: r}
			if err := rows.Scan(&d.table, &d.lower, &d.upper); err != nil {
				t.Fatal(err)
			}
			diffs = append(diffs, d)
		}
		rows.Close()
	}
	return diffs
}

// The outcomes of a check that meets trouble, on MariaDB: a table of ten
// million rows is checked in chunks that adapt to the chunk time, while a
// replica is killed mid-run (the run goes on against the other and says
// which it lost); a table dropped mid-run is reported cut short. Both
// runs exit 3: nothing differs, not everything was compared.
func TestChecksumOutcomes(t *testing.T) {
	bin := dbhaBinary(t)
	l := binLab(t, bin)
	ctx := t.Context()
	db := mysqlDB(t, l, "mariadb-1")
	start := time.Now()
	for _, q := range []string{
		"CREATE DATABASE big",
		"CREATE TABLE big.t (id INT PRIMARY KEY, v VARCHAR(32) NOT NULL, n INT)",
		"INSERT INTO big.t SELECT seq, CONCAT('row-', seq), seq % 1000 FROM mysql.seq_1_to_10000000",
		"CREATE TABLE big.victim (id INT PRIMARY KEY, v VARCHAR(32) NOT NULL)",
		"INSERT INTO big.victim SELECT seq, CONCAT('row-', seq) FROM mysql.seq_1_to_300000",
	} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	t.Logf("10 300 000 rows written in %v", time.Since(start).Round(time.Millisecond))
	cli := func(args ...string) (<-chan cliResult, *os.Process) {
		return startChecksum(t, bin, l, mariadbCluster, args...)
	}

	// A replica killed a few seconds into the check of ten million rows.
	done, _ := cli("--table", "big.t")
	time.Sleep(3 * time.Second)
	lost := addr(t, l, "mariadb-3")
	if err := l.Signal("mariadb-3", syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	var r cliResult
	select {
	case r = <-done:
	case <-time.After(5 * time.Minute):
		t.Fatal("the check of ten million rows did not end in 5 minutes")
	}
	rep := checksumReport(t, r)
	if r.code != 3 || rep.Differences() != 0 || len(rep.Tables) != 1 || rep.Tables[0].Rows != 10_000_000 {
		t.Fatalf("exit %d, report %+v\n%s", r.code, rep, r.stderr)
	}
	if len(rep.Lost) != 1 || rep.Lost[0].Replica != lost {
		t.Errorf("lost replicas %+v, want %s", rep.Lost, lost)
	}
	if c := rep.Tables[0].Chunks; c < 10 || c > 10_000 {
		t.Errorf("ten million rows in %d chunks: the sizes did not adapt", c)
	}
	t.Logf("ten million rows: %d chunks in %.1f s; lost %s: %s", rep.Tables[0].Chunks, rep.Tables[0].Seconds, rep.Lost[0].Replica, rep.Lost[0].Reason)
	if err := l.Start(ctx, "mariadb-3"); err != nil {
		t.Fatal(err)
	}

	// A table dropped while it is checked, in small chunks.
	done, _ = cli("--table", "big.victim", "--chunk-time", "5ms")
	waitUntil(t, time.Minute, "three chunks of big.victim checked", func() error {
		var n int
		if err := db.QueryRowContext(ctx, "SELECT COUNT(*) FROM dbha_checksum.checksums WHERE db = 'big' AND tbl = 'victim'").Scan(&n); err != nil || n < 3 {
			return fmt.Errorf("%d chunks, %v", n, err)
		}
		return nil
	})
	if _, err := db.ExecContext(ctx, "DROP TABLE big.victim"); err != nil {
		t.Fatal(err)
	}
	r = <-done
	rep = checksumReport(t, r)
	if r.code != 3 || len(rep.Tables) != 1 || rep.Tables[0].Chunks < 3 || !strings.Contains(rep.Tables[0].Error, "doesn't exist") {
		t.Fatalf("a table dropped mid-run: exit %d, report %+v\n%s", r.code, rep, r.stderr)
	}
	t.Logf("dropped mid-run after %d chunks: %s", rep.Tables[0].Chunks, rep.Tables[0].Error)

	// Stopped (SIGINT) a few chunks into the ten million rows, and resumed.
	if _, err := db.ExecContext(ctx, "DELETE FROM dbha_checksum.checksums"); err != nil {
		t.Fatal(err)
	}
	done, proc := cli("--table", "big.t", "--chunk-time", "100ms")
	waitUntil(t, time.Minute, "three chunks of big.t checked", func() error {
		var n int
		if err := db.QueryRowContext(ctx, "SELECT COUNT(*) FROM dbha_checksum.checksums WHERE db = 'big' AND tbl = 't'").Scan(&n); err != nil || n < 3 {
			return fmt.Errorf("%d chunks, %v", n, err)
		}
		return nil
	})
	if err := proc.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	r = <-done
	if r.code != 3 || !strings.Contains(r.stderr, "--resume continues from big.t, chunk ") {
		t.Fatalf("stopped: exit %d\n%s", r.code, r.stderr)
	}
	var before int
	if err := db.QueryRowContext(ctx, "SELECT COUNT(*) FROM dbha_checksum.checksums WHERE db = 'big' AND tbl = 't'").Scan(&before); err != nil {
		t.Fatal(err)
	}
	done, _ = cli("--table", "big.t", "--resume")
	r = <-done
	rep = checksumReport(t, r)
	if r.code != 0 || !strings.Contains(r.stderr, "resuming the run") || rep.Tables[0].Rows != 10_000_000 || rep.Tables[0].Chunks <= before {
		t.Fatalf("resumed: exit %d, report %+v\n%s", r.code, rep.Tables, r.stderr)
	}
	t.Logf("stopped after %d chunks, resumed: %d chunks over %d rows, consistent", before, rep.Tables[0].Chunks, rep.Tables[0].Rows)
}
