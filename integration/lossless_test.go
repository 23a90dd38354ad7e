package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dbha/dbha/binlog"
	"github.com/dbha/dbha/drill"
	"github.com/dbha/dbha/promote"
	"github.com/dbha/dbha/topology"
)

// TestRowsOnlyTheStreamHeld: asynchronous replication, every replica's
// link stopped, rows written on the primary (only it and dbha's stream
// have them), the primary killed: after the failover the new primary and
// every replica hold them all. This is what dbha's own copy of the binlog
// and WAL is for. With every replica told to stop receiving, none can
// confirm the death, so dbha run reports UnreachablePrimary and never fails
// over by itself, and a plain dbha promote is refused for the same reason
// (1 of 4 voters): the operator, who knows the primary is dead, forces it,
// and the record says the quorum was overridden.
func TestRowsOnlyTheStreamHeld(t *testing.T) {
	bin := dbhaBinary(t)
	for _, c := range []struct{ cluster, kind string }{{"lab-mariadb", KindMariaDB}, {"lab-postgres", KindPostgres}} {
		t.Run(c.cluster, func(t *testing.T) {
			l := binLab(t, bin)
			run := startDbhaRun(t, bin, l, "m1")
			primary, replicas := c.kind+"-1", []string{c.kind + "-2", c.kind + "-3"}
			waitStreamHolds(t, bin, l, c.cluster, primary)
			before := map[string]int64{}
			for _, r := range replicas {
				stopLink(t, l, r)
				before[r], _ = rowCount(t, l, r, 1<<62)
			}
			const rows = 25
			writeRows(t, l, primary, rows)
			waitStreamHolds(t, bin, l, c.cluster, primary)
			for _, r := range replicas {
				if n, _ := rowCount(t, l, r, 1<<62); n != before[r] {
					t.Fatalf("%s received rows (%d, had %d): its link was not stopped", r, n, before[r])
				}
			}
			if err := l.Signal(primary, syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			waitUntil(t, 30*time.Second, "dbha run to report the primary unreachable", func() error {
				if len(run.appeared(c.cluster, "UnreachablePrimary")) == 0 {
					return fmt.Errorf("not yet")
				}
				return nil
			})
			if got := run.appeared(c.cluster, "DeadPrimary"); len(got) != 0 {
				t.Fatalf("DeadPrimary with no replica able to confirm: %+v", got)
			}
			if r := dbhaCLI(t, bin, l, "promote", "--cluster", c.cluster); r.code == 0 || !strings.Contains(r.stderr, "no quorum") {
				t.Fatalf("dbha promote without a majority of voters: %s; want it refused for want of a quorum", r)
			}
			if r := dbhaCLI(t, bin, l, "promote", "--cluster", c.cluster, "--force"); r.code != 0 {
				t.Fatalf("dbha promote --force: %s", r)
			}
			rec := waitRecoveryDone(t, bin, l, c.cluster, time.Minute)
			if rec.QuorumOverridden == "" {
				t.Errorf("the forced recovery's record does not say the quorum was overridden")
			}
			if !stepDone(rec, promote.ActApply) {
				t.Errorf("the recovery applied nothing from the stream: %+v", rec.Steps)
			}
			for _, r := range replicas {
				waitUntil(t, 30*time.Second, r+" holds every row", func() error {
					if n, _ := rowCount(t, l, r, 1<<62); n != before[r]+rows {
						return fmt.Errorf("%d of %d new rows", n-before[r], rows)
					}
					return nil
				})
			}
			t.Logf("failover %s -> %s in %.3fs, %s", rec.Plan.OldPrimary, rec.Plan.NewPrimary, rec.RTOSeconds, run.manager)
		})
	}
}

// TestLosslessDrill: with dbha's stream acknowledging commits (MariaDB
// semi-sync, PostgreSQL synchronous standby), kill -9 under continuous
// writes loses no acknowledged row.
func TestLosslessDrill(t *testing.T) {
	bin := dbhaBinary(t)
	l := binLab(t, bin, func(o *Options) { o.Lossless = true })
	for _, cluster := range []string{"lab-mariadb", "lab-postgres"} {
		t.Run(cluster, func(t *testing.T) {
			r := dbhaCLI(t, bin, l, "drill", "--cluster", cluster, "--runs", "3", "-o", "json")
			var s drill.Summary
			if err := json.Unmarshal([]byte(r.stdout), &s); err != nil {
				t.Fatalf("drill output: %v\n%s", err, r)
			}
			for _, run := range s.Runs {
				t.Logf("run %d: %s -> %s RTO %.3fs, %d of %d acknowledged rows lost %s",
					run.N, run.OldPrimary, run.NewPrimary, run.RTOSeconds, run.LostRows, run.AckedRows, run.Error)
				if run.Error != "" || run.NewPrimary == "" || run.NewPrimary == run.OldPrimary {
					t.Errorf("run %d did not recover: %s", run.N, run.Error)
				}
				if run.LostRows != 0 {
					t.Errorf("run %d lost %d acknowledged rows with the stream acknowledging", run.N, run.LostRows)
				}
			}
			if len(s.Runs) != 3 {
				t.Errorf("%d runs, want 3:\n%s", len(s.Runs), r)
			}
		})
	}
}

// waitStreamHolds waits until dbha's stream holds what node has.
func waitStreamHolds(t *testing.T, bin string, l *Lab, cluster, node string) {
	t.Helper()
	waitUntil(t, 30*time.Second, "the stream to hold "+node+"'s position", func() error {
		want := discoverInstance(t, l, cluster, node).Current
		st, err := binlog.ReadStatus(binlog.Dir(l.Dir+"/state", cluster))
		if err != nil {
			return err
		}
		if o, err := topology.Compare(st.Position, want); err != nil || (o != topology.Equal && o != topology.Ahead) {
			return fmt.Errorf("stream at %s, %s at %s (%v %v)", st.Position, node, want, o, err)
		}
		return nil
	})
}

func discoverInstance(t *testing.T, l *Lab, cluster, node string) topology.Instance {
	t.Helper()
	in, _ := discover(t, l, cluster).Instance(addr(t, l, node))
	return in
}

// stopLink stops a replica receiving from its primary: the IO thread
// (MariaDB), or the WAL receiver by an empty primary_conninfo (PostgreSQL).
func stopLink(t *testing.T, l *Lab, node string) {
	t.Helper()
	if strings.HasPrefix(node, KindMariaDB) {
		mustExec(t, adminDB(t, l, node), "STOP SLAVE IO_THREAD")
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := l.AdminPostgres(ctx, node)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	for _, q := range []string{"ALTER SYSTEM SET primary_conninfo = ''", "SELECT pg_reload_conf()"} {
		if _, err := conn.Exec(ctx, q); err != nil {
			t.Fatalf("%s on %s: %v", q, node, err)
		}
	}
	waitUntil(t, 10*time.Second, node+"'s WAL receiver to stop", func() error {
		var n int
		if err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_stat_wal_receiver").Scan(&n); err != nil || n != 0 {
			return fmt.Errorf("%d receivers (%v)", n, err)
		}
		return nil
	})
}

// stepDone reports whether a recovery completed a step of that action.
func stepDone(r promote.Record, action promote.Action) bool {
	for _, s := range r.Steps {
		if s.Action == action && s.Error == "" {
			return true
		}
	}
	return false
}

// TestLosslessMariaDBPrimaryCannotCommitAlone: in a --lossless lab, with
// no dbha stream running and both replicas' IO threads stopped (every
// acknowledger gone, as for a primary cut off from the rest of the
// cluster), a commit on the MariaDB primary does not return; the first
// replica that connects again releases it. Before, semi-sync fell back to
// asynchronous commits and such a commit returned at once. Discovery
// reads the settings that make this so, and judges them lossless.
func TestLosslessMariaDBPrimaryCannotCommitAlone(t *testing.T) {
	l := binLab(t, "", func(o *Options) { o.Lossless = true })
	const primary = "mariadb-1"
	in := discoverInstance(t, l, "lab-mariadb", primary)
	if ok, why := in.Ack.Lossless(topology.MariaDB); !ok {
		t.Fatalf("the lossless lab's primary can acknowledge alone: %s (%+v)", why, in.Ack)
	}
	for _, r := range []string{"mariadb-2", "mariadb-3"} {
		if rep := discoverInstance(t, l, "lab-mariadb", r); rep.Ack == nil || rep.Ack.SemiSync {
			t.Errorf("%s waits for acknowledgements as a replica (it would hold its own SQL thread): %+v", r, rep.Ack)
		}
	}
	admin := adminDB(t, l, primary)
	status := func(name string) string {
		var n, v string
		if err := admin.QueryRow("SHOW GLOBAL STATUS LIKE '"+name+"'").Scan(&n, &v); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		return v
	}
	waitUntil(t, 30*time.Second, "both replicas connected as semi-sync replicas", func() error {
		if c := status("Rpl_semi_sync_master_clients"); c != "2" {
			return fmt.Errorf("%s semi-sync clients", c)
		}
		return nil
	})
	for _, r := range []string{"mariadb-2", "mariadb-3"} {
		stopLink(t, l, r)
	}
	t.Cleanup(func() {
		// Whatever happened: no commit left waiting, replication running.
		kill, err := l.AdminMySQL(primary)
		if err == nil {
			rows, qerr := kill.Query(`SELECT id FROM information_schema.PROCESSLIST WHERE state LIKE 'Waiting for semi-sync ACK%'`)
			if qerr == nil {
				var ids []int64
				for rows.Next() {
					var id int64
					if rows.Scan(&id) == nil {
						ids = append(ids, id)
					}
				}
				rows.Close()
				for _, id := range ids {
					kill.Exec(fmt.Sprintf("KILL CONNECTION %d", id))
				}
			}
			kill.Close()
		}
		for _, r := range []string{"mariadb-2", "mariadb-3"} {
			if db, err := l.AdminMySQL(r); err == nil {
				db.Exec("START SLAVE IO_THREAD")
				db.Close()
			}
		}
	})
	waitUntil(t, 30*time.Second, "no semi-sync replica connected", func() error {
		if c := status("Rpl_semi_sync_master_clients"); c != "0" {
			return fmt.Errorf("%s semi-sync clients", c)
		}
		return nil
	})

	writer, err := l.AdminMySQL(primary)
	if err != nil {
		t.Fatal(err)
	}
	defer writer.Close()
	done := make(chan error, 1)
	start := time.Now()
	go func() {
		_, err := writer.Exec("INSERT INTO dbha_lab.heartbeat () VALUES ()")
		done <- err
	}()
	const blocked = 3 * time.Second
	select {
	case err := <-done:
		t.Fatalf("a commit with no acknowledger returned after %v (%v): the primary commits alone", time.Since(start).Round(time.Millisecond), err)
	case <-time.After(blocked):
	}
	var waiting int
	if err := admin.QueryRow(`SELECT count(*) FROM information_schema.PROCESSLIST WHERE state LIKE 'Waiting for semi-sync ACK%'`).Scan(&waiting); err != nil {
		t.Fatal(err)
	}
	if waiting != 1 || status("Rpl_semi_sync_master_status") != "ON" {
		t.Fatalf("%d commits waiting for an acknowledgement, semi-sync status %s: want 1 and ON (no fallback)", waiting, status("Rpl_semi_sync_master_status"))
	}
	t.Logf("the commit still waits after %v with no acknowledger", blocked)

	// Healed: one acknowledger is enough.
	mustExec(t, adminDB(t, l, "mariadb-2"), "START SLAVE IO_THREAD")
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("the commit failed once a replica acknowledged it: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the commit did not return within 30 s of a replica connecting again")
	}
}

