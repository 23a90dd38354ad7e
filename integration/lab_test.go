package integration

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/dbha/dbha/config"
	"gopkg.in/yaml.v3"
)

// TestLabUpDown brings a whole lab up, checks that both clusters replicate, that `up` is
// idempotent, that a replica can be stopped and started, and that `down --purge` leaves no
// process and no directory behind.
func TestLabUpDown(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	dir := labDir(t)

	start := time.Now()
	l, already, err := Up(ctx, Options{Dir: dir, Progress: testLog{t}})
	if err != nil {
		t.Fatalf("Up: %v", err)
	}
	t.Logf("Up took %s", time.Since(start).Round(time.Millisecond))
	t.Cleanup(func() { purge(t, l) })
	if already {
		t.Fatalf("Up on an empty directory reported alreadyRunning")
	}

	checkAllRunning(ctx, t, l)
	checkConfig(t, l)

	t.Run("mariadb replicates", func(t *testing.T) { checkMariaDBReplicates(ctx, t, l, "mariadb-2", "mariadb-3") })
	t.Run("postgres replicates", func(t *testing.T) { checkPostgresReplicates(ctx, t, l, "postgres-2", "postgres-3") })

	t.Run("up again is a no-op", func(t *testing.T) {
		again, already, err := Up(ctx, Options{Dir: dir})
		if err != nil {
			t.Fatalf("second Up: %v", err)
		}
		if !already {
			t.Errorf("second Up: alreadyRunning = false")
		}
		if again.Nodes[0].PID != l.Nodes[0].PID {
			t.Errorf("second Up changed the PID of %s", l.Nodes[0].Name)
		}
	})

	t.Run("stop and start a replica", func(t *testing.T) {
		for _, name := range []string{"mariadb-2", "postgres-3"} {
			if err := l.Stop(ctx, name); err != nil {
				t.Fatalf("Stop %s: %v", name, err)
			}
			if s := statusOf(ctx, l, name); s.Alive || s.Running {
				t.Fatalf("after Stop, %s is %+v", name, s)
			}
			if err := l.Start(ctx, name); err != nil {
				t.Fatalf("Start %s: %v", name, err)
			}
		}
		checkAllRunning(ctx, t, l)
		checkMariaDBReplicates(ctx, t, l, "mariadb-2")
		checkPostgresReplicates(ctx, t, l, "postgres-3")
	})

	pids := map[string]int{}
	for _, n := range l.Nodes {
		pids[n.Name] = n.PID
	}
	if err := l.Down(ctx, true); err != nil {
		t.Fatalf("Down: %v", err)
	}
	for _, n := range l.Nodes {
		if processIsNode(pids[n.Name], n.DataDir, n.Started) {
			t.Errorf("after Down, %s (pid %d) is still running", n.Name, pids[n.Name])
		}
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("after Down(purge), %s still exists (stat: %v)", dir, err)
	}
}

