package integration

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/dbha/dbha/binlog"
	pgstream "github.com/dbha/dbha/binlog/postgres"
	"github.com/dbha/dbha/topology"
)

// TestStreamWALUnderLoad streams WAL under a pgbench load with forced
// segment switches, and checks that the complete segments dbha wrote are
// the primary's own files byte for byte, and that pg_waldump reads them and
// the .partial.
func TestStreamWALUnderLoad(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	l := walLab(ctx, t)
	defer purge(t, l)
	p1 := node(t, l, "postgres-1")
	dir := filepath.Join(l.Dir, "streams", "wal")

	s, stop := runStream(ctx, t, walConfig(t, l, dir, fixedPrimary(p1.Addr())))
	waitStatus(t, s, "the stream connected", func(st binlog.Status) bool { return st.Connected })
	load := startLoad(ctx, t, l, "postgres-1", 5*time.Second)
	if err := load(); err != nil {
		t.Fatalf("pgbench: %v", err)
	}
	end := partialEndpoint(ctx, t, l, "postgres-1")
	waitFlushed(t, s, end, 1)
	st := s.Status()
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	t.Logf("received %d WAL messages, %d bytes; flushed %s", st.Events, st.Bytes, st.Position)

	complete := checkContiguous(t, dir, 1)
	if n := compareWithServer(t, dir, p1.DataDir, complete); n < 3 {
		t.Fatalf("only %d complete segments could be compared with the primary's pg_wal, want at least 3", n)
	}
	waldump(t, dir, 1, complete, true, end)
}

// TestStreamWALKillAndResume kills a stream running in a child process
// (kill -9) under load, restarts it, and checks that the store has no gap
// and matches the primary.
func TestStreamWALKillAndResume(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	l := walLab(ctx, t)
	defer purge(t, l)
	p1 := node(t, l, "postgres-1")
	dir := filepath.Join(l.Dir, "streams", "wal")

	child := startWALChild(t, l, dir, p1.Addr())
	waitPublished(t, dir, "the child streams", func(st binlog.Status) bool { return st.Connected })
	load := startLoad(ctx, t, l, "postgres-1", 8*time.Second)
	time.Sleep(3 * time.Second)
	before := readStatus(t, dir)
	child.kill(t)
	t.Logf("killed the stream at %s (%d bytes received)", before.Position, before.Bytes)

	child = startWALChild(t, l, dir, p1.Addr())
	defer child.kill(t)
	if err := load(); err != nil {
		t.Fatalf("pgbench: %v", err)
	}
	end := partialEndpoint(ctx, t, l, "postgres-1")
	waitPublished(t, dir, "the restarted stream reaches "+end.String(), func(st binlog.Status) bool {
		return st.Position.LSN() >= end && st.PID == child.cmd.Process.Pid
	})
	child.kill(t)

	complete := checkContiguous(t, dir, 1)
	if n := compareWithServer(t, dir, p1.DataDir, complete); n < 3 {
		t.Fatalf("only %d complete segments could be compared with the primary's pg_wal, want at least 3", n)
	}
	waldump(t, dir, 1, complete, true, end)
}

