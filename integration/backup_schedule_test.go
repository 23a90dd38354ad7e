package integration

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/dbha/dbha/backup"
	"github.com/dbha/dbha/config"
	"github.com/dbha/dbha/consul"
	"github.com/dbha/dbha/daemon"
	"github.com/dbha/dbha/schedule"
	"github.com/dbha/dbha/topology"
)

func TestClaimBackupSlot(t *testing.T) {
	l := sharedLab(t)
	c := consulClient(t, l)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// Keys of its own on the shared Consul, so earlier runs do not count.
	cluster := "backup-slot-test-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	slot := time.Date(2024, 5, 1, 2, 0, 0, 0, time.UTC)

	// Three managers claim the same slot at once: exactly one wins.
	var wins atomic.Int32
	var wg sync.WaitGroup
	for _, m := range []string{"m1", "m2", "m3"} {
		wg.Go(func() {
			won, err := c.ClaimBackupSlot(ctx, cluster, slot, m)
			if err != nil {
				t.Errorf("%s: %v", m, err)
			}
			if won {
				wins.Add(1)
			}
		})
	}
	wg.Wait()
	if n := wins.Load(); n != 1 {
		t.Fatalf("%d managers won the slot, want exactly 1", n)
	}
	last, ok, err := c.LastBackupSlot(ctx, cluster)
	if err != nil || !ok || !last.Slot.Equal(slot) || last.Manager == "" || last.ClaimedAt.IsZero() {
		t.Fatalf("slot record %+v (%v, %v), want slot %v with its manager and claim time", last, ok, err, slot)
	}

	for _, tc := range []struct {
		name string
		slot time.Time
	}{{"the same slot again", slot}, {"an earlier slot", slot.Add(-time.Hour)}} {
		if won, err := c.ClaimBackupSlot(ctx, cluster, tc.slot, last.Manager); won || err != nil {
			t.Errorf("%s: won %v, err %v; want it refused", tc.name, won, err)
		}
	}

	// While a recovery holds the cluster's lock, nobody claims; once it is
	// released the next slot is claimed.
	next := slot.Add(24 * time.Hour)
	lease, err := c.AcquireLock(ctx, cluster, "recovery", 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if won, err := c.ClaimBackupSlot(ctx, cluster, next, "m1"); won || err != nil {
		t.Errorf("under another's lock: won %v, err %v; want it refused", won, err)
	}
	if err := lease.Release(); err != nil {
		t.Fatal(err)
	}
	if won, err := c.ClaimBackupSlot(ctx, cluster, next, "m1"); !won || err != nil {
		t.Fatalf("the next slot once the lock is free: won %v, err %v", won, err)
	}
	if last, _, _ := c.LastBackupSlot(ctx, cluster); !last.Slot.Equal(next) || last.Manager != "m1" {
		t.Fatalf("slot record %+v, want %v by m1", last, next)
	}
}

// Two managers schedule backups of lab-postgres every 4 s with the real
// claim in Consul: each slot is taken by exactly one of them, and each
// taken slot leaves one backup in the repository.
func TestScheduledBackupsOnePerSlot(t *testing.T) {
	l := sharedLab(t)
	snap := waitSnapshot(t, l, "lab-postgres", "a healthy cluster", healthy)
	cl, env := scheduledCluster(t, l)
	ctx, stop := context.WithTimeout(context.Background(), 25*time.Second)
	defer stop()

	// The daemons stop after the second backup ends, between slots, so that
	// none is cut short.
	var ended atomic.Int32
	logs := map[string]*lockedBuffer{}
	var wg sync.WaitGroup
	for _, m := range []string{"manager-a", "manager-b"} {
		logs[m] = &lockedBuffer{}
		run := env.runner(m, func(int) string { return env.password })
		s := env.scheduler(t, cl, "@every 4s", m, fixedPrimaryView(snap.Primary), logs[m],
			func(ctx context.Context, cl config.Cluster, progress io.Writer) (backup.Entry, error) {
				e, err := run(ctx, cl, progress)
				if ended.Add(1) == 2 {
					stop()
				}
				return e, err
			})
		wg.Go(func() { s.Run(ctx) })
	}
	wg.Wait()

	started := map[time.Time][]string{}
	skipped := map[time.Time][]string{}
	for m, buf := range logs {
		for _, r := range scheduleRecords(t, buf.String()) {
			switch {
			case r.Msg == "scheduled backup started":
				started[r.Slot] = append(started[r.Slot], m)
			case strings.HasPrefix(r.Msg, "scheduled backup skipped"):
				skipped[r.Slot] = append(skipped[r.Slot], m)
			case r.Msg == "scheduled backup failed":
				t.Errorf("%s: %s: %s", m, r.Msg, r.Reason)
			}
		}
	}
	if len(started) < 2 {
		t.Fatalf("backups started in %d slots, want 2:\n%s\n%s", len(started), logs["manager-a"], logs["manager-b"])
	}
	for slot, ms := range started {
		if len(ms) != 1 {
			t.Errorf("slot %v started by %v, want exactly one manager", slot, ms)
		}
		if len(skipped[slot]) != 1 || skipped[slot][0] == ms[0] {
			t.Errorf("slot %v: started by %v, skipped by %v; want the other manager to have skipped it", slot, ms, skipped[slot])
		}
	}
	entries, err := backup.List(context.Background(), backup.Dir(cl.Backup.Repository), cl.Name)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != len(started) {
		t.Fatalf("%d backups in the repository for %d slots: %+v", len(entries), len(started), entries)
	}
	for _, e := range entries {
		if e.Status != backup.Done || e.Source == snap.Primary {
			t.Errorf("backup %s: status %s from %s (%s), want done from a replica", e.ID, e.Status, e.Source, e.Error)
		}
	}
}

// A source that fails mid-way (here: refuses the account) fails the
// scheduled backup, which is recorded failed with its reason, and the one
// retry, choosing its source afresh, succeeds.
func TestScheduledBackupRetriedOnceAfterAFailure(t *testing.T) {
	l := sharedLab(t)
	snap := waitSnapshot(t, l, "lab-postgres", "a healthy cluster", healthy)
	cl, env := scheduledCluster(t, l)
	ctx, stop := context.WithTimeout(context.Background(), 25*time.Second)
	defer stop()

	var attempts atomic.Int32
	run := env.runner("m", func(attempt int) string {
		if attempt == 1 {
			return "not-the-password"
		}
		return env.password
	})
	var logs lockedBuffer
	s := env.scheduler(t, cl, "@every 2s", "m", fixedPrimaryView(snap.Primary), &logs,
		func(ctx context.Context, cl config.Cluster, progress io.Writer) (backup.Entry, error) {
			e, err := run(ctx, cl, progress)
			if attempts.Add(1) == 2 {
				stop() // one slot is enough
			}
			return e, err
		})
	s.Run(ctx)

	entries, err := backup.List(context.Background(), backup.Dir(cl.Backup.Repository), cl.Name)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 2 {
		t.Fatalf("catalog %+v, want the failed backup and its retry\n%s", entries, logs.String())
	}
	failed, retried := entries[0], entries[1]
	if failed.Status != backup.Failed || !strings.Contains(failed.Error, "pg_basebackup") {
		t.Errorf("first backup %s: %s %q, want failed with pg_basebackup's reason", failed.ID, failed.Status, failed.Error)
	}
	if _, err := os.Stat(filepath.Join(backup.EntryDir(cl.Backup.Repository, cl.Name, failed.ID), "data")); !os.IsNotExist(err) {
		t.Errorf("the failed backup left its files: %v", err)
	}
	if retried.Status != backup.Done || retried.Position.IsZero() {
		t.Errorf("retry %s: %s %q, want done", retried.ID, retried.Status, retried.Error)
	}
	var failures int
	for _, r := range scheduleRecords(t, logs.String()) {
		if r.Msg == "scheduled backup failed" {
			failures++
			if !r.Retry || !strings.Contains(r.Reason, "pg_basebackup") {
				t.Errorf("failure logged as %+v, want its reason and a retry", r)
			}
		}
	}
	if failures != 1 {
		t.Errorf("%d failures logged, want 1:\n%s", failures, logs.String())
	}
}

// scheduleEnv is what a test runner needs to take real backups of
// lab-postgres from scheduler goroutines (which must not call t.Fatal).
type scheduleEnv struct {
	consul   *consul.Client
	prober   topology.Prober
	timeout  time.Duration
	user     string
	password string
}

// scheduledCluster is lab-postgres with a repository of the test's own.
func scheduledCluster(t *testing.T, l *Lab) (config.Cluster, scheduleEnv) {
	t.Helper()
	cfg := labConfig(t, l)
	cl, ok := cfg.Cluster("lab-postgres")
	if !ok {
		t.Fatal("no lab-postgres in the lab's config")
	}
	cl.Backup.Repository = t.TempDir()
	pw, err := readPassword(l.Secret("postgres-dbha"))
	if err != nil {
		t.Fatal(err)
	}
	return cl, scheduleEnv{consul: consulClient(t, l), prober: proberFor(t, cl), timeout: cfg.Probe.Timeout, user: "dbha", password: pw}
}

// runner takes a backup as `dbha run` does: a fresh snapshot, the source
// ChooseSource picks, pg_basebackup. password gives the attempt's password
// (counting this runner's calls from 1).
func (env scheduleEnv) runner(manager string, password func(attempt int) string) daemon.BackupRunner {
	var calls atomic.Int32
	return func(ctx context.Context, cl config.Cluster, progress io.Writer) (backup.Entry, error) {
		attempt := int(calls.Add(1))
		s := topology.Discover(ctx, cl.Topology(), env.prober, env.timeout)
		src, err := backup.ChooseSource(s, backup.SourcePolicy{AllowPrimary: cl.Backup.AllowPrimary})
		if err != nil {
			return backup.Entry{}, err
		}
		fmt.Fprintf(progress, "backing up %s from %s: %s\n", cl.Name, src.Addr, src.Reason)
		return backup.RunPostgres(ctx, backup.Job{Repo: backup.Dir(cl.Backup.Repository), ID: fmt.Sprintf("%s-%d", manager, time.Now().UnixNano()),
			Cluster: cl.Name, Source: src.Addr, User: env.user, Password: password(attempt)})
	}
}

func (env scheduleEnv) scheduler(t *testing.T, cl config.Cluster, spec, manager string, primary daemon.PrimaryView,
	logs io.Writer, run daemon.BackupRunner) *daemon.BackupScheduler {
	t.Helper()
	sched, err := schedule.Parse(spec, 0)
	if err != nil {
		t.Fatal(err)
	}
	return daemon.NewBackupScheduler(daemon.BackupOptions{Cluster: cl, Schedule: sched, Manager: manager,
		Claimer: env.consul, Primary: primary, Run: run, Logger: slog.New(slog.NewJSONHandler(logs, nil)),
		RetryAfter: 200 * time.Millisecond})
}

type fixedPrimaryView string

func (p fixedPrimaryView) Primary(string) string { return string(p) }

// scheduleRecord is a scheduler's log line.
type scheduleRecord struct {
	Msg    string    `json:"msg"`
	Slot   time.Time `json:"slot"`
	Reason string    `json:"reason"`
	Retry  bool      `json:"retry"`
}

func scheduleRecords(t *testing.T, log string) []scheduleRecord {
	t.Helper()
	var out []scheduleRecord
	sc := bufio.NewScanner(strings.NewReader(log))
	for sc.Scan() {
		var r scheduleRecord
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("log line %q: %v", sc.Text(), err)
		}
		out = append(out, r)
	}
	return out
}

