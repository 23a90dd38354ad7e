package integration

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dbha/dbha/topology"
)

// TestReseedProvesItsGround: reseed moves a data directory only once it
// has proved the directory is the instance's and the instance stopped.
// Named another instance's directory, it refuses and touches nothing; an
// instance that does not answer (hung, SIGSTOP) is stopped anyway and
// proved gone before its files move; a data directory that is a mount
// point is rebuilt in place, its former files kept inside it.
func TestReseedProvesItsGround(t *testing.T) {
	bin := dbhaBinary(t)
	t.Parallel()
	l := binLab(t, bin)
	waitSnapshot(t, l, mariadbCluster, "a healthy cluster", healthy)
	run := func(args ...string) cliResult {
		t.Helper()
		return dbhaCLI(t, bin, l, append(args, "--cluster", mariadbCluster)...)
	}
	if r := run("backup", "run"); r.code != 0 {
		t.Fatalf("backup run: %s", r)
	}
	if r := run("backup", "list", "-o", "json"); r.code != 0 {
		t.Fatalf("backup list: %s", r)
	}
	id := strings.Fields(strings.Split(run("backup", "list").stdout, "\n")[1])[0]
	if r := run("backup", "verify", id); r.code != 0 {
		t.Fatalf("verify: %s", r)
	}
	n2, err := l.Node("mariadb-2")
	if err != nil {
		t.Fatal(err)
	}
	n3, err := l.Node("mariadb-3")
	if err != nil {
		t.Fatal(err)
	}

	// Another instance's directory: refused before anything stops or moves.
	r := run("backup", "reseed", "--instance", n3.Addr(), "--datadir", n2.DataDir, "--force")
	if r.code == 0 || !strings.Contains(r.stderr, "is not the data directory of the server on port") {
		t.Fatalf("reseed of %s into %s's directory: %s; want it refused", n3.Name, n2.Name, r)
	}
	if moved, _ := filepath.Glob(n2.DataDir + ".before-reseed-*"); len(moved) != 0 {
		t.Fatalf("%s's directory was moved: %v", n2.Name, moved)
	}
	for _, n := range []Node{n2, n3} {
		if db, err := l.AdminMySQL(n.Name); err != nil || db.Ping() != nil {
			t.Fatalf("%s no longer answers after the refused reseed: %v", n.Name, err)
		}
	}

	// A hung instance: it does not answer, yet runs; reseed stops it and
	// proves it gone before its files move.
	hung := n3.PID
	if err := l.Signal(n3.Name, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	waitSnapshot(t, l, mariadbCluster, n3.Name+" silent", func(s topology.Snapshot) error {
		if in, ok := s.Instance(n3.Addr()); !ok || in.Reachable {
			return errors.New("still answers")
		}
		return nil
	})
	if r := run("backup", "reseed", "--instance", n3.Addr()); r.code != 0 {
		t.Fatalf("reseed of the hung %s: %s", n3.Name, r)
	}
	if err := syscall.Kill(hung, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("the hung server (pid %d) still exists after the reseed: %v", hung, err)
	}
	previous, _ := filepath.Glob(n3.DataDir + ".before-reseed-*")
	if len(previous) != 1 {
		t.Fatalf("the hung server's directory was not kept aside: %v", previous)
	}
	os.RemoveAll(previous[0])
	waitSnapshot(t, l, mariadbCluster, "a healthy cluster after reseeding the hung replica", healthy)

	// A data directory that is a mount point: rebuilt in place. (The
	// reseed restarted the node through `dbha lab`, which records its new
	// PID on disk: the lab is read again.)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if l, err = Load(l.Dir); err != nil {
		t.Fatal(err)
	}
	if err := l.Stop(ctx, n3.Name); err != nil {
		t.Fatal(err)
	}
	orig := n3.DataDir + ".orig"
	if err := os.Rename(n3.DataDir, orig); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(n3.DataDir, 0o750); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", n3.DataDir, "tmpfs", 0, "size=2g,mode=0750"); err != nil {
		t.Fatalf("mount a tmpfs on %s: %v", n3.DataDir, err)
	}
	t.Cleanup(func() { syscall.Unmount(n3.DataDir, syscall.MNT_DETACH) })
	if out, err := exec.Command("cp", "-a", orig+"/.", n3.DataDir+"/").CombinedOutput(); err != nil {
		t.Fatalf("copy onto the mount: %v: %s", err, out)
	}
	if err := l.Start(ctx, n3.Name); err != nil {
		t.Fatal(err)
	}
	waitSnapshot(t, l, mariadbCluster, "a healthy cluster on the mount", healthy)
	if r := run("backup", "reseed", "--instance", n3.Addr(), "--force"); r.code != 0 {
		t.Fatalf("reseed onto a mount point: %s", r)
	}
	inside, _ := filepath.Glob(filepath.Join(n3.DataDir, ".before-reseed-*"))
	if len(inside) != 1 {
		t.Fatalf("the mount point's former files were not kept inside it: %v", inside)
	}
	waitSnapshot(t, l, mariadbCluster, "a healthy cluster after reseeding onto the mount", healthy)
	// MariaDB lists the kept directory as a schema (every directory in its
	// datadir is one) until it is removed, but takes none of its files for
	// a table.
	var tables int
	if err := mysqlDB(t, l, n3.Name).QueryRowContext(ctx,
		"SELECT COUNT(*) FROM information_schema.tables WHERE table_schema LIKE '%before-reseed%'").Scan(&tables); err != nil || tables != 0 {
		t.Errorf("the server takes %d of the kept files for tables (%v)", tables, err)
	}
	os.RemoveAll(inside[0])
}
