package integration

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/dbha/dbha/binlog"
	mysqlstream "github.com/dbha/dbha/binlog/mysql"
	"github.com/dbha/dbha/topology"
	"github.com/go-sql-driver/mysql"
)

// The MariaDB change stream against real servers: each test brings up its
// own lab, runs dbha's stream (in process, or in a child process that is
// killed), writes on the primary, and compares the GTIDs dbha holds with
// the primary's, read by mariadb-binlog from both sides.

const mariaStreamServerID = 3_000_000_001

// mariaLab brings up a lab for one test and stops it afterwards.
func mariaLab(t *testing.T) *Lab {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	l := upLab(t, ctx, Options{})
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		l.Down(ctx, true)
	})
	return l
}

// mariaStream is a stream run in process by a test.
type mariaStream struct {
	*mysqlstream.Stream
	dir     string
	primary atomic.Value // string: what Primary() answers
	cancel  context.CancelFunc
	done    chan error
}

type mariaOpt func(*mysqlstream.Config)

// startMariaStream runs a stream of the lab's MariaDB cluster into dir, following
// primary, until stop (or the end of the test).
func startMariaStream(t *testing.T, l *Lab, dir, primary string, opts ...mariaOpt) *mariaStream {
	t.Helper()
	pw, err := readPassword(l.Secret("mariadb-dbha"))
	if err != nil {
		t.Fatal(err)
	}
	rs := &mariaStream{dir: dir, done: make(chan error, 1)}
	rs.primary.Store(addr(t, l, primary))
	cfg := mysqlstream.Config{
		Cluster: mariadbCluster, Dir: dir, User: "dbha", Password: pw, ServerID: mariaStreamServerID, Flavor: "mariadb",
		Primary: func(context.Context) (string, error) { return rs.primary.Load().(string), nil },
		Logger:  slog.New(slog.NewTextHandler(testLog{t}, &slog.HandlerOptions{Level: slog.LevelInfo})),
	}
	for _, o := range opts {
		o(&cfg)
	}
	if rs.Stream, err = mysqlstream.New(cfg); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	rs.cancel = cancel
	go func() { rs.done <- rs.Run(ctx) }()
	t.Cleanup(func() { rs.stop(t) })
	return rs
}

// stop ends the stream and returns what Run returned.
func (rs *mariaStream) stop(t *testing.T) error {
	t.Helper()
	rs.cancel()
	select {
	case err := <-rs.done:
		rs.done <- err // a second stop sees the same
		return err
	case <-time.After(30 * time.Second):
		t.Fatalf("the stream did not stop within 30s")
		return nil
	}
}

// waitMariaStatus polls the stream's published status (as `dbha stream status`
// reads it) until ok accepts it.
func waitMariaStatus(t *testing.T, dir, what string, ok func(binlog.Status) error) binlog.Status {
	t.Helper()
	var st binlog.Status
	eventually(t, what, func() error {
		var err error
		if st, err = binlog.ReadStatus(dir); err != nil {
			return err
		}
		return ok(st)
	})
	return st
}

func mariaConnected(st binlog.Status) error {
	if !st.Connected {
		return fmt.Errorf("not connected (last error %q, broken %q)", st.LastError, st.Broken)
	}
	return nil
}

// mariaHolds waits until the stream's fsynced position has reached the
// primary's whole binlog (read again each time: a write cancelled by the
// end of a load may still commit) and returns it.
func mariaHolds(t *testing.T, l *Lab, dir, node string) string {
	t.Helper()
	var want string
	waitMariaStatus(t, dir, "the stream to hold the primary's position", func(st binlog.Status) error {
		want = mariaBinlogPos(t, l, node)
		if st.Position.String() != want {
			return fmt.Errorf("holds %q, want %q (connected %v, last error %q)", st.Position, want, st.Connected, st.LastError)
		}
		return nil
	})
	return want
}

func mariaBinlogPos(t *testing.T, l *Lab, node string) string {
	t.Helper()
	var pos string
	if err := mysqlDB(t, l, node).QueryRow("SELECT @@gtid_binlog_pos").Scan(&pos); err != nil {
		t.Fatal(err)
	}
	return pos
}

