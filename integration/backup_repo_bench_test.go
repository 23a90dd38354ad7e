package integration

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/dbha/dbha/backup"
)

// BenchmarkBackupRepositories times dbha's backup and restore of the same
// data into four repositories: a local directory and a bucket of a MinIO
// server on this host (its data on the same disk), each with encryption
// off and on. Run it with
//
//	go test ./integration -run '^$' -bench BenchmarkBackupRepositories -benchtime 1x -timeout 120m -v
//
// DBHA_BENCH_GB (default 2) sizes the data as BenchmarkBackupThroughput
// loads it; DBHA_BENCH_SAMPLES (default 5) is the number of backups and
// restores per repository. Each round takes one backup into every
// repository, in an order that rotates from round to round so that machine
// noise falls on all of them, then restores each (the backup's own point)
// into an empty directory and removes both. Times are reported, never
// asserted: only that every backup is done and every restore is a data
// directory.
func BenchmarkBackupRepositories(b *testing.B) {
	gb := benchGB(b)
	samples := benchSamples(b)
	b.Run("mariadb", func(b *testing.B) { benchRepositories(b, gb, samples, mariadbBackupBench) })
	b.Run("postgres", func(b *testing.B) { benchRepositories(b, gb, samples, postgresBackupBench) })
}

// repoKind is one repository of the comparison.
type repoKind struct {
	name string
	repo backup.Repository
	drop func(ctx context.Context, cluster, id string) error // removes one backup
}

// benchSetup starts the benchmark's lab, loads gb of data, and gives the
// load, a work directory the servers' accounts may enter, and the account
// throwaway servers run as.
func benchSetup(ctx context.Context, b *testing.B, gb float64, load func(context.Context, *testing.B, *Lab, float64) backupBench) (backupBench, string, backup.Owner) {
	b.Helper()
	s := load(ctx, b, benchLab(b), gb)
	owner, err := backup.LookupOwner(backup.DefaultOwner(s.engine))
	if err != nil {
		b.Fatal(err)
	}
	return s, reachableBenchDir(b), owner
}

