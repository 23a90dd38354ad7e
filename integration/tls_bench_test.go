package integration

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/dbha/dbha/binlog"
	mysqlstream "github.com/dbha/dbha/binlog/mysql"
	"github.com/dbha/dbha/tlsconfig"
	"github.com/dbha/dbha/topology"
	"github.com/dbha/dbha/topology/mysql"
	"github.com/dbha/dbha/topology/postgres"
)

// BenchmarkTLSCost measures what TLS costs dbha on the same servers in the
// same run: a TLS lab whose dbha account is let in over clear text too
// (MariaDB REQUIRE NONE; PostgreSQL host lines for it beside hostssl).
// Each round alternates clear text and verify-full (clear, TLS, TLS,
// clear) on the same work:
//
//   - ingest: the change stream, stopped, falls behind by a backlog the
//     load writes (DBHA_BENCH_MB per engine, default 200), then catches up
//     as fast as it can: MB of binlog or WAL per second, and this
//     process's CPU per MB;
//
//   - probes: 2000 probes of the primary on warm pools: this process's CPU
//     per probe.
//
//     go test ./integration -run '^$' -bench BenchmarkTLSCost -benchtime 1x -v
func BenchmarkTLSCost(b *testing.B) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	dir, err := os.MkdirTemp("", "dbha-bench-lab-")
	if err == nil {
		err = os.Chmod(dir, 0o755)
	}
	if err != nil {
		b.Fatal(err)
	}
	l, _, err := Up(ctx, Options{Dir: dir, TLS: true})
	if err != nil {
		b.Fatalf("lab up: %v", err)
	}
	b.Cleanup(func() { l.Down(context.Background(), true); os.RemoveAll(dir) })
	mb := 200
	if v, err := fmt.Sscan(os.Getenv("DBHA_BENCH_MB"), &mb); v != 1 || err != nil {
		mb = 200
	}
	full := l.clusterTLS()
	arms := []struct {
		name string
		tls  *tlsconfig.Settings
	}{{"clear", nil}, {"tls", full}, {"tls", full}, {"clear", nil}}

	// MariaDB: dbha let in over clear text too.
	admin, err := l.AdminMySQL("mariadb-1")
	if err != nil {
		b.Fatal(err)
	}
	defer admin.Close()
	for _, q := range []string{"ALTER USER 'dbha'@'127.0.0.1' REQUIRE NONE", "CREATE DATABASE bench",
		"CREATE TABLE bench.t (id BIGINT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(255))"} {
		if _, err := admin.ExecContext(ctx, q); err != nil {
			b.Fatalf("%s: %v", q, err)
		}
	}
	pw, err := readPassword(l.Secret("mariadb-dbha"))
	if err != nil {
		b.Fatal(err)
	}
	primary := node(b, l, "mariadb-1").Addr()
	for i, arm := range arms {
		dir := filepath.Join(l.Dir, "bench-streams", fmt.Sprintf("mariadb-%d", i))
		start := func() (*mysqlstream.Stream, func()) {
			s, err := mysqlstream.New(mysqlstream.Config{Cluster: mariadbCluster, Dir: dir, User: "dbha", Password: pw, TLS: arm.tls,
				ServerID: mariaStreamServerID, Flavor: "mariadb", Primary: func(context.Context) (string, error) { return primary, nil },
				Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
			if err != nil {
				b.Fatal(err)
			}
			sctx, stop := context.WithCancel(ctx)
			done := make(chan error, 1)
			go func() { done <- s.Run(sctx) }()
			return s, func() { stop(); <-done }
		}
		s, stop := start()
		waitConnected(b, s)
		// One transaction held, so that the restart resumes from the store
		// (an empty store starts at the primary's current position).
		if _, err := admin.ExecContext(ctx, "INSERT INTO bench.t (v) VALUES ('start')"); err != nil {
			b.Fatal(err)
		}
		for first := mariaPrimarySeq(admin); mariaHeldSeq(s) < first; {
			time.Sleep(5 * time.Millisecond)
		}
		stop()
		// The backlog: bulk inserts until the binlog grew by mb MB.
		before := binlogBytes(ctx, b, admin)
		for binlogBytes(ctx, b, admin)-before < int64(mb)<<20 {
			if _, err := admin.ExecContext(ctx, "INSERT INTO bench.t (v) SELECT REPEAT(CHAR(65 + seq % 26), 200) FROM mysql.seq_1_to_5000"); err != nil {
				b.Fatal(err)
			}
		}
		target := mariaPrimarySeq(admin)
		cpu0, began := cpuTime(b), time.Now()
		s, stop = start()
		for mariaHeldSeq(s) < target {
			if time.Since(began) > 10*time.Minute {
				b.Fatalf("the stream did not catch up: %+v", s.Status())
			}
			time.Sleep(5 * time.Millisecond)
		}
		took, cpu := time.Since(began), cpuTime(b)-cpu0
		stop()
		got := float64(binlogBytes(ctx, b, admin)-before) / 1e6
		b.Logf("mariadb ingest, %-5s: %.0f MB of binlog in %.2fs: %.1f MB/s, %.1f ms of CPU per MB", arm.name, got, took.Seconds(), got/took.Seconds(), float64(cpu.Milliseconds())/got)
	}
	for _, arm := range arms {
		p := mysql.NewProber(topology.MariaDB, "dbha", pw)
		p.SetTLS(arm.tls)
		probeCPU(b, "mariadb", arm.name, func() topology.Instance { return p.Probe(ctx, primary) })
		p.Close()
	}

	// PostgreSQL: dbha let in over clear text too.
	n1, err := l.Node("postgres-1")
	if err != nil {
		b.Fatal(err)
	}
	hba := filepath.Join(n1.DataDir, "pg_hba.conf")
	text, err := os.ReadFile(hba)
	if err != nil {
		b.Fatal(err)
	}
	allow := "host all dbha 127.0.0.1/32 scram-sha-256\nhost replication dbha 127.0.0.1/32 scram-sha-256\n"
	if err := os.WriteFile(hba, append([]byte(allow), text...), 0o600); err != nil {
		b.Fatal(err)
	}
	pg := adminPG(ctx, b, l, "postgres-1")
	for _, q := range []string{"SELECT pg_reload_conf()", "ALTER SYSTEM SET max_wal_size = '4GB'", "SELECT pg_reload_conf()",
		"CREATE TABLE bench (id bigserial PRIMARY KEY, v text)"} {
		exec1(ctx, b, pg, q)
	}
	pgpw, err := readPassword(l.Secret("postgres-dbha"))
	if err != nil {
		b.Fatal(err)
	}
	pgPrimary := n1.Addr()
	for i, arm := range arms {
		cfg := walConfig(b, l, filepath.Join(l.Dir, "bench-streams", fmt.Sprintf("postgres-%d", i)), fixedPrimary(pgPrimary))
		cfg.Password, cfg.TLS, cfg.Slot = pgpw, arm.tls, fmt.Sprintf("dbha_bench_%d", i)
		s, stop := runStream(ctx, b, cfg)
		waitFlushed(b, s, currentLSN(ctx, b, pg), 1)
		stop()
		from := currentLSN(ctx, b, pg)
		for currentLSN(ctx, b, pg)-from < topology.LSN(mb)<<20 {
			exec1(ctx, b, pg, "INSERT INTO bench (v) SELECT repeat(chr(65 + g % 26), 200) FROM generate_series(1, 5000) g")
		}
		target := currentLSN(ctx, b, pg)
		cpu0, began := cpuTime(b), time.Now()
		s, stop = runStream(ctx, b, cfg)
		waitFlushed(b, s, target, 1)
		took, cpu := time.Since(began), cpuTime(b)-cpu0
		stop()
		got := float64(target-from) / 1e6
		b.Logf("postgres ingest, %-5s: %.0f MB of WAL in %.2fs: %.1f MB/s, %.1f ms of CPU per MB", arm.name, got, took.Seconds(), got/took.Seconds(), float64(cpu.Milliseconds())/got)
		exec1(ctx, b, pg, fmt.Sprintf("SELECT pg_drop_replication_slot('%s')", cfg.Slot))
	}
	for _, arm := range arms {
		p := postgres.NewProber("dbha", pgpw)
		p.SetTLS(arm.tls)
		probeCPU(b, "postgres", arm.name, func() topology.Instance { return p.Probe(ctx, pgPrimary) })
		p.Close()
	}
}

// probeCPU runs 2000 probes on a warm pool and reports this process's CPU
// per probe.
func probeCPU(b *testing.B, engine, arm string, probe func() topology.Instance) {
	b.Helper()
	for range 20 {
		if in := probe(); !in.Reachable {
			b.Fatalf("%s probe, %s: %s", engine, arm, in.Error)
		}
	}
	const n = 2000
	cpu0, began := cpuTime(b), time.Now()
	for range n {
		if in := probe(); !in.Reachable {
			b.Fatalf("%s probe, %s: %s", engine, arm, in.Error)
		}
	}
	cpu, took := cpuTime(b)-cpu0, time.Since(began)
	b.Logf("%s probes, %-5s: %d in %.2fs, %.0f µs of CPU and %.0f µs of wall time per probe", engine, arm, n, took.Seconds(),
		float64(cpu.Microseconds())/n, float64(took.Microseconds())/n)
}

// waitConnected waits until the stream is connected.
func waitConnected(b *testing.B, s interface{ Status() binlog.Status }) {
	b.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !s.Status().Connected {
		if time.Now().After(deadline) {
			b.Fatalf("the stream did not connect: %+v", s.Status())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// binlogBytes is the size of the primary's binlog files, in bytes.
func binlogBytes(ctx context.Context, b *testing.B, db *sql.DB) int64 {
	rows, err := db.QueryContext(ctx, "SHOW BINARY LOGS")
	if err != nil {
		b.Fatal(err)
	}
	defer rows.Close()
	var total int64
	for rows.Next() {
		var name string
		var size int64
		if err := rows.Scan(&name, &size); err != nil {
			b.Fatal(err)
		}
		total += size
	}
	return total
}
