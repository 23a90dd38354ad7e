package integration

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/dbha/dbha/binlog"
	"github.com/dbha/dbha/topology"
)

// BenchmarkWALIngest measures the WAL stream under the heaviest loads the
// lab primary sustains, 20 s each: WAL MB/s and messages/s received, and
// dbha's lag (the primary's flushed LSN minus dbha's fsynced LSN, which is
// what dbha could have and has on disk) sampled every second, whose slope
// says whether dbha keeps up. Run it with
//
//	go test ./integration -run '^$' -bench BenchmarkWALIngest -benchtime 1x
//
// The loads:
//   - tpcb-async: pgbench's TPC-B (8 clients, 2 threads, prepared), the
//     primary with synchronous_commit off, dbha not synchronous;
//   - bulk-async: a pgbench script of 200-row inserts (about 130 kB of WAL
//     per transaction, 4 clients): the most WAL per second the lab makes;
//   - tpcb-synchronous: TPC-B with dbha as the primary's synchronous standby,
//     so every commit waits for dbha's fsync.
func BenchmarkWALIngest(b *testing.B) {
	for _, m := range []ingestMode{
		{name: "tpcb-async", args: []string{"-c", "8", "-j", "2", "-M", "prepared"}},
		{name: "bulk-async", bulk: true, args: []string{"-c", "4", "-j", "2"}},
		{name: "tpcb-synchronous", synchronous: true, args: []string{"-c", "8", "-j", "2", "-M", "prepared"}},
	} {
		b.Run(m.name, func(b *testing.B) { benchIngest(b, m) })
	}
}

type ingestMode struct {
	name        string
	synchronous bool
	bulk        bool
	args        []string // pgbench run options
}

const bulkScript = "INSERT INTO wal_bench SELECT g, repeat(md5(g::text), 8) FROM generate_series(1, 200) g;\n"

func benchIngest(b *testing.B, m ingestMode) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	l := walLab(ctx, b)
	defer l.Down(context.WithoutCancel(ctx), true)
	p1 := node(b, l, "postgres-1")
	admin := adminPG(ctx, b, l, "postgres-1")
	args := append([]string{"-T", "20"}, m.args...)
	if m.bulk {
		exec1(ctx, b, admin, "CREATE TABLE wal_bench (id int, pad text)")
		script := filepath.Join(l.Dir, "bulk.sql")
		if err := os.WriteFile(script, []byte(bulkScript), 0o644); err != nil {
			b.Fatal(err)
		}
		args = append(args, "-f", script)
	} else if out, err := pgbench(ctx, b, l, "postgres-1", "-i", "-s", "10", "-q").CombinedOutput(); err != nil {
		b.Fatalf("pgbench -i: %v\n%s", err, out)
	}
	// Only now: with dbha named synchronous and not yet running, pgbench -i would wait for it.
	if m.synchronous {
		exec1(ctx, b, admin, "ALTER SYSTEM SET synchronous_standby_names = 'dbha'")
	} else {
		exec1(ctx, b, admin, "ALTER SYSTEM SET synchronous_commit = off")
	}
	exec1(ctx, b, admin, "ALTER SYSTEM SET max_wal_size = '4GB'") // no checkpoint storms from the load itself
	exec1(ctx, b, admin, "SELECT pg_reload_conf()")

	cfg := walConfig(b, l, filepath.Join(l.Dir, "streams", "bench"), fixedPrimary(p1.Addr()))
	cfg.Synchronous = m.synchronous
	s, stop := runStream(ctx, b, cfg)
	defer stop()
	waitFlushed(b, s, currentLSN(ctx, b, admin), 1)

	b.ResetTimer()
	for range b.N {
		r := ingestRun(ctx, b, l, s, args)
		b.ReportMetric(r.mbps, "MB/s")
		b.ReportMetric(r.msgps, "msgs/s")
		b.ReportMetric(r.walMBps, "primary-WAL-MB/s")
		b.ReportMetric(r.tps, "pgbench-tps")
		b.ReportMetric(r.lagMean/1e6, "lag-mean-MB")
		b.ReportMetric(r.lagMax/1e6, "lag-max-MB")
		b.ReportMetric(r.lagSlope/1e3, "lag-slope-kB/s")
		b.ReportMetric(r.catchUp.Seconds(), "catch-up-s")
		b.ReportMetric(r.heapMB, "heap-MB")
		b.Logf("%s", r.samples)
	}
	b.StopTimer()
}

