package integration

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/dbha/dbha/checksum"
	"github.com/dbha/dbha/topology"
)

// BenchmarkChecksum measures dbha checksum on DBHA_BENCH_GB gigabytes per
// engine (default 2): rows and megabytes checked per second, the
// primary's CPU while it runs (its server process's, from /proc), and the
// replicas' largest lag meanwhile; idle, then under a write load; on
// MariaDB, pt-table-checksum on the same data in the same run, the same
// way. Run it with
//
//	go test ./integration -run '^$' -bench BenchmarkChecksum -benchtime 1x -timeout 60m -v
//
// Figures are reported, never asserted: only that no run found a
// difference.
func BenchmarkChecksum(b *testing.B) {
	gb := benchGB(b)
	b.Run("mariadb", func(b *testing.B) { benchChecksumMariaDB(b, gb) })
	b.Run("postgres", func(b *testing.B) { benchChecksumPostgres(b, gb) })
}

// checksumRun is one measured run.
type checksumRun struct {
	took       time.Duration
	primaryCPU time.Duration
	maxLag     time.Duration
	writes     int64
}

func (r checksumRun) line(tool, load string, rows int64, mb float64) string {
	s := fmt.Sprintf("%-18s %-5s %7.1fs %9.0f rows/s %6.1f MB/s, primary CPU %6.1fs (%3.0f%% of one core), replicas' largest lag %4.1fs",
		tool, load, r.took.Seconds(), float64(rows)/r.took.Seconds(), mb/r.took.Seconds(), r.primaryCPU.Seconds(),
		100*r.primaryCPU.Seconds()/r.took.Seconds(), r.maxLag.Seconds())
	if r.writes > 0 {
		s += fmt.Sprintf(", %d writes (%.0f/s) meanwhile", r.writes, float64(r.writes)/r.took.Seconds())
	}
	return s
}

// measureChecksum runs fn while sampling the replicas' lag every 200 ms,
// and times it and the primary's CPU. load, when set, writes meanwhile and
// returns how many writes it made when its context ends.
func measureChecksum(b *testing.B, primaryPID int, lag func(context.Context) time.Duration, load func(context.Context) int64, fn func() error) checksumRun {
	b.Helper()
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var worst atomic.Int64
	wg.Go(func() {
		for ctx.Err() == nil {
			if l := lag(ctx); int64(l) > worst.Load() {
				worst.Store(int64(l))
			}
			sleepCtx(ctx, 200*time.Millisecond)
		}
	})
	var writes atomic.Int64
	if load != nil {
		wg.Go(func() { writes.Store(load(ctx)) })
		time.Sleep(2 * time.Second) // the load under way before the check starts
	}
	cpu := procCPU(b, primaryPID)
	start := time.Now()
	err := fn()
	r := checksumRun{took: time.Since(start), primaryCPU: procCPU(b, primaryPID) - cpu}
	stop()
	wg.Wait()
	if err != nil {
		b.Fatal(err)
	}
	r.maxLag, r.writes = time.Duration(worst.Load()), writes.Load()
	return r
}

func sleepCtx(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// procCPU is the CPU time (user and system, clock ticks of 10 ms) of a
// server: its process, the children it has waited for, and its live
// children (PostgreSQL's work is in its backends, children of the
// postmaster; MariaDB's in threads of its one process).
func procCPU(b *testing.B, pid int) time.Duration {
	stat := func(p int) []string {
		raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p))
		if err != nil {
			return nil
		}
		s := string(raw)
		return strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	}
	ticks := func(f []string, fields ...int) int64 {
		var n int64
		for _, i := range fields {
			v, _ := strconv.ParseInt(f[i], 10, 64)
			n += v
		}
		return n
	}
	own := stat(pid)
	if own == nil {
		b.Fatalf("no process %d", pid)
	}
	total := ticks(own, 11, 12, 13, 14) // utime, stime, cutime, cstime
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		child, err := strconv.Atoi(e.Name())
		if err != nil || child == pid {
			continue
		}
		if f := stat(child); f != nil && f[1] == strconv.Itoa(pid) { // its parent
			total += ticks(f, 11, 12)
		}
	}
	return time.Duration(total) * 10 * time.Millisecond
}

