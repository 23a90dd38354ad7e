package integration

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	mysqlstream "github.com/dbha/dbha/binlog/mysql"
	"github.com/dbha/dbha/topology"
)

// Benchmarks of the MariaDB change stream against the lab (not run by
// `make test`):
//
//	go test ./integration -run '^$' -bench BenchmarkMariaDBIngest -benchtime 1x
//
// DBHA_BENCH_SECONDS sets how long each ingest load runs (default 15).
// Reading a whole binlog file is measured in binlog_read_bench_test.go.

// mariaBenchLab brings up a lab for a benchmark.
func mariaBenchLab(b *testing.B) *Lab {
	b.Helper()
	dir, err := os.MkdirTemp("", "dbha-bench-lab-")
	if err == nil {
		err = os.Chmod(dir, 0o755)
	}
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	l, _, err := Up(ctx, Options{Dir: dir})
	if err != nil {
		b.Fatalf("lab up: %v", err)
	}
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		l.Down(ctx, true)
		os.RemoveAll(dir)
	})
	return l
}

func mariaBenchDB(b *testing.B, l *Lab, node string, conns int) *sql.DB {
	b.Helper()
	db, err := l.AdminMySQL(node)
	if err != nil {
		b.Fatal(err)
	}
	db.SetMaxOpenConns(conns)
	db.SetMaxIdleConns(conns)
	b.Cleanup(func() { db.Close() })
	return db
}