type ingestResult struct {
	mbps, msgps, walMBps, tps float64
	lagMean, lagMax, lagSlope float64 // bytes, bytes, bytes per second
	catchUp                   time.Duration
	heapMB                    float64
	samples                   string
}

// ingestRun runs one pgbench load while sampling dbha's lag every second.
func ingestRun(ctx context.Context, b *testing.B, l *Lab, s interface{ Status() binlog.Status }, args []string) ingestResult {
	sampler := adminPG(ctx, b, l, "postgres-1")
	before := s.Status()
	walStart := currentLSN(ctx, b, sampler)
	start := time.Now()

	run := pgbench(ctx, b, l, "postgres-1", args...)
	out := &lockedBuffer{}
	run.Stdout, run.Stderr = out, out
	if err := run.Start(); err != nil {
		b.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- run.Wait() }()

	var lags []float64
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
wait:
	for {
		select {
		case err := <-done:
			if err != nil {
				b.Fatalf("pgbench: %v\n%s", err, out.String())
			}
			break wait
		case <-tick.C:
			cur := flushLSN(ctx, b, sampler)
			held := s.Status().Position.LSN()
			lags = append(lags, float64(max(0, int64(cur)-int64(held))))
		}
	}
	elapsed := time.Since(start)
	walEnd := currentLSN(ctx, b, sampler)
	after := waitCaughtUp(b, s, walEnd)
	catchUp := time.Since(start) - elapsed

	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	r := ingestResult{
		mbps:    float64(after.Bytes-before.Bytes) / elapsed.Seconds() / 1e6,
		msgps:   float64(after.Events-before.Events) / elapsed.Seconds(),
		walMBps: float64(walEnd-walStart) / elapsed.Seconds() / 1e6,
		catchUp: catchUp,
		heapMB:  float64(ms.HeapInuse) / 1e6,
		samples: fmt.Sprintf("lag samples (MB): %s", formatMB(lags)),
	}
	fmt.Sscanf(tpsLine(out.String()), "tps = %f", &r.tps)
	r.lagMean, r.lagMax, r.lagSlope = lagStats(lags)
	return r
}

// flushLSN is how far the primary has flushed its WAL: what a walsender
// may send.
func flushLSN(ctx context.Context, b *testing.B, c *pgx.Conn) topology.LSN {
	var s string
	if err := c.QueryRow(ctx, "SELECT pg_current_wal_flush_lsn()::text").Scan(&s); err != nil {
		b.Fatal(err)
	}
	lsn, err := topology.ParseLSN(s)
	if err != nil {
		b.Fatal(err)
	}
	return lsn
}

// waitCaughtUp waits until dbha has flushed lsn and returns its status.
func waitCaughtUp(b *testing.B, s interface{ Status() binlog.Status }, lsn topology.LSN) binlog.Status {
	var st binlog.Status
	waitUntil(b, time.Minute, "dbha catches up to "+lsn.String(), func() error {
		if st = s.Status(); st.Position.LSN() < lsn {
			return fmt.Errorf("at %s", st.Position)
		}
		return nil
	})
	return st
}

// lagStats is the mean, the maximum and the least-squares slope (per
// sample, i.e. per second) of the lag samples.
func lagStats(v []float64) (mean, maxLag, slope float64) {
	n := float64(len(v))
	if n == 0 {
		return 0, 0, 0
	}
	var sx, sy, sxx, sxy float64
	for i, y := range v {
		x := float64(i)
		sx, sy, sxx, sxy = sx+x, sy+y, sxx+x*x, sxy+x*y
		maxLag = max(maxLag, y)
	}
	mean = sy / n
	if d := n*sxx - sx*sx; d != 0 {
		slope = (n*sxy - sx*sy) / d
	}
	return mean, maxLag, slope
}

func formatMB(v []float64) string {
	s := ""
	for _, x := range v {
		s += fmt.Sprintf("%.2f ", x/1e6)
	}
	return s
}

// lockedBuffer collects a child's output from two pipes.
type lockedBuffer struct {
	mu  sync.Mutex
	buf []byte
}

func (w *lockedBuffer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	return len(p), nil
}

func (w *lockedBuffer) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return string(w.buf)
}
