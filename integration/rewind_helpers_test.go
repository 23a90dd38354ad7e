package integration

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"maps"
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
	"github.com/dbha/dbha/checks"
	"github.com/dbha/dbha/topology"
	"github.com/dbha/dbha/topology/mysql"
)

// What the rewind tests share: the controller as dbha builds it, a table
// and a write load of every shape a tail holds, the scene of an old
// primary killed with an unreplicated tail, and reading the saved tail
// back with mariadb-binlog.

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
	c.SetHeartbeat(checks.DefaultPolicy().Heartbeat)
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
	// dbha pointed both (mariadb-3 repointed, mariadb-1 rejoined) with its
	// heartbeat period, so that their silence means a lost primary.
	for _, node := range []string{"mariadb-1", "mariadb-3"} {
		var period string
		err := mysqlDB(t, l, node).QueryRow("SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME = 'SLAVE_HEARTBEAT_PERIOD'").Scan(&period)
		if want := fmt.Sprintf("%.3f", checks.DefaultPolicy().Heartbeat.Seconds()); err != nil || period != want {
			t.Errorf("%s: heartbeat period %q (%v), want %s s as dbha set it", node, period, err, want)
		}
	}

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
