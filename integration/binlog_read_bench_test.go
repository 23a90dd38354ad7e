package integration

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/go-mysql-org/go-mysql/replication"

	mysqlstream "github.com/dbha/dbha/binlog/mysql"
)

// BenchmarkMariaDBBinlogRead reads one whole binlog file (not run by
// `make test`):
//
//	go test -count=1 ./integration -run '^$' -bench BenchmarkMariaDBBinlogRead -benchtime 5x -timeout 60m -v
//
// It measures two jobs apart, each in a sub-benchmark:
//   - index-scan: dbha's ScanFile, the scan that rebuilds a transaction
//     index: every byte read, every event's header parsed and CRC32 checked,
//     GTID/Query/Xid events decoded, no row event decoded. Its figure is an
//     index scan rate, not a decoder's. mariadb-binlog's text dump of the same file (every event
//     printed, row events as base64) is timed beside it as context only: it
//     does another job, and the two are not a speed-up of one over the other.
//   - row-decode: like for like, every event decoded, every row of every row
//     event included: go-mysql's BinlogParser (the rows turned into Go values,
//     each value touched) against `mariadb-binlog --verbose
//     --base64-output=decode-rows` (each row printed as text to /dev/null).
//
// Both sides of a pair run in the same iteration, one after the other, their
// order swapped every iteration (other jobs may share the machine: a pair sees
// the same load). Every side verifies CRC32. Metrics are medians over the
// iterations of one call (-benchtime Nx: a first call of one iteration, then
// one of N); ns/op is the sum of both sides and means nothing alone. Every
// pair is logged.
//
// DBHA_BENCH_BINLOG names an existing binlog file; without it one of about
// 1 GiB is generated in a temporary directory and removed afterwards.
func BenchmarkMariaDBBinlogRead(b *testing.B) {
	path := os.Getenv("DBHA_BENCH_BINLOG")
	if path == "" {
		path = generateMariaBinlog(b, 1<<30)
	}
	fi, err := os.Stat(path)
	if err != nil {
		b.Fatal(err)
	}
	want := describeBinlog(b, path)
	mb := float64(fi.Size()) / 1e6
	b.Logf("%s: %.1f MB, %d events, %d row events, %d rows, %d transactions", path, mb, want.events, want.rowEvents, want.rows, want.txns)

	b.Run("index-scan", func(b *testing.B) {
		scan := inProcess(func() error {
			n, err := scanTxns(path)
			if err == nil && n != want.txns {
				err = fmt.Errorf("ScanFile found %d transactions, %d before", n, want.txns)
			}
			return err
		})
		dump := func() (time.Duration, error) { return runMariaBinlog(path) }
		pairedRuns(b, mb, false, side{"dbha-index-scan", scan}, side{"context-mariadb-binlog-dump", dump})
	})
	b.Run("row-decode", func(b *testing.B) {
		parse := inProcess(func() error {
			got, err := decodeRows(path)
			if err == nil && got != want.goMySQL {
				err = fmt.Errorf("go-mysql decoded %+v, %+v before", got, want.goMySQL)
			}
			return err
		})
		tool := func() (time.Duration, error) {
			return runMariaBinlog(path, "--verbose", "--base64-output=decode-rows")
		}
		pairedRuns(b, mb, true, side{"go-mysql", parse}, side{"mariadb-binlog-v", tool})
	})
}

// side is one reader of the file: run reads it once and returns the CPU
// time it used (user + system, every thread).
type side struct {
	name string
	run  func() (cpu time.Duration, err error)
}

// inProcess measures f's CPU time as the whole process's (this benchmark
// runs nothing else meanwhile; the Go runtime's GC threads are counted).
func inProcess(f func() error) func() (time.Duration, error) {
	return func() (time.Duration, error) {
		before, err := processCPU()
		if err != nil {
			return 0, err
		}
		if err := f(); err != nil {
			return 0, err
		}
		after, err := processCPU()
		return after - before, err
	}
}

func processCPU() (time.Duration, error) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, fmt.Errorf("getrusage: %w", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), nil
}

