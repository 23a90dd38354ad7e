package integration

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dbha/dbha/topology/mysql"
)

// Rewinding a MariaDB former primary that holds transactions the new
// primary lacks: each test gives mariadb-1 an unreplicated tail (the
// replicas' IO threads stopped while it takes writes), makes mariadb-2 the
// primary, and rewinds mariadb-1 onto it through the controller dbha uses.

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