// TestHelperWALProcess is the child of TestStreamWALKillAndResume: it runs
// a stream until it is killed. It does nothing in a normal test run.
func TestHelperWALProcess(t *testing.T) {
	if os.Getenv("DBHA_WAL_HELPER") != "1" {
		return
	}
	pw, err := readPassword(os.Getenv("DBHA_WAL_PASSWORD_FILE"))
	if err != nil {
		t.Fatal(err)
	}
	addr := os.Getenv("DBHA_WAL_PRIMARY")
	s, err := pgstream.New(pgstream.Config{
		Cluster: postgresCluster, Dir: os.Getenv("DBHA_WAL_DIR"), User: "dbha", Password: pw,
		Primary: fixedPrimary(addr),
		Logger:  slog.New(slog.NewTextHandler(os.Stderr, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// TestStreamWALSynchronous names dbha in synchronous_standby_names: with
// the stream stopped a commit waits; with it running commits return, and
// the primary lists dbha as its synchronous standby.
func TestStreamWALSynchronous(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	l := walLab(ctx, t)
	defer purge(t, l)
	p1 := node(t, l, "postgres-1")
	admin := adminPG(ctx, t, l, "postgres-1")
	exec1(ctx, t, admin, "ALTER SYSTEM SET synchronous_standby_names = '"+pgstream.SyncApplicationName+"'")
	exec1(ctx, t, admin, "SELECT pg_reload_conf()")
	eventually(t, "synchronous_standby_names in effect", func() error {
		c := adminPG(ctx, t, l, "postgres-1")
		defer c.Close(ctx)
		var v string
		if err := c.QueryRow(ctx, "SHOW synchronous_standby_names").Scan(&v); err != nil || v != pgstream.SyncApplicationName {
			return fmt.Errorf("synchronous_standby_names = %q, %v", v, err)
		}
		return nil
	})
	time.Sleep(200 * time.Millisecond) // the checkpointer publishes "sync standbys defined" after its reload

	t.Run("stream stopped: a commit waits", func(t *testing.T) {
		c := adminPG(ctx, t, l, "postgres-1")
		defer c.Close(context.Background())
		wctx, wcancel := context.WithTimeout(ctx, 2*time.Second)
		defer wcancel()
		start := time.Now()
		_, err := c.Exec(wctx, "INSERT INTO heartbeat DEFAULT VALUES")
		t.Logf("the commit gave up after %s: %v", time.Since(start).Round(time.Millisecond), err)
		if err == nil {
			t.Fatalf("the commit returned without a synchronous standby")
		}
		if wctx.Err() == nil {
			t.Fatalf("the commit failed for another reason: %v", err)
		}
	})

	cfg := walConfig(t, l, filepath.Join(l.Dir, "streams", "wal"), fixedPrimary(p1.Addr()))
	cfg.Synchronous = true
	s, stop := runStream(ctx, t, cfg)
	defer stop()
	eventually(t, "dbha is the synchronous standby", func() error {
		var state, sync string
		err := admin.QueryRow(ctx, "SELECT state, sync_state FROM pg_stat_replication WHERE application_name = $1",
			pgstream.SyncApplicationName).Scan(&state, &sync)
		if err != nil || state != "streaming" || sync != "sync" {
			return fmt.Errorf("state %q sync_state %q: %v", state, sync, err)
		}
		return nil
	})
	t.Run("stream running: commits return", func(t *testing.T) {
		var total time.Duration
		const n = 20
		for range n {
			cctx, ccancel := context.WithTimeout(ctx, 10*time.Second)
			start := time.Now()
			_, err := admin.Exec(cctx, "INSERT INTO heartbeat DEFAULT VALUES")
			ccancel()
			if err != nil {
				t.Fatalf("commit with dbha as synchronous standby: %v", err)
			}
			total += time.Since(start)
		}
		t.Logf("%d commits waiting for dbha's fsync: %s on average", n, (total / n).Round(time.Microsecond))
	})
	if st := s.Status(); !st.Acknowledging || !st.Connected {
		t.Errorf("status: acknowledging %v, connected %v", st.Acknowledging, st.Connected)
	}
	var flush, sent string
	if err := admin.QueryRow(ctx, "SELECT flush_lsn::text, sent_lsn::text FROM pg_stat_replication WHERE application_name = $1",
		pgstream.SyncApplicationName).Scan(&flush, &sent); err != nil {
		t.Fatal(err)
	}
	t.Logf("pg_stat_replication: sent %s, flushed %s; dbha fsynced %s", sent, flush, s.Status().Position)
}

// TestStreamWALTimelineSwitch promotes postgres-2 while the stream follows
// postgres-1, which goes on writing, then makes postgres-2 the primary: the
// stream follows it onto timeline 2 from the switch point, keeps the WAL of
// timeline 1 that postgres-2 never had, and pg_waldump reads both.
func TestStreamWALTimelineSwitch(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	l := walLab(ctx, t)
	defer purge(t, l)
	p1, p2 := node(t, l, "postgres-1"), node(t, l, "postgres-2")
	a1, a2 := adminPG(ctx, t, l, "postgres-1"), adminPG(ctx, t, l, "postgres-2")
	dir := filepath.Join(l.Dir, "streams", "wal")

	var primary atomic.Value
	primary.Store(p1.Addr())
	cfg := walConfig(t, l, dir, func(context.Context) (string, error) { return primary.Load().(string), nil })
	cfg.FollowInterval = 300 * time.Millisecond
	s, stop := runStream(ctx, t, cfg)
	defer stop()

	for range 3 {
		exec1(ctx, t, a1, "INSERT INTO heartbeat SELECT FROM generate_series(1, 1000)")
		exec1(ctx, t, a1, "SELECT pg_switch_wal()")
	}
	exec1(ctx, t, a1, "INSERT INTO heartbeat DEFAULT VALUES")
	shared := currentLSN(ctx, t, a1)
	waitFlushed(t, s, shared, 1)
	eventually(t, "postgres-2 replays "+shared.String(), func() error {
		var replay string
		if err := a2.QueryRow(ctx, "SELECT pg_last_wal_replay_lsn()::text").Scan(&replay); err != nil {
			return err
		}
		if lsn, err := topology.ParseLSN(replay); err != nil || lsn < shared {
			return fmt.Errorf("replayed %s", replay)
		}
		return nil
	})
	exec1(ctx, t, a2, "SELECT pg_promote()")
	// postgres-1 goes on as a primary for a moment: WAL postgres-2 never had.
	exec1(ctx, t, a1, "INSERT INTO heartbeat SELECT FROM generate_series(1, 100)")
	forked := currentLSN(ctx, t, a1)
	waitFlushed(t, s, forked, 1)

	primary.Store(p2.Addr())
	waitStatus(t, s, "the stream follows postgres-2 on timeline 2", func(st binlog.Status) bool {
		return st.Connected && st.Primary == p2.Addr() && st.Position.Timeline() == 2
	})
	for range 2 {
		exec1(ctx, t, a2, "INSERT INTO heartbeat SELECT FROM generate_series(1, 1000)")
		exec1(ctx, t, a2, "SELECT pg_switch_wal()")
	}
	end := partialEndpoint(ctx, t, l, "postgres-2")
	waitFlushed(t, s, end, 2)
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}

	walDir := filepath.Join(dir, "wal")
	history := readFile(t, filepath.Join(walDir, "00000002.history"))
	if want := readFile(t, filepath.Join(p2.DataDir, "pg_wal", "00000002.history")); !bytes.Equal(history, want) {
		t.Fatalf("00000002.history = %q, postgres-2 has %q", history, want)
	}
	sw, err := topology.ParseTimelineHistory(string(history))
	if err != nil || len(sw) != 1 {
		t.Fatalf("history: %v %v", sw, err)
	}
	switchPoint := sw[0].Switch
	t.Logf("timeline 1 ended at %s on postgres-2; dbha holds timeline 1 up to %s", switchPoint, forked)
	if forked <= switchPoint {
		t.Fatalf("postgres-1 wrote nothing after the switch point: the test proves nothing")
	}

	seg := segmentOf(switchPoint)
	tl1 := checkContiguous(t, dir, 1)
	tl2 := checkContiguous(t, dir, 2)
	if len(tl2) == 0 || tl2[0] != segName(2, seg) {
		t.Fatalf("timeline 2 starts at %v, want %s (the switch point's segment)", tl2, segName(2, seg))
	}
	// The old timeline's last segment is kept as .partial, holding what
	// postgres-1 wrote after the fork, byte for byte.
	kept := readFile(t, filepath.Join(walDir, segName(1, segmentOf(forked))+".partial"))
	theirs := readFile(t, filepath.Join(p1.DataDir, "pg_wal", segName(1, segmentOf(forked))))
	if n := offsetOf(forked); !bytes.Equal(kept[:n], theirs[:n]) {
		t.Fatalf("the kept timeline 1 .partial differs from postgres-1's segment")
	}
	compareWithServer(t, dir, p1.DataDir, tl1)
	if n := compareWithServer(t, dir, p2.DataDir, tl2); n < 2 {
		t.Fatalf("only %d timeline 2 segments compared with postgres-2", n)
	}
	waldump(t, dir, 1, tl1, true, switchPoint)
	waldump(t, dir, 2, tl2, true, end)

	t.Run("a store that stopped before the fork streams timeline 1 up to it, then timeline 2", func(t *testing.T) {
		behind := seedStore(t, dir, filepath.Join(l.Dir, "streams", "behind"), tl1[:len(tl1)-1])
		cfg := walConfig(t, l, behind, fixedPrimary(p2.Addr()))
		cfg.Slot = "dbha_behind"
		s2, stop2 := runStream(ctx, t, cfg)
		waitFlushed(t, s2, end, 2)
		if err := stop2(); err != nil {
			t.Fatalf("Run: %v", err)
		}
		checkContiguous(t, behind, 1)
		tl2b := checkContiguous(t, behind, 2)
		// The server ended timeline 1 at the switch point: the old
		// timeline's last segment holds exactly the shared WAL.
		last := readFile(t, filepath.Join(behind, "wal", segName(1, seg)+".partial"))
		shared := readFile(t, filepath.Join(walDir, segName(2, seg)))
		n := offsetOf(switchPoint)
		if !bytes.Equal(last[:n], shared[:n]) || !bytes.Equal(last[n:], make([]byte, len(last)-n)) {
			t.Fatalf("timeline 1's last segment does not end at the switch point %s", switchPoint)
		}
		if cmp := compareWithServer(t, behind, p2.DataDir, tl2b); cmp < 2 {
			t.Fatalf("only %d timeline 2 segments compared with postgres-2", cmp)
		}
		waldump(t, behind, 2, tl2b, true, end)
	})
}

// seedStore makes a store at dst holding the given complete segments of
// the store at src, as a stream stopped earlier would have left it.
func seedStore(t testing.TB, src, dst string, segments []string) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(dst, "wal"), 0o750); err != nil {
		t.Fatal(err)
	}
	for _, name := range append([]string{"wal-store.json"}, segments...) {
		from, to := filepath.Join(src, name), filepath.Join(dst, name)
		if name != "wal-store.json" {
			from, to = filepath.Join(src, "wal", name), filepath.Join(dst, "wal", name)
		}
		if err := os.WriteFile(to, readFile(t, from), 0o640); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

// TestStreamWALBadInput: a wrong password is reported with user and host
// and retried; a dropped slot whose WAL the primary then removed breaks the
// stream with the missing range named.
func TestStreamWALBadInput(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	l := walLab(ctx, t)
	defer purge(t, l)
	p1 := node(t, l, "postgres-1")
	dir := filepath.Join(l.Dir, "streams", "wal")

	t.Run("wrong password", func(t *testing.T) {
		cfg := walConfig(t, l, filepath.Join(l.Dir, "streams", "badpw"), fixedPrimary(p1.Addr()))
		cfg.Password = "not-the-password-4711"
		s, stop := runStream(ctx, t, cfg)
		waitStatus(t, s, "a login error", func(st binlog.Status) bool { return st.LastError != "" })
		time.Sleep(time.Second) // a retry or two
		st := s.Status()
		if err := stop(); err != nil {
			t.Fatalf("Run: %v", err)
		}
		t.Logf("LastError: %s", st.LastError)
		for _, want := range []string{`user "dbha"`, p1.Addr(), "wrong password"} {
			if !strings.Contains(st.LastError, want) {
				t.Errorf("LastError does not name %q", want)
			}
		}
		if strings.Contains(st.LastError, cfg.Password) || st.Connected || st.Broken != "" {
			t.Errorf("status %+v", st)
		}
	})

	t.Run("dropped slot and removed WAL", func(t *testing.T) {
		admin := adminPG(ctx, t, l, "postgres-1")
		s, stop := runStream(ctx, t, walConfig(t, l, dir, fixedPrimary(p1.Addr())))
		exec1(ctx, t, admin, "INSERT INTO heartbeat DEFAULT VALUES")
		waitFlushed(t, s, currentLSN(ctx, t, admin), 1)
		if err := stop(); err != nil {
			t.Fatal(err)
		}
		complete := checkContiguous(t, dir, 1)
		var resume string // the segment the stream needs next
		if l, err := os.ReadDir(filepath.Join(dir, "wal")); err == nil {
			for _, e := range l {
				if name, ok := strings.CutSuffix(e.Name(), ".partial"); ok {
					resume = name
				}
			}
		}
		t.Logf("store: complete %v, resumes in %s", complete, resume)

		exec1(ctx, t, admin, "SELECT pg_drop_replication_slot('"+pgstream.DefaultSlot+"')")
		exec1(ctx, t, admin, "ALTER SYSTEM SET wal_keep_size = 0")
		exec1(ctx, t, admin, "SELECT pg_reload_conf()")
		eventually(t, "the primary removed "+resume, func() error {
			for range 3 {
				exec1(ctx, t, admin, "INSERT INTO heartbeat DEFAULT VALUES")
				exec1(ctx, t, admin, "SELECT pg_switch_wal()")
			}
			exec1(ctx, t, admin, "CHECKPOINT")
			if _, err := os.Stat(filepath.Join(p1.DataDir, "pg_wal", resume)); err == nil {
				return fmt.Errorf("still there")
			}
			return nil
		})

		s2, err := pgstream.New(walConfig(t, l, dir, fixedPrimary(p1.Addr())))
		if err != nil {
			t.Fatal(err)
		}
		rctx, rcancel := context.WithTimeout(ctx, 30*time.Second)
		defer rcancel()
		err = s2.Run(rctx)
		st := s2.Status()
		t.Logf("Run: %v", err)
		if !errors.Is(err, pgstream.ErrBroken) {
			t.Fatalf("Run = %v, want ErrBroken", err)
		}
		for _, want := range []string{"WAL missing", resumeLSN(resume).String(), "up to", "move the store"} {
			if !strings.Contains(st.Broken, want) {
				t.Errorf("Status.Broken does not say %q: %s", want, st.Broken)
			}
		}
		if published := readStatus(t, dir); published.Broken != st.Broken {
			t.Errorf("status.json Broken = %q", published.Broken)
		}
	})
}

// --- helpers shared with the WAL benchmark ---

const labSegment = 16 << 20 // the lab's wal_segment_size

// walLab brings up a lab of its own for one test (labDir's, for any TB).
func walLab(ctx context.Context, t testing.TB) *Lab {
	t.Helper()
	start := time.Now()
	dir, err := os.MkdirTemp("", "dbha-lab-")
	if err == nil {
		err = os.Chmod(dir, 0o755) // the lab user must enter it
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	l, _, err := Up(ctx, Options{Dir: dir})
	if err != nil {
		t.Fatalf("lab up: %v", err)
	}
	t.Logf("lab up in %s", time.Since(start).Round(time.Millisecond))
	return l
}

func node(t testing.TB, l *Lab, name string) Node {
	t.Helper()
	n, err := l.Node(name)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func fixedPrimary(addr string) binlog.PrimaryFunc {
	return func(context.Context) (string, error) { return addr, nil }
}

// walConfig is a stream of the lab's PostgreSQL cluster as user dbha,
// logging to the test log.
func walConfig(t testing.TB, l *Lab, dir string, primary binlog.PrimaryFunc) pgstream.Config {
	t.Helper()
	pw, err := readPassword(l.Secret("postgres-dbha"))
	if err != nil {
		t.Fatal(err)
	}
	return pgstream.Config{
		Cluster: postgresCluster, Dir: dir, User: "dbha", Password: pw, Primary: primary,
		Logger: slog.New(slog.NewTextHandler(tbLog{t}, &slog.HandlerOptions{Level: slog.LevelInfo})),
	}
}

// tbLog sends log lines to the test log.
type tbLog struct{ t testing.TB }

func (w tbLog) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// runStream runs a stream in a goroutine; stop cancels it and returns what
// Run returned (it may be called more than once).
func runStream(ctx context.Context, t testing.TB, cfg pgstream.Config) (*pgstream.Stream, func() error) {
	t.Helper()
	s, err := pgstream.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- s.Run(rctx) }()
	var result error
	var stopped bool
	stop := func() error {
		if !stopped {
			stopped = true
			cancel()
			select {
			case result = <-done:
			case <-time.After(30 * time.Second):
				result = errors.New("Run did not return within 30s of cancel")
			}
		}
		return result
	}
	t.Cleanup(func() { stop() })
	return s, stop
}

func waitStatus(t testing.TB, s *pgstream.Stream, what string, ok func(binlog.Status) bool) {
	t.Helper()
	waitUntil(t, 30*time.Second, what, func() error {
		if st := s.Status(); !ok(st) {
			return fmt.Errorf("status: connected %v, primary %s, position %s, last error %q", st.Connected, st.Primary, st.Position, st.LastError)
		}
		return nil
	})
}

func waitFlushed(t testing.TB, s *pgstream.Stream, lsn topology.LSN, tli uint32) {
	t.Helper()
	waitStatus(t, s, fmt.Sprintf("dbha flushed %s on timeline %d", lsn, tli), func(st binlog.Status) bool {
		return st.Position.Timeline() == tli && st.Position.LSN() >= lsn
	})
}

// waitPublished waits on what a stream (in another process) publishes.
func waitPublished(t testing.TB, dir, what string, ok func(binlog.Status) bool) {
	t.Helper()
	waitUntil(t, 60*time.Second, what, func() error {
		st, err := binlog.ReadStatus(dir)
		if err != nil {
			return err
		}
		if !ok(st) {
			return fmt.Errorf("status: connected %v, position %s, last error %q", st.Connected, st.Position, st.LastError)
		}
		return nil
	})
}

// waitUntil polls fn until it succeeds, for at most limit.
func waitUntil(t testing.TB, limit time.Duration, what string, fn func() error) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		err := fn()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting %s for %s: %v", limit, what, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func readStatus(t testing.TB, dir string) binlog.Status {
	t.Helper()
	st, err := binlog.ReadStatus(dir)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func adminPG(ctx context.Context, t testing.TB, l *Lab, name string) *pgx.Conn {
	t.Helper()
	c, err := l.AdminPostgres(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

func exec1(ctx context.Context, t testing.TB, c *pgx.Conn, sql string) {
	t.Helper()
	if _, err := c.Exec(ctx, sql); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

func currentLSN(ctx context.Context, t testing.TB, c *pgx.Conn) topology.LSN {
	t.Helper()
	var s string
	if err := c.QueryRow(ctx, "SELECT pg_current_wal_lsn()::text").Scan(&s); err != nil {
		t.Fatal(err)
	}
	lsn, err := topology.ParseLSN(s)
	if err != nil {
		t.Fatal(err)
	}
	return lsn
}

// partialEndpoint completes the current segment and writes a little into
// the next, so the stream ends with complete segments and a .partial
// holding WAL; it returns the end of that WAL.
func partialEndpoint(ctx context.Context, t testing.TB, l *Lab, name string) topology.LSN {
	t.Helper()
	c := adminPG(ctx, t, l, name)
	exec1(ctx, t, c, "SELECT pg_switch_wal()")
	exec1(ctx, t, c, "INSERT INTO heartbeat DEFAULT VALUES")
	return currentLSN(ctx, t, c)
}

func pgTool(t testing.TB, name string) string {
	t.Helper()
	for _, d := range postgresBinDirs() {
		if p := filepath.Join(d, name); fileExists(p) {
			return p
		}
	}
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s not found: %v", name, err)
	}
	return p
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// pgbench runs pgbench against a lab node's dbha_lab database as the
// superuser; the password goes in the environment, never in argv.
func pgbench(ctx context.Context, t testing.TB, l *Lab, name string, args ...string) *exec.Cmd {
	t.Helper()
	n := node(t, l, name)
	pw, err := readPassword(l.Secret("postgres-superuser"))
	if err != nil {
		t.Fatal(err)
	}
	all := append([]string{"-h", n.Host, "-p", fmt.Sprint(n.Port), "-U", "postgres", "-n"}, args...)
	cmd := exec.CommandContext(ctx, pgTool(t, "pgbench"), append(all, "dbha_lab")...)
	cmd.Env = append(baseEnv(), "PGPASSWORD="+pw)
	return cmd
}

// startLoad initializes pgbench and runs it for d in the background while
// forcing a segment switch every 700 ms; the returned function waits for
// the end.
func startLoad(ctx context.Context, t testing.TB, l *Lab, name string, d time.Duration) func() error {
	t.Helper()
	if out, err := pgbench(ctx, t, l, name, "-i", "-s", "2", "-q").CombinedOutput(); err != nil {
		t.Fatalf("pgbench -i: %v\n%s", err, out)
	}
	run := pgbench(ctx, t, l, name, "-c", "4", "-j", "2", "-T", fmt.Sprint(int(d.Seconds())))
	var out bytes.Buffer
	run.Stdout, run.Stderr = &out, &out
	if err := run.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- run.Wait() }()
	switcher := adminPG(ctx, t, l, name)
	switches := make(chan struct{})
	go func() {
		defer close(switches)
		for {
			select {
			case <-ctx.Done():
				return
			case <-time.After(700 * time.Millisecond):
			}
			if len(done) > 0 {
				return
			}
			switcher.Exec(ctx, "SELECT pg_switch_wal()")
		}
	}()
	return func() error {
		err := <-done
		done <- err
		<-switches
		if tps := tpsLine(out.String()); tps != "" {
			t.Logf("pgbench: %s", tps)
		}
		if err != nil {
			return fmt.Errorf("%w\n%s", err, out.String())
		}
		return nil
	}
}

func tpsLine(out string) string {
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "tps") {
			return line
		}
	}
	return ""
}

func segName(tli uint32, segno uint64) string {
	return fmt.Sprintf("%08X%08X%08X", tli, segno/0x100, segno%0x100)
}

func segmentOf(lsn topology.LSN) uint64 { return uint64(lsn) / labSegment }
func offsetOf(lsn topology.LSN) int     { return int(uint64(lsn) % labSegment) }

// resumeLSN is the start of the segment a file name names.
func resumeLSN(name string) topology.LSN {
	var tli, hi, lo uint64
	fmt.Sscanf(name, "%08X%08X%08X", &tli, &hi, &lo)
	return topology.LSN((hi*0x100 + lo) * labSegment)
}

// checkContiguous lists timeline tli's segments in the store: complete ones
// with no gap, and at most one .partial, right after them. It returns the
// complete ones, oldest first.
func checkContiguous(t testing.TB, dir string, tli uint32) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(dir, "wal"))
	if err != nil {
		t.Fatal(err)
	}
	prefix := fmt.Sprintf("%08X", tli)
	var complete, partial []string
	for _, e := range entries {
		name := e.Name()
		if !strings.HasPrefix(name, prefix) || strings.HasSuffix(name, ".history") {
			continue
		}
		if base, ok := strings.CutSuffix(name, ".partial"); ok {
			partial = append(partial, base)
		} else {
			complete = append(complete, name)
		}
	}
	for i := 1; i < len(complete); i++ {
		if segmentOf(resumeLSN(complete[i])) != segmentOf(resumeLSN(complete[i-1]))+1 {
			t.Fatalf("timeline %d: gap between %s and %s", tli, complete[i-1], complete[i])
		}
	}
	if len(partial) > 1 {
		t.Fatalf("timeline %d: more than one .partial: %v", tli, partial)
	}
	if len(partial) == 1 && len(complete) > 0 && segmentOf(resumeLSN(partial[0])) != segmentOf(resumeLSN(complete[len(complete)-1]))+1 {
		t.Fatalf("timeline %d: .partial %s does not follow %s", tli, partial[0], complete[len(complete)-1])
	}
	t.Logf("timeline %d: %d complete segments %v, partial %v", tli, len(complete), complete, partial)
	return complete
}

// compareWithServer compares the store's complete segments with the files
// of the same name in a server's pg_wal (those it still has) and returns
// how many it compared.
func compareWithServer(t testing.TB, dir, dataDir string, names []string) int {
	t.Helper()
	n := 0
	for _, name := range names {
		theirs, err := os.ReadFile(filepath.Join(dataDir, "pg_wal", name))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(readFile(t, filepath.Join(dir, "wal", name)), theirs) {
			t.Fatalf("segment %s differs from %s's", name, dataDir)
		}
		n++
	}
	t.Logf("%d segments byte-identical with %s/pg_wal", n, dataDir)
	return n
}

func readFile(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// waldump runs pg_waldump over timeline tli's complete segments and (with
// partial) its .partial under its final name, from the first segment's
// start to end, and fails on any error it reports.
func waldump(t testing.TB, dir string, tli uint32, complete []string, partial bool, end topology.LSN) {
	t.Helper()
	tmp := t.TempDir()
	names := complete
	if partial {
		entries, _ := os.ReadDir(filepath.Join(dir, "wal"))
		for _, e := range entries {
			if base, ok := strings.CutSuffix(e.Name(), ".partial"); ok && strings.HasPrefix(base, fmt.Sprintf("%08X", tli)) {
				names = append(names, e.Name())
			}
		}
	}
	if len(names) == 0 {
		t.Fatalf("timeline %d: no segments to dump", tli)
	}
	for _, name := range names {
		data := readFile(t, filepath.Join(dir, "wal", name))
		if err := os.WriteFile(filepath.Join(tmp, strings.TrimSuffix(name, ".partial")), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	start := resumeLSN(names[0])
	cmd := exec.Command(pgTool(t, "pg_waldump"), "-q", "-p", tmp, "-t", fmt.Sprint(tli), "-s", start.String(), "-e", end.String())
	out, err := cmd.CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Fatalf("pg_waldump -t %d -s %s -e %s over %v: %v\n%s", tli, start, end, names, err, out)
	}
	t.Logf("pg_waldump read timeline %d from %s to %s (%d files) without error", tli, start, end, len(names))
}

// walChild is a stream running in a child process (TestHelperWALProcess).
type walChild struct {
	cmd *exec.Cmd
	out *bytes.Buffer
}

func startWALChild(t testing.TB, l *Lab, dir, addr string) *walChild {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperWALProcess$")
	cmd.Env = append(os.Environ(), "DBHA_WAL_HELPER=1", "DBHA_WAL_DIR="+dir, "DBHA_WAL_PRIMARY="+addr,
		"DBHA_WAL_PASSWORD_FILE="+l.Secret("postgres-dbha"))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return &walChild{cmd: cmd, out: &out}
}

// kill sends SIGKILL and reaps the child; a second call does nothing.
func (c *walChild) kill(t testing.TB) {
	t.Helper()
	if c.cmd.ProcessState != nil {
		return
	}
	c.cmd.Process.Signal(syscall.SIGKILL)
	c.cmd.Wait()
	lines := strings.Split(strings.TrimSpace(c.out.String()), "\n")
	t.Logf("stream child %d killed; its last log lines:\n%s", c.cmd.Process.Pid, strings.Join(lines[max(0, len(lines)-5):], "\n"))
}