// pairedRuns runs a and b once per iteration, in alternating order, and
// reports each side's median MB/s (wall clock) and median CPU seconds and,
// when the two do the same job (like), the medians of the per-pair ratios
// of b's wall and CPU time over a's.
func pairedRuns(bm *testing.B, mb float64, like bool, a, b side) {
	var walls, cpus [2][]float64
	var wallRatios, cpuRatios []float64
	timed := func(s side) (wall, cpu float64) {
		began := time.Now()
		c, err := s.run()
		if err != nil {
			bm.Fatalf("%s: %v", s.name, err)
		}
		return time.Since(began).Seconds(), c.Seconds()
	}
	for i := range bm.N {
		var wa, ca, wb, cb float64
		first := a.name
		if i%2 == 0 {
			wa, ca = timed(a)
			wb, cb = timed(b)
		} else {
			first = b.name
			wb, cb = timed(b)
			wa, ca = timed(a)
		}
		walls[0], walls[1] = append(walls[0], wa), append(walls[1], wb)
		cpus[0], cpus[1] = append(cpus[0], ca), append(cpus[1], cb)
		wallRatios, cpuRatios = append(wallRatios, wb/wa), append(cpuRatios, cb/ca)
		ratio := ""
		if like {
			ratio = fmt.Sprintf("; %s/%s wall %.2f, CPU %.2f", b.name, a.name, wb/wa, cb/ca)
		}
		bm.Logf("pair %d/%d (%s first): %s %.3f s (%.1f MB/s, CPU %.3f s), %s %.3f s (%.1f MB/s, CPU %.3f s)%s",
			i+1, bm.N, first, a.name, wa, mb/wa, ca, b.name, wb, mb/wb, cb, ratio)
	}
	for i, s := range []side{a, b} {
		bm.ReportMetric(mb/median(walls[i]), s.name+"-MB/s")
		bm.ReportMetric(median(cpus[i]), s.name+"-cpu-s")
	}
	if like {
		bm.ReportMetric(median(wallRatios), "wall-"+b.name+"/"+a.name)
		bm.ReportMetric(median(cpuRatios), "cpu-"+b.name+"/"+a.name)
	}
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// binlogContent is what one file holds, as counted before the timed runs.
type binlogContent struct {
	txns              int
	events, rowEvents int
	rows              int // an updated row counts once
	goMySQL           decoded
}

// decoded is what one full go-mysql pass saw.
type decoded struct {
	events, rowEvents, rows int   // an updated row counts once
	valueBytes              int64 // string and []byte values
	ints                    int64 // XOR of integer values
}

// describeBinlog counts the file's transactions (ScanFile), events, row
// events and rows (go-mysql), and checks the row events and rows against
// what `mariadb-binlog --verbose` prints, so that neither side of the
// row-decode pair can skip a row event unnoticed.
func describeBinlog(b *testing.B, path string) binlogContent {
	b.Helper()
	txns, err := scanTxns(path)
	if err != nil {
		b.Fatalf("ScanFile: %v", err)
	}
	got, err := decodeRows(path)
	if err != nil {
		b.Fatalf("go-mysql: %v", err)
	}
	toolRowEvents, toolRows, err := countVerboseRows(path)
	if err != nil {
		b.Fatalf("mariadb-binlog --verbose: %v", err)
	}
	if got.rowEvents == 0 || got.rows == 0 {
		b.Fatalf("%s holds no rows to decode: %+v", path, got)
	}
	if got.rowEvents != toolRowEvents || got.rows != toolRows {
		b.Fatalf("go-mysql decoded %d row events, %d rows; mariadb-binlog prints %d row events, %d rows", got.rowEvents, got.rows, toolRowEvents, toolRows)
	}
	return binlogContent{txns: txns, events: got.events, rowEvents: got.rowEvents, rows: got.rows, goMySQL: got}
}

func scanTxns(path string) (int, error) {
	n := 0
	err := mysqlstream.ScanFile(path, func(mysqlstream.Txn) error { n++; return nil })
	return n, err
}

// decodeRows decodes every event of the file with go-mysql's parser (CRC32
// verified, row events decoded against their table map) and touches every
// value of every row.
func decodeRows(path string) (decoded, error) {
	var d decoded
	f, err := os.Open(path)
	if err != nil {
		return d, err
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, 1<<20)
	magic := make([]byte, len(replication.BinLogFileHeader))
	if _, err := io.ReadFull(r, magic); err != nil || !bytes.Equal(magic, replication.BinLogFileHeader) {
		return d, fmt.Errorf("%s is not a binlog file (%v)", path, err)
	}
	p := replication.NewBinlogParser()
	p.SetFlavor("mariadb")
	p.SetVerifyChecksum(true)
	err = p.ParseReader(r, func(e *replication.BinlogEvent) error {
		d.events++
		re, ok := e.Event.(*replication.RowsEvent)
		if !ok {
			return nil
		}
		if re.Table == nil {
			return fmt.Errorf("a row event at %d without its table map", e.Header.LogPos)
		}
		d.rowEvents++
		d.rows += len(re.Rows)
		if isUpdateRows(e.Header.EventType) {
			d.rows -= len(re.Rows) / 2 // a before and an after image per row
		}
		for _, row := range re.Rows {
			for _, v := range row {
				switch v := v.(type) {
				case string:
					d.valueBytes += int64(len(v))
				case []byte:
					d.valueBytes += int64(len(v))
				case int64:
					d.ints ^= v
				case int32:
					d.ints ^= int64(v)
				}
			}
		}
		return nil
	})
	if err != nil {
		return d, fmt.Errorf("parse %s: %w", path, err)
	}
	return d, nil
}

func isUpdateRows(t replication.EventType) bool {
	switch t {
	case replication.UPDATE_ROWS_EVENTv0, replication.UPDATE_ROWS_EVENTv1, replication.UPDATE_ROWS_EVENTv2,
		replication.MARIADB_UPDATE_ROWS_COMPRESSED_EVENT_V1, replication.PARTIAL_UPDATE_ROWS_EVENT:
		return true
	}
	return false
}

// runMariaBinlog runs mariadb-binlog over path with args, CRC32 verified,
// its output to /dev/null, and returns the CPU time it used.
func runMariaBinlog(path string, args ...string) (time.Duration, error) {
	devnull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		return 0, err
	}
	defer devnull.Close()
	var stderr bytes.Buffer
	cmd := exec.Command("mariadb-binlog", append(append([]string{"--no-defaults", "--verify-binlog-checksum"}, args...), path)...)
	cmd.Stdout, cmd.Stderr = devnull, &stderr
	if err := cmd.Run(); err != nil {
		return 0, fmt.Errorf("mariadb-binlog %s: %w: %s", filepath.Base(path), err, stderr.String())
	}
	return cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime(), nil
}

