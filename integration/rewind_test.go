package integration

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	mysqlstream "github.com/dbha/dbha/binlog/mysql"
	"github.com/dbha/dbha/topology"
	"github.com/dbha/dbha/topology/mysql"
)

// Rewinding a MariaDB former primary that holds transactions the new
// primary lacks: each test gives mariadb-1 an unreplicated tail (the
// replicas' IO threads stopped while it takes writes), makes mariadb-2 the
// primary, and rewinds mariadb-1 onto it through the controller dbha uses.

// rewindController is the lab cluster's controller as dbha builds it
// (cmd/dbha newEngine): dbha's account, the replication account, the apply
// account (promotion.apply: admin), and the stream's server_id for reading
// a tail.
func rewindController(t *testing.T, l *Lab) *mysql.Controller {
	t.Helper()
	c := rewindControllerOf(t, l)
	adminPW, err := readPassword(l.Secret("mariadb-admin"))
	if err != nil {
		t.Fatal(err)
	}
	c.SetApplyAccount("admin", adminPW)
	return c
}

// rewindControllerOf is rewindController without an apply account.
func rewindControllerOf(t *testing.T, l *Lab) *mysql.Controller {
	t.Helper()
	pw, err := readPassword(l.Secret("mariadb-dbha"))
	if err != nil {
		t.Fatal(err)
	}
	replPW, err := readPassword(l.Secret("mariadb-repl"))
	if err != nil {
		t.Fatal(err)
	}
	c := mysql.NewController(topology.MariaDB, "dbha", pw, "repl", replPW)
	c.SetTailSaver(mysqlstream.TailCopier{ServerID: mariaStreamServerID})
	t.Cleanup(func() { c.Close() })
	return c
}

// rwTable is the table the tests change: a seeded part (ids 1..rwSeed) that
// the tail updates and deletes, and rows the tail inserts.
const (
	rwTable = "dbha_lab.rw"
	rwSeed  = 800
)

func createRewindTable(t *testing.T, db *sql.DB) {
	t.Helper()
	mustExec(t, db,
		"CREATE TABLE "+rwTable+" (id INT PRIMARY KEY, w INT NOT NULL, n INT NOT NULL, v VARCHAR(100) NOT NULL, note TEXT)",
		fmt.Sprintf("INSERT INTO %s SELECT seq, 0, 0, CONCAT('seed-', seq), REPEAT('s', seq MOD 50) FROM dbha_lab.seq_1_to_%d", rwTable, rwSeed))
}

// stopReceiving stops the replicas' IO threads once they hold everything
// the primary has, and returns that position: what every instance shares.
func stopReceiving(t *testing.T, l *Lab, primary string, replicas ...string) string {
	t.Helper()
	pos := mariaBinlogPos(t, l, primary)
	for _, r := range replicas {
		db := mysqlDB(t, l, r)
		var waited int
		if err := db.QueryRow("SELECT MASTER_GTID_WAIT(?, 30)", pos).Scan(&waited); err != nil || waited != 0 {
			t.Fatalf("%s did not reach %s: %d, %v", r, pos, waited, err)
		}
		mustExec(t, db, "STOP SLAVE IO_THREAD")
	}
	return pos
}

// rewindLoad commits, from several sessions at once, transactions of every
// shape a tail holds (see rewindStep) until a session fails, which the
// kill of the server makes them all do.
type rewindLoad struct {
	committed atomic.Int64
	wg        sync.WaitGroup
	mu        sync.Mutex
	failures  []rewindFailure
}

type rewindFailure struct {
	at  time.Time
	err error
}

func startRewindLoad(t *testing.T, l *Lab, node string, workers int) *rewindLoad {
	t.Helper()
	db := mysqlDB(t, l, node)
	db.SetMaxOpenConns(workers)
	wl := &rewindLoad{}
	for w := range workers {
		wl.wg.Go(func() {
			for n := 0; ; n++ {
				if err := rewindStep(db, w, workers, n); err != nil {
					wl.mu.Lock()
					wl.failures = append(wl.failures, rewindFailure{time.Now(), fmt.Errorf("worker %d step %d: %w", w, n, err)})
					wl.mu.Unlock()
					return
				}
				wl.committed.Add(1)
			}
		})
	}
	t.Cleanup(wl.wg.Wait)
	return wl
}

