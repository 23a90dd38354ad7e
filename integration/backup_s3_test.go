package integration

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"filippo.io/age"
	"github.com/minio/minio-go/v7"

	"github.com/dbha/dbha/backup"
	"github.com/dbha/dbha/topology"
)

const s3Marker = "dbha-s3-row-marker"

// TestBackupsInObjectStorage takes a backup of each engine into a bucket
// of a real S3-compatible server (MinIO), encrypted with an age key:
// nothing in the bucket reads as a row, verify and restore work from the
// bucket alone, through a connection opened afresh as on another machine,
// and a repository with the wrong key, or none, is refused clearly. A run
// that fails leaves only its catalog entry; prune removes a backup's
// objects.
func TestBackupsInObjectStorage(t *testing.T) {
	l := sharedLab(t)
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	store, err := StartObjectStore(ctx, t.TempDir(), "dbha-backups")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(store.Stop)
	keyFile := filepath.Join(t.TempDir(), "backup.key")
	if _, err := backup.NewKey(keyFile); err != nil {
		t.Fatal(err)
	}
	key, err := backup.ReadKey(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	open := func(key *age.X25519Identity) backup.Repository {
		objects, err := backup.NewS3Objects(ctx, store.S3("site-a"))
		if err != nil {
			t.Fatal(err)
		}
		return backup.NewRepository(objects, key)
	}
	repo := open(key)

	for _, e := range labEngines {
		t.Run(e.cluster, func(t *testing.T) {
			waitSnapshot(t, l, e.cluster, "a healthy cluster", healthy)
			writeS3Marker(ctx, t, l, e.kind)
			entry := s3Backup(ctx, t, l, e.cluster, repo, "b1")
			if entry.Encryption != "age" {
				t.Errorf("entry encryption = %q, want age", entry.Encryption)
			}
			owner, err := backup.LookupOwner(backup.DefaultOwner(entry.Engine))
			if err != nil {
				t.Fatal(err)
			}
			roles := []string{"dbha"}

			// Verify and restore through a new connection and the key file
			// alone, as a fresh machine would.
			fresh := open(key)
			verified, err := backup.Verify(ctx, fresh, entry, backup.VerifyOptions{Owner: owner, Roles: roles})
			if err != nil || !verified.Verified() {
				t.Fatalf("verify from the bucket: %v (%+v)", err, verified.Verification)
			}
			dir := filepath.Join(reachableDir(t), "restored")
			if _, err := backup.Restore(ctx, fresh, entry, backup.RestoreOptions{To: dir, Owner: owner, Roles: roles}); err != nil {
				t.Fatalf("restore from the bucket: %v", err)
			}
			if n := restoredMarkers(ctx, t, entry.Engine, dir, owner); n != 100 {
				t.Fatalf("the restored copy holds %d marker rows, want 100", n)
			}

			// Without the key, or with another, the backup cannot be read,
			// and the error says so.
			other, err := age.GenerateX25519Identity()
			if err != nil {
				t.Fatal(err)
			}
			for name, r := range map[string]backup.Repository{"no key": open(nil), "another key": open(other)} {
				_, err := backup.Restore(ctx, r, entry, backup.RestoreOptions{To: filepath.Join(reachableDir(t), "nokey"), Owner: owner, Roles: roles})
				if !errors.Is(err, backup.ErrNoKey) {
					t.Errorf("restore with %s: %v; want ErrNoKey", name, err)
				}
			}

			objectsHoldNoRow(ctx, t, store, "site-a/"+e.cluster+"/b1/", key)
		})
	}

	// A refused run (another instance's files) leaves its entry, failed,
	// and nothing else; prune removes every object of a backup it drops.
	pw, err := readPassword(l.Secret("mariadb-admin"))
	if err != nil {
		t.Fatal(err)
	}
	source, err := backup.ChooseSource(discover(t, l, mariadbCluster), backup.SourcePolicy{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = backup.RunMariaDB(ctx, backup.Job{Repo: repo, ID: "b0-refused", Cluster: mariadbCluster, Source: source.Addr,
		User: "admin", Password: pw, DataDir: t.TempDir()})
	if !errors.Is(err, backup.ErrNotTheSource) {
		t.Fatalf("backup from a directory that is not the source's: %v", err)
	}
	if keys := bucketKeys(ctx, t, store, "site-a/"+mariadbCluster+"/b0-refused/"); strings.Join(keys, " ") != ".claim backup.json" {
		t.Errorf("the refused run left %v in the bucket, want only its claim and entry", keys)
	}
	// b1 was verified above: b2 must be too, or prune keeps b1, the
	// newest backup known to restore.
	b2 := s3Backup(ctx, t, l, mariadbCluster, repo, "b2")
	owner, err := backup.LookupOwner(backup.DefaultOwner(topology.MariaDB))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := backup.Verify(ctx, repo, b2, backup.VerifyOptions{Owner: owner}); err != nil {
		t.Fatal(err)
	}
	deleted, err := backup.PruneRepository(ctx, repo, mariadbCluster, backup.Retention{Keep: 1}, time.Now())
	if err != nil || strings.Join(slices.Sorted(slices.Values(deleted)), " ") != "b0-refused b1" {
		t.Fatalf("prune: %v, %v; want b0-refused and b1 deleted", deleted, err)
	}
	for _, id := range deleted {
		if keys := bucketKeys(ctx, t, store, "site-a/"+mariadbCluster+"/"+id+"/"); len(keys) != 0 {
			t.Errorf("pruned backup %s left %v", id, keys)
		}
	}
}

// TestBackupCLIWithObjectStorage runs what an operator runs with a
// repository in a bucket, encrypted: backup run, list, verify and restore,
// configured by backup.repository (s3://), backup.s3 and
// backup.encryption_key_file alone.
func TestBackupCLIWithObjectStorage(t *testing.T) {
	bin := dbhaBinary(t)
	l := sharedLab(t)
	waitSnapshot(t, l, mariadbCluster, "a healthy cluster", healthy)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	config, store, _ := bucketConfig(ctx, t, l, "dbha-cli", "cli")
	cli := func(args ...string) string {
		t.Helper()
		out, err := exec.CommandContext(ctx, bin, append([]string{"--config", config}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("dbha %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	out := cli("backup", "run", "--cluster", mariadbCluster)
	entries, err := backup.List(ctx, backup.NewRepository(mustS3(ctx, t, store, "cli"), nil), mariadbCluster)
	if err != nil || len(entries) != 1 || entries[0].Status != backup.Done || entries[0].Encryption != "age" {
		t.Fatalf("after backup run (%s): %+v, %v", out, entries, err)
	}
	id := entries[0].ID
	if out := cli("backup", "list", "--cluster", mariadbCluster); !strings.Contains(out, id) {
		t.Errorf("backup list does not show %s:\n%s", id, out)
	}
	if out := cli("backup", "verify", id, "--cluster", mariadbCluster); !strings.Contains(out, "verified true") {
		t.Errorf("backup verify %s:\n%s", id, out)
	}
	cli("backup", "restore", id, "--cluster", mariadbCluster, "--to", filepath.Join(reachableDir(t), "restored"))
	for _, name := range bucketKeys(ctx, t, store, "cli/"+mariadbCluster+"/"+id+"/") {
		if raw := bucketObject(ctx, t, store, "cli/"+mariadbCluster+"/"+id+"/"+name); name != "backup.json" && name != ".claim" && !bytes.HasPrefix(raw, []byte("age-encryption.org/v1\n")) {
			t.Errorf("%s of backup %s is not encrypted", name, id)
		}
	}
}

// mariadbBackupConfig writes a copy of the lab's configuration whose
// MariaDB cluster's backup block starts with lines, and returns its path.
func mariadbBackupConfig(t *testing.T, l *Lab, lines string) string {
	t.Helper()
	text, err := os.ReadFile(l.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(text, []byte("    backup:\n")) {
		t.Fatalf("the lab's configuration has no backup block:\n%s", text)
	}
	config := filepath.Join(t.TempDir(), "dbha.yaml")
	if err := os.WriteFile(config, bytes.Replace(text, []byte("    backup:\n"), []byte("    backup:\n"+lines), 1), 0o600); err != nil {
		t.Fatal(err)
	}
	return config
}

// bucketConfig starts an object store with the bucket, writes a new age
// key and the store's secret key into files, and returns a copy of the
// lab's configuration whose clusters keep their backups there,
// encrypted, under prefix, with the store and the key file.
func bucketConfig(ctx context.Context, t *testing.T, l *Lab, bucket, prefix string) (string, *ObjectStore, string) {
	t.Helper()
	store, err := StartObjectStore(ctx, t.TempDir(), bucket)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(store.Stop)
	dir := t.TempDir()
	keyFile, secretFile := filepath.Join(dir, "backup.key"), filepath.Join(dir, "s3.secret")
	if _, err := backup.NewKey(keyFile); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(secretFile, []byte(store.SecretKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	lines := fmt.Sprintf("      repository: s3://%s/%s\n      s3:\n        endpoint: %s\n        access_key: %s\n        secret_key_file: %s\n        insecure: true\n      encryption_key_file: %s\n",
		store.Bucket, prefix, store.Endpoint, store.AccessKey, secretFile, keyFile)
	config := mariadbBackupConfig(t, l, lines)
	// The PostgreSQL cluster has no backup block of its own: one goes
	// before its drill block.
	text, err := os.ReadFile(config)
	if err != nil {
		t.Fatal(err)
	}
	pgDrill := []byte("    drill:\n      user: postgres\n")
	if bytes.Count(text, pgDrill) != 1 {
		t.Fatalf("the lab's configuration has no PostgreSQL drill block:\n%s", text)
	}
	if err := os.WriteFile(config, bytes.Replace(text, pgDrill, append([]byte("    backup:\n"+lines), pgDrill...), 1), 0o600); err != nil {
		t.Fatal(err)
	}
	return config, store, keyFile
}

func mustS3(ctx context.Context, t *testing.T, store *ObjectStore, prefix string) backup.Objects {
	t.Helper()
	o, err := backup.NewS3Objects(ctx, store.S3(prefix))
	if err != nil {
		t.Fatal(err)
	}
	return o
}

// s3Backup takes a backup of cluster from its chosen source into repo.
func s3Backup(ctx context.Context, t *testing.T, l *Lab, cluster string, repo backup.Repository, id string) backup.Entry {
	t.Helper()
	source, err := backup.ChooseSource(discover(t, l, cluster), backup.SourcePolicy{})
	if err != nil {
		t.Fatal(err)
	}
	var e backup.Entry
	if cluster == postgresCluster {
		pw, err := readPassword(l.Secret("postgres-dbha"))
		if err != nil {
			t.Fatal(err)
		}
		e, err = backup.RunPostgres(ctx, backup.Job{Repo: repo, ID: id, Cluster: cluster, Source: source.Addr, User: "dbha", Password: pw})
		if err != nil {
			t.Fatalf("backup into %s: %v", repo, err)
		}
		return e
	}
	pw, err := readPassword(l.Secret("mariadb-admin"))
	if err != nil {
		t.Fatal(err)
	}
	dir, err := backup.SourceDataDir(ctx, source.Addr, "admin", pw, nil)
	if err != nil {
		t.Fatal(err)
	}
	e, err = backup.RunMariaDB(ctx, backup.Job{Repo: repo, ID: id, Cluster: cluster, Source: source.Addr, User: "admin", Password: pw, DataDir: dir})
	if err != nil {
		t.Fatalf("backup into %s: %v", repo, err)
	}
	return e
}

// writeS3Marker writes 100 rows whose text is s3Marker on the primary and
// waits until the replicas have them.
func writeS3Marker(ctx context.Context, t *testing.T, l *Lab, kind string) {
	t.Helper()
	if kind == KindPostgres {
		db := adminPG(ctx, t, l, "postgres-1")
		exec1(ctx, t, db, "CREATE TABLE IF NOT EXISTS dbha_s3_marker (id int PRIMARY KEY, note text)")
		exec1(ctx, t, db, "TRUNCATE dbha_s3_marker")
		exec1(ctx, t, db, "INSERT INTO dbha_s3_marker SELECT g, '"+s3Marker+"' FROM generate_series(1, 100) g")
		waitUntil(t, time.Minute, "the replicas to have the marker", func() error { return pgCaughtUp(ctx, l) })
		return
	}
	db := mysqlDB(t, l, "mariadb-1")
	mustExec(t, db, "CREATE TABLE IF NOT EXISTS dbha_lab.dbha_s3_marker (id INT PRIMARY KEY, note VARCHAR(64))")
	mustExec(t, db, "DELETE FROM dbha_lab.dbha_s3_marker")
	mustExec(t, db, "INSERT INTO dbha_lab.dbha_s3_marker SELECT seq, '"+s3Marker+"' FROM dbha_lab.seq_1_to_100")
	waitReplicasHave(ctx, t, l, "mariadb-1")
}

// restoredMarkers counts the marker rows of a restored data directory.
func restoredMarkers(ctx context.Context, t *testing.T, engine topology.Engine, dir string, owner backup.Owner) int {
	t.Helper()
	srv, err := backup.StartServer(ctx, engine, dir, backup.ServerOptions{Owner: owner, Roles: []string{"dbha"}})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Stop()
	table := "dbha_s3_marker"
	if engine == topology.MariaDB {
		table = "dbha_lab." + table
	}
	var n int
	if err := serverDB(t, srv, engine).QueryRowContext(ctx, "SELECT count(*) FROM "+table+" WHERE note = '"+s3Marker+"'").Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// objectsHoldNoRow reads every object of a backup straight from the
// bucket: each data object is age-encrypted and holds the marker neither
// as it is nor decompressed, while decrypted and decompressed one of them
// does (so the check can fail); the catalog entry holds no marker.
func objectsHoldNoRow(ctx context.Context, t *testing.T, store *ObjectStore, prefix string, key *age.X25519Identity) {
	t.Helper()
	found := false
	for _, name := range bucketKeys(ctx, t, store, prefix) {
		raw := bucketObject(ctx, t, store, prefix+name)
		if bytes.Contains(raw, []byte(s3Marker)) {
			t.Errorf("%s%s holds a marker row as it is", prefix, name)
		}
		if name == "backup.json" || name == ".claim" {
			continue
		}
		if !bytes.HasPrefix(raw, []byte("age-encryption.org/v1\n")) {
			t.Errorf("%s%s is not age-encrypted", prefix, name)
			continue
		}
		if plain, err := zstdDecompress(raw); err == nil && bytes.Contains(plain, []byte(s3Marker)) {
			t.Errorf("%s%s holds a marker row once decompressed", prefix, name)
		}
		r, err := age.Decrypt(bytes.NewReader(raw), key)
		if err != nil {
			t.Fatalf("decrypt %s%s with the key: %v", prefix, name, err)
		}
		compressed, err := io.ReadAll(r)
		if err != nil {
			t.Fatal(err)
		}
		if plain, err := zstdDecompress(compressed); err == nil && bytes.Contains(plain, []byte(s3Marker)) {
			found = true
		}
	}
	if !found {
		t.Errorf("no object of %s holds the marker even decrypted: the check proves nothing", prefix)
	}
}

func zstdDecompress(b []byte) ([]byte, error) {
	cmd := exec.Command("zstd", "-q", "-d", "-c")
	cmd.Stdin = bytes.NewReader(b)
	return cmd.Output()
}

// bucketKeys lists the object names under prefix, relative to it.
func bucketKeys(ctx context.Context, t *testing.T, store *ObjectStore, prefix string) []string {
	t.Helper()
	c, err := store.Client()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for info := range c.ListObjects(ctx, store.Bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true}) {
		if info.Err != nil {
			t.Fatal(info.Err)
		}
		out = append(out, strings.TrimPrefix(info.Key, prefix))
	}
	return out
}

func bucketObject(ctx context.Context, t *testing.T, store *ObjectStore, key string) []byte {
	t.Helper()
	c, err := store.Client()
	if err != nil {
		t.Fatal(err)
	}
	obj, err := c.GetObject(ctx, store.Bucket, key, minio.GetObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer obj.Close()
	b, err := io.ReadAll(obj)
	if err != nil {
		t.Fatal(fmt.Errorf("read %s: %w", key, err))
	}
	return b
}