// mariaBenchStream runs a stream of the lab's primary into dir.
func mariaBenchStream(b *testing.B, l *Lab, dir string, maxFile int64) (*mysqlstream.Stream, func()) {
	b.Helper()
	pw, err := readPassword(l.Secret("mariadb-dbha"))
	if err != nil {
		b.Fatal(err)
	}
	n, _ := l.Node("mariadb-1")
	s, err := mysqlstream.New(mysqlstream.Config{
		Cluster: mariadbCluster, Dir: dir, User: "dbha", Password: pw, ServerID: mariaStreamServerID, Flavor: "mariadb",
		Primary:     func(context.Context) (string, error) { return n.Addr(), nil },
		MaxFileSize: maxFile, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	waitConnected(b, s)
	return s, func() {
		cancel()
		if err := <-done; err != nil {
			b.Errorf("Run: %v", err)
		}
	}
}

// mariaBenchLoad runs workers that each repeat stmt until stop, which fails
// the benchmark if a statement failed.
func mariaBenchLoad(b *testing.B, db *sql.DB, workers int, stmt string) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var failed atomic.Value
	for range workers {
		wg.Go(func() {
			for ctx.Err() == nil {
				if _, err := db.ExecContext(ctx, stmt); err != nil && ctx.Err() == nil {
					failed.Store(err)
					return
				}
			}
		})
	}
	return func() {
		cancel()
		wg.Wait()
		if err, _ := failed.Load().(error); err != nil {
			b.Fatalf("%s: %v", stmt, err)
		}
	}
}

func mariaPrimarySeq(db *sql.DB) uint64 {
	var pos string
	db.QueryRow("SELECT @@gtid_binlog_pos").Scan(&pos)
	n, _ := strconv.ParseUint(pos[strings.LastIndex(pos, "-")+1:], 10, 64)
	return n
}

func mariaHeldSeq(s *mysqlstream.Stream) uint64 {
	pos := s.Status().Position.String()
	n, _ := strconv.ParseUint(pos[strings.LastIndex(pos, "-")+1:], 10, 64)
	return n
}

// BenchmarkMariaDBIngest drives the heaviest write loads the lab primary
// sustains (many small transactions; bulk multi-row transactions) while the
// stream runs, and reports what the stream ingested per second and whether
// its lag (transactions the primary has committed and dbha has not yet
// fsynced) stayed flat.
func BenchmarkMariaDBIngest(b *testing.B) {
	secs := 15
	if v, err := strconv.Atoi(os.Getenv("DBHA_BENCH_SECONDS")); err == nil && v > 0 {
		secs = v
	}
	loads := []struct {
		name      string
		workers   int
		blackhole bool // binlog only: BLACKHOLE table, replicas stopped
		stmt      string
	}{
		{"small transactions", 16, false, "INSERT INTO bench.t (v) VALUES (REPEAT('s', 100))"},
		{"bulk transactions", 4, false, "INSERT INTO bench.t (v) SELECT REPEAT(CHAR(65 + seq % 26), 200) FROM bench.seq_1_to_500"},
		{"bulk, binlog only", 4, true, "INSERT INTO bench.t (v) SELECT REPEAT(CHAR(65 + seq % 26), 200) FROM bench.seq_1_to_500"},
	}
	for _, ld := range loads {
		b.Run(ld.name, func(b *testing.B) {
			for range b.N {
				mariaIngestOnce(b, ld.workers, ld.blackhole, ld.stmt, time.Duration(secs)*time.Second)
			}
		})
	}
}

func mariaIngestOnce(b *testing.B, workers int, blackhole bool, stmt string, d time.Duration) {
	l := mariaBenchLab(b)
	db := mariaBenchDB(b, l, "mariadb-1", workers+2)
	setup := []string{"CREATE DATABASE bench", "CREATE TABLE bench.t (id BIGINT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(255))"}
	if blackhole {
		stopReplicas(b, l)
		setup = []string{"INSTALL SONAME 'ha_blackhole'", "CREATE DATABASE bench", "CREATE TABLE bench.t (id BIGINT, v VARCHAR(255)) ENGINE=BLACKHOLE"}
	}
	for _, q := range setup {
		if _, err := db.Exec(q); err != nil {
			b.Fatalf("%s: %v", q, err)
		}
	}
	dir := filepath.Join(l.Dir, "state", "streams", mariadbCluster)
	s, stopStream := mariaBenchStream(b, l, dir, 0)
	defer stopStream()
	start := mariaHeldSeq(s)
	b.ResetTimer()
	began := time.Now()
	stop := mariaBenchLoad(b, db, workers, stmt)
	var lags []float64
	var heap []uint64
	for time.Since(began) < d {
		time.Sleep(250 * time.Millisecond)
		lags = append(lags, float64(mariaPrimarySeq(db))-float64(mariaHeldSeq(s)))
		if len(lags)%8 == 4 {
			heap = append(heap, mariaHeapInUse())
		}
	}
	stop()
	loadTime := time.Since(began)
	// A statement cancelled by stop may still commit: wait until dbha holds
	// all the primary has.
	target := mariaPrimarySeq(db)
	for held := mariaHeldSeq(s); held < target; held = mariaHeldSeq(s) {
		time.Sleep(10 * time.Millisecond)
		target = mariaPrimarySeq(db)
	}
	catchUp := time.Since(began) - loadTime
	b.StopTimer()
	reportMariaIngest(b, s, dir, start, target, loadTime, catchUp, lags, heap)
}

// reportMariaIngest sums what the store holds for the run and reports it.
func reportMariaIngest(b *testing.B, s *mysqlstream.Stream, dir string, start, end uint64, loadTime, catchUp time.Duration, lags []float64, heap []uint64) {
	store, err := mysqlstream.OpenStore(dir)
	if err != nil {
		b.Fatal(err)
	}
	from, _ := topology.ParseMariaDB(fmt.Sprintf("0-1-%d", start))
	txs, err := store.Transactions(from, 0)
	if err != nil {
		b.Fatal(err)
	}
	var events, bytes int64
	for _, tx := range txs {
		events += int64(tx.Events)
		bytes += tx.Size
	}
	secs := (loadTime + catchUp).Seconds()
	half := len(lags) / 2
	b.ReportMetric(float64(len(txs))/secs, "txn/s")
	b.ReportMetric(float64(events)/secs, "events/s")
	b.ReportMetric(float64(bytes)/secs/1e6, "MB/s")
	b.ReportMetric(mariaMax(lags), "max-lag-txn")
	b.ReportMetric(mariaMean(lags[:half]), "lag-1st-half-txn")
	b.ReportMetric(mariaMean(lags[half:]), "lag-2nd-half-txn")
	b.ReportMetric(float64(catchUp.Milliseconds()), "catch-up-ms")
	if len(heap) > 1 {
		b.ReportMetric(float64(heap[0])/1e6, "heap-start-MB")
		b.ReportMetric(float64(heap[len(heap)-1])/1e6, "heap-end-MB")
	}
	b.Logf("%d transactions, %d events, %.1f MB in %.1fs of load (+%s to catch up); lag samples (txn): %v",
		len(txs), events, float64(bytes)/1e6, loadTime.Seconds(), catchUp.Round(time.Millisecond), lags)
	if uint64(len(txs)) != end-start {
		b.Errorf("the store holds %d transactions, the primary committed %d", len(txs), end-start)
	}
	if st := s.Status(); st.LastError != "" {
		b.Errorf("stream error: %s", st.LastError)
	}
}

func mariaHeapInUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

func mariaMax(xs []float64) float64 {
	m := 0.0
	for _, x := range xs {
		m = max(m, x)
	}
	return m
}

func mariaMean(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	sum := 0.0
	for _, x := range xs {
		sum += x
	}
	return sum / float64(len(xs))
}

// stopReplicas stops the lab's replicas (a binlog-only load would break
// them: they have no BLACKHOLE engine).
func stopReplicas(b *testing.B, l *Lab) {
	for _, r := range []string{"mariadb-2", "mariadb-3"} {
		db := mariaBenchDB(b, l, r, 1)
		_, err := db.Exec("STOP SLAVE")
		db.Close() // not left open on a server the benchmark may stop
		if err != nil {
			b.Fatal(err)
		}
	}
}
