package integration

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dbha/dbha/topology"
	"github.com/dbha/dbha/topology/mysql"
	"github.com/dbha/dbha/topology/postgres"
)

func adminDB(t *testing.T, l *Lab, node string) *sql.DB {
	t.Helper()
	db, err := l.AdminMySQL(node)
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1) // session variables (sql_log_bin) must stay on one connection
	t.Cleanup(func() { db.Close() })
	return db
}

func mustExec(t *testing.T, db *sql.DB, stmts ...string) {
	t.Helper()
	for _, s := range stmts {
		if _, err := db.Exec(s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
}

func TestErrantTransactionOnReplica(t *testing.T) {
	l := sharedLab(t)
	waitSnapshot(t, l, "lab-mariadb", "a healthy cluster", healthy)
	replica := adminDB(t, l, "mariadb-3")
	var slavePos string
	if err := replica.QueryRow("SELECT @@gtid_slave_pos").Scan(&slavePos); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { repairErrant(t, l, replica, slavePos) })

	// A write straight on the replica (admin may write under read_only).
	mustExec(t, replica, "INSERT INTO dbha_lab.heartbeat (id) VALUES (1000000)")
	r3 := addr(t, l, "mariadb-3")
	s := waitSnapshot(t, l, "lab-mariadb", "the errant transaction reported", func(s topology.Snapshot) error {
		return hasProblem(s, topology.ErrantTransactions, r3, "-3-")
	})
	in, _ := s.Instance(r3)
	if !strings.Contains(in.Errant.String(), "0-3-") {
		t.Errorf("errant = %q, want a GTID from server 3", in.Errant)
	}

	// Once the primary commits the same sequence number, the histories have
	// forked: the replica is Diverged, and strict mode stops its SQL thread.
	writeRows(t, l, "mariadb-1", 1)
	s = waitSnapshot(t, l, "lab-mariadb", "the replica stopped on the fork", func(s topology.Snapshot) error {
		return hasProblem(s, topology.ReplicationStopped, r3, "")
	})
	in, _ = s.Instance(r3)
	p, _ := s.Instance(s.Primary)
	if o, _ := topology.Compare(in.History, p.History); o != topology.Diverged {
		t.Errorf("replica history %s is %v the primary's %s, want diverged", in.History, o, p.History)
	}
}

// repairErrant removes the errant row and history from the replica and
// lets it re-fetch from where it was.
func repairErrant(t *testing.T, l *Lab, replica *sql.DB, slavePos string) {
	mustExec(t, replica,
		"STOP SLAVE",
		"SET SESSION sql_log_bin = 0",
		"DELETE FROM dbha_lab.heartbeat WHERE id = 1000000",
		"SET SESSION sql_log_bin = 1",
		"RESET MASTER",
		fmt.Sprintf("SET GLOBAL gtid_slave_pos = '%s'", slavePos),
		"START SLAVE")
	waitSnapshot(t, l, "lab-mariadb", "the repaired cluster healthy", healthy)
}

func TestStoppedSQLThread(t *testing.T) {
	l := sharedLab(t)
	waitSnapshot(t, l, "lab-mariadb", "a healthy cluster", healthy)
	replica := adminDB(t, l, "mariadb-2")
	r2 := addr(t, l, "mariadb-2")

	t.Run("stopped by hand", func(t *testing.T) {
		mustExec(t, replica, "STOP SLAVE SQL_THREAD")
		defer mustExec(t, replica, "START SLAVE SQL_THREAD")
		waitSnapshot(t, l, "lab-mariadb", "the stopped SQL thread reported", func(s topology.Snapshot) error {
			return hasProblem(s, topology.ReplicationStopped, r2, "applying is No")
		})
	})
	waitSnapshot(t, l, "lab-mariadb", "healthy again", healthy)

	t.Run("stopped by an error", func(t *testing.T) {
		// A row only the replica has (not binlogged), then the same key on the primary.
		mustExec(t, replica, "SET SESSION sql_log_bin = 0", "INSERT INTO dbha_lab.heartbeat (id) VALUES (2000000)", "SET SESSION sql_log_bin = 1")
		primary := adminDB(t, l, "mariadb-1")
		mustExec(t, primary, "INSERT INTO dbha_lab.heartbeat (id) VALUES (2000000)")
		waitSnapshot(t, l, "lab-mariadb", "the SQL error reported", func(s topology.Snapshot) error {
			return hasProblem(s, topology.ReplicationStopped, r2, "Duplicate entry")
		})
		mustExec(t, replica, "SET SESSION sql_log_bin = 0", "DELETE FROM dbha_lab.heartbeat WHERE id = 2000000", "SET SESSION sql_log_bin = 1", "START SLAVE")
	})
	waitSnapshot(t, l, "lab-mariadb", "healthy again", healthy)
}

func TestStoppedWALReceiverAndPausedReplay(t *testing.T) {
	l := sharedLab(t)
	waitSnapshot(t, l, "lab-postgres", "a healthy cluster", healthy)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	standby, err := l.AdminPostgres(ctx, "postgres-3")
	if err != nil {
		t.Fatal(err)
	}
	defer standby.Close(context.Background())
	s3 := addr(t, l, "postgres-3")

	t.Run("replay paused", func(t *testing.T) {
		if _, err := standby.Exec(ctx, "SELECT pg_wal_replay_pause()"); err != nil {
			t.Fatal(err)
		}
		defer standby.Exec(ctx, "SELECT pg_wal_replay_resume()")
		waitSnapshot(t, l, "lab-postgres", "paused replay reported", func(s topology.Snapshot) error {
			return hasProblem(s, topology.ReplicationStopped, s3, "applying is paused")
		})
	})

	t.Run("WAL receiver stopped", func(t *testing.T) {
		var conninfo string
		if err := standby.QueryRow(ctx, "SHOW primary_conninfo").Scan(&conninfo); err != nil {
			t.Fatal(err)
		}
		if _, err := standby.Exec(ctx, "ALTER SYSTEM SET primary_conninfo = ''"); err != nil {
			t.Fatal(err)
		}
		if _, err := standby.Exec(ctx, "SELECT pg_reload_conf()"); err != nil {
			t.Fatal(err)
		}
		defer func() {
			// Quote the saved value as a string literal; it holds a password.
			lit := "'" + strings.ReplaceAll(conninfo, "'", "''") + "'"
			if _, err := standby.Exec(ctx, "ALTER SYSTEM SET primary_conninfo = "+lit); err != nil {
				t.Errorf("restore primary_conninfo: %v", err)
			}
			standby.Exec(ctx, "SELECT pg_reload_conf()")
		}()
		waitSnapshot(t, l, "lab-postgres", "the stopped receiver reported", func(s topology.Snapshot) error {
			return hasProblem(s, topology.ReplicationStopped, s3, "primary_conninfo is empty")
		})
	})
	waitSnapshot(t, l, "lab-postgres", "healthy again", healthy)
}

func TestInstanceDown(t *testing.T) {
	l := sharedLab(t)
	for _, c := range []struct{ cluster, node, kind string }{{"lab-mariadb", "mariadb-3", KindMariaDB}, {"lab-postgres", "postgres-3", KindPostgres}} {
		t.Run(c.cluster, func(t *testing.T) {
			waitSnapshot(t, l, c.cluster, "a healthy cluster", healthy)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			if err := l.Stop(ctx, c.node); err != nil {
				t.Fatal(err)
			}
			down := addr(t, l, c.node)
			s := discover(t, l, c.cluster)
			if err := hasProblem(s, topology.InstanceUnreachable, down, down); err != nil {
				t.Error(err)
			}
			if len(s.Problems) != 1 {
				t.Errorf("want only the unreachable instance reported, got %+v", s.Problems)
			}
			if s.Primary != addr(t, l, c.kind+"-1") {
				t.Errorf("primary = %q while a replica is down", s.Primary)
			}
			if other, _ := s.Instance(addr(t, l, c.kind+"-2")); other.Role != topology.RoleReplica || !other.Reachable {
				t.Errorf("the other replica is not shown: %+v", other)
			}
			if err := l.Start(ctx, c.node); err != nil {
				t.Fatal(err)
			}
			waitSnapshot(t, l, c.cluster, "healthy after restart", healthy)
		})
	}
}

func TestWrongPassword(t *testing.T) {
	l := sharedLab(t)
	cfg := labConfig(t, l)
	for _, cl := range cfg.Clusters {
		t.Run(cl.Name, func(t *testing.T) {
			var p topology.Prober
			if cl.Engine == "postgres" {
				pp := postgres.NewProber(cl.User, "not-the-password")
				defer pp.Close()
				p = pp
			} else {
				mp := mysql.NewProber(cl.Engine, cl.User, "not-the-password")
				defer mp.Close()
				p = mp
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			s := topology.Discover(ctx, cl.Topology(), p, cfg.Probe.Timeout)
			for _, addr := range cl.Instances {
				if err := hasProblem(s, topology.AccessDenied, addr, `user "dbha"`); err != nil {
					t.Error(err)
				}
			}
		})
	}
}

// TestCLI runs the built dbha binary against the lab: what an operator runs.
func TestCLI(t *testing.T) {
	l := sharedLab(t)
	waitSnapshot(t, l, "lab-mariadb", "a healthy cluster", healthy)
	waitSnapshot(t, l, "lab-postgres", "a healthy cluster", healthy)
	bin := filepath.Join(t.TempDir(), "dbha")
	build := exec.Command("go", "build", "-o", bin, "github.com/dbha/dbha/cmd/dbha")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	run := func(args ...string) (string, int) {
		cmd := exec.Command(bin, append([]string{"--config", l.ConfigPath}, args...)...)
		out, err := cmd.CombinedOutput()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return string(out), code
	}

	out, code := run("topology", "-o", "json")
	if code != 0 {
		t.Fatalf("topology -o json exited %d:\n%s", code, out)
	}
	var doc struct {
		Clusters []topology.Snapshot `json:"clusters"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("JSON output does not parse: %v\n%s", err, out)
	}
	if len(doc.Clusters) != 2 || doc.Clusters[0].Primary != addr(t, l, "mariadb-1") || doc.Clusters[1].Primary != addr(t, l, "postgres-1") {
		t.Errorf("unexpected clusters: %+v", doc.Clusters)
	}

	out, code = run("topology", "--cluster", "lab-postgres")
	if code != 0 || !strings.Contains(out, "lab-postgres (postgres)  primary "+addr(t, l, "postgres-1")+"  healthy") {
		t.Errorf("text output (exit %d):\n%s", code, out)
	}
	if _, code = run("topology", "--cluster", "nope"); code != 2 {
		t.Errorf("unknown cluster exited %d, want 2", code)
	}

	// A replica down: exit 1, and the rest of the picture still printed.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := l.Stop(ctx, "mariadb-2"); err != nil {
		t.Fatal(err)
	}
	out, code = run("topology", "--cluster", "lab-mariadb")
	if err := l.Start(ctx, "mariadb-2"); err != nil {
		t.Fatal(err)
	}
	if code != 1 || !strings.Contains(out, "UNREACHABLE") || !strings.Contains(out, addr(t, l, "mariadb-3")+"  replica") {
		t.Errorf("with a replica down (exit %d):\n%s", code, out)
	}
	for _, secret := range []string{"mariadb-dbha", "postgres-dbha"} {
		pw, err := os.ReadFile(l.Secret(secret))
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(out, strings.TrimSpace(string(pw))) {
			t.Errorf("output shows the %s password", secret)
		}
	}
	waitSnapshot(t, l, "lab-mariadb", "healthy after restart", healthy)
}