// labDir makes a lab directory that the dbhalab user can enter: t.TempDir's are 0700.
func labDir(t *testing.T) string {
	dir, err := os.MkdirTemp("", "dbha-lab-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// purge stops a lab left behind by a failed test.
func purge(t *testing.T, l *Lab) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := os.Stat(l.Dir); err != nil {
		return
	}
	if t.Failed() {
		// What dbha itself said goes with the lab: show it first.
		for _, kind := range []string{KindManager, KindGuard} {
			for _, n := range l.nodesOfKind(kind) {
				t.Logf("%s:\n%s", n.LogFile, tail(n.LogFile, 40))
			}
		}
	}
	if err := l.Down(ctx, true); err != nil {
		t.Errorf("cleanup: %v", err)
	}
}

func checkAllRunning(ctx context.Context, t *testing.T, l *Lab) {
	t.Helper()
	st := l.Status(ctx)
	if len(st) != 7 {
		t.Fatalf("Status returned %d nodes, want 7: %+v", len(st), st)
	}
	for _, s := range st {
		if !s.Running {
			t.Errorf("node %s (%s, pid %d) not running: %+v", s.Name, s.Addr, s.PID, s)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
}

// checkConfig reads dbha.yaml back, rejecting unknown keys as dbha does.
func checkConfig(t *testing.T, l *Lab) {
	t.Helper()
	raw, err := os.ReadFile(l.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil {
		t.Fatalf("parse %s: %v\n%s", l.ConfigPath, err, raw)
	}
	if err := config.Validate(config.WithDefaults(cfg), l.ConfigPath); err != nil {
		t.Fatalf("the lab's configuration is not valid: %v", err)
	}
	if cfg.Consul.Address != l.ConsulHTTP || cfg.Consul.DNS != l.ConsulDNS || len(cfg.Clusters) != 2 {
		t.Fatalf("unexpected config:\n%s", raw)
	}
	for _, c := range cfg.Clusters {
		if len(c.Instances) != 3 || c.User != "dbha" || c.Replication.User != "repl" || c.Drill.User == "" {
			t.Errorf("cluster %s: unexpected %+v", c.Name, c)
		}
		for _, f := range []string{c.PasswordFile, c.Replication.PasswordFile, c.Drill.PasswordFile} {
			if _, err := readPassword(f); err != nil {
				t.Errorf("cluster %s: %v", c.Name, err)
			}
		}
	}
	if st, err := os.Stat(l.ConfigPath); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("%s: mode %v, err %v; want 0600", l.ConfigPath, st.Mode().Perm(), err)
	}
}

// checkMariaDBReplicates writes a heartbeat row on mariadb-1 and waits to read it on replicas.
func checkMariaDBReplicates(ctx context.Context, t *testing.T, l *Lab, replicas ...string) {
	primary := mysqlDB(t, l, "mariadb-1")
	res, err := primary.ExecContext(ctx, "INSERT INTO dbha_lab.heartbeat () VALUES ()")
	if err != nil {
		t.Fatalf("insert on mariadb-1: %v", err)
	}
	id, _ := res.LastInsertId()
	for _, name := range replicas {
		db := mysqlDB(t, l, name)
		eventually(t, fmt.Sprintf("row %d on %s", id, name), func() error {
			var n int
			if err := db.QueryRowContext(ctx, "SELECT COUNT(*) FROM dbha_lab.heartbeat WHERE id = ?", id).Scan(&n); err != nil {
				return err
			}
			if n != 1 {
				return errors.New("row not there yet")
			}
			return nil
		})
	}
}

// checkPostgresReplicates writes a heartbeat row on postgres-1 and waits to read it on standbys.
func checkPostgresReplicates(ctx context.Context, t *testing.T, l *Lab, standbys ...string) {
	primary, err := l.AdminPostgres(ctx, "postgres-1")
	if err != nil {
		t.Fatal(err)
	}
	defer primary.Close(ctx)
	var id int
	if err := primary.QueryRow(ctx, "INSERT INTO heartbeat DEFAULT VALUES RETURNING id").Scan(&id); err != nil {
		t.Fatalf("insert on postgres-1: %v", err)
	}
	for _, name := range standbys {
		conn, err := l.AdminPostgres(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		eventually(t, fmt.Sprintf("row %d on %s", id, name), func() error {
			var n int
			if err := conn.QueryRow(ctx, "SELECT count(*) FROM heartbeat WHERE id = $1", id).Scan(&n); err != nil {
				return err
			}
			if n != 1 {
				return errors.New("row not there yet")
			}
			return nil
		})
		conn.Close(ctx)
	}
}

func mysqlDB(t *testing.T, l *Lab, name string) *sql.DB {
	t.Helper()
	db, err := l.AdminMySQL(name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func statusOf(ctx context.Context, l *Lab, name string) NodeStatus {
	for _, s := range l.Status(ctx) {
		if s.Name == name {
			return s
		}
	}
	return NodeStatus{}
}

// eventually polls fn for up to 30 s.
func eventually(t *testing.T, what string, fn func() error) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := fn()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s: %v", what, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// testLog sends the lab's progress lines to the test log.
type testLog struct{ t *testing.T }

func (w testLog) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// upLab brings up a lab in a fresh directory for a test. A lab that fails
// to come up is stopped and tried once more in another directory, and the
// first failure is logged: under the full suite a lab's server now and
// then dies at once without a word in its log (cause not found), which is
// no finding about dbha. A second failure fails the test.
func upLab(t *testing.T, ctx context.Context, o Options) *Lab {
	t.Helper()
	if o.Dir == "" {
		o.Dir = labDir(t)
	}
	l, _, err := Up(ctx, o)
	if err == nil {
		return l
	}
	t.Logf("lab up failed, trying once more in a fresh directory: %v", err)
	if failed, lerr := Load(o.Dir); lerr == nil {
		failed.Down(context.WithoutCancel(ctx), true)
	}
	o.Dir = labDir(t)
	l, _, err = Up(ctx, o)
	if err != nil {
		t.Fatalf("lab up (second try): %v", err)
	}
	return l
}