// mariaLoad commits transactions on a primary from several goroutines
// until stop: single-row inserts, multi-row inserts, and multi-statement
// transactions.
type mariaLoad struct {
	stop      func()
	committed atomic.Int64
	wg        sync.WaitGroup
	err       atomic.Value
}

func startMariaLoad(t *testing.T, l *Lab, node string, workers int) *mariaLoad {
	t.Helper()
	db := mysqlDB(t, l, node)
	db.SetMaxOpenConns(workers + 1)
	if _, err := db.Exec("CREATE TABLE IF NOT EXISTS dbha_lab.load (id BIGINT AUTO_INCREMENT PRIMARY KEY, w INT, n INT, payload VARCHAR(255))"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	wl := &mariaLoad{stop: cancel}
	for w := range workers {
		wl.wg.Go(func() {
			deadlocks := 0 // in a row
			for n := 0; ctx.Err() == nil; n++ {
				err := mariaLoadStep(ctx, db, w, n)
				// A deadlock rolls the transaction back: the application
				// retries it, as any would (a few times in a row at most).
				// InnoDB reports one met on the table's AUTO-INC lock as
				// 1467 (ER_AUTOINC_READ_FAILED), seen once under make test.
				var me *mysql.MySQLError
				if errors.As(err, &me) && (me.Number == 1213 || me.Number == 1467) && deadlocks < 5 {
					deadlocks++
					continue
				}
				if err != nil {
					if ctx.Err() == nil {
						wl.err.Store(err)
					}
					return
				}
				deadlocks = 0
				wl.committed.Add(1)
			}
		})
	}
	t.Cleanup(func() { wl.finish(t) })
	return wl
}

func mariaLoadStep(ctx context.Context, db *sql.DB, w, n int) error {
	payload := strings.Repeat(strconv.Itoa(w), 100)
	if w == 0 && n%10 == 9 { // a large transaction: some 30 row events
		_, err := db.ExecContext(ctx, "INSERT INTO dbha_lab.load (w, n, payload) SELECT w, ?, payload FROM dbha_lab.load LIMIT 2000", n)
		return err
	}
	switch n % 3 {
	case 0:
		_, err := db.ExecContext(ctx, "INSERT INTO dbha_lab.load (w, n, payload) VALUES (?, ?, ?)", w, n, payload)
		return err
	case 1:
		_, err := db.ExecContext(ctx, "INSERT INTO dbha_lab.load (w, n, payload) VALUES (?, ?, ?), (?, ?, ?), (?, ?, ?)",
			w, n, payload, w, n, payload, w, n, payload)
		return err
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, "INSERT INTO dbha_lab.load (w, n, payload) VALUES (?, ?, ?)", w, n, payload); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, "UPDATE dbha_lab.load SET n = n + 1 WHERE id = LAST_INSERT_ID()"); err != nil {
		return err
	}
	return tx.Commit()
}

// finish stops the load, waits for the writers, and fails the test if one
// failed.
func (wl *mariaLoad) finish(t *testing.T) {
	t.Helper()
	wl.stop()
	wl.wg.Wait()
	if err, _ := wl.err.Load().(error); err != nil {
		t.Fatalf("write load: %v", err)
	}
}

var mariaGTIDLine = regexp.MustCompile(`\tGTID (\d+)-(\d+)-(\d+)`)

// mariaBinlogGTIDs runs mariadb-binlog over files and returns the GTIDs it
// prints, in order. It fails the test when mariadb-binlog reports an error.
func mariaBinlogGTIDs(t *testing.T, files ...string) []string {
	t.Helper()
	var out, stderr bytes.Buffer
	cmd := exec.Command("mariadb-binlog", append([]string{"--no-defaults", "--verify-binlog-checksum"}, files...)...)
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil || strings.Contains(stderr.String(), "ERROR") {
		t.Fatalf("mariadb-binlog %s: %v\n%s", strings.Join(files, " "), err, stderr.String())
	}
	var gtids []string
	for _, m := range mariaGTIDLine.FindAllStringSubmatch(out.String(), -1) {
		gtids = append(gtids, m[1]+"-"+m[2]+"-"+m[3])
	}
	return gtids
}

