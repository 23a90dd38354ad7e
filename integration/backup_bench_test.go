package integration

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dbha/dbha/backup"
	"github.com/dbha/dbha/binlog"
	"github.com/dbha/dbha/topology"
)

// BenchmarkBackupThroughput compares dbha's backups and restores with the
// bare tools run by hand on the same data in the same run (see the issue:
// dbha's overhead as a ratio of wall times, goal ≤ 1.05). Run it with
//
//	go test ./integration -run '^$' -bench BenchmarkBackupThroughput -benchtime 1x -timeout 60m -v
//
// Each engine gets a lab of its own, loaded with DBHA_BENCH_GB gigabytes
// (default 2; fractions such as 0.1 for a quick check): PostgreSQL with
// pgbench -i, MariaDB with rows of hex digests from the SEQUENCE engine
// (compressible about 2:1, like sysbench's). Every backup is taken from
// the same replica. Two rounds alternate the order, dbha then bare, then
// bare then dbha, so machine noise hits both; each round restores what it
// took in the same order, the bare backups with the bare commands. Then
// the last dbha backup is verified. Times are reported, never asserted:
// only that every backup is done and every restore is a data directory.
//
// The bare commands are what dbha runs, flag for flag (backup/postgres.go,
// backup/mariadb.go, backup/unpack.go), without what dbha adds around
// them; the figures labelled "parts" time those additions on their own.
func BenchmarkBackupThroughput(b *testing.B) {
	gb := benchGB(b)
	b.Run("postgres", func(b *testing.B) { benchBackupEngine(b, gb, postgresBackupBench) })
	b.Run("mariadb", func(b *testing.B) { benchBackupEngine(b, gb, mariadbBackupBench) })
}

// backupBench is one engine's side of the benchmark on a loaded lab.
type backupBench struct {
	name    string
	engine  topology.Engine
	job     backup.Job // without Repo and ID
	roles   []string   // backup.RestoreOptions.Roles
	marker  string     // a file every restored data directory has
	dataMB  float64    // the data loaded, as the server counts it
	run     func(context.Context, backup.Job) (backup.Entry, error)
	bare    func(ctx context.Context, dir string) error     // a backup into dir
	unpack  func(ctx context.Context, dir, to string) error // a restore of dir into to
	checked func(b *testing.B, to string)                   // more checks of a restored directory; may be nil
	// parts times, once, what dbha does beyond the bare commands (given a
	// bare backup and its restore); may be nil.
	parts func(ctx context.Context, b *testing.B, dir, to string)
}

// benchGB reads DBHA_BENCH_GB.
func benchGB(b *testing.B) float64 {
	s := os.Getenv("DBHA_BENCH_GB")
	if s == "" {
		return 2
	}
	gb, err := strconv.ParseFloat(s, 64)
	if err != nil || gb <= 0 || gb > 16 {
		b.Fatalf("DBHA_BENCH_GB=%q: want a number of gigabytes above 0 and at most 16", s)
	}
	return gb
}

func benchBackupEngine(b *testing.B, gb float64, load func(context.Context, *testing.B, *Lab, float64) backupBench) {
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Minute)
	defer cancel()
	l := benchLab(b)
	disk := newDiskUse(b, l.Dir)
	s := load(ctx, b, l, gb)
	disk.sample(b)
	work := reachableBenchDir(b)
	repo := filepath.Join(work, "repo")
	owner, err := backup.LookupOwner(backup.DefaultOwner(s.engine))
	if err != nil {
		b.Fatal(err)
	}
	// The first backup after the load pays for a cold page cache and for
	// work the server had pending; this one takes that for nobody.
	warm := timedStep(b, "warm-up backup", func() error { return s.bare(ctx, filepath.Join(work, "warm-up")) })
	removeBenchDir(b, filepath.Join(work, "warm-up"))
	b.Logf("%s warm-up: a bare backup, not counted, %.2fs", s.name, warm.took.Seconds())
	b.ResetTimer()
	for range b.N {
		r := backupRounds(ctx, b, s, work, repo, owner, disk)
		r.verify(ctx, b, s, repo, owner)
		disk.sample(b)
		r.report(b, s, disk)
	}
}

// benchResult holds the steps of the rounds, by "dbha" and "bare".
type benchResult struct {
	backups, restores map[string][]step
	copiedMB          float64 // the uncompressed bytes of dbha's first backup
	compressedMB      map[string]float64
	kept              backup.Entry // the last dbha backup, for verify
	hash, verifyTime  time.Duration
	detail            string
}