func benchChecksumMariaDB(b *testing.B, gb float64) {
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Minute)
	defer cancel()
	l := benchLab(b)
	loaded := mariadbBackupBench(ctx, b, l, gb) // dbha_lab.bench, replicas caught up
	dbs := map[string]*sql.DB{}
	for _, n := range []string{"mariadb-1", "mariadb-2", "mariadb-3"} {
		dbs[n] = mariaBenchDB(b, l, n, 4)
	}
	var rows, bytes int64
	if err := dbs["mariadb-1"].QueryRowContext(ctx, "SELECT COUNT(*) FROM dbha_lab.bench").Scan(&rows); err != nil {
		b.Fatal(err)
	}
	if err := dbs["mariadb-1"].QueryRowContext(ctx, "SELECT DATA_LENGTH FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'dbha_lab' AND TABLE_NAME = 'bench'").Scan(&bytes); err != nil {
		b.Fatal(err)
	}
	mb := megabytes(bytes)
	b.Logf("mariadb: dbha_lab.bench, %d rows, %.0f MB of data (datadir %.0f MB)", rows, mb, loaded.dataMB)
	pw, err := readPassword(l.Secret("mariadb-admin"))
	if err != nil {
		b.Fatal(err)
	}
	primary := node(b, l, "mariadb-1")
	replicas := []string{node(b, l, "mariadb-2").Addr(), node(b, l, "mariadb-3").Addr()}
	lag := func(ctx context.Context) time.Duration {
		var worst time.Duration
		for _, n := range []string{"mariadb-2", "mariadb-3"} {
			st, err := slaveStatus(ctx, dbs[n])
			if err != nil {
				continue
			}
			if s, err := strconv.Atoi(st["Seconds_Behind_Master"]); err == nil {
				worst = max(worst, time.Duration(s)*time.Second)
			}
		}
		return worst
	}
	// The load: four writers updating random rows of the table and
	// inserting new ones past its end, as fast as the server answers.
	var next atomic.Int64
	next.Store(rows + 1)
	load := func(ctx context.Context) int64 {
		var n atomic.Int64
		var wg sync.WaitGroup
		for range 4 {
			wg.Go(func() {
				for ctx.Err() == nil {
					if _, err := dbs["mariadb-1"].ExecContext(ctx, "UPDATE dbha_lab.bench SET c = MD5(RAND()) WHERE id = ?", 1+rand.Int64N(rows)); err == nil {
						n.Add(1)
					}
					if _, err := dbs["mariadb-1"].ExecContext(ctx, "INSERT INTO dbha_lab.bench VALUES (?, MD5(RAND()))", next.Add(1)); err == nil {
						n.Add(1)
					}
				}
			})
		}
		wg.Wait()
		return n.Load()
	}
	dbha := func() error {
		e, closeEngine, err := checksum.Connect(topology.MariaDB, primary.Addr(), replicas, "admin", pw, nil)
		if err != nil {
			return err
		}
		defer closeEngine()
		o := checksum.DefaultOptions()
		o.Cluster, o.Engine, o.Primary, o.Tables = mariadbCluster, "mariadb", primary.Addr(), []string{"dbha_lab.bench"}
		r, err := checksum.Run(ctx, e, o)
		if err == nil && (r.Differences() > 0 || !r.Complete()) {
			err = fmt.Errorf("dbha checksum: %d differences, complete %v: %+v", r.Differences(), r.Complete(), r.Tables)
		}
		return err
	}
	cnf := filepath.Join(b.TempDir(), "pt.cnf")
	if err := os.WriteFile(cnf, []byte("[client]\nuser=admin\npassword="+pw+"\n"), 0o600); err != nil {
		b.Fatal(err)
	}
	// pt-table-checksum with dbha's pause threshold (--max-lag 10 s, its
	// default is 1 s) and chunk time (0.5 s, its default too), so that
	// both tools do the same work; a round is cut after ptLimit and said
	// so rather than waited for.
	const ptLimit = 10 * time.Minute
	var ptCut bool
	pt := func() error {
		ptCtx, cancel := context.WithTimeout(ctx, ptLimit)
		defer cancel()
		cmd := exec.CommandContext(ptCtx, "pt-table-checksum", "--databases=dbha_lab", "--tables=bench", "--recursion-method=hosts",
			"--no-check-binlog-format", "--max-lag=10", "--chunk-time=0.5", fmt.Sprintf("h=%s,P=%d,F=%s", primary.Host, primary.Port, cnf))
		out, err := cmd.CombinedOutput()
		if ptCut = ptCtx.Err() != nil && ctx.Err() == nil; ptCut {
			return nil
		}
		if code := cmd.ProcessState.ExitCode(); code != 0 {
			return fmt.Errorf("pt-table-checksum exited %d (%v):\n%s", code, err, out)
		}
		return nil
	}
	for _, round := range []struct {
		tool string
		fn   func() error
		load func(context.Context) int64
	}{{"dbha checksum", dbha, nil}, {"pt-table-checksum", pt, nil}, {"dbha checksum", dbha, load}, {"pt-table-checksum", pt, load}} {
		mariaSettle(ctx, b, dbs)
		ptCut = false
		r := measureChecksum(b, primary.PID, lag, round.load, round.fn)
		line := r.line(round.tool, map[bool]string{true: "load", false: "idle"}[round.load != nil], rows, mb)
		if ptCut {
			line = fmt.Sprintf("%s (NOT FINISHED: stopped after %v; the rates are of the time it ran, not of the table)", line, ptLimit)
		}
		b.Log(line)
	}
}