// TestFenceALosslessPrimaryWithACommitWaiting: a lossless MariaDB primary
// cut off from every acknowledger holds its clients' commits for ever, and
// SET GLOBAL read_only waits for commits in flight: the fence must still
// complete (the keeper fences a returning old primary with it), and the
// waiting client must get an error, not an acknowledgement.
func TestFenceALosslessPrimaryWithACommitWaiting(t *testing.T) {
	l := binLab(t, "", func(o *Options) { o.Lossless = true })
	const primary = "mariadb-1"
	admin := adminDB(t, l, primary)
	waitUntil(t, 30*time.Second, "both replicas connected as semi-sync replicas", func() error {
		var n, v string
		if err := admin.QueryRow("SHOW GLOBAL STATUS LIKE 'Rpl_semi_sync_master_clients'").Scan(&n, &v); err != nil || v != "2" {
			return fmt.Errorf("%s semi-sync clients (%v)", v, err)
		}
		return nil
	})
	for _, r := range []string{"mariadb-2", "mariadb-3"} {
		stopLink(t, l, r)
	}
	t.Cleanup(func() {
		for _, r := range []string{"mariadb-2", "mariadb-3"} {
			if db, err := l.AdminMySQL(r); err == nil {
				db.Exec("START SLAVE IO_THREAD")
				db.Close()
			}
		}
	})
	writer, err := l.AdminMySQL(primary)
	if err != nil {
		t.Fatal(err)
	}
	defer writer.Close()
	done := make(chan error, 1)
	go func() {
		_, err := writer.Exec("INSERT INTO dbha_lab.heartbeat () VALUES ()")
		done <- err
	}()
	waitUntil(t, 10*time.Second, "a commit waiting for an acknowledgement", func() error {
		var waiting int
		if err := admin.QueryRow(`SELECT count(*) FROM information_schema.PROCESSLIST WHERE state LIKE 'Waiting for semi-sync ACK%'`).Scan(&waiting); err != nil || waiting != 1 {
			return fmt.Errorf("%d waiting (%v)", waiting, err)
		}
		return nil
	})

	c := rewindController(t, l)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Fence(ctx, addr(t, l, primary)); err != nil {
		t.Fatalf("fence of a primary whose commit waits for an acknowledgement: %v", err)
	}
	after, err := l.AdminMySQL(primary) // the fence ended the sessions before it
	if err != nil {
		t.Fatal(err)
	}
	defer after.Close()
	var ro int
	if err := after.QueryRow("SELECT @@read_only").Scan(&ro); err != nil || ro != 1 {
		t.Fatalf("read_only %d (%v) after the fence", ro, err)
	}
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("the waiting commit was acknowledged by the fence: it must end in an error")
		}
		t.Logf("the waiting client got: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("the waiting commit neither returned nor failed 10 s after the fence")
	}
}