// backupRounds takes and restores two backups each way, alternating the
// order, and removes each restored directory (and each backup but the
// last dbha one) once it is checked.
func backupRounds(ctx context.Context, b *testing.B, s backupBench, work, repo string, owner backup.Owner, disk *diskUse) *benchResult {
	r := &benchResult{backups: map[string][]step{}, restores: map[string][]step{}, compressedMB: map[string]float64{}}
	for round, order := range [][]string{{"dbha", "bare"}, {"bare", "dbha"}} {
		entries := map[string]backup.Entry{}
		bareDir := filepath.Join(work, fmt.Sprintf("bare-%d", round+1))
		for _, who := range order {
			id := fmt.Sprintf("r%d-dbha", round+1)
			st := timedStep(b, s.name+" "+who+" backup", func() error {
				if who == "bare" {
					return s.bare(ctx, bareDir)
				}
				job := s.job
				job.Repo, job.ID = backup.Dir(repo), id
				e, err := s.run(ctx, job)
				entries[who] = e
				return err
			})
			r.backups[who] = append(r.backups[who], st)
			size, _ := binlog.DirBytes(bareDir)
			if who == "dbha" {
				e := entries[who]
				if e.Status != backup.Done || e.Bytes <= 0 || e.CompressedBytes <= 0 {
					b.Fatalf("dbha backup %s: %+v", id, e)
				}
				size = e.CompressedBytes
				if r.copiedMB == 0 {
					r.copiedMB = megabytes(e.Bytes)
				}
			} else if size <= 0 {
				b.Fatalf("the bare backup in %s is empty", bareDir)
			}
			r.compressedMB[who] = megabytes(size)
			b.Logf("%s round %d backup  %-4s %s, %.1f MB compressed, %s", s.name, round+1, who, st.format(r.copiedMB), megabytes(size), st.details())
			disk.sample(b)
		}
		for _, who := range order {
			to := filepath.Join(work, "restored-"+who)
			st := timedStep(b, s.name+" "+who+" restore", func() error {
				if who == "bare" {
					return s.unpack(ctx, bareDir, to)
				}
				_, err := backup.Restore(ctx, backup.Dir(repo), entries[who], backup.RestoreOptions{To: to, Owner: owner, Roles: s.roles})
				return err
			})
			r.restores[who] = append(r.restores[who], st)
			checkRestoredDir(b, s, to)
			b.Logf("%s round %d restore %-4s %s, %s", s.name, round+1, who, st.format(r.copiedMB), st.details())
			disk.sample(b)
			if who == "bare" && round == 0 {
				chown := timedStep(b, "chown", func() error { return owner.Chown(to) })
				b.Logf("%s parts:   chown of a restored directory (dbha hands it to %s) %.2fs", s.name, owner.Name, chown.took.Seconds())
				if s.parts != nil {
					s.parts(ctx, b, bareDir, to)
				}
			}
			removeBenchDir(b, to)
		}
		removeBenchDir(b, bareDir)
		if round == 0 {
			removeBenchDir(b, backup.EntryDir(repo, entries["dbha"].Cluster, entries["dbha"].ID))
		} else {
			r.kept = entries["dbha"]
		}
	}
	return r
}

// verify times the catalog's SHA-256 check on its own (dbha does it after
// every backup and before every restore), then backup.Verify.
func (r *benchResult) verify(ctx context.Context, b *testing.B, s backupBench, repo string, owner backup.Owner) {
	r.hash = timedStep(b, "check the SHA-256 of the files", func() error { return backup.CheckFiles(context.Background(), backup.Dir(repo), r.kept) }).took
	var v *backup.Verification
	r.verifyTime = timedStep(b, s.name+" verify", func() error {
		e, err := backup.Verify(ctx, backup.Dir(repo), r.kept, backup.VerifyOptions{Owner: owner, Roles: s.roles})
		v = e.Verification
		return err
	}).took
	if v == nil || !v.OK {
		b.Fatalf("verification: %+v", v)
	}
	r.detail = v.Detail
}