func benchChecksumPostgres(b *testing.B, gb float64) {
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Minute)
	defer cancel()
	l := benchLab(b)
	scale := max(1, int(gb*pgbenchScalePerGB))
	if out, err := pgbench(ctx, b, l, "postgres-1", "-i", "-s", strconv.Itoa(scale), "-q").CombinedOutput(); err != nil {
		b.Fatalf("pgbench -i: %v\n%s", err, out)
	}
	waitUntil(b, 10*time.Minute, "the standbys to replay the load", func() error { return pgCaughtUp(ctx, l) })
	admin := adminPG(ctx, b, l, "postgres-1")
	var rows, bytes int64
	if err := admin.QueryRow(ctx, "SELECT count(*), pg_relation_size('pgbench_accounts') FROM pgbench_accounts").Scan(&rows, &bytes); err != nil {
		b.Fatal(err)
	}
	mb := megabytes(bytes)
	b.Logf("postgres: pgbench_accounts (pgbench -i -s %d), %d rows, %.0f MB", scale, rows, mb)
	pw, err := readPassword(l.Secret("postgres-superuser"))
	if err != nil {
		b.Fatal(err)
	}
	primary := node(b, l, "postgres-1")
	standbys := []string{node(b, l, "postgres-2").Addr(), node(b, l, "postgres-3").Addr()}
	lagConns := []*pgx.Conn{adminPG(ctx, b, l, "postgres-2"), adminPG(ctx, b, l, "postgres-3")}
	lag := func(ctx context.Context) time.Duration {
		var worst time.Duration
		for _, c := range lagConns {
			var s float64
			if c.QueryRow(ctx, `SELECT CASE WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0
				ELSE coalesce(extract(epoch FROM now() - pg_last_xact_replay_timestamp()), 0) END`).Scan(&s) == nil {
				worst = max(worst, time.Duration(s*float64(time.Second)))
			}
		}
		return worst
	}
	// The load: pgbench's own TPC-B-like transactions, four clients.
	// Each pgbench transaction inserts one history row.
	commits := func() int64 {
		var n int64
		if err := admin.QueryRow(context.Background(), "SELECT count(*) FROM pgbench_history").Scan(&n); err != nil {
			b.Fatal(err)
		}
		return n
	}
	load := func(ctx context.Context) int64 {
		before := commits()
		pgbench(ctx, b, l, "postgres-1", "-c", "4", "-T", "3600", "-n").Run() // until ctx ends
		return commits() - before
	}
	dbha := func() error {
		e, closeEngine, err := checksum.Connect(topology.Postgres, primary.Addr(), standbys, "postgres", pw, nil)
		if err != nil {
			return err
		}
		defer closeEngine()
		o := checksum.DefaultOptions()
		o.Cluster, o.Engine, o.Primary, o.Tables = postgresCluster, "postgres", primary.Addr(), []string{"dbha_lab.public.pgbench_accounts"}
		r, err := checksum.Run(ctx, e, o)
		if err == nil && r.Differences() > 0 {
			err = fmt.Errorf("dbha checksum: %d differences: %+v", r.Differences(), r.Tables)
		}
		if err == nil {
			b.Logf("dbha checksum: %d chunks, %d rows changed while compared, complete %v", r.Tables[0].Chunks, r.Tables[0].Changing, r.Complete())
		}
		return err
	}
	for _, withLoad := range []bool{false, true} {
		waitUntil(b, 10*time.Minute, "the standbys to catch up", func() error { return pgCaughtUp(ctx, l) })
		var ld func(context.Context) int64
		if withLoad {
			ld = load
		}
		r := measureChecksum(b, primary.PID, lag, ld, dbha)
		b.Log(r.line("dbha checksum", map[bool]string{true: "load", false: "idle"}[withLoad], rows, mb))
	}
}
