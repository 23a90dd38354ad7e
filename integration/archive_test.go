package integration

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dbha/dbha/backup"
	mysqlstream "github.com/dbha/dbha/binlog/mysql"
	pgstream "github.com/dbha/dbha/binlog/postgres"
	"github.com/dbha/dbha/topology"
)

// TestPointInTimeFromObjectStorageAlone: `dbha run` archives the
// change-stream store into an encrypted bucket beside the backups; with
// the manager's host gone (its daemon stopped, and a configuration whose
// state directory is new and empty, as on a fresh machine), `dbha backup
// restore --until` fetches the archived store and restores the backup to
// the target exactly, for both engines.
func TestPointInTimeFromObjectStorageAlone(t *testing.T) {
	bin := dbhaBinary(t)
	t.Parallel()
	l := binLab(t, bin)
	waitSnapshot(t, l, mariadbCluster, "a healthy cluster", healthy)
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	config, store, keyFile := bucketConfig(ctx, t, l, "dbha-site", "site")
	dir := t.TempDir()
	daemon := exec.Command(bin, "--config", config, "run")
	daemon.Env = append(os.Environ(), "DBHA_MANAGER_NAME=archiver")
	logPath := filepath.Join(dir, "run.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	daemon.Stdout, daemon.Stderr = logFile, logFile
	if err := daemon.Start(); err != nil {
		t.Fatal(err)
	}
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			daemon.Process.Signal(syscall.SIGTERM)
			daemon.Wait()
			logFile.Close()
		}
	}
	t.Cleanup(stop)

	cli := func(config string, args ...string) (string, string) {
		t.Helper()
		var stdout, stderr strings.Builder
		c := exec.CommandContext(ctx, bin, append([]string{"--config", config}, args...)...)
		c.Stdout, c.Stderr = &stdout, &stderr
		if err := c.Run(); err != nil {
			raw, _ := os.ReadFile(logPath)
			t.Fatalf("dbha %s: %v\n%s%s\ndaemon log:\n%s", strings.Join(args, " "), err, stdout.String(), stderr.String(), raw)
		}
		return stdout.String(), stderr.String()
	}
	primary := mysqlDB(t, l, "mariadb-1")
	mustExec(t, primary, "CREATE TABLE dbha_lab.dbha_archive (id INT PRIMARY KEY)")
	waitReplicasHave(ctx, t, l, "mariadb-1")
	out, _ := cli(config, "backup", "run", "--cluster", mariadbCluster)
	id := regexp.MustCompile(`\d{8}T\d{6}\.\d{3}Z-[0-9a-f]{8}`).FindString(out)
	if id == "" {
		t.Fatalf("no backup id in:\n%s", out)
	}
	conn, err := primary.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var target topology.Position
	for i := 1; i <= 200; i++ {
		if _, err := conn.ExecContext(ctx, fmt.Sprintf("INSERT INTO dbha_lab.dbha_archive VALUES (%d)", i)); err != nil {
			t.Fatal(err)
		}
		if i == 150 {
			var g string
			if err := conn.QueryRowContext(ctx, "SELECT @@last_gtid").Scan(&g); err != nil {
				t.Fatal(err)
			}
			if target, err = topology.ParseMariaDB(g); err != nil {
				t.Fatal(err)
			}
		}
	}
	conn.Close()

	// The same for PostgreSQL: a backup, then rows 1..200 with the target
	// right after row 150's commit.
	pg := adminPG(ctx, t, l, "postgres-1")
	exec1(ctx, t, pg, "CREATE TABLE dbha_archive (id int PRIMARY KEY)")
	out, _ = cli(config, "backup", "run", "--cluster", postgresCluster)
	pgID := regexp.MustCompile(`\d{8}T\d{6}\.\d{3}Z-[0-9a-f]{8}`).FindString(out)
	if pgID == "" {
		t.Fatalf("no backup id in:\n%s", out)
	}
	var pgTarget topology.LSN
	for i := 1; i <= 200; i++ {
		exec1(ctx, t, pg, fmt.Sprintf("INSERT INTO dbha_archive VALUES (%d)", i))
		if i == 150 {
			pgTarget = currentLSN(ctx, t, pg)
		}
	}

	// The archive holds the targets once a pass (every 30 s) has run.
	objects := mustS3(ctx, t, store, "site")
	key, err := backup.ReadKey(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	repo := backup.NewRepository(objects, key)
	waitUntil(t, 2*time.Minute, "the archived store to hold "+target.String(), func() error {
		fetched := t.TempDir()
		if _, err := backup.FetchStore(ctx, repo, mariadbCluster, fetched); err != nil {
			return err
		}
		st, err := mysqlstream.OpenStore(fetched)
		if err != nil {
			return err
		}
		if o, err := topology.Compare(st.Position(), target); err != nil || o == topology.Behind {
			return fmt.Errorf("the archive holds up to %s", st.Position())
		}
		pgFetched := t.TempDir()
		if _, err := backup.FetchStore(ctx, repo, postgresCluster, pgFetched); err != nil {
			return err
		}
		pst, err := pgstream.OpenStore(pgFetched)
		if err != nil {
			return err
		}
		if pst.Position().LSN() < pgTarget {
			return fmt.Errorf("the PostgreSQL archive holds up to %s", pst.Position())
		}
		return nil
	})
	for _, cluster := range []string{mariadbCluster, postgresCluster} {
		for _, name := range bucketKeys(ctx, t, store, "site/"+cluster+".stream/") {
			if raw := bucketObject(ctx, t, store, "site/"+cluster+".stream/"+name); name != ".manifest.json" && !strings.HasPrefix(string(raw), "age-encryption.org/v1\n") {
				t.Errorf("archived %s of %s is not encrypted", name, cluster)
			}
		}
	}

	// The manager's host is gone: a fresh machine has the repository and
	// the configuration, with a new, empty state directory.
	stop()
	text, err := os.ReadFile(config)
	if err != nil {
		t.Fatal(err)
	}
	fresh := filepath.Join(t.TempDir(), "dbha.yaml")
	re := regexp.MustCompile(`(?m)^state_dir: .*$`)
	if !re.Match(text) {
		t.Fatalf("no state_dir line in the configuration:\n%s", text)
	}
	if err := os.WriteFile(fresh, re.ReplaceAll(text, []byte("state_dir: "+t.TempDir())), 0o600); err != nil {
		t.Fatal(err)
	}
	to := filepath.Join(reachableDir(t), "restored")
	_, stderr := cli(fresh, "backup", "restore", id, "--cluster", mariadbCluster, "--to", to, "--until", target.String())
	if !strings.Contains(stderr, "no change-stream store of "+mariadbCluster+" on this host: replaying the") {
		t.Errorf("the restore did not say it used the archive:\n%s", stderr)
	}
	owner, err := backup.LookupOwner(backup.DefaultOwner(topology.MariaDB))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := backup.StartServer(ctx, topology.MariaDB, to, backup.ServerOptions{Owner: owner})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Stop()
	var n, highest int
	if err := serverDB(t, srv, topology.MariaDB).QueryRowContext(ctx, "SELECT COUNT(*), COALESCE(MAX(id), 0) FROM dbha_lab.dbha_archive").Scan(&n, &highest); err != nil {
		t.Fatal(err)
	}
	if n != 150 || highest != 150 {
		t.Fatalf("restored from the bucket alone to %s: %d rows up to %d, want 150 up to 150", target, n, highest)
	}

	pgTo := filepath.Join(reachableDir(t), "restored-pg")
	_, stderr = cli(fresh, "backup", "restore", pgID, "--cluster", postgresCluster, "--to", pgTo, "--until", pgTarget.String())
	if !strings.Contains(stderr, "no change-stream store of "+postgresCluster+" on this host: replaying the") {
		t.Errorf("the PostgreSQL restore did not say it used the archive:\n%s", stderr)
	}
	pgOwner, err := backup.LookupOwner(backup.DefaultOwner(topology.Postgres))
	if err != nil {
		t.Fatal(err)
	}
	pgSrv, err := backup.StartServer(ctx, topology.Postgres, pgTo, backup.ServerOptions{Owner: pgOwner, Roles: []string{"dbha"}})
	if err != nil {
		t.Fatal(err)
	}
	defer pgSrv.Stop()
	if err := serverDB(t, pgSrv, topology.Postgres).QueryRowContext(ctx, "SELECT COUNT(*), COALESCE(MAX(id), 0) FROM dbha_archive").Scan(&n, &highest); err != nil {
		t.Fatal(err)
	}
	if n != 150 || highest != 150 {
		t.Fatalf("PostgreSQL restored from the bucket alone to %s: %d rows up to %d, want 150 up to 150", pgTarget, n, highest)
	}
}