func (r *benchResult) report(b *testing.B, s backupBench, disk *diskUse) {
	b.Logf("%s data: %.1f MB loaded; %.1f MB copied by a backup; compressed %.1f MB (dbha), %.1f MB (bare)",
		s.name, s.dataMB, r.copiedMB, r.compressedMB["dbha"], r.compressedMB["bare"])
	for _, c := range []struct {
		what  string
		steps map[string][]step
	}{{"backup", r.backups}, {"restore", r.restores}} {
		d, bare := medianStep(c.steps["dbha"]), medianStep(c.steps["bare"])
		b.Logf("%s %-8s dbha %s; bare %s (medians of 2); dbha/bare time %.3f, CPU %.3f",
			s.name, c.what+":", d.format(r.copiedMB), bare.format(r.copiedMB), timeRatio(d.took, bare.took), timeRatio(d.cpu, bare.cpu))
		b.ReportMetric(r.copiedMB/d.took.Seconds(), c.what+"-dbha-MB/s")
		b.ReportMetric(r.copiedMB/bare.took.Seconds(), c.what+"-bare-MB/s")
		b.ReportMetric(timeRatio(d.took, bare.took), c.what+"-dbha/bare")
		b.ReportMetric(timeRatio(d.cpu, bare.cpu), c.what+"-cpu-dbha/bare")
	}
	b.Logf("%s verify:  %.2fs: %s", s.name, r.verifyTime.Seconds(), r.detail)
	b.Logf("%s tools:   %v", s.name, r.kept.Tools)
	b.Logf("%s parts:   SHA-256 of the backup's files (after each backup, before each restore) %.2fs", s.name, r.hash.Seconds())
	b.Logf("%s disk:    peak %.1f GB used above the start (whole filesystem)", s.name, disk.peakGB())
	b.ReportMetric(s.dataMB, "data-MB")
	b.ReportMetric(r.copiedMB, "copied-MB")
	b.ReportMetric(r.compressedMB["dbha"], "compressed-MB")
	b.ReportMetric(r.verifyTime.Seconds(), "verify-s")
}

func checkRestoredDir(b *testing.B, s backupBench, to string) {
	b.Helper()
	if st, err := os.Stat(filepath.Join(to, s.marker)); err != nil || st.Size() == 0 {
		b.Fatalf("%s is not a restored data directory: %s: %v", to, s.marker, err)
	}
	if s.checked != nil {
		s.checked(b, to)
	}
}

// --- PostgreSQL ---

// pgbenchScalePerGB: pgbench -i -s 1 makes about 15 MB of data directory.
const pgbenchScalePerGB = 68

func postgresBackupBench(ctx context.Context, b *testing.B, l *Lab, gb float64) backupBench {
	scale := max(1, int(math.Round(gb*pgbenchScalePerGB)))
	start := time.Now()
	if out, err := pgbench(ctx, b, l, "postgres-1", "-i", "-s", strconv.Itoa(scale), "-q").CombinedOutput(); err != nil {
		b.Fatalf("pgbench -i -s %d: %v\n%s", scale, err, out)
	}
	loaded := time.Since(start)
	waitUntil(b, 10*time.Minute, "the standbys to replay the load", func() error { return pgCaughtUp(ctx, l) })
	caughtUp := time.Since(start) - loaded
	// The checkpoint (and the standby's restartpoint) the first backup
	// would otherwise pay for.
	exec1(ctx, b, adminPG(ctx, b, l, "postgres-1"), "CHECKPOINT")
	standby := adminPG(ctx, b, l, "postgres-2")
	exec1(ctx, b, standby, "CHECKPOINT")
	var db, all int64
	if err := standby.QueryRow(ctx, "SELECT pg_database_size('dbha_lab'), (SELECT sum(pg_database_size(datname)) FROM pg_database)::bigint").Scan(&db, &all); err != nil {
		b.Fatal(err)
	}
	b.Logf("postgres data: pgbench -i -s %d in %s, standbys caught up %s later; dbha_lab %.1f MB, all databases %.1f MB (pg_database_size on postgres-2)",
		scale, loaded.Round(time.Second), caughtUp.Round(time.Second), megabytes(db), megabytes(all))

	pw, err := readPassword(l.Secret("postgres-dbha"))
	if err != nil {
		b.Fatal(err)
	}
	source := node(b, l, "postgres-2")
	basebackup := func(ctx context.Context, dir string, extra ...string) error {
		args := append([]string{"-h", source.Host, "-p", strconv.Itoa(source.Port), "-U", "dbha", "-w", "-D", dir,
			"-F", "t", "-X", "stream", "-c", "fast", "--compress=client-zstd", "--manifest-checksums=SHA256"}, extra...)
		cmd := exec.CommandContext(ctx, pgTool(b, "pg_basebackup"), args...)
		cmd.Env = append(os.Environ(), "PGPASSWORD="+pw)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("pg_basebackup: %w: %s", err, out)
		}
		return runBenchTool(exec.CommandContext(ctx, "zstd", "-q", "--rm", "-3", filepath.Join(dir, "pg_wal.tar")))
	}
	return backupBench{
		name: "postgres", engine: topology.Postgres, roles: []string{"dbha"}, marker: "PG_VERSION", dataMB: megabytes(all),
		job:  backup.Job{Cluster: postgresCluster, Source: source.Addr(), User: "dbha", Password: pw, DataDir: source.DataDir},
		run:  backup.RunPostgres,
		bare: func(ctx context.Context, dir string) error { return basebackup(ctx, dir) },
		unpack: func(ctx context.Context, dir, to string) error {
			if err := os.MkdirAll(to, 0o700); err != nil {
				return err
			}
			return runBenchTool(exec.CommandContext(ctx, "bash", "-o", "pipefail", "-c",
				`zstd -q -d -c "$1/base.tar.zst" | tar -x -C "$2" && mkdir -p "$2/pg_wal" && zstd -q -d -c "$1/pg_wal.tar.zst" | tar -x -C "$2/pg_wal"`,
				"bash", dir, to))
		},
		parts: func(ctx context.Context, b *testing.B, dir, to string) {
			postgresParts(ctx, b, dir, to, basebackup)
		},
	}
}