// mariaStoreFiles lists a store's data files, oldest first.
func mariaStoreFiles(t *testing.T, dir string) []string {
	t.Helper()
	s, err := mysqlstream.OpenStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	for _, f := range s.Files() {
		paths = append(paths, filepath.Join(dir, f))
	}
	return paths
}

// mariaStoreGTIDs reads the GTIDs a store holds, from its index.
func mariaStoreGTIDs(t *testing.T, dir string) []string {
	t.Helper()
	s, err := mysqlstream.OpenStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	txs, err := s.Transactions(topology.Position{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]string, len(txs))
	for i, tx := range txs {
		out[i] = tx.Position
	}
	return out
}

// mariaPrimaryGTIDs reads a node's own binlog files with mariadb-binlog and keeps
// the GTIDs after the position from (domain 0).
func mariaPrimaryGTIDs(t *testing.T, l *Lab, node, from string) []string {
	t.Helper()
	n, err := l.Node(node)
	if err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(n.DataDir, "mariadb-bin.[0-9]*"))
	slices.Sort(files)
	after := mariaSeq(t, from)
	var out []string
	for _, g := range mariaBinlogGTIDs(t, files...) {
		if mariaSeq(t, g) > after {
			out = append(out, g)
		}
	}
	return out
}

// mariaSeq is the seq_no of a single-domain GTID position ("" is 0).
func mariaSeq(t *testing.T, pos string) uint64 {
	t.Helper()
	if pos == "" {
		return 0
	}
	if strings.Contains(pos, ",") {
		t.Fatalf("position %q has several domains", pos)
	}
	n, err := strconv.ParseUint(pos[strings.LastIndex(pos, "-")+1:], 10, 64)
	if err != nil {
		t.Fatalf("position %q: %v", pos, err)
	}
	return n
}

// checkMariaExactlyOnce checks that gtids are 0-x-(from+1) .. 0-x-to, each once,
// in order.
func checkMariaExactlyOnce(t *testing.T, what string, gtids []string, from, to uint64) {
	t.Helper()
	if uint64(len(gtids)) != to-from {
		t.Errorf("%s: %d GTIDs, want %d (seq_no %d..%d)", what, len(gtids), to-from, from+1, to)
	}
	want := from + 1
	for _, g := range gtids {
		if s := mariaSeq(t, g); s != want {
			t.Fatalf("%s: GTID %s where seq_no %d was expected (a gap or a duplicate)", what, g, want)
		}
		want++
	}
}

func TestStreamMariaDBHoldsPrimaryGTIDs(t *testing.T) {
	l := mariaLab(t)
	dir := filepath.Join(l.Dir, "state", "streams", mariadbCluster)
	writeRows(t, l, "mariadb-1", 5) // history before dbha starts, which it must not claim
	rs := startMariaStream(t, l, dir, "mariadb-1")
	st := waitMariaStatus(t, dir, "the stream to connect", mariaConnected)
	start := st.Position.String()
	if want := mariaBinlogPos(t, l, "mariadb-1"); start != want {
		t.Fatalf("a first start holds %q, want the primary's position %q", start, want)
	}

	load := startMariaLoad(t, l, "mariadb-1", 4)
	time.Sleep(4 * time.Second)
	load.finish(t)
	end := mariaHolds(t, l, dir, "mariadb-1")
	t.Logf("held %s..%s: %d transactions committed by the load", start, end, load.committed.Load())
	if err := rs.stop(t); err != nil {
		t.Fatalf("Run: %v", err)
	}

	primary := mariaPrimaryGTIDs(t, l, "mariadb-1", start)
	fromIndex := mariaStoreGTIDs(t, dir)
	fromFiles := mariaBinlogGTIDs(t, mariaStoreFiles(t, dir)...)
	checkMariaExactlyOnce(t, "the primary's binlog", primary, mariaSeq(t, start), mariaSeq(t, end))
	if !slices.Equal(fromIndex, primary) {
		t.Errorf("the store's index holds %d GTIDs, the primary %d; first difference at %d", len(fromIndex), len(primary), mariaFirstDiff(fromIndex, primary))
	}
	if !slices.Equal(fromFiles, primary) {
		t.Errorf("mariadb-binlog reads %d GTIDs in the store, the primary has %d; first difference at %d", len(fromFiles), len(primary), mariaFirstDiff(fromFiles, primary))
	}
	t.Run("start-position on a store offset", func(t *testing.T) { checkMariaStartPosition(t, dir) })
	t.Run("lag and transactions", func(t *testing.T) { checkMariaLag(t, dir, start, end) })
}

