package integration

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dbha/dbha/backup"
)

// TestAutoReseedWhenRewindRefused: with promotion.reseed: auto, a former
// MariaDB primary whose tail cannot be undone (a CREATE TABLE nobody else
// received) is rebuilt by `dbha run` from the newest verified backup and
// follows the new primary, with nobody's help. Its former data directory
// is kept aside.
func TestAutoReseedWhenRewindRefused(t *testing.T) {
	bin := dbhaBinary(t)
	t.Parallel()
	// A lab of its own: the reseed restarts the node through `dbha lab`,
	// which records its new PID on disk, not in this lab's memory.
	l := binLab(t, bin)
	c := consulClient(t, l)
	waitSnapshot(t, l, mariadbCluster, "a healthy cluster", healthy)
	oldAddr := addr(t, l, "mariadb-1")

	// A table the backup holds, to carry a row written after the reseed.
	const probe = "dbha_lab.reseed_probe"
	mustExec(t, mysqlDB(t, l, "mariadb-1"), "CREATE TABLE "+probe+" (id INT PRIMARY KEY, what VARCHAR(40) NOT NULL)",
		"INSERT INTO "+probe+" VALUES (1, 'before the backup')")
	stopReceiving(t, l, "mariadb-1", "mariadb-2", "mariadb-3") // waits for the replicas to hold the table
	for _, r := range []string{"mariadb-2", "mariadb-3"} {
		mustExec(t, mysqlDB(t, l, r), "START SLAVE IO_THREAD")
	}

	run := func(args ...string) cliResult {
		t.Helper()
		return dbhaCLI(t, bin, l, append(args, "--cluster", mariadbCluster)...)
	}
	r := run("backup", "run", "-o", "json")
	var doc struct {
		Backups []backup.Entry `json:"backups"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil || r.code != 0 || len(doc.Backups) != 1 {
		t.Fatalf("backup run: %v\n%s", err, r)
	}
	taken := doc.Backups[0]
	if taken.Source == oldAddr {
		t.Fatalf("the backup was taken from the primary %s, not a replica", taken.Source)
	}
	if r := run("backup", "verify", taken.ID); r.code != 0 || !strings.Contains(r.stdout, "verified true") {
		t.Fatalf("verify: %s", r)
	}
	t.Logf("backup %s of %s at %s, verified", taken.ID, taken.Source, taken.Position)

	// Index 0 is lab-mariadb (the lab writes it first). dbha's stream is
	// off: it would hold the tail, and the recovery would replay it on the
	// new primary, leaving the old one nothing of its own.
	daemon := startDbhaRun(t, bin, l, "reseeder",
		"DBHA_CLUSTERS_0_PROMOTION_RESEED=auto", "DBHA_CLUSTERS_0_STREAM_ENABLED=false")
	waitPublishedWriter(t, c, mariadbCluster, oldAddr)

	// The tail: a DDL, and a row in the table it creates, that neither
	// replica receives. Their links come back once the primary is dead, so
	// that they vote it dead and dbha run fails over.
	const tail = "dbha_lab.reseed_tail"
	stopReceiving(t, l, "mariadb-1", "mariadb-2", "mariadb-3")
	mustExec(t, mysqlDB(t, l, "mariadb-1"), "CREATE TABLE "+tail+" (id INT PRIMARY KEY)", "INSERT INTO "+tail+" VALUES (1)")
	killTree(t, l, "mariadb-1")
	for _, r := range []string{"mariadb-2", "mariadb-3"} {
		mustExec(t, mysqlDB(t, l, r), "START SLAVE IO_THREAD")
	}
	rec := waitRecoveryOf(t, bin, l, mariadbCluster, oldAddr, 60*time.Second)
	newAddr := rec.Plan.NewPrimary
	waitPublishedWriter(t, c, mariadbCluster, newAddr)
	t.Logf("failover %s -> %s in %.3fs", oldAddr, newAddr, rec.RTOSeconds)

	n, err := l.NodeByAddr(oldAddr)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	started := time.Now()
	if err := l.Start(ctx, "mariadb-1"); err != nil {
		t.Fatal(err)
	}
	waitHealthy(t, l, mariadbCluster, 5*time.Minute, "the old primary reseeded and following "+newAddr, rejoined(newAddr, oldAddr))
	t.Logf("%s replicates from %s %v after it was started", oldAddr, newAddr, time.Since(started).Round(time.Millisecond))
	// The reseed ends when it has seen the instance replicate, a moment
	// after the snapshot above may: wait for dbha run to say so.
	const reseeded = "reseeded a former primary from a backup; it follows the writer"
	waitUntil(t, time.Minute, "dbha run to say that the reseed ended", func() error {
		if len(keeperLines(daemon, reseeded)) == 0 {
			return fmt.Errorf("not yet")
		}
		return nil
	})
	t.Logf("dbha run reports the reseed done %v after the old primary was started", time.Since(started).Round(time.Millisecond))

	reseeding := keeperLines(daemon, "reseeding a former primary whose transactions cannot be undone (promotion.reseed: auto)")
	if len(reseeding) != 1 || reseeding[0].Instance != oldAddr || !strings.Contains(reseeding[0].Why, "CREATE TABLE "+tail) {
		t.Errorf("dbha run did not say once that it reseeds %s because its rewind was refused over the CREATE TABLE: %+v", oldAddr, reseeding)
	}
	if done := keeperLines(daemon, reseeded); len(done) != 1 || done[0].Instance != oldAddr {
		t.Errorf("dbha run did not say once that it reseeded %s: %+v", oldAddr, done)
	}
	if failed := keeperLines(daemon, "reseed of a former primary failed"); len(failed) != 0 {
		t.Errorf("reseeds failed before one succeeded: %+v", failed)
	}
	if len(reseeding) > 0 {
		t.Logf("why: %s", reseeding[0].Why)
	}

	old := mysqlDB(t, l, "mariadb-1")
	var tables int
	if err := old.QueryRow("SELECT count(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'dbha_lab' AND TABLE_NAME = 'reseed_tail'").Scan(&tables); err != nil {
		t.Fatal(err)
	}
	if tables != 0 {
		t.Errorf("the table the old primary's tail created is still on it: it was not rebuilt from the backup")
	}
	mustExec(t, mysqlDB(t, l, nodeName(t, l, newAddr)), "INSERT INTO "+probe+" VALUES (2, 'after the reseed')")
	eventually(t, "a row written on the new primary to reach the reseeded old one", func() error {
		var ids []int
		rows, err := old.Query("SELECT id FROM " + probe + " ORDER BY id")
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var id int
			if err := rows.Scan(&id); err != nil {
				return err
			}
			ids = append(ids, id)
		}
		if !slices.Equal(ids, []int{1, 2}) {
			return fmt.Errorf("ids %v, want [1 2]", ids)
		}
		return rows.Err()
	})

	previous, _ := filepath.Glob(n.DataDir + ".before-reseed-*")
	if len(previous) != 1 {
		t.Fatalf("the former data directory was not kept aside: %v", previous)
	}
	if _, err := os.Stat(filepath.Join(previous[0], "dbha_lab", "reseed_tail.frm")); err != nil {
		t.Errorf("the directory kept aside does not hold the tail's table: %v", err)
	}
	os.RemoveAll(previous[0])
}

// keeperLine is one log line of the keeper about an instance.
type keeperLine struct {
	Msg      string `json:"msg"`
	Cluster  string `json:"cluster"`
	Instance string `json:"instance"`
	Why      string `json:"why"`
	Err      string `json:"err"`
}

// keeperLines returns dbha run's lab-mariadb log lines whose message is msg.
func keeperLines(p *dbhaRun, msg string) []keeperLine {
	var out []keeperLine
	sc := bufio.NewScanner(strings.NewReader(p.log()))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var r keeperLine
		if json.Unmarshal(sc.Bytes(), &r) == nil && r.Cluster == mariadbCluster && r.Msg == msg {
			out = append(out, r)
		}
	}
	return out
}