// failedBefore waits for the sessions to end and returns the failures that
// came before t (those the kill did not cause).
func (wl *rewindLoad) failedBefore(t time.Time) error {
	wl.wg.Wait()
	var errs []error
	for _, f := range wl.failures {
		if f.at.Before(t) {
			errs = append(errs, f.err)
		}
	}
	return errors.Join(errs...)
}

// rewindStep is step n of session w of workers: single-row inserts,
// multi-row inserts, transactions of several statements (insert, update
// of the row just inserted, update of a seeded row), updates and deletes
// of seeded rows. Session w touches only seeded rows with id % workers ==
// (w+1) % workers, so sessions never wait on each other.
func rewindStep(db *sql.DB, w, workers, n int) error {
	id := 100_000*(w+1) + 10*n                       // rows this step inserts: id, id+1, id+2
	seeded := 1 + w + workers*(n%(rwSeed/workers-3)) // seeded rows of this worker's: seeded + k*workers
	text := fmt.Sprintf("w%d-n%d", w, n)
	switch n % 5 {
	case 0:
		_, err := db.Exec("INSERT INTO "+rwTable+" VALUES (?, ?, ?, ?, ?)", id, w, n, text, strings.Repeat("x", n%90))
		return err
	case 1:
		_, err := db.Exec("INSERT INTO "+rwTable+" VALUES (?, ?, ?, ?, NULL), (?, ?, ?, ?, ''), (?, ?, ?, ?, 'three')",
			id, w, n, text, id+1, w, n, text, id+2, w, n, text)
		return err
	case 2:
		tx, err := db.Begin()
		if err != nil {
			return err
		}
		defer tx.Rollback()
		for _, q := range []struct {
			stmt string
			args []any
		}{
			{"INSERT INTO " + rwTable + " VALUES (?, ?, ?, ?, 'in a transaction')", []any{id, w, n, text}},
			{"UPDATE " + rwTable + " SET n = n + 1, v = CONCAT(v, '+') WHERE id = ?", []any{id}},
			{"UPDATE " + rwTable + " SET n = n + 100, note = CONCAT(COALESCE(note, ''), 'u') WHERE id = ?", []any{seeded}},
		} {
			if _, err := tx.Exec(q.stmt, q.args...); err != nil {
				return err
			}
		}
		return tx.Commit()
	case 3:
		_, err := db.Exec("UPDATE "+rwTable+" SET n = n + 1, v = ? WHERE id IN (?, ?)", text, seeded, seeded+workers)
		return err
	}
	_, err := db.Exec("DELETE FROM "+rwTable+" WHERE id = ?", seeded+2*workers)
	return err
}