// TestScheduledBackupsVerifiedAndPruned runs the real `dbha run` with a
// schedule on lab-postgres and keep = 1: each scheduled backup is verified
// once taken (every page read, its point-in-time window reported from the
// daemon's own store), the catalog is pruned down to the newest verified
// one, and backup.reverify verifies the kept backups again.
func TestScheduledBackupsVerifiedAndPruned(t *testing.T) {
	bin := dbhaBinary(t)
	l := binLab(t, bin)
	run := startDbhaRun(t, bin, l, "scheduler",
		"DBHA_CLUSTERS_1_BACKUP_SCHEDULE=@every 4s", "DBHA_CLUSTERS_1_BACKUP_KEEP=1", "DBHA_CLUSTERS_1_BACKUP_REVERIFY=@every 5s")
	repo := labRepo(l)
	waitUntil(t, 90*time.Second, "two scheduled backups verified, and one verified again", func() error {
		if n := strings.Count(run.log(), `"msg":"scheduled backup verified"`); n < 2 {
			return fmt.Errorf("%d verified so far", n)
		}
		if !strings.Contains(run.log(), `"msg":"backup verified again"`) {
			return fmt.Errorf("none verified again yet")
		}
		return nil
	})
	if !strings.Contains(run.log(), "pg_amcheck passed") || !strings.Contains(run.log(), "point in time: from") {
		t.Errorf("the verifications do not say every page was read and the window:\n%s", run.log())
	}
	entries, err := backup.List(context.Background(), backup.Dir(repo), postgresCluster)
	if err != nil {
		t.Fatal(err)
	}
	var done []backup.Entry
	for _, e := range entries {
		if e.Status == backup.Done {
			done = append(done, e)
		}
	}
	// A third slot may be running; every finished backup but the newest
	// verified one is gone.
	if len(done) == 0 || len(done) > 2 || !done[0].Verified() || !strings.Contains(run.log(), `"msg":"backups pruned"`) {
		t.Fatalf("catalog after two scheduled backups with keep 1: %+v\nlog:\n%s", entries, run.log())
	}

	// The newest backup's file is damaged: the next reverify fails it,
	// and that is a critical finding until the file is whole again.
	run.stop(t, syscall.SIGTERM)
	entries, err = backup.List(context.Background(), backup.Dir(repo), postgresCluster)
	if err != nil {
		t.Fatal(err)
	}
	done = slices.DeleteFunc(entries, func(e backup.Entry) bool { return e.Status != backup.Done })
	newest := done[len(done)-1]
	path := filepath.Join(backup.EntryDir(repo, postgresCluster, newest.ID), newest.Files[0].Name)
	whole, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	damaged := slices.Clone(whole)
	for i := len(damaged) / 2; i < len(damaged)/2+64 && i < len(damaged); i++ {
		damaged[i] ^= 0xff
	}
	if err := os.WriteFile(path, damaged, 0o600); err != nil {
		t.Fatal(err)
	}
	rerun := startDbhaRun(t, bin, l, "reverifier", "DBHA_CLUSTERS_1_BACKUP_REVERIFY=@every 3s")
	var appeared string
	waitUntil(t, 60*time.Second, "the damaged backup is a critical finding", func() error {
		if appeared = logLine(rerun.log(), `"msg":"finding appeared"`, `"code":"BackupVerifyFailed","severity":"critical"`); appeared == "" {
			return fmt.Errorf("no finding yet")
		}
		return nil
	})
	if !strings.Contains(appeared, newest.ID) || !strings.Contains(appeared, "differ from the catalog") {
		t.Errorf("the finding does not name backup %s and its fault: %s", newest.ID, appeared)
	}
	if err := os.WriteFile(path, whole, 0o600); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 60*time.Second, "the finding clears once the backup verifies again", func() error {
		if logLine(rerun.log(), `"msg":"finding cleared"`, `"code":"BackupVerifyFailed"`) == "" {
			return fmt.Errorf("not cleared yet")
		}
		return nil
	})
}

// logLine returns the first line of log that holds every one of parts;
// "" when none does.
func logLine(log string, parts ...string) string {
	for line := range strings.Lines(log) {
		if !slices.ContainsFunc(parts, func(p string) bool { return !strings.Contains(line, p) }) {
			return line
		}
	}
	return ""
}
