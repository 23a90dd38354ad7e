package integration

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dbha/dbha/backup"
	"github.com/dbha/dbha/topology"
)

func TestPostgresBackupFromAStandby(t *testing.T) {
	l := sharedLab(t)
	waitSnapshot(t, l, "lab-postgres", "a healthy cluster", healthy)
	source, err := backup.ChooseSource(discover(t, l, "lab-postgres"), backup.SourcePolicy{})
	if err != nil {
		t.Fatal(err)
	}
	if source.Addr == addr(t, l, "postgres-1") {
		t.Fatalf("the primary was chosen although replicas are healthy: %+v", source)
	}
	pw, err := os.ReadFile(l.Secret("postgres-dbha"))
	if err != nil {
		t.Fatal(err)
	}
	repo := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	start := time.Now()
	e, err := backup.RunPostgres(ctx, backup.Job{Repo: backup.Dir(repo), ID: "b1", Cluster: "lab-postgres", Source: source.Addr,
		User: "dbha", Password: strings.TrimSpace(string(pw))})
	if err != nil {
		t.Fatalf("backup: %v", err)
	}
	t.Logf("backup of %s (%s) in %v: %d bytes, %d compressed, from %s to %s",
		source.Addr, source.Reason, time.Since(start).Round(time.Millisecond), e.Bytes, e.CompressedBytes, e.Position, e.StopPosition)
	if e.Status != backup.Done || e.Position.IsZero() || e.Bytes <= e.CompressedBytes || len(e.Files) < 3 {
		t.Fatalf("entry = %+v", e)
	}
	if o, err := topology.Compare(e.StopPosition, e.Position); err != nil || o == topology.Behind {
		t.Errorf("stop %s before start %s (%v)", e.StopPosition, e.Position, err)
	}
	for _, f := range e.Files {
		if _, err := os.Stat(filepath.Join(backup.EntryDir(repo, "lab-postgres", "b1"), f.Name)); err != nil || len(f.SHA256) != 64 {
			t.Errorf("file %+v: %v", f, err)
		}
	}
	listed, err := backup.List(context.Background(), backup.Dir(repo), "lab-postgres")
	if err != nil || len(listed) != 1 || listed[0].Status != backup.Done {
		t.Fatalf("catalog = %+v, %v", listed, err)
	}
}

func TestPostgresBackupFailureIsRecorded(t *testing.T) {
	l := sharedLab(t)
	repo := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	e, err := backup.RunPostgres(ctx, backup.Job{Repo: backup.Dir(repo), ID: "b1", Cluster: "lab-postgres", Source: addr(t, l, "postgres-2"),
		User: "dbha", Password: "not-the-password"})
	if err == nil || e.Status != backup.Failed || !strings.Contains(e.Error, "pg_basebackup") {
		t.Fatalf("entry %+v, err %v", e, err)
	}
	if _, err := os.Stat(filepath.Join(backup.EntryDir(repo, "lab-postgres", "b1"), "data")); !os.IsNotExist(err) {
		t.Errorf("partial files left behind: %v", err)
	}
	listed, _ := backup.List(context.Background(), backup.Dir(repo), "lab-postgres")
	if len(listed) != 1 || listed[0].Status != backup.Failed {
		t.Fatalf("catalog = %+v", listed)
	}
}

func TestMariaDBBackupFromAReplica(t *testing.T) {
	l := sharedLab(t)
	waitSnapshot(t, l, "lab-mariadb", "a healthy cluster", healthy)
	s := discover(t, l, "lab-mariadb")
	source, err := backup.ChooseSource(s, backup.SourcePolicy{})
	if err != nil {
		t.Fatal(err)
	}
	n, err := l.NodeByAddr(source.Addr)
	if err != nil {
		t.Fatal(err)
	}
	pw, err := os.ReadFile(l.Secret("mariadb-admin"))
	if err != nil {
		t.Fatal(err)
	}
	repo := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	start := time.Now()
	e, err := backup.RunMariaDB(ctx, backup.Job{Repo: backup.Dir(repo), ID: "b1", Cluster: "lab-mariadb", Source: source.Addr,
		User: "admin", Password: strings.TrimSpace(string(pw)), DataDir: n.DataDir})
	if err != nil {
		t.Fatalf("backup: %v", err)
	}
	t.Logf("backup of %s in %v: %d bytes, %d compressed, at %s", source.Addr, time.Since(start).Round(time.Millisecond), e.Bytes, e.CompressedBytes, e.Position)
	in, _ := s.Instance(source.Addr)
	if o, err := topology.Compare(e.Position, in.Current); err != nil || o == topology.Behind {
		t.Errorf("backup position %s is %v the source's %s (%v)", e.Position, o, in.Current, err)
	}
	if e.Status != backup.Done || e.CompressedBytes == 0 || e.Bytes <= e.CompressedBytes || len(e.Files) != 1 {
		t.Fatalf("entry = %+v", e)
	}
}