func mariaFirstDiff(a, b []string) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// checkMariaStartPosition checks that a transaction's offset in the store's index
// is where mariadb-binlog --start-position finds it.
func checkMariaStartPosition(t *testing.T, dir string) {
	s, err := mysqlstream.OpenStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	txs, err := s.Transactions(topology.Position{}, 0)
	if err != nil || len(txs) < 10 {
		t.Fatalf("transactions: %d, %v", len(txs), err)
	}
	tx := txs[len(txs)/2]
	out, err := exec.Command("mariadb-binlog", "--no-defaults", "--start-position="+strconv.FormatInt(tx.Offset, 10),
		filepath.Join(dir, tx.File)).CombinedOutput()
	if err != nil {
		t.Fatalf("mariadb-binlog --start-position=%d: %v\n%s", tx.Offset, err, out)
	}
	m := mariaGTIDLine.FindStringSubmatch(string(out))
	if m == nil || m[1]+"-"+m[2]+"-"+m[3] != tx.Position {
		t.Fatalf("at offset %d mariadb-binlog finds %v, the index says %s", tx.Offset, m, tx.Position)
	}
}

// checkMariaLag checks the store's answers for replicas at various positions.
func checkMariaLag(t *testing.T, dir, start, end string) {
	s, err := mysqlstream.OpenStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Position().String(); got != end {
		t.Fatalf("store position %q, want %q", got, end)
	}
	n := mariaSeq(t, end) - mariaSeq(t, start)
	mid := fmt.Sprintf("0-1-%d", mariaSeq(t, start)+n/2)
	now := time.Now()
	for _, tc := range []struct {
		name string
		pos  string
		want int64
	}{
		{"caught up", end, 0},
		{"half way", mid, int64(n - n/2)},
		{"at the store's start", start, int64(n)},
	} {
		p, _ := topology.ParseMariaDB(tc.pos)
		lag, err := s.Lag(p, now)
		if err != nil || lag.Transactions != tc.want || (tc.want > 0) != (lag.Seconds > 0 || lag.Bytes > 0) {
			t.Errorf("%s: Lag(%s) = %+v, %v; want %d transactions", tc.name, tc.pos, lag, err, tc.want)
		}
	}
	p, _ := topology.ParseMariaDB(mid)
	txs, err := s.Transactions(p, 3)
	if err != nil || len(txs) != 3 || mariaSeq(t, txs[0].Position) != mariaSeq(t, mid)+1 {
		t.Errorf("Transactions(%s, 3) = %+v, %v", mid, txs, err)
	}
}

// TestHelperStreamProcess is the stream run as a child process by
// TestStreamMariaDBKill9. It does nothing unless DBHA_STREAM_HELPER is set.
func TestHelperStreamProcess(t *testing.T) {
	if os.Getenv("DBHA_STREAM_HELPER") != "1" {
		return
	}
	pw, err := readPassword(os.Getenv("DBHA_STREAM_PASSWORD_FILE"))
	if err != nil {
		t.Fatal(err)
	}
	primary := os.Getenv("DBHA_STREAM_PRIMARY")
	s, err := mysqlstream.New(mysqlstream.Config{
		Cluster: mariadbCluster, Dir: os.Getenv("DBHA_STREAM_DIR"), User: "dbha", Password: pw, ServerID: mariaStreamServerID,
		Flavor: "mariadb", Primary: func(context.Context) (string, error) { return primary, nil },
		Logger: slog.New(slog.NewTextHandler(os.Stderr, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute) // bounded even if nobody kills it
	defer cancel()
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM) // SIGTERM: a clean stop
	defer stop()
	if err := s.Run(ctx); err != nil {
		t.Fatal(err)
	}
}

// startMariaChild starts TestHelperStreamProcess in a child process.
func startMariaChild(t *testing.T, l *Lab, dir, primary string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperStreamProcess$", "-test.v")
	cmd.Env = append(os.Environ(), "DBHA_STREAM_HELPER=1", "DBHA_STREAM_DIR="+dir,
		"DBHA_STREAM_PRIMARY="+addr(t, l, primary), "DBHA_STREAM_PASSWORD_FILE="+l.Secret("mariadb-dbha"))
	log, err := os.Create(filepath.Join(l.Dir, "logs", fmt.Sprintf("stream-%d.log", time.Now().UnixNano())))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		log.Close()
	})
	return cmd
}