var (
	verboseRowEvent = regexp.MustCompile(`\t(Write|Update|Delete)_rows(_compressed)?(_v1)?: table id`)
	verboseRow      = regexp.MustCompile(`^### (INSERT INTO|UPDATE|DELETE FROM) `)
)

// countVerboseRows counts the row events and rows `mariadb-binlog --verbose
// --base64-output=decode-rows` prints for path.
func countVerboseRows(path string) (rowEvents, rows int, err error) {
	cmd := exec.Command("mariadb-binlog", "--no-defaults", "--verify-binlog-checksum", "--verbose", "--base64-output=decode-rows", path)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return 0, 0, err
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return 0, 0, err
	}
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		line := sc.Bytes()
		switch {
		case verboseRow.Match(line):
			rows++
		case len(line) > 0 && line[0] == '#' && verboseRowEvent.Match(line):
			rowEvents++
		}
	}
	if err := sc.Err(); err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		return 0, 0, err
	}
	if err := cmd.Wait(); err != nil {
		return 0, 0, fmt.Errorf("%w: %s", err, stderr.String())
	}
	return rowEvents, rows, nil
}

// generateMariaBinlog makes a store file of about size bytes: a lab primary takes
// bulk row inserts into a BLACKHOLE table (binlogged, not stored) with its
// replicas stopped, while a stream writes dbha's copy; the copy's first
// file is kept in a temporary directory, removed after the benchmark.
// Each transaction is one INSERT of 100 rows (BIGINT, VARCHAR(255) of 200
// characters).
func generateMariaBinlog(b *testing.B, size int64) string {
	b.Helper()
	keep, err := os.MkdirTemp("", "dbha-bench-binlog-")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(keep) })
	l := mariaBenchLab(b)
	stopReplicas(b, l)
	db := mariaBenchDB(b, l, "mariadb-1", 6)
	for _, q := range []string{"INSTALL SONAME 'ha_blackhole'", "CREATE DATABASE bench",
		"CREATE TABLE bench.bh (id BIGINT, v VARCHAR(255)) ENGINE=BLACKHOLE"} {
		if _, err := db.Exec(q); err != nil {
			b.Fatalf("%s: %v", q, err)
		}
	}
	_, stopStream := mariaBenchStream(b, l, keep, 2*size)
	began := time.Now()
	stop := mariaBenchLoad(b, db, 4, "INSERT INTO bench.bh SELECT seq, REPEAT(CHAR(65 + seq % 26), 200) FROM bench.seq_1_to_100")
	for {
		time.Sleep(time.Second)
		if files, _ := filepath.Glob(filepath.Join(keep, "dbha-bin.0*[0-9]")); len(files) > 1 { // the primary rotated at 1 GiB
			break
		}
		if time.Since(began) > 20*time.Minute {
			b.Fatal("no 1 GiB binlog after 20 minutes")
		}
	}
	stop()
	stopStream()
	// The lab's servers would share the machine with what is measured.
	db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := l.Down(ctx, true); err != nil {
		b.Fatal(err)
	}
	path := filepath.Join(keep, "dbha-bin.000001")
	if fi, err := os.Stat(path); err == nil {
		b.Logf("generated a %d-byte binlog in %s", fi.Size(), time.Since(began).Round(time.Second))
	}
	return path
}