// postgresParts times what dbha's PostgreSQL backup and restore add to the
// bare commands: pg_basebackup's -P (which sizes the data directory before
// copying it) and pg_verifybackup of the restored directory.
func postgresParts(ctx context.Context, b *testing.B, dir, to string, bare func(context.Context, string, ...string) error) {
	manifest, err := os.ReadFile(filepath.Join(dir, "backup_manifest"))
	if err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(to, "backup_manifest"), manifest, 0o600); err != nil {
		b.Fatal(err)
	}
	verify := timedStep(b, "pg_verifybackup", func() error {
		return runBenchTool(exec.CommandContext(ctx, pgTool(b, "pg_verifybackup"), "--quiet", to))
	})
	withP := filepath.Join(filepath.Dir(dir), "bare-with-P")
	progress := timedStep(b, "bare backup with -P", func() error { return bare(ctx, withP, "-P") })
	removeBenchDir(b, withP)
	b.Logf("postgres parts:   pg_verifybackup of a restored directory %.2fs, CPU %.2fs; a bare backup with -P (as dbha runs it) %.2fs, CPU %.2fs",
		verify.took.Seconds(), verify.cpu.Seconds(), progress.took.Seconds(), progress.cpu.Seconds())
}

// --- MariaDB ---

// mariaBenchRowBytes is what one row of the bench table takes in InnoDB
// (measured: 200 bytes of text, the key and the row's overhead, pages
// 15/16 full).
const mariaBenchRowBytes = 262

// mariaBenchText is 200 hex digits from a row's number: three SHA-256 and
// a slice of an MD5 of distinct inputs, so that rows share no runs and the
// text compresses as hex does (about 2:1), like sysbench's digits.
const mariaBenchText = "CONCAT(SHA2(CONCAT('a', seq), 256), SHA2(CONCAT('b', seq), 256), SHA2(CONCAT('c', seq), 256), LEFT(MD5(seq), 8))"