func TestStreamMariaDBKill9(t *testing.T) {
	l := mariaLab(t)
	dir := filepath.Join(l.Dir, "state", "streams", mariadbCluster)
	first := startMariaChild(t, l, dir, "mariadb-1")
	start := waitMariaStatus(t, dir, "the child stream to connect", mariaConnected).Position.String()

	load := startMariaLoad(t, l, "mariadb-1", 4)
	for kill := range 3 { // kill it mid-load, several times
		time.Sleep(1500 * time.Millisecond)
		pid := first.Process.Pid
		if err := first.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		first.Wait()
		t.Logf("kill -9 %d (%d) at %d committed transactions", kill+1, pid, load.committed.Load())
		first = startMariaChild(t, l, dir, "mariadb-1")
		waitMariaStatus(t, dir, "the restarted stream to connect", func(st binlog.Status) error {
			if st.PID != first.Process.Pid {
				return errors.New("not restarted yet")
			}
			return mariaConnected(st)
		})
	}
	time.Sleep(time.Second)
	load.finish(t)
	end := mariaHolds(t, l, dir, "mariadb-1")
	first.Process.Signal(syscall.SIGTERM)
	exited := make(chan error, 1)
	go func() { exited <- first.Wait() }()
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("the stream process did not stop cleanly on SIGTERM: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("the stream process did not stop within 30s of SIGTERM")
	}

	logs, _ := filepath.Glob(filepath.Join(l.Dir, "logs", "stream-*.log"))
	for _, f := range logs {
		b, _ := os.ReadFile(f)
		for line := range strings.SplitSeq(string(b), "\n") {
			if strings.Contains(line, "cut an incomplete transaction") {
				t.Logf("restart repaired the store: %s", line[strings.Index(line, "msg="):])
			}
		}
	}
	checkMariaExactlyOnce(t, "the store's index", mariaStoreGTIDs(t, dir), mariaSeq(t, start), mariaSeq(t, end))
	checkMariaExactlyOnce(t, "mariadb-binlog on the store", mariaBinlogGTIDs(t, mariaStoreFiles(t, dir)...), mariaSeq(t, start), mariaSeq(t, end))
	checkMariaExactlyOnce(t, "the primary", mariaPrimaryGTIDs(t, l, "mariadb-1", start), mariaSeq(t, start), mariaSeq(t, end))
}

func TestStreamMariaDBFollowsSwitchover(t *testing.T) {
	l := mariaLab(t)
	dir := filepath.Join(l.Dir, "state", "streams", mariadbCluster)
	rs := startMariaStream(t, l, dir, "mariadb-1")
	start := waitMariaStatus(t, dir, "the stream to connect", mariaConnected).Position.String()
	load := startMariaLoad(t, l, "mariadb-1", 2)
	time.Sleep(2 * time.Second)
	load.finish(t)
	before := mariaHolds(t, l, dir, "mariadb-1")

	switchover(t, l, "mariadb-1", "mariadb-2", "mariadb-3")
	rs.primary.Store(addr(t, l, "mariadb-2"))
	waitMariaStatus(t, dir, "the stream to follow mariadb-2", func(st binlog.Status) error {
		if st.Primary != addr(t, l, "mariadb-2") {
			return fmt.Errorf("following %s", st.Primary)
		}
		return mariaConnected(st)
	})
	load = startMariaLoad(t, l, "mariadb-2", 2)
	time.Sleep(2 * time.Second)
	load.finish(t)
	end := mariaHolds(t, l, dir, "mariadb-2")
	if err := rs.stop(t); err != nil {
		t.Fatalf("Run: %v", err)
	}
	t.Logf("held %s, then %s after the switchover, then %s", start, before, end)
	if !strings.HasPrefix(end, "0-2-") {
		t.Fatalf("after writes on mariadb-2 the store holds %s, want 0-2-N", end)
	}
	held := mariaStoreGTIDs(t, dir)
	checkMariaExactlyOnce(t, "the store's index", held, mariaSeq(t, start), mariaSeq(t, end))
	if primary := mariaPrimaryGTIDs(t, l, "mariadb-2", start); !slices.Equal(held, primary) {
		t.Errorf("the store holds %d GTIDs, mariadb-2's binlog %d after %s; first difference at %d",
			len(held), len(primary), start, mariaFirstDiff(held, primary))
	}
	if files := mariaBinlogGTIDs(t, mariaStoreFiles(t, dir)...); !slices.Equal(files, held) {
		t.Errorf("mariadb-binlog reads %d GTIDs in the store's files, its index lists %d", len(files), len(held))
	}
}

