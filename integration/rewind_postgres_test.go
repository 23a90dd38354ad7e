package integration

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	pgstream "github.com/dbha/dbha/binlog/postgres"
	"github.com/dbha/dbha/promote"
	"github.com/dbha/dbha/topology"
)

// TestPostgresRewindSavesDiscardedWAL: the PostgreSQL primary commits rows
// that no standby receives (both standbys are stopped) and is killed; a
// standby is promoted with `dbha promote`. When the old primary is started
// again, `dbha run` fences it and rewinds it: the WAL it holds beyond the
// new primary's timeline switch is saved under dbha's state before the
// rejoin command's pg_rewind discards it, and the recovery's loss ledger
// lists it. pg_waldump reads exactly that range from the saved directory,
// with a heap INSERT for every lost row.
func TestPostgresRewindSavesDiscardedWAL(t *testing.T) {
	bin := dbhaBinary(t)
	t.Parallel()
	l := binLab(t, bin)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	const rows = 20
	old := addr(t, l, "postgres-1")

	rel := lostRowsTable(ctx, t, l)
	for _, n := range []string{"postgres-2", "postgres-3"} {
		if err := l.Stop(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	before, after := writeLostRows(ctx, t, l, rows)
	killTree(t, l, "postgres-1")
	for _, n := range []string{"postgres-2", "postgres-3"} {
		if err := l.Start(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	r := dbhaCLI(t, bin, l, "promote", "--cluster", postgresCluster, "-o", "json")
	if r.code != 0 {
		t.Fatalf("dbha promote: %s", r)
	}
	var rec promote.Record
	if err := json.Unmarshal([]byte(r.stdout), &rec); err != nil || !rec.Done {
		t.Fatalf("dbha promote did not finish a recovery (%v): %s", err, r)
	}
	newPrimary := rec.Plan.NewPrimary
	if n := countLostRows(ctx, t, l, nodeName(t, l, newPrimary)); n != 0 {
		t.Fatalf("the new primary %s holds %d of the rows no standby received; the test needs them lost", newPrimary, n)
	}
	fork := timelineSwitch(ctx, t, l, nodeName(t, l, newPrimary), 1)
	if fork > before {
		t.Fatalf("timeline 1 ended at %s on the new primary, after the rows began at %s", fork, before)
	}

	if err := l.Start(ctx, "postgres-1"); err != nil {
		t.Fatal(err)
	}
	checkSaveLimit(ctx, t, l, old, newPrimary, fork)

	c := consulClient(t, l)
	started := time.Now()
	run := startDbhaRun(t, bin, l, "rewind-watcher")
	waitPublishedWriter(t, c, postgresCluster, newPrimary)
	waitHealthy(t, l, postgresCluster, 3*time.Minute, "the old primary rewound and following "+newPrimary, rejoined(newPrimary, old))
	rejoinTook := time.Since(started)
	if n := countLostRows(ctx, t, l, "postgres-1"); n != 0 {
		t.Errorf("after the rewind %s still holds %d lost rows", old, n)
	}

	saved := rewoundOf(t, bin, l, old)
	if saved.Bytes <= 0 || saved.File == "" {
		t.Fatalf("the ledger lists no WAL saved: %+v\n%s", saved, run.log())
	}
	end := saved.Tail
	if end.Timeline() != 1 || end.LSN() < after {
		t.Errorf("ledger: undone %s, want timeline 1 at or past %s (where the last lost row committed)", end, after)
	}
	if want := int64(end.LSN() - fork); saved.Bytes != want {
		t.Errorf("ledger: %d bytes saved, want %d (from the fork %s to %s)", saved.Bytes, want, fork, end.LSN())
	}
	m := checkSaveDir(t, saved.File)
	if m.Fork.LSN() != fork || m.Fork.Timeline() != 1 || m.End.LSN() != end.LSN() || m.Bytes != saved.Bytes {
		t.Errorf("rewind.json says fork %s, end %s, %d bytes; want fork %s tl1, end %s, %d bytes", m.Fork, m.End, m.Bytes, fork, end, saved.Bytes)
	}
	inserts := checkSavedRange(t, saved.File, fork, end.LSN(), rel)
	if inserts != rows {
		t.Errorf("pg_waldump shows %d heap INSERTs into rel %s in the saved WAL, want %d (one per lost row)", inserts, rel, rows)
	}
	t.Logf("dbha run saved %d bytes of WAL (%s..%s tl1, %d lost rows' inserts) in %v; the old primary was rewound and following %s %v after dbha run started",
		saved.Bytes, fork, end.LSN(), inserts, m.Finished.Sub(m.Started).Round(time.Millisecond), newPrimary, rejoinTook.Round(time.Millisecond))
}

// checkSaveLimit saves, directly, what the old primary holds beyond the
// fork: refused under a limit smaller than that, leaving nothing behind;
// under the default, the range from the fork to the old primary's end.
// Neither changes the old primary, which dbha rewinds afterwards.
func checkSaveLimit(ctx context.Context, t *testing.T, l *Lab, old, primary string, fork topology.LSN) {
	t.Helper()
	pw, err := readPassword(l.Secret("postgres-repl"))
	if err != nil {
		t.Fatal(err)
	}
	rw := pgstream.Rewinder{User: "repl", Password: pw, MaxBytes: 1}
	dir := t.TempDir()
	if _, err := rw.Save(ctx, old, primary, dir); !errors.Is(err, pgstream.ErrTooMuchToSave) {
		t.Fatalf("Save with a 1-byte limit: %v, want ErrTooMuchToSave", err)
	} else {
		t.Logf("refused: %v", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Fatalf("a refused save left %d entries in %s", len(entries), dir)
	}
	rw.MaxBytes = 0
	start := time.Now()
	saved, err := rw.Save(ctx, old, primary, dir)
	if err != nil {
		t.Fatal(err)
	}
	if saved.Fork.LSN() != fork || saved.Bytes != int64(saved.End.LSN()-fork) || saved.Dir == "" {
		t.Fatalf("Save = %+v; want the range from the fork %s to the old primary's end", saved, fork)
	}
	t.Logf("a direct save: %d bytes (%s..%s) in %v", saved.Bytes, saved.Fork, saved.End, time.Since(start).Round(time.Millisecond))
}

// lostRowsTable creates table lost_rows on postgres-1 and waits until both
// standbys have replayed it, so that only the rows are missing later. It
// returns the table's file as pg_waldump names it (tablespace/db/file).
func lostRowsTable(ctx context.Context, t *testing.T, l *Lab) string {
	t.Helper()
	conn, err := l.AdminPostgres(ctx, "postgres-1")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "CREATE TABLE lost_rows (id int PRIMARY KEY, note text NOT NULL)"); err != nil {
		t.Fatal(err)
	}
	var rel, target string
	err = conn.QueryRow(ctx, `SELECT '1663/' || (SELECT oid FROM pg_database WHERE datname = current_database()) || '/' ||
		pg_relation_filenode('lost_rows'), pg_current_wal_lsn()::text`).Scan(&rel, &target)
	if err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 30*time.Second, "both standbys replayed "+target, func() error {
		var n int
		err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_stat_replication WHERE replay_lsn >= $1::pg_lsn", target).Scan(&n)
		if err == nil && n != 2 {
			err = fmt.Errorf("%d of 2 standbys replayed it", n)
		}
		return err
	})
	return rel
}

// writeLostRows commits rows rows on postgres-1, one transaction each, and
// returns the WAL position before the first and after the last.
func writeLostRows(ctx context.Context, t *testing.T, l *Lab, rows int) (before, after topology.LSN) {
	t.Helper()
	conn, err := l.AdminPostgres(ctx, "postgres-1")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	lsn := func() topology.LSN {
		var s string
		if err := conn.QueryRow(ctx, "SELECT pg_current_wal_lsn()::text").Scan(&s); err != nil {
			t.Fatal(err)
		}
		p, err := topology.ParseLSN(s)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	before = lsn()
	for i := 1; i <= rows; i++ {
		if _, err := conn.Exec(ctx, "INSERT INTO lost_rows VALUES ($1, 'acknowledged, then lost')", i); err != nil {
			t.Fatal(err)
		}
	}
	return before, lsn()
}

func countLostRows(ctx context.Context, t *testing.T, l *Lab, node string) int {
	t.Helper()
	conn, err := l.AdminPostgres(ctx, node)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM lost_rows").Scan(&n); err != nil {
		t.Fatalf("count lost_rows on %s: %v", node, err)
	}
	return n
}

// timelineSwitch reads, from node's current timeline history file, where
// timeline tli ended.
func timelineSwitch(ctx context.Context, t *testing.T, l *Lab, node string, tli uint32) topology.LSN {
	t.Helper()
	conn, err := l.AdminPostgres(ctx, node)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var content string
	err = conn.QueryRow(ctx, "SELECT pg_read_file('pg_wal/' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8) || '.history')").Scan(&content)
	if err != nil {
		t.Fatalf("read the timeline history of %s: %v", node, err)
	}
	switches, err := topology.ParseTimelineHistory(content)
	if err != nil {
		t.Fatal(err)
	}
	for _, sw := range switches {
		if sw.Timeline == tli {
			return sw.Switch
		}
	}
	t.Fatalf("%s's history does not name timeline %d:\n%s", node, tli, content)
	return 0
}

// rewoundOf returns the ledger entry of old's rewind, from the recovery
// that replaced it.
func rewoundOf(t *testing.T, bin string, l *Lab, old string) topology.Rewound {
	t.Helper()
	var found []topology.Rewound
	waitUntil(t, 30*time.Second, "the rewind of "+old+" in the loss ledger", func() error {
		recs := recoveryList(t, bin, l, postgresCluster)
		found = nil
		for _, r := range recs {
			if r.Plan.OldPrimary != old {
				continue
			}
			for _, rw := range r.Ledger.Rewound {
				if rw.Instance == old {
					found = append(found, rw)
				}
			}
		}
		if len(found) == 0 {
			return fmt.Errorf("no rewind of %s listed: %s", old, describeRecords(recs))
		}
		return nil
	})
	if len(found) != 1 {
		t.Fatalf("the ledger lists %d rewinds of %s, want 1: %+v", len(found), old, found)
	}
	return found[0]
}

// saveManifest is rewind.json, as far as the test reads it.
type saveManifest struct {
	Fork, End         topology.Position
	Bytes             int64
	Started, Finished time.Time
	Read              string
}

// checkSaveDir checks the saved directory's modes and returns its
// rewind.json.
func checkSaveDir(t *testing.T, dir string) saveManifest {
	t.Helper()
	st, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o700 {
		t.Errorf("%s has mode %v, want 0700", dir, st.Mode().Perm())
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		info, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		if info.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", e.Name(), info.Mode().Perm())
		}
	}
	var m saveManifest
	if err := json.Unmarshal(readFile(t, filepath.Join(dir, "rewind.json")), &m); err != nil {
		t.Fatal(err)
	}
	return m
}

var (
	waldumpRecord  = regexp.MustCompile(`lsn: ([0-9A-F]+/[0-9A-F]+), prev [0-9A-F]+/[0-9A-F]+, desc: (\S+)`)
	waldumpStopped = regexp.MustCompile(`invalid record length at ([0-9A-F]+/[0-9A-F]+)`)
)

// checkSavedRange runs pg_waldump over the saved directory: bounded by
// fork..end it reads without an error; unbounded, its first record starts
// at the fork and it stops exactly at end, where the saved WAL ends. It
// returns the heap INSERTs into rel it shows.
func checkSavedRange(t *testing.T, dir string, fork, end topology.LSN, rel string) (inserts int) {
	t.Helper()
	waldump := pgTool(t, "pg_waldump")
	out, err := exec.Command(waldump, "-q", "-p", dir, "-t", "1", "-s", fork.String(), "-e", end.String()).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Fatalf("pg_waldump -s %s -e %s over %s: %v\n%s", fork, end, dir, err, out)
	}
	out, _ = exec.Command(waldump, "-p", dir, "-t", "1", "-s", fork.String()).CombinedOutput()
	var first topology.LSN
	records := 0
	for _, line := range strings.Split(string(out), "\n") {
		m := waldumpRecord.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		lsn, err := topology.ParseLSN(m[1])
		if err != nil {
			t.Fatal(err)
		}
		if records == 0 {
			first = lsn
		}
		records++
		if lsn < fork || lsn >= end {
			t.Errorf("pg_waldump shows a record at %s, outside %s..%s", lsn, fork, end)
		}
		if strings.HasPrefix(line, "rmgr: Heap ") && strings.HasPrefix(m[2], "INSERT") && strings.Contains(line, "rel "+rel+" ") {
			inserts++
		}
	}
	const pageHeader = 40 // at most: a segment's first page has the long header
	if records == 0 || first != fork && !(fork%8192 == 0 && first-fork <= pageHeader) {
		t.Errorf("pg_waldump's first record is at %s (%d records), want the fork %s\n%s", first, records, fork, out)
	}
	var stopped topology.LSN
	if m := waldumpStopped.FindStringSubmatch(string(out)); m != nil {
		stopped, _ = topology.ParseLSN(m[1])
	}
	if stopped != end {
		t.Errorf("pg_waldump stopped at %s, want the saved end %s\n%s", stopped, end, lastLines(string(out), 5))
	}
	t.Logf("pg_waldump: %d records from %s, stopped at %s", records, first, end)
	return inserts
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