func benchRepositories(b *testing.B, gb float64, samples int, load func(context.Context, *testing.B, *Lab, float64) backupBench) {
	ctx, cancel := context.WithTimeout(context.Background(), 110*time.Minute)
	defer cancel()
	s, work, owner := benchSetup(ctx, b, gb, load)
	store, err := StartObjectStore(ctx, filepath.Join(work, "minio"), "dbha-bench")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(store.Stop)
	keyFile := filepath.Join(work, "backup.key")
	if _, err := backup.NewKey(keyFile); err != nil {
		b.Fatal(err)
	}
	key, err := backup.ReadKey(keyFile)
	if err != nil {
		b.Fatal(err)
	}
	client, err := store.Client()
	if err != nil {
		b.Fatal(err)
	}
	kinds := []repoKind{}
	for _, enc := range []bool{false, true} {
		k := key
		suffix := ""
		if !enc {
			k = nil
		} else {
			suffix = "+age"
		}
		dir := filepath.Join(work, "repo"+suffix)
		kinds = append(kinds, repoKind{name: "local" + suffix, repo: backup.NewRepository(backup.DirObjects(dir), k),
			drop: func(_ context.Context, cluster, id string) error {
				return os.RemoveAll(backup.EntryDir(dir, cluster, id))
			}})
		prefix := "bench" + suffix
		objects, err := backup.NewS3Objects(ctx, store.S3(prefix))
		if err != nil {
			b.Fatal(err)
		}
		kinds = append(kinds, repoKind{name: "s3" + suffix, repo: backup.NewRepository(objects, k),
			drop: func(ctx context.Context, cluster, id string) error {
				for info := range client.ListObjects(ctx, store.Bucket, minio.ListObjectsOptions{Prefix: prefix + "/" + cluster + "/" + id + "/", Recursive: true}) {
					if info.Err != nil {
						return info.Err
					}
					if err := client.RemoveObject(ctx, store.Bucket, info.Key, minio.RemoveObjectOptions{}); err != nil {
						return err
					}
				}
				return nil
			}})
	}
	warm := timedStep(b, "warm-up backup", func() error { return s.bare(ctx, filepath.Join(work, "warm-up")) })
	removeBenchDir(b, filepath.Join(work, "warm-up"))
	b.Logf("%s warm-up: a bare backup, not counted, %.2fs", s.name, warm.took.Seconds())
	backups, restores := map[string][]step{}, map[string][]step{}
	var copiedMB float64
	compressed := map[string]float64{}
	b.ResetTimer()
	for round := range samples {
		for i := range kinds {
			k := kinds[(i+round)%len(kinds)]
			id := fmt.Sprintf("r%d-%s", round+1, k.name)
			var e backup.Entry
			st := timedStep(b, s.name+" backup into "+k.name, func() error {
				job := s.job
				job.Repo, job.ID, job.Scratch = k.repo, id, work
				var err error
				e, err = s.run(ctx, job)
				return err
			})
			if e.Status != backup.Done || e.Bytes <= 0 {
				b.Fatalf("backup %s: %+v", id, e)
			}
			copiedMB, compressed[k.name] = megabytes(e.Bytes), megabytes(e.CompressedBytes)
			backups[k.name] = append(backups[k.name], st)
			to := filepath.Join(work, "restored")
			rst := timedStep(b, s.name+" restore from "+k.name, func() error {
				_, err := backup.Restore(ctx, k.repo, e, backup.RestoreOptions{To: to, Owner: owner, Roles: s.roles})
				return err
			})
			checkRestoredDir(b, s, to)
			restores[k.name] = append(restores[k.name], rst)
			b.Logf("%s round %d %-9s backup %s; restore %s", s.name, round+1, k.name, st.format(copiedMB), rst.format(copiedMB))
			removeBenchDir(b, to)
			if err := k.drop(ctx, s.job.Cluster, id); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Logf("%s data: %.1f MB copied by a backup; %d samples per repository; MinIO %s on loopback, its data on the same disk as the local repository",
		s.name, copiedMB, samples, store.Endpoint)
	for _, k := range kinds {
		bk, rs := backups[k.name], restores[k.name]
		b.Logf("%s %-9s backup  median %s (min %.2fs, max %.2fs); restore median %s (min %.2fs, max %.2fs); %.1f MB stored",
			s.name, k.name, medianStep(bk).format(copiedMB), minTook(bk), maxTook(bk), medianStep(rs).format(copiedMB), minTook(rs), maxTook(rs), compressed[k.name])
		b.ReportMetric(copiedMB/medianStep(bk).took.Seconds(), "backup-"+k.name+"-MB/s")
		b.ReportMetric(copiedMB/medianStep(rs).took.Seconds(), "restore-"+k.name+"-MB/s")
	}
}

func minTook(steps []step) float64 {
	m := steps[0].took
	for _, s := range steps {
		m = min(m, s.took)
	}
	return m.Seconds()
}

func maxTook(steps []step) float64 {
	m := steps[0].took
	for _, s := range steps {
		m = max(m, s.took)
	}
	return m.Seconds()
}

// BenchmarkVerify times dbha's verify of one backup of DBHA_BENCH_GB
// (default 2) gigabytes, DBHA_BENCH_SAMPLES (default 5) times: unpack,
// prepare or pg_verifybackup, a throwaway server, and every page read and
// checked (MariaDB CHECK TABLE of every table; PostgreSQL pg_amcheck with
// heapallindexed, and pg_checksums when data checksums are on). Run it
// with
//
//	go test ./integration -run '^$' -bench BenchmarkVerify -benchtime 1x -timeout 120m -v
func BenchmarkVerify(b *testing.B) {
	gb := benchGB(b)
	samples := benchSamples(b)
	b.Run("mariadb", func(b *testing.B) { benchVerify(b, gb, samples, mariadbBackupBench) })
	b.Run("postgres", func(b *testing.B) { benchVerify(b, gb, samples, postgresBackupBench) })
}

func benchSamples(b *testing.B) int {
	s := os.Getenv("DBHA_BENCH_SAMPLES")
	if s == "" {
		return 5
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > 50 {
		b.Fatalf("DBHA_BENCH_SAMPLES=%q: want 1 to 50", s)
	}
	return n
}

func benchVerify(b *testing.B, gb float64, samples int, load func(context.Context, *testing.B, *Lab, float64) backupBench) {
	ctx, cancel := context.WithTimeout(context.Background(), 110*time.Minute)
	defer cancel()
	s, work, owner := benchSetup(ctx, b, gb, load)
	job := s.job
	job.Repo, job.ID = backup.Dir(filepath.Join(work, "repo")), "verify-bench"
	e, err := s.run(ctx, job)
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	var steps []step
	var detail string
	for i := range samples {
		st := timedStep(b, s.name+" verify", func() error {
			v, err := backup.Verify(ctx, job.Repo, e, backup.VerifyOptions{Owner: owner, Roles: s.roles, Scratch: work})
			detail = v.Verification.Detail
			return err
		})
		steps = append(steps, st)
		b.Logf("%s verify %d: %s", s.name, i+1, st.format(megabytes(e.Bytes)))
	}
	b.Logf("%s verify of %.1f MB (%.1f MB stored): median %s (min %.2fs, max %.2fs), %d samples; %s",
		s.name, megabytes(e.Bytes), megabytes(e.CompressedBytes), medianStep(steps).format(megabytes(e.Bytes)), minTook(steps), maxTook(steps), samples, detail)
	b.ReportMetric(medianStep(steps).took.Seconds(), "verify-s")
}