// switchover moves the primary role from old to next by hand, as an
// operator would: stop writes (the caller has), make old read-only, wait
// for the replicas, promote next, repoint the others at it.
func switchover(t *testing.T, l *Lab, old, next string, others ...string) {
	t.Helper()
	oldDB := mysqlDB(t, l, old)
	mustExec(t, oldDB, "SET GLOBAL read_only=ON")
	pos := mariaBinlogPos(t, l, old)
	for _, r := range append([]string{next}, others...) {
		var waited int
		if err := mysqlDB(t, l, r).QueryRow("SELECT MASTER_GTID_WAIT(?, 20)", pos).Scan(&waited); err != nil || waited != 0 {
			t.Fatalf("%s did not reach %s: %d, %v", r, pos, waited, err)
		}
	}
	nextDB := mysqlDB(t, l, next)
	mustExec(t, nextDB, "STOP SLAVE", "RESET SLAVE ALL", "SET GLOBAL read_only=OFF")
	pw, err := readPassword(l.Secret("mariadb-repl"))
	if err != nil {
		t.Fatal(err)
	}
	n, _ := l.Node(next)
	change := fmt.Sprintf("CHANGE MASTER TO MASTER_HOST='%s', MASTER_PORT=%d, MASTER_USER='repl', MASTER_PASSWORD='%s', MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1",
		n.Host, n.Port, pw)
	mustExec(t, oldDB, "SET GLOBAL gtid_slave_pos=@@gtid_binlog_pos")
	for _, r := range append([]string{old}, others...) {
		db := mysqlDB(t, l, r)
		mustExec(t, db, "STOP SLAVE")
		if _, err := db.Exec(change); err != nil {
			t.Fatalf("CHANGE MASTER on %s: %s", r, strings.ReplaceAll(err.Error(), pw, "<password>"))
		}
		mustExec(t, db, "START SLAVE")
	}
}

// semiSyncStatus reads a Rpl_semi_sync_master_* status variable.
func semiSyncStatus(t *testing.T, db *sql.DB, name string) string {
	t.Helper()
	var n, v string
	if err := db.QueryRow("SHOW GLOBAL STATUS LIKE 'Rpl_semi_sync_master_"+name+"'").Scan(&n, &v); err != nil {
		t.Fatalf("Rpl_semi_sync_master_%s: %v", name, err)
	}
	return v
}