func mariadbBackupBench(ctx context.Context, b *testing.B, l *Lab, gb float64) backupBench {
	dbs := map[string]*sql.DB{}
	for _, n := range []string{"mariadb-1", "mariadb-2", "mariadb-3"} {
		dbs[n] = mariaBenchDB(b, l, n, 1)
	}
	primary := dbs["mariadb-1"]
	benchExec(ctx, b, primary, "CREATE TABLE dbha_lab.bench (id INT UNSIGNED PRIMARY KEY, c CHAR(200) CHARACTER SET ascii NOT NULL) ENGINE=InnoDB")
	rows := int64(gb * (1 << 30) / mariaBenchRowBytes)
	// 200k rows (52 MB) a transaction; every 2M rows the replicas catch up
	// and the binlogs and relay logs go, which bounds the disk they take.
	const chunk, settleEvery = 200_000, 2_000_000
	start := time.Now()
	for from := int64(1); from <= rows; from += chunk {
		benchExec(ctx, b, primary, fmt.Sprintf("INSERT INTO dbha_lab.bench SELECT seq, %s FROM dbha_lab.seq_%d_to_%d",
			mariaBenchText, from, min(from+chunk-1, rows)))
		if to := from + chunk - 1; to%settleEvery == 0 && to < rows {
			mariaSettle(ctx, b, dbs)
		}
	}
	loaded := time.Since(start)
	mariaSettle(ctx, b, dbs)
	settled := time.Since(start) - loaded
	source := node(b, l, "mariadb-2")
	table, err := os.Stat(filepath.Join(source.DataDir, "dbha_lab", "bench.ibd"))
	if err != nil {
		b.Fatal(err)
	}
	datadir, _ := binlog.DirBytes(source.DataDir)
	b.Logf("mariadb data: %d rows in %s, replicas caught up and logs purged %s later; bench.ibd %.1f MB, datadir of mariadb-2 %.1f MB",
		rows, loaded.Round(time.Second), settled.Round(time.Second), megabytes(table.Size()), megabytes(datadir))

	pw, err := readPassword(l.Secret("mariadb-admin"))
	if err != nil {
		b.Fatal(err)
	}
	opts := filepath.Join(b.TempDir(), "client.cnf")
	esc := strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace
	cnf := fmt.Sprintf("[client]\nuser=\"admin\"\npassword=\"%s\"\nhost=%s\nport=%d\n", esc(pw), source.Host, source.Port)
	if err := os.WriteFile(opts, []byte(cnf), 0o600); err != nil {
		b.Fatal(err)
	}
	return backupBench{
		name: "mariadb", engine: topology.MariaDB, marker: "ibdata1", dataMB: megabytes(datadir),
		job: backup.Job{Cluster: mariadbCluster, Source: source.Addr(), User: "admin", Password: pw, DataDir: source.DataDir},
		run: backup.RunMariaDB,
		bare: func(ctx context.Context, dir string) error {
			// The tool's log goes beside its scratch directory, not into the backup.
			scratch, err := os.MkdirTemp("", "dbha-bench-bare-")
			if err != nil {
				return err
			}
			defer os.RemoveAll(scratch)
			if err := os.MkdirAll(dir, 0o750); err != nil {
				return err
			}
			return runBenchTool(exec.CommandContext(ctx, "bash", "-o", "pipefail", "-c",
				`mkdir "$2/target" && mariadb-backup --defaults-extra-file="$1" --backup --stream=xbstream --target-dir="$2/target" --datadir="$3" --slave-info 2>"$2/backup.log" | zstd -q -3 -c >"$4/backup.xb.zst" || { tail -3 "$2/backup.log" >&2; exit 1; }`,
				"bash", opts, scratch, source.DataDir, dir))
		},
		unpack: func(ctx context.Context, dir, to string) error {
			if err := os.MkdirAll(to, 0o700); err != nil {
				return err
			}
			if err := runBenchTool(exec.CommandContext(ctx, "bash", "-o", "pipefail", "-c",
				`zstd -q -d -c "$1/backup.xb.zst" | mbstream -x -C "$2"`, "bash", dir, to)); err != nil {
				return err
			}
			return runBenchTool(exec.CommandContext(ctx, "mariadb-backup", "--prepare", "--target-dir="+to))
		},
		parts: func(ctx context.Context, b *testing.B, dir, _ string) {
			out := filepath.Join(filepath.Dir(dir), "through-go.xb.zst")
			st := timedStep(b, "backup through this process", func() error { return mariaThroughGo(ctx, opts, source.DataDir, out) })
			removeBenchDir(b, out)
			b.Logf("mariadb parts:   a bare backup with the stream copied through this process (as dbha copies it) %.2fs, CPU %.2fs, writeback left %.2fs",
				st.took.Seconds(), st.cpu.Seconds(), st.writeback.Seconds())
		},
		checked: func(b *testing.B, to string) {
			raw, err := os.ReadFile(filepath.Join(to, "xtrabackup_checkpoints"))
			if err != nil || !strings.Contains(string(raw), "backup_type = log-applied") {
				b.Fatalf("%s was not prepared: %v\n%s", to, err, raw)
			}
			var checkpoint, last int64
			for _, line := range strings.Split(string(raw), "\n") {
				fmt.Sscanf(line, "to_lsn = %d", &checkpoint)
				fmt.Sscanf(line, "last_lsn = %d", &last)
			}
			b.Logf("mariadb prepared: %.1f MB of redo applied", megabytes(last-checkpoint))
		},
	}
}

