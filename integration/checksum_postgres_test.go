package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dbha/dbha/checksum"
)

// The outcomes of a check that meets trouble, on PostgreSQL: a standby
// killed mid-run (the run goes on against the other, to the end, and says
// which it lost); a table dropped mid-run (cut short, with why, and the
// tables after it still checked). Both runs exit 3: nothing differs, not
// everything was compared. The runs wait on the checkpoint, not on the
// clock: the fault lands once a few chunks of the table are checked.
func TestChecksumPostgresOutcomes(t *testing.T) {
	bin := dbhaBinary(t)
	l := binLab(t, bin)
	ctx := t.Context()
	conn, err := l.AdminPostgres(ctx, "postgres-1")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	const bigRows, smallRows = 2_000_000, 1000
	start := time.Now()
	for _, q := range []string{
		"CREATE TABLE big (id int PRIMARY KEY, v text NOT NULL, n int)",
		fmt.Sprintf("INSERT INTO big SELECT g, 'row-' || g, g %% 1000 FROM generate_series(1, %d) g", bigRows),
		"CREATE TABLE a_first (id int PRIMARY KEY, v text NOT NULL)",
		fmt.Sprintf("INSERT INTO a_first SELECT g, 'a-' || g FROM generate_series(1, %d) g", smallRows),
		"CREATE TABLE z_last (id int PRIMARY KEY, v text NOT NULL)",
		fmt.Sprintf("INSERT INTO z_last SELECT g, 'z-' || g FROM generate_series(1, %d) g", smallRows),
	} {
		if _, err := conn.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	t.Logf("%d rows written in %v", bigRows+2*smallRows, time.Since(start).Round(time.Millisecond))
	checkpoint := filepath.Join(labConfig(t, l).StateDir, "checksum", postgresCluster+".json")
	const big, first, last = "dbha_lab.public.big", "dbha_lab.public.a_first", "dbha_lab.public.z_last"

	// A standby killed a few chunks into the check of two million rows, in
	// 20 ms chunks.
	done, _ := startChecksum(t, bin, l, postgresCluster, "--table", big, "--chunk-time", "20ms")
	before := waitCheckpoint(t, checkpoint, big, 3, done)
	kept, lost := addr(t, l, "postgres-2"), addr(t, l, "postgres-3")
	if err := l.Signal("postgres-3", syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	r := checksumDone(t, done, 3*time.Minute)
	rep := checksumReport(t, r)
	if r.code != 3 || rep.Differences() != 0 || len(rep.Tables) != 1 || rep.Tables[0].Error != "" || rep.Tables[0].Rows != bigRows {
		t.Fatalf("a standby killed mid-run: exit %d, report %+v\n%s", r.code, rep, r.stderr)
	}
	if len(rep.Lost) != 1 || rep.Lost[0].Replica != lost || rep.Lost[0].Reason == "" {
		t.Errorf("lost replicas %+v: want %s, with why", rep.Lost, lost)
	}
	// postgres-2, compared from the start and never lost, was compared
	// through the last chunk: the table ended without an error.
	if !slices.Contains(rep.Replicas, kept) || rep.Tables[0].Chunks <= len(before.Chunks) {
		t.Errorf("replicas %v, %d chunks (%d before the kill): want %s compared past the kill", rep.Replicas, rep.Tables[0].Chunks, len(before.Chunks), kept)
	}
	t.Logf("killed %s after %d chunks; %d chunks, %d rows in %.1f s against %s; lost: %s", lost, len(before.Chunks),
		rep.Tables[0].Chunks, rep.Tables[0].Rows, rep.Tables[0].Seconds, kept, rep.Lost[0].Reason)
	// The lab whole again: postgres-3 restarted and streaming.
	if err := l.Start(ctx, "postgres-3"); err != nil {
		t.Fatal(err)
	}
	primary, err := l.Node("postgres-1")
	if err != nil {
		t.Fatal(err)
	}
	if err := l.waitStreaming(ctx, primary, l.nodesOfKind(KindPostgres)[1:]); err != nil {
		t.Fatal(err)
	}

	// The table dropped on the primary a few chunks into its check,
	// between two tables that are checked whole, on both standbys.
	done, _ = startChecksum(t, bin, l, postgresCluster, "--table", first, "--table", big, "--table", last, "--chunk-time", "20ms")
	before = waitCheckpoint(t, checkpoint, big, 3, done)
	if _, err := conn.Exec(ctx, "DROP TABLE big"); err != nil {
		t.Fatal(err)
	}
	r = checksumDone(t, done, 3*time.Minute)
	rep = checksumReport(t, r)
	if r.code != 3 || rep.Differences() != 0 || len(rep.Lost) != 0 || len(rep.Tables) != 3 {
		t.Fatalf("a table dropped mid-run: exit %d, report %+v\n%s", r.code, rep, r.stderr)
	}
	for i, want := range []string{first, big, last} {
		tr := rep.Tables[i]
		switch {
		case tr.Table != want:
			t.Errorf("table %d is %s, want %s", i+1, tr.Table, want)
		case want == big && (tr.Chunks < len(before.Chunks) || tr.Rows >= bigRows || !strings.Contains(tr.Error, `relation "public.big" does not exist`)):
			t.Errorf("the table dropped: %+v: want it cut short after %d chunks, for it does not exist", tr, len(before.Chunks))
		case want != big && (tr.Error != "" || tr.Rows != smallRows):
			t.Errorf("%s: %+v: want it checked whole", want, tr)
		}
	}
	t.Logf("dropped after %d chunks: %s", rep.Tables[1].Chunks, rep.Tables[1].Error)

	// A busy primary: four sessions in pg_sleep, more than --max-load 2.
	// The run says it pauses, and finishes once they are done.
	var sleepers sync.WaitGroup
	for range 4 {
		sleepers.Go(func() {
			c, err := l.AdminPostgres(ctx, "postgres-1")
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close(context.Background())
			if _, err := c.Exec(ctx, "SELECT pg_sleep(3)"); err != nil {
				t.Error(err)
			}
		})
	}
	waitUntil(t, 10*time.Second, "the sleeping sessions", func() error {
		var n int
		if err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(3)' AND state = 'active'").Scan(&n); err != nil || n < 4 {
			return fmt.Errorf("%d sessions sleep (%v)", n, err)
		}
		return nil
	})
	r = dbhaCLI(t, bin, l, "checksum", "--cluster", postgresCluster, "--table", first, "--max-load", "2")
	sleepers.Wait()
	if r.code != 0 || !strings.Contains(r.stderr, "checksum paused: ") || !strings.Contains(r.stderr, "run statements on the primary, more than 2") {
		t.Errorf("a check while the primary is busy: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}

// waitCheckpoint waits until the run (done) has checkpointed at least n
// chunks of table, and returns that checkpoint. A run that ends first
// fails the test.
func waitCheckpoint(t *testing.T, path, table string, n int, done <-chan cliResult) checksum.Checkpoint {
	t.Helper()
	var cp checksum.Checkpoint
	waitUntil(t, time.Minute, fmt.Sprintf("%d chunks of %s checked", n, table), func() error {
		select {
		case r := <-done:
			t.Fatalf("the check ended before %d chunks of %s:\n%s", n, table, r)
		default:
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		cp = checksum.Checkpoint{}
		if err := json.Unmarshal(b, &cp); err != nil {
			return err
		}
		if cp.Table != table || len(cp.Chunks) < n {
			return fmt.Errorf("at %s", cp.Next())
		}
		return nil
	})
	return cp
}

// checksumDone is the run's result, waited for at most limit.
func checksumDone(t *testing.T, done <-chan cliResult, limit time.Duration) cliResult {
	t.Helper()
	select {
	case r := <-done:
		return r
	case <-time.After(limit):
		t.Fatalf("dbha checksum did not end in %v", limit)
		return cliResult{}
	}
}