func semiSyncCount(t *testing.T, db *sql.DB, name string) int64 {
	t.Helper()
	n, err := strconv.ParseInt(semiSyncStatus(t, db, name), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// timedCommits commits n single-row transactions and returns the slowest.
func timedCommits(t *testing.T, db *sql.DB, n int) time.Duration {
	t.Helper()
	var slowest time.Duration
	for range n {
		began := time.Now()
		mustExec(t, db, "INSERT INTO dbha_lab.heartbeat () VALUES ()")
		slowest = max(slowest, time.Since(began))
	}
	return slowest
}

func TestStreamMariaDBSemiSync(t *testing.T) {
	l := mariaLab(t)
	dir := filepath.Join(l.Dir, "state", "streams", mariadbCluster)
	primary := mysqlDB(t, l, "mariadb-1")
	semi := func(c *mysqlstream.Config) { c.SemiSync = true }

	// Configured, but the primary has semi-sync off: dbha says so.
	rs := startMariaStream(t, l, dir, "mariadb-1", semi)
	waitMariaStatus(t, dir, "the stream to report semi-sync off on the primary", func(st binlog.Status) error {
		if !st.Connected || st.Acknowledging || !strings.Contains(st.LastError, "rpl_semi_sync_master_enabled=OFF") {
			return fmt.Errorf("connected %v acknowledging %v last error %q", st.Connected, st.Acknowledging, st.LastError)
		}
		return nil
	})
	rs.stop(t)

	// dbha stopped: the first commit waits for the timeout, then the primary
	// falls back to asynchronous replication.
	mustExec(t, primary, "SET GLOBAL rpl_semi_sync_master_timeout=2000", "SET GLOBAL rpl_semi_sync_master_enabled=ON")
	noTx := semiSyncCount(t, primary, "no_tx")
	slow := timedCommits(t, primary, 1)
	if got := semiSyncCount(t, primary, "no_tx"); got <= noTx {
		t.Errorf("without dbha: Rpl_semi_sync_master_no_tx %d -> %d, want growth", noTx, got)
	}
	t.Logf("without dbha: a commit took %s (rpl_semi_sync_master_timeout=2000ms)", slow.Round(time.Millisecond))

	// dbha running: it acknowledges, the primary is semi-sync again, and
	// commits return as soon as dbha has fsynced them.
	rs = startMariaStream(t, l, dir, "mariadb-1", semi)
	waitMariaStatus(t, dir, "the stream to acknowledge", func(st binlog.Status) error {
		if !st.Acknowledging {
			return fmt.Errorf("connected %v acknowledging %v last error %q", st.Connected, st.Acknowledging, st.LastError)
		}
		return nil
	})
	eventually(t, "the primary to be semi-sync again", func() error {
		timedCommits(t, primary, 1) // an acknowledged commit switches it back on
		if s := semiSyncStatus(t, primary, "status"); s != "ON" {
			return fmt.Errorf("Rpl_semi_sync_master_status=%s", s)
		}
		return nil
	})
	yesTx, noTx := semiSyncCount(t, primary, "yes_tx"), semiSyncCount(t, primary, "no_tx")
	slowest := timedCommits(t, primary, 50)
	yes, no := semiSyncCount(t, primary, "yes_tx")-yesTx, semiSyncCount(t, primary, "no_tx")-noTx
	t.Logf("with dbha: 50 commits, slowest %s; yes_tx +%d, no_tx +%d", slowest.Round(time.Millisecond), yes, no)
	if yes != 50 || no != 0 {
		t.Errorf("with dbha acknowledging: yes_tx +%d, no_tx +%d; want +50 and +0", yes, no)
	}
	mariaHolds(t, l, dir, "mariadb-1")
	if err := rs.stop(t); err != nil {
		t.Fatalf("Run: %v", err)
	}
}

func TestStreamMariaDBBadInput(t *testing.T) {
	l := mariaLab(t)
	primaryAddr := addr(t, l, "mariadb-1")

	t.Run("wrong password", func(t *testing.T) {
		dir := t.TempDir()
		db := mysqlDB(t, l, "mariadb-1")
		before := abortedConnects(t, db)
		rs := startMariaStream(t, l, dir, "mariadb-1", func(c *mysqlstream.Config) { c.Password = "not-the-password" })
		st := waitMariaStatus(t, dir, "a login error", func(st binlog.Status) error {
			if !strings.Contains(st.LastError, "Access denied") {
				return fmt.Errorf("last error %q", st.LastError)
			}
			return nil
		})
		for _, want := range []string{`"dbha"`, primaryAddr} {
			if !strings.Contains(st.LastError, want) {
				t.Errorf("login error %q does not name %s", st.LastError, want)
			}
		}
		if strings.Contains(st.LastError, "not-the-password") {
			t.Errorf("login error %q shows the password", st.LastError)
		}
		time.Sleep(6 * time.Second)
		if n := abortedConnects(t, db) - before; n > 3 {
			t.Errorf("%d failed logins in about 6s: the stream retries a refused login too fast", n)
		}
		if err := rs.stop(t); err != nil || st.Connected || st.Broken != "" {
			t.Errorf("Run = %v, status %+v", err, st)
		}
	})

	t.Run("server_id in use", func(t *testing.T) {
		dir := t.TempDir()
		rs := startMariaStream(t, l, dir, "mariadb-1", func(c *mysqlstream.Config) { c.ServerID = 1 })
		err := waitRun(t, rs)
		if !errors.Is(err, mysqlstream.ErrBroken) || !errors.Is(err, mysqlstream.ErrServerIDInUse) || !strings.Contains(err.Error(), "server_id 1") {
			t.Errorf("Run = %v, want ErrBroken and ErrServerIDInUse naming server_id 1", err)
		}
	})

	t.Run("purged binlog", func(t *testing.T) {
		dir := t.TempDir()
		rs := startMariaStream(t, l, dir, "mariadb-1")
		waitMariaStatus(t, dir, "the stream to connect", mariaConnected)
		writeRows(t, l, "mariadb-1", 5)
		held := mariaHolds(t, l, dir, "mariadb-1")
		rs.stop(t)

		db := mysqlDB(t, l, "mariadb-1")
		mustExec(t, db, "FLUSH BINARY LOGS")
		writeRows(t, l, "mariadb-1", 5)
		mustExec(t, db, "FLUSH BINARY LOGS")
		newest := lastBinlog(t, db)
		// PURGE silently keeps a file a replica's dump thread still has
		// open (for a moment after FLUSH): repeat until it is gone.
		eventually(t, "the binlogs before "+newest+" to be purged", func() error {
			mustExec(t, db, "PURGE BINARY LOGS TO '"+newest+"'")
			if first := firstBinlog(t, db); first != newest {
				return fmt.Errorf("oldest binlog is still %s", first)
			}
			return nil
		})
		purgedTo := mariaBinlogPos(t, l, "mariadb-1")

		rs = startMariaStream(t, l, dir, "mariadb-1")
		err := waitRun(t, rs)
		st := rs.Status()
		t.Logf("Broken: %s", st.Broken)
		if !errors.Is(err, mysqlstream.ErrBroken) {
			t.Fatalf("Run = %v, want ErrBroken", err)
		}
		want := fmt.Sprintf("GTIDs 0-*-%d to %s", mariaSeq(t, held)+1, purgedTo)
		if !strings.Contains(st.Broken, want) || !strings.Contains(st.Broken, held) {
			t.Errorf("Status.Broken = %q, want it to name %q and what dbha holds (%s)", st.Broken, want, held)
		}
		if pub, _ := binlog.ReadStatus(dir); pub.Broken != st.Broken {
			t.Errorf("published Broken %q, want %q", pub.Broken, st.Broken)
		}
	})
}

// waitRun waits (bounded) for Run to return by itself.
func waitRun(t *testing.T, rs *mariaStream) error {
	t.Helper()
	select {
	case err := <-rs.done:
		rs.done <- err
		return err
	case <-time.After(30 * time.Second):
		t.Fatalf("Run did not return within 30s; status %+v", rs.Status())
		return nil
	}
}

func abortedConnects(t *testing.T, db *sql.DB) int64 {
	t.Helper()
	var n string
	var v int64
	if err := db.QueryRow("SHOW GLOBAL STATUS LIKE 'Aborted_connects'").Scan(&n, &v); err != nil {
		t.Fatal(err)
	}
	return v
}

func lastBinlog(t *testing.T, db *sql.DB) string {
	t.Helper()
	names := binlogNames(t, db)
	return names[len(names)-1]
}

func firstBinlog(t *testing.T, db *sql.DB) string {
	t.Helper()
	return binlogNames(t, db)[0]
}

func binlogNames(t *testing.T, db *sql.DB) []string {
	t.Helper()
	rows, err := db.Query("SHOW BINARY LOGS")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var names []string
	for rows.Next() {
		var name string
		var size sql.RawBytes
		if err := rows.Scan(&name, &size); err != nil {
			t.Fatal(err)
		}
		names = append(names, name)
	}
	if len(names) == 0 {
		t.Fatal("SHOW BINARY LOGS lists nothing")
	}
	return names
}