// mariaThroughGo is the bare backup with the stream copied through this
// process on its way to zstd, by a reader that hides its type as dbha's
// counting reader does (so no splice): the data path of backup.RunMariaDB
// without its hashing, fsync and bookkeeping.
func mariaThroughGo(ctx context.Context, opts, datadir, out string) error {
	scratch, err := os.MkdirTemp("", "dbha-bench-go-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(scratch)
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	defer f.Close()
	tool := exec.CommandContext(ctx, "mariadb-backup", "--defaults-extra-file="+opts, "--backup",
		"--stream=xbstream", "--target-dir="+scratch, "--datadir="+datadir, "--slave-info")
	var log strings.Builder
	tool.Stderr = &log
	compress := exec.CommandContext(ctx, "zstd", "-q", "-3", "-c")
	compress.Stdout = f
	stdin, err := compress.StdinPipe()
	if err != nil {
		return err
	}
	stdout, err := tool.StdoutPipe()
	if err != nil {
		return err
	}
	if err := compress.Start(); err != nil {
		return err
	}
	if err := tool.Start(); err != nil {
		stdin.Close()
		compress.Wait()
		return err
	}
	_, copyErr := io.Copy(stdin, struct{ io.Reader }{stdout})
	stdin.Close()
	if err := tool.Wait(); err != nil {
		compress.Wait()
		return fmt.Errorf("mariadb-backup: %w: %s", err, lastWords(log.String()))
	}
	if err := compress.Wait(); err != nil || copyErr != nil {
		return fmt.Errorf("zstd: %v %v", err, copyErr)
	}
	return nil
}

// mariaSettle waits for the replicas to apply what the primary has, then
// purges every node's logs.
func mariaSettle(ctx context.Context, b *testing.B, dbs map[string]*sql.DB) {
	var pos string
	if err := dbs["mariadb-1"].QueryRowContext(ctx, "SELECT @@GLOBAL.gtid_binlog_pos").Scan(&pos); err != nil {
		b.Fatal(err)
	}
	for _, n := range []string{"mariadb-2", "mariadb-3"} {
		waitUntil(b, 10*time.Minute, n+" to apply the load", func() error { return replicaCaughtUp(ctx, dbs[n], pos) })
	}
	for _, n := range []string{"mariadb-1", "mariadb-2", "mariadb-3"} {
		purgeLogs(ctx, b, dbs[n], n != "mariadb-1")
	}
}

// purgeLogs removes a node's binary logs but the current one, and a
// replica's relay logs once applied: the load wrote the data once more
// into each on every node, and a backup copies none of them. A server
// keeps a binlog until InnoDB's checkpoint has passed its transactions,
// so it tries again until one binlog is left.
func purgeLogs(ctx context.Context, b *testing.B, db *sql.DB, replica bool) {
	if replica {
		benchExec(ctx, b, db, "FLUSH RELAY LOGS")
	}
	benchExec(ctx, b, db, "FLUSH BINARY LOGS")
	waitUntil(b, time.Minute, "the binlogs to be purged", func() error {
		var file, doDB, ignoreDB string
		var pos int64
		if err := db.QueryRowContext(ctx, "SHOW MASTER STATUS").Scan(&file, &pos, &doDB, &ignoreDB); err != nil {
			return err
		}
		if _, err := db.ExecContext(ctx, "PURGE BINARY LOGS TO '"+file+"'"); err != nil {
			return err
		}
		rows, err := db.QueryContext(ctx, "SHOW BINARY LOGS")
		if err != nil {
			return err
		}
		defer rows.Close()
		n := 0
		for rows.Next() {
			n++
		}
		if n > 1 {
			return fmt.Errorf("%d binlogs left", n)
		}
		return rows.Err()
	})
}

func benchExec(ctx context.Context, b *testing.B, db *sql.DB, stmt string) {
	b.Helper()
	if _, err := db.ExecContext(ctx, stmt); err != nil {
		b.Fatalf("%.200s: %v", stmt, err)
	}
}

// --- measuring ---

// step is what one timed step took: wall time; the flush of what it left
// dirty, after it (not in took: a tool that fsyncs pays it inside, one
// that does not, not); the CPU this process and its children used (less
// sensitive than wall time to what else the machine runs; the database
// servers' share is not in it); and the load average when it began.
type step struct {
	took, writeback, cpu time.Duration
	load                 string
}

// timedStep runs fn after flushing what earlier steps left dirty, so that
// one step's writeback is not charged to the next.
func timedStep(b *testing.B, what string, fn func() error) step {
	b.Helper()
	syscall.Sync()
	raw, _ := os.ReadFile("/proc/loadavg")
	st := step{load: strings.Fields(string(raw) + " ?")[0]}
	cpu := cpuUsed(b)
	start := time.Now()
	if err := fn(); err != nil {
		b.Fatalf("%s: %v", what, err)
	}
	st.took, st.cpu = time.Since(start), cpuUsed(b)-cpu
	syscall.Sync()
	st.writeback = time.Since(start) - st.took
	return st
}

func (st step) format(copiedMB float64) string {
	return fmt.Sprintf("%7.2fs %6.1f MB/s, CPU %6.2fs", st.took.Seconds(), copiedMB/st.took.Seconds(), st.cpu.Seconds())
}

// details are what a step's line adds to format.
func (st step) details() string {
	return fmt.Sprintf("writeback left %.2fs, load %s", st.writeback.Seconds(), st.load)
}

// cpuUsed is the user and system CPU of this process and of its children
// that have been waited for.
func cpuUsed(b *testing.B) time.Duration {
	var total time.Duration
	for _, who := range []int{syscall.RUSAGE_SELF, syscall.RUSAGE_CHILDREN} {
		var ru syscall.Rusage
		if err := syscall.Getrusage(who, &ru); err != nil {
			b.Fatal(err)
		}
		total += time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	return total
}

// medianStep is the step of median wall time, and of median CPU.
func medianStep(steps []step) step {
	var took, cpu []time.Duration
	for _, st := range steps {
		took, cpu = append(took, st.took), append(cpu, st.cpu)
	}
	return step{took: medianOf(took), cpu: medianOf(cpu)}
}

// diskUse follows the filesystem's use during a run: peak above the start.
type diskUse struct {
	path        string
	start, peak uint64
}

func newDiskUse(b *testing.B, path string) *diskUse {
	d := &diskUse{path: path}
	d.start = d.used(b)
	return d
}

func (d *diskUse) used(b *testing.B) uint64 {
	var st syscall.Statfs_t
	if err := syscall.Statfs(d.path, &st); err != nil {
		b.Fatal(err)
	}
	return (st.Blocks - st.Bfree) * uint64(st.Bsize)
}

func (d *diskUse) sample(b *testing.B) { d.peak = max(d.peak, d.used(b)) }

func (d *diskUse) peakGB() float64 {
	if d.peak < d.start {
		return 0
	}
	return float64(d.peak-d.start) / (1 << 30)
}

// reachableBenchDir is reachableDir for a benchmark: a temporary directory
// the database servers' accounts may enter.
func reachableBenchDir(b *testing.B) string {
	dir := b.TempDir()
	for _, d := range []string{dir, filepath.Dir(dir)} {
		if err := os.Chmod(d, 0o755); err != nil {
			b.Fatal(err)
		}
	}
	return dir
}

// runBenchTool runs a command and reports its last words on failure.
func runBenchTool(cmd *exec.Cmd) error {
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s: %w: %s", filepath.Base(cmd.Path), err, lastWords(string(out)))
	}
	return nil
}

// lastWords is the last line of a tool's output.
func lastWords(out string) string {
	lines := strings.Split(strings.TrimSpace(out), "\n")
	return lines[len(lines)-1]
}

func removeBenchDir(b *testing.B, dir string) {
	if err := os.RemoveAll(dir); err != nil {
		b.Fatal(err)
	}
}

func medianOf(ds []time.Duration) time.Duration {
	s := slices.Sorted(slices.Values(ds))
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func timeRatio(a, b time.Duration) float64 { return a.Seconds() / b.Seconds() }

func megabytes(n int64) float64 { return float64(n) / 1e6 }