// tableRows reads the table as mariadb-binlog -v prints rows: id → the
// columns as "@1=5 @2=0 @3=7 @4='v' @5='note'" (NULL for NULL).
func tableRows(t *testing.T, l *Lab, node string) map[int64]string {
	t.Helper()
	rows, err := mysqlDB(t, l, node).Query("SELECT id, w, n, v, note FROM " + rwTable)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[int64]string{}
	for rows.Next() {
		var (
			id, w, n int64
			v        string
			note     sql.NullString
		)
		if err := rows.Scan(&id, &w, &n, &v, &note); err != nil {
			t.Fatal(err)
		}
		noteText := "NULL"
		if note.Valid {
			noteText = "'" + note.String + "'"
		}
		out[id] = fmt.Sprintf("@1=%d @2=%d @3=%d @4='%s' @5=%s", id, w, n, v, noteText)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// replayVerbose applies the row changes mariadb-binlog -v prints for file
// (its ### pseudo-SQL) to rows, and returns the result and how many row
// changes it applied. A change that does not fit the rows (an insert of a
// row present, an update or delete of a row absent or different) fails the
// test.
func replayVerbose(t *testing.T, file string, rows map[int64]string) (map[int64]string, int) {
	t.Helper()
	out, err := exec.Command("mariadb-binlog", "--no-defaults", "--verify-binlog-checksum", "-v", "--base64-output=decode-rows", file).Output()
	if err != nil {
		t.Fatalf("mariadb-binlog -v %s: %v", file, err)
	}
	res := maps.Clone(rows)
	var (
		op           string
		where, set   []string
		section      *[]string
		changes      int
		idOf         = func(cols []string) int64 { var id int64; fmt.Sscanf(cols[0], "@1=%d", &id); return id }
		flush        func()
		tableChanges = func(line string) bool { return strings.Contains(line, "`dbha_lab`.`rw`") }
	)
	flush = func() {
		switch op {
		case "":
			return
		case "INSERT":
			id := idOf(set)
			if _, ok := res[id]; ok {
				t.Fatalf("the saved tail inserts row %d, which the shared state already holds", id)
			}
			res[id] = strings.Join(set, " ")
		case "UPDATE", "DELETE":
			id := idOf(where)
			if res[id] != strings.Join(where, " ") {
				t.Fatalf("the saved tail %ss row %d as %q; it is %q", strings.ToLower(op), id, strings.Join(where, " "), res[id])
			}
			if op == "DELETE" {
				delete(res, id)
			} else {
				res[id] = strings.Join(set, " ")
			}
		}
		changes++
		op, where, set = "", nil, nil
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "### ") {
			continue
		}
		body := strings.TrimPrefix(line, "### ")
		switch {
		case strings.HasPrefix(body, "INSERT INTO"), strings.HasPrefix(body, "UPDATE "), strings.HasPrefix(body, "DELETE FROM"):
			flush()
			if !tableChanges(body) {
				t.Fatalf("the saved tail changes another table: %s", body)
			}
			op = strings.Fields(body)[0]
		case body == "WHERE":
			section = &where
		case body == "SET":
			section = &set
		case strings.HasPrefix(body, "  @"):
			*section = append(*section, strings.TrimSpace(body))
		}
	}
	flush()
	return res, changes
}

// diffRows describes how two table contents differ.
func diffRows(a, b map[int64]string) string {
	var d []string
	for id, r := range a {
		if b[id] != r {
			d = append(d, fmt.Sprintf("%d: %q vs %q", id, r, b[id]))
		}
	}
	for id, r := range b {
		if _, ok := a[id]; !ok {
			d = append(d, fmt.Sprintf("%d: missing vs %q", id, r))
		}
	}
	slices.Sort(d)
	if len(d) > 5 {
		d = append(d[:5], fmt.Sprintf("and %d more", len(d)-5))
	}
	return strings.Join(d, "; ")
}

type gtidState struct{ binlogState, current, slave string }

func readGTIDState(t *testing.T, l *Lab, node string) gtidState {
	t.Helper()
	var s gtidState
	if err := mysqlDB(t, l, node).QueryRow("SELECT @@gtid_binlog_state, @@gtid_current_pos, @@gtid_slave_pos").
		Scan(&s.binlogState, &s.current, &s.slave); err != nil {
		t.Fatal(err)
	}
	return s
}

// tailScene is a lab after the failover that leaves mariadb-1 with a tail.
type tailScene struct {
	l                 *Lab
	ctl               *mysql.Controller
	oldAddr, nextAddr string
	fork, tailEnd     string           // the position all share; where mariadb-1's binlog ends
	tailTxns          int              // transactions in mariadb-1's tail
	shared, held      map[int64]string // the table as all share it; as mariadb-1 holds it
	before            gtidState        // mariadb-1's, fenced, before any rewind
	saveDir           string
}

// oldPrimaryWithTail makes mariadb-1 hold an unreplicated tail: the
// replicas stop receiving, six sessions write on mariadb-1 until it has
// committed at least tail statements and transactions, and it is killed
// (kill -9) under that load. mariadb-2, which lacks the tail, becomes the
// primary (mariadb-3 follows it) and takes writes of its own, some on rows
// the tail changed. mariadb-1 comes back and is fenced, as dbha fences it.
func oldPrimaryWithTail(t *testing.T, tail int64) tailScene {
	t.Helper()
	l := mariaLab(t)
	sc := tailScene{l: l, ctl: rewindController(t, l), oldAddr: addr(t, l, "mariadb-1"), nextAddr: addr(t, l, "mariadb-2"),
		saveDir: filepath.Join(l.Dir, "state", "rewind", mariadbCluster)}
	createRewindTable(t, mysqlDB(t, l, "mariadb-1"))
	sc.fork = stopReceiving(t, l, "mariadb-1", "mariadb-2", "mariadb-3")
	sc.shared = tableRows(t, l, "mariadb-2")

	const workers = 6
	loadStart := time.Now()
	load := startRewindLoad(t, l, "mariadb-1", workers)
	waitUntil(t, 2*time.Minute, "the load to commit a tail", func() error {
		if n := load.committed.Load(); n < tail {
			return fmt.Errorf("%d committed", n)
		}
		return nil
	})
	killed := time.Now()
	if err := l.Signal("mariadb-1", syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if err := load.failedBefore(killed); err != nil {
		t.Fatalf("the load failed before the kill: %v", err)
	}
	t.Logf("mariadb-1 killed (kill -9) under a load of %d sessions after %v, %d statements and transactions acknowledged",
		workers, killed.Sub(loadStart).Round(time.Millisecond), load.committed.Load())

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := sc.ctl.Promote(ctx, sc.nextAddr); err != nil {
		t.Fatal(err)
	}
	if err := sc.ctl.Repoint(ctx, addr(t, l, "mariadb-3"), sc.nextAddr); err != nil {
		t.Fatal(err)
	}
	mustExec(t, mysqlDB(t, l, "mariadb-2"),
		"INSERT INTO "+rwTable+" VALUES (900001, 9, 0, 'new primary', NULL)",
		"UPDATE "+rwTable+" SET n = n + 1000, v = 'new primary' WHERE id IN (1, 2, 7, 8, 13)",
		"DELETE FROM "+rwTable+" WHERE id IN (3, 4)")
	if err := l.Start(ctx, "mariadb-1"); err != nil {
		t.Fatal(err)
	}
	if err := sc.ctl.Fence(ctx, sc.oldAddr); err != nil {
		t.Fatal(err)
	}
	sc.held = tableRows(t, l, "mariadb-1")
	sc.before = readGTIDState(t, l, "mariadb-1")
	// What the restarted server's binlog holds is the tail (statements that
	// changed no row, an update or delete of a row deleted before, are not
	// in it; a transaction may be in it that the client never heard commit).
	sc.tailEnd = mariaBinlogPos(t, l, "mariadb-1")
	sc.tailTxns = int(mariaSeq(t, sc.tailEnd) - mariaSeq(t, sc.fork))
	t.Logf("the old primary is back, fenced, with a tail of %d transactions after %s: %s", sc.tailTxns, sc.fork, sc.tailEnd)
	return sc
}

// checkRejoined checks that mariadb-1 replicates from mariadb-2 and, once
// caught up, holds exactly its rows and GTID position.
func checkRejoined(t *testing.T, sc tailScene) {
	t.Helper()
	l := sc.l
	catchUp := time.Now()
	want := mariaBinlogPos(t, l, "mariadb-2")
	var waited int
	if err := mysqlDB(t, l, "mariadb-1").QueryRow("SELECT MASTER_GTID_WAIT(?, 60)", want).Scan(&waited); err != nil || waited != 0 {
		t.Fatalf("the old primary did not reach %s: %d, %v", want, waited, err)
	}
	t.Logf("caught up with the new primary's %s in %v after the rewind", want, time.Since(catchUp).Round(time.Millisecond))
	if d := diffRows(tableRows(t, l, "mariadb-1"), tableRows(t, l, "mariadb-2")); d != "" {
		t.Errorf("the old primary's rows differ from the new primary's: %s", d)
	}
	o, p := readGTIDState(t, l, "mariadb-1"), readGTIDState(t, l, "mariadb-2")
	if o.current != p.current {
		t.Errorf("gtid_current_pos %s on the old primary, %s on the new one", o.current, p.current)
	}
	op, _ := topology.ParseMariaDB(o.binlogState)
	pp, _ := topology.ParseMariaDB(p.binlogState)
	if e := topology.Errant(op, pp); e.String() != "" {
		t.Errorf("the old primary still holds %s that the new one lacks (%s vs %s)", e, o.binlogState, p.binlogState)
	}
	t.Logf("GTID state before the rewind %+v, after %+v; the new primary's %+v", sc.before, o, p)
	waitSnapshot(t, l, mariadbCluster, "mariadb-1 replicating from mariadb-2", rejoined(sc.nextAddr, sc.oldAddr))

	id := 900100 + time.Now().UnixNano()%1000
	mustExec(t, mysqlDB(t, l, "mariadb-2"), fmt.Sprintf("INSERT INTO %s VALUES (%d, 9, 0, 'after the rewind', NULL)", rwTable, id))
	eventually(t, "a new write on the new primary to reach the old one", func() error {
		var n int
		if err := mysqlDB(t, l, "mariadb-1").QueryRow("SELECT count(*) FROM "+rwTable+" WHERE id = ?", id).Scan(&n); err != nil || n != 1 {
			return fmt.Errorf("%d rows, %v", n, err)
		}
		return nil
	})
}

func TestMariaDBRewindOldPrimary(t *testing.T) {
	sc := oldPrimaryWithTail(t, 1500)
	l, ctl, oldAddr, nextAddr, fork, tailEnd, tailTxns, saveDir := sc.l, sc.ctl, sc.oldAddr, sc.nextAddr, sc.fork, sc.tailEnd, sc.tailTxns, sc.saveDir
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	start := time.Now()
	res, err := ctl.Rewind(ctx, oldAddr, nextAddr, saveDir)
	took := time.Since(start)
	if err != nil {
		t.Fatalf("rewind: %v", err)
	}
	t.Logf("rewind of %d transactions (%d events, tail %s after %s): %v in all: save %v, undo %v, reset and repoint %v; file %s",
		res.Transactions, res.Events, res.Tail, res.From, took.Round(time.Millisecond), time.Duration(res.Save).Round(time.Millisecond),
		time.Duration(res.Undo).Round(time.Millisecond), time.Duration(res.Rejoin).Round(time.Millisecond), res.File)
	if !res.Undone || res.Transactions != tailTxns || res.Tail.String() != tailEnd || res.From.String() != fork {
		t.Errorf("rewound %+v; want %d transactions undone, tail %s after %s", res, tailTxns, tailEnd, fork)
	}
	if ops := res.Tables[rwTable]; len(res.Tables) != 1 || ops.Writes == 0 || ops.Updates == 0 || ops.Deletes == 0 {
		t.Errorf("the tail changes %v; want inserts, updates and deletes on %s only", res.Tables, rwTable)
	}

	t.Run("the saved tail", func(t *testing.T) {
		st, err := os.Stat(res.File)
		if err != nil || st.Mode().Perm() != 0o600 || filepath.Dir(res.File) != saveDir {
			t.Fatalf("saved file %s: %v (mode %v); want a 0600 file in %s", res.File, err, st.Mode().Perm(), saveDir)
		}
		checkMariaExactlyOnce(t, "mariadb-binlog on the saved tail", mariaBinlogGTIDs(t, res.File), mariaSeq(t, fork), mariaSeq(t, tailEnd))
		replayed, changes := replayVerbose(t, res.File, sc.shared)
		if d := diffRows(replayed, sc.held); d != "" {
			t.Errorf("the saved tail's %d row changes, replayed on the shared state, do not give the old primary's rows: %s", changes, d)
		}
		t.Logf("the saved tail replays %d row changes onto the %d shared rows: the old primary's %d rows exactly", changes, len(sc.shared), len(sc.held))
	})

	t.Run("rejoined", func(t *testing.T) { checkRejoined(t, sc) })

	t.Run("a second call changes nothing", func(t *testing.T) {
		files, _ := filepath.Glob(filepath.Join(saveDir, "*.bin"))
		rows, state := tableRows(t, l, "mariadb-1"), readGTIDState(t, l, "mariadb-1")
		again, err := ctl.Rewind(ctx, oldAddr, nextAddr, saveDir)
		if err != nil || again.Undone || again.Tail.String() != "" || again.File != "" {
			t.Fatalf("second rewind: %+v, %v; want nothing undone", again, err)
		}
		if now, _ := filepath.Glob(filepath.Join(saveDir, "*.bin")); !slices.Equal(now, files) {
			t.Errorf("saved files %v, before %v", now, files)
		}
		if d := diffRows(tableRows(t, l, "mariadb-1"), rows); d != "" || readGTIDState(t, l, "mariadb-1") != state {
			t.Errorf("a second rewind changed the instance: %s", d)
		}
	})
}

// A rewind stopped after its undo, before the GTID reset (here because the
// account lost RELOAD, which RESET MASTER needs; a crash there leaves the
// same), is finished by the next call, which does not undo again.
func TestMariaDBRewindResumesAfterAnInterruption(t *testing.T) {
	sc := oldPrimaryWithTail(t, 300)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	admin := adminDB(t, sc.l, "mariadb-1")
	mustExec(t, admin, "SET SESSION sql_log_bin = 0", "REVOKE RELOAD ON *.* FROM 'dbha'@'127.0.0.1'")
	withoutReload := rewindController(t, sc.l) // new sessions: without RELOAD

	first, err := withoutReload.Rewind(ctx, sc.oldAddr, sc.nextAddr, sc.saveDir)
	if err == nil || errors.Is(err, mysql.ErrCannotRewind) || !strings.Contains(err.Error(), "undone; reset its GTID state") {
		t.Fatalf("rewind without RELOAD: %+v, %v; want it to stop after the undo, at RESET MASTER", first, err)
	}
	t.Logf("stopped: %v", err)
	if d := diffRows(tableRows(t, sc.l, "mariadb-1"), sc.shared); d != "" {
		t.Errorf("after the undo the old primary's rows are not the shared ones: %s", d)
	}
	if now := readGTIDState(t, sc.l, "mariadb-1"); now != sc.before {
		t.Errorf("the undo changed the GTID state %+v to %+v: it must create no GTIDs", sc.before, now)
	}

	mustExec(t, admin, "GRANT RELOAD ON *.* TO 'dbha'@'127.0.0.1'")
	res, err := rewindController(t, sc.l).Rewind(ctx, sc.oldAddr, sc.nextAddr, sc.saveDir)
	if err != nil {
		t.Fatalf("rewind after the interruption: %v", err)
	}
	t.Logf("resumed: %+v", res)
	files, _ := filepath.Glob(filepath.Join(sc.saveDir, "*.bin"))
	if !res.Undone || res.File != first.File || res.Transactions != sc.tailTxns || len(files) != 1 {
		t.Errorf("resumed %+v (files %v); want the first call's file %s and its %d transactions, undone once", res, files, first.File, sc.tailTxns)
	}
	checkRejoined(t, sc)
}

func TestMariaDBRewindRefusesDDL(t *testing.T) {
	l := mariaLab(t)
	ctl := rewindController(t, l)
	oldAddr, nextAddr := addr(t, l, "mariadb-1"), addr(t, l, "mariadb-2")
	createRewindTable(t, mysqlDB(t, l, "mariadb-1"))
	stopReceiving(t, l, "mariadb-1", "mariadb-2", "mariadb-3")
	old := adminDB(t, l, "mariadb-1")
	mustExec(t, old,
		"INSERT INTO "+rwTable+" VALUES (100001, 1, 1, 'row', NULL)",
		"CREATE TABLE dbha_lab.extra (id INT PRIMARY KEY)",
		"INSERT INTO dbha_lab.extra VALUES (1)",
		"SET SESSION binlog_row_image = MINIMAL",
		"UPDATE "+rwTable+" SET n = 5 WHERE id = 10",
		"SET SESSION binlog_row_image = FULL")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := ctl.Promote(ctx, nextAddr); err != nil {
		t.Fatal(err)
	}
	saveDir := filepath.Join(l.Dir, "state", "rewind", mariadbCluster)

	// Not fenced yet: not a refusal, a precondition.
	if _, err := ctl.Rewind(ctx, oldAddr, nextAddr, saveDir); err == nil || errors.Is(err, mysql.ErrCannotRewind) || !strings.Contains(err.Error(), "fence it first") {
		t.Fatalf("rewind of a writable instance: %v; want an error asking to fence it", err)
	}
	if err := ctl.Fence(ctx, oldAddr); err != nil {
		t.Fatal(err)
	}
	// Without BINLOG ADMIN the undo could not run unbinlogged: that is
	// found before anything is saved or undone.
	admin := adminDB(t, l, "mariadb-1")
	mustExec(t, admin, "SET SESSION sql_log_bin = 0", "REVOKE BINLOG ADMIN ON *.* FROM 'dbha'@'127.0.0.1'")
	if _, err := rewindController(t, l).Rewind(ctx, oldAddr, nextAddr, saveDir); err == nil || errors.Is(err, mysql.ErrCannotRewind) || !strings.Contains(err.Error(), "grant BINLOG ADMIN") {
		t.Fatalf("rewind without BINLOG ADMIN: %v; want an error asking for it", err)
	}
	if saved, _ := filepath.Glob(filepath.Join(saveDir, "*")); len(saved) != 0 {
		t.Fatalf("a rewind that could not undo left %v", saved)
	}
	mustExec(t, admin, "GRANT BINLOG ADMIN ON *.* TO 'dbha'@'127.0.0.1'")
	rows, state := tableRows(t, l, "mariadb-1"), readGTIDState(t, l, "mariadb-1")
	var tables int
	if err := old.QueryRow("SELECT count(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'dbha_lab'").Scan(&tables); err != nil {
		t.Fatal(err)
	}

	res, err := ctl.Rewind(ctx, oldAddr, nextAddr, saveDir)
	if !errors.Is(err, mysql.ErrCannotRewind) {
		t.Fatalf("rewind of a tail with DDL: %+v, %v; want ErrCannotRewind", res, err)
	}
	t.Logf("refused: %v", err)
	for _, want := range []string{"is a statement, not row events: CREATE TABLE dbha_lab.extra", "without whole rows (binlog_row_image was not FULL)"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the refusal does not say %q", want)
		}
	}
	if res.Undone || res.File == "" || res.Transactions != 4 {
		t.Errorf("rewound %+v; want the 4 transactions saved for the record, nothing undone", res)
	} else if got := mariaBinlogGTIDs(t, res.File); len(got) != 4 {
		t.Errorf("the saved tail holds %v", got)
	}

	var after int
	if err := old.QueryRow("SELECT count(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'dbha_lab'").Scan(&after); err != nil {
		t.Fatal(err)
	}
	if d := diffRows(tableRows(t, l, "mariadb-1"), rows); d != "" || after != tables || readGTIDState(t, l, "mariadb-1") != state {
		t.Errorf("a refused rewind changed the instance: rows %s; tables %d → %d; GTID state %+v → %+v", d, tables, after, state, readGTIDState(t, l, "mariadb-1"))
	}
	if st, err := slaveStatus(ctx, mysqlDB(t, l, "mariadb-1")); err == nil {
		t.Errorf("a refused rewind configured replication: %v", st["Master_Host"])
	}
	if _, err := os.Stat(filepath.Join(saveDir, "rewind-"+strings.ReplaceAll(oldAddr, ":", "_")+".json")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a refused rewind left a journal: %v", err)
	}

	// With the binlog that holds the tail's start purged, the tail cannot
	// be read, let alone undone.
	mustExec(t, old, "FLUSH BINARY LOGS")
	var file string
	var pos int64
	var skip sql.NullString
	if err := old.QueryRow("SHOW MASTER STATUS").Scan(&file, &pos, &skip, &skip); err != nil {
		t.Fatal(err)
	}
	// A server keeps a binlog until InnoDB no longer needs it for crash
	// recovery (its binlog checkpoint): purge until it is gone.
	eventually(t, "the binlogs before "+file+" to be purged", func() error {
		if _, err := old.Exec("PURGE BINARY LOGS TO '" + file + "'"); err != nil {
			return err
		}
		var first string
		var size int64
		if err := old.QueryRow("SHOW BINARY LOGS").Scan(&first, &size); err != nil {
			return err
		}
		if first != file {
			return fmt.Errorf("the oldest binlog is still %s", first)
		}
		return nil
	})
	res, err = ctl.Rewind(ctx, oldAddr, nextAddr, saveDir)
	if !errors.Is(err, mysql.ErrCannotRewind) || !strings.Contains(err.Error(), "cannot send its binlog from 0-1-12") || res.File != "" {
		t.Fatalf("rewind with the tail's binlog purged: %+v, %v; want a refusal saying the binlog cannot be sent", res, err)
	}
	t.Logf("refused: %v", err)
}

// A tail that deletes parent rows of a cascading foreign key cannot be
// undone: the child rows the cascade deleted are not in the binlog.
func TestMariaDBRewindRefusesCascades(t *testing.T) {
	l := mariaLab(t)
	ctl := rewindController(t, l)
	oldAddr, nextAddr := addr(t, l, "mariadb-1"), addr(t, l, "mariadb-2")
	old := adminDB(t, l, "mariadb-1")
	mustExec(t, old,
		"CREATE TABLE dbha_lab.parent (id INT PRIMARY KEY)",
		"CREATE TABLE dbha_lab.child (id INT PRIMARY KEY, p INT, CONSTRAINT child_p FOREIGN KEY (p) REFERENCES dbha_lab.parent (id) ON DELETE CASCADE)",
		"INSERT INTO dbha_lab.parent VALUES (1), (2)",
		"INSERT INTO dbha_lab.child VALUES (10, 1), (11, 1), (20, 2)")
	stopReceiving(t, l, "mariadb-1", "mariadb-2", "mariadb-3")
	mustExec(t, old, "INSERT INTO dbha_lab.parent VALUES (3)", "DELETE FROM dbha_lab.parent WHERE id = 1")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := ctl.Promote(ctx, nextAddr); err != nil {
		t.Fatal(err)
	}
	if err := ctl.Fence(ctx, oldAddr); err != nil {
		t.Fatal(err)
	}
	saveDir := filepath.Join(l.Dir, "state", "rewind", mariadbCluster)
	state := readGTIDState(t, l, "mariadb-1")
	children := func() string {
		var ids string
		if err := mysqlDB(t, l, "mariadb-1").QueryRow("SELECT COALESCE(GROUP_CONCAT(id ORDER BY id), '') FROM dbha_lab.child").Scan(&ids); err != nil {
			t.Fatal(err)
		}
		return ids
	}
	if got := children(); got != "20" {
		t.Fatalf("the cascade left children %q, want 20", got)
	}

	// dbha's own account sees no table, so it cannot tell.
	_, err := rewindControllerOf(t, l).Rewind(ctx, oldAddr, nextAddr, saveDir)
	if !errors.Is(err, mysql.ErrCannotRewind) || !strings.Contains(err.Error(), `dbha_lab.parent, whose foreign keys account "dbha" cannot see`) {
		t.Fatalf("rewind without an apply account: %v; want a refusal saying it cannot check dbha_lab.parent", err)
	}
	res, err := ctl.Rewind(ctx, oldAddr, nextAddr, saveDir)
	if !errors.Is(err, mysql.ErrCannotRewind) || !strings.Contains(err.Error(), "it deletes rows of dbha_lab.parent, and foreign key child_p of dbha_lab.child is ON DELETE CASCADE") {
		t.Fatalf("rewind of a tail that deleted through a cascade: %+v, %v; want a refusal naming the foreign key", res, err)
	}
	t.Logf("refused: %v", err)
	if res.Undone || res.File == "" || res.Transactions != 2 {
		t.Errorf("rewound %+v; want the tail's 2 transactions saved, nothing undone", res)
	}
	if got := children(); got != "20" || readGTIDState(t, l, "mariadb-1") != state {
		t.Errorf("a refused rewind changed the instance: children %q, GTID state %+v (was %+v)", got, readGTIDState(t, l, "mariadb-1"), state)
	}
}