// A MariaDB backup copies the files of the server it names, or none:
// given a data directory that exists on this host but is another
// instance's (as a source on another host with the usual identical
// paths once was), the backup is refused before anything is read, and the
// failed entry holds no file.
func TestMariaDBBackupRefusesAnotherInstancesFiles(t *testing.T) {
	l := sharedLab(t)
	waitSnapshot(t, l, "lab-mariadb", "a healthy cluster", healthy)
	source, err := backup.ChooseSource(discover(t, l, "lab-mariadb"), backup.SourcePolicy{})
	if err != nil {
		t.Fatal(err)
	}
	var other Node
	for _, n := range l.nodesOfKind(KindMariaDB) {
		if n.Addr() != source.Addr {
			other = n
		}
	}
	pw, err := readPassword(l.Secret("mariadb-admin"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	repo := t.TempDir()
	e, err := backup.RunMariaDB(ctx, backup.Job{Repo: backup.Dir(repo), ID: "wrong-files", Cluster: "lab-mariadb", Source: source.Addr,
		User: "admin", Password: pw, DataDir: other.DataDir})
	if !errors.Is(err, backup.ErrNotTheSource) || !strings.Contains(err.Error(), "is not the data directory of the server on port") {
		t.Fatalf("backup of %s from %s's files: %v; want refused (ErrNotTheSource)", source.Addr, other.Name, err)
	}
	t.Logf("refused: %v", err)
	if e.Status != backup.Failed || len(e.Files) != 0 {
		t.Errorf("entry = %+v, want failed with no file", e)
	}
	left, _ := filepath.Glob(filepath.Join(backup.EntryDir(repo, "lab-mariadb", "wrong-files"), "*")) // sorted, dot files too
	if len(left) != 2 || filepath.Base(left[0]) != ".claim" || filepath.Base(left[1]) != "backup.json" {
		t.Errorf("the refused backup left %v, want only its catalog entry and its place's claim", left)
	}

	// Through a remote command (the lab's ssh), the source's own
	// directory is proved and copied.
	remote, err := l.OnHost(labHost)
	if err != nil {
		t.Fatal(err)
	}
	dir, err := backup.SourceDataDir(ctx, source.Addr, "admin", pw, nil)
	if err != nil {
		t.Fatal(err)
	}
	if e, err = backup.RunMariaDB(ctx, backup.Job{Repo: backup.Dir(repo), ID: "right-files", Cluster: "lab-mariadb", Source: source.Addr,
		User: "admin", Password: pw, DataDir: dir, Remote: remote}); err != nil || e.Status != backup.Done {
		t.Fatalf("backup of %s from its own files through %v: %v (%+v)", source.Addr, remote, err, e)
	}
}

func TestBackupCLI(t *testing.T) {
	bin := dbhaBinary(t)
	l := sharedLab(t)
	for _, cluster := range []string{"lab-mariadb", "lab-postgres"} {
		t.Run(cluster, func(t *testing.T) {
			waitSnapshot(t, l, cluster, "a healthy cluster", healthy)
			for range 2 {
				if r := dbhaCLI(t, bin, l, "backup", "run", "--cluster", cluster, "-o", "json"); r.code != 0 {
					t.Fatalf("backup run: %s", r)
				}
				time.Sleep(1100 * time.Millisecond) // backup ids are per second
			}
			r := dbhaCLI(t, bin, l, "backup", "list", "--cluster", cluster, "-o", "json")
			var doc struct {
				Backups []backup.Entry `json:"backups"`
			}
			if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil || r.code != 0 {
				t.Fatalf("backup list: %v\n%s", err, r)
			}
			if len(doc.Backups) < 2 || doc.Backups[len(doc.Backups)-1].Status != backup.Done {
				t.Fatalf("catalog: %+v", doc.Backups)
			}
			for _, e := range doc.Backups {
				if e.Source == addr(t, l, strings.Split(cluster, "-")[1]+"-1") {
					t.Errorf("backup %s taken from the primary although replicas are healthy", e.ID)
				}
			}
			if r := dbhaCLI(t, bin, l, "backup", "show", doc.Backups[0].ID, "--cluster", cluster); r.code != 0 || !strings.Contains(r.stdout, doc.Backups[0].ID) {
				t.Fatalf("backup show: %s", r)
			}
		})
	}
}
