package daemon

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dbha/dbha/backup"
	"github.com/dbha/dbha/config"
	"github.com/dbha/dbha/schedule"
)

// fakeClaimer answers every claim with won (or err) and records the slots.
type fakeClaimer struct {
	won bool
	err error

	mu     sync.Mutex
	claims []time.Time
}

func (f *fakeClaimer) ClaimBackupSlot(_ context.Context, _ string, slot time.Time, _ string) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.claims = append(f.claims, slot)
	return f.won, f.err
}

// fakePrimary is a primary that tests move.
type fakePrimary struct {
	mu   sync.Mutex
	addr string
}

func (f *fakePrimary) Primary(string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.addr
}

func (f *fakePrimary) move(addr string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.addr = addr
}

// runs is a scripted BackupRunner: the n-th call (from 0) does script[n],
// and the calls and their contexts' causes are recorded.
type runs struct {
	script []func(ctx context.Context) (backup.Entry, error)

	mu     sync.Mutex
	calls  int
	causes []error
}

func (r *runs) run(ctx context.Context, _ config.Cluster, progress io.Writer) (backup.Entry, error) {
	r.mu.Lock()
	n := r.calls
	r.calls++
	r.mu.Unlock()
	fmt.Fprintf(progress, "attempt %d\n", n+1)
	e, err := r.script[n](ctx)
	r.mu.Lock()
	r.causes = append(r.causes, context.Cause(ctx))
	r.mu.Unlock()
	return e, err
}

func done(context.Context) (backup.Entry, error) {
	return backup.Entry{ID: "b", Source: "r1:5432", Status: backup.Done, Bytes: 10}, nil
}

func failedWith(msg string) func(context.Context) (backup.Entry, error) {
	return func(context.Context) (backup.Entry, error) {
		return backup.Entry{ID: "b", Status: backup.Failed, Error: msg}, errors.New(msg)
	}
}

// untilCancelled blocks like a long backup until its context ends, then
// fails as the backup package does, with the cause.
func untilCancelled(ctx context.Context) (backup.Entry, error) {
	select {
	case <-ctx.Done():
		return backup.Entry{Status: backup.Failed, Error: context.Cause(ctx).Error()}, context.Cause(ctx)
	case <-time.After(20 * time.Second):
		return backup.Entry{}, errors.New("never cancelled")
	}
}

func newTestScheduler(t *testing.T, c SlotClaimer, p PrimaryView, r *runs, stats *BackupStats, logs io.Writer) *BackupScheduler {
	t.Helper()
	s, err := schedule.Parse("@every 1s", 0)
	if err != nil {
		t.Fatal(err)
	}
	return NewBackupScheduler(BackupOptions{Cluster: config.Cluster{Name: "c"}, Schedule: s, Manager: "m1",
		Claimer: c, Primary: p, Run: r.run, Stats: stats, Logger: slog.New(slog.NewJSONHandler(logs, nil)),
		WatchEvery: 5 * time.Millisecond, RetryAfter: time.Millisecond, ProgressEvery: time.Nanosecond})
}

func TestBackupSlot(t *testing.T) {
	cases := []struct {
		name      string
		claimer   *fakeClaimer
		script    []func(context.Context) (backup.Entry, error)
		wantCalls int
		wantLogs  []string
	}{
		{"done at once", &fakeClaimer{won: true}, []func(context.Context) (backup.Entry, error){done}, 1,
			[]string{"scheduled backup started", `"msg":"scheduled backup done"`, `"line":"attempt 1"`}},
		{"a failure is retried once", &fakeClaimer{won: true},
			[]func(context.Context) (backup.Entry, error){failedWith("pg_basebackup: connection refused"), done}, 2,
			[]string{`"reason":"pg_basebackup: connection refused","retry":true`, `"msg":"scheduled backup done"`}},
		{"the retry is not retried", &fakeClaimer{won: true},
			[]func(context.Context) (backup.Entry, error){failedWith("first"), failedWith("second")}, 2,
			[]string{`"reason":"second","retry":false`}},
		{"a failed entry without an error is retried", &fakeClaimer{won: true},
			[]func(context.Context) (backup.Entry, error){
				func(context.Context) (backup.Entry, error) {
					return backup.Entry{Status: backup.Failed, Error: "checksum"}, nil
				}, done}, 2,
			[]string{`"reason":"checksum","retry":true`}},
		{"a slot another manager claimed is skipped", &fakeClaimer{won: false}, nil, 0,
			[]string{"another manager holds the cluster's lock or has claimed the slot"}},
		{"a slot that cannot be claimed is skipped", &fakeClaimer{err: errors.New("consul down")}, nil, 0,
			[]string{"its slot could not be claimed", "consul down"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var logs bytes.Buffer
			r := &runs{script: tc.script}
			s := newTestScheduler(t, tc.claimer, &fakePrimary{addr: "p:5432"}, r, nil, &logs)
			slot := time.Date(2024, 5, 1, 2, 0, 0, 0, time.UTC)
			s.runSlot(context.Background(), schedule.Slot{Time: slot, At: slot}, "")
			if r.calls != tc.wantCalls {
				t.Errorf("runner called %d times, want %d", r.calls, tc.wantCalls)
			}
			if len(tc.claimer.claims) != 1 || !tc.claimer.claims[0].Equal(slot) {
				t.Errorf("claims %v, want the slot %v once", tc.claimer.claims, slot)
			}
			for _, w := range tc.wantLogs {
				if !strings.Contains(logs.String(), w) {
					t.Errorf("log lacks %q:\n%s", w, logs.String())
				}
			}
		})
	}
}

func TestBackupCancelledOnFailoverIsRetried(t *testing.T) {
	var logs bytes.Buffer
	p := &fakePrimary{addr: "a:5432"}
	r := &runs{script: []func(context.Context) (backup.Entry, error){
		func(ctx context.Context) (backup.Entry, error) {
			p.move("b:5432") // the failover happens while the backup runs
			return untilCancelled(ctx)
		},
		done,
	}}
	stats := NewBackupStats()
	s := newTestScheduler(t, &fakeClaimer{won: true}, p, r, stats, &logs)
	s.runSlot(context.Background(), schedule.Slot{Time: time.Now(), At: time.Now()}, "")

	if r.calls != 2 {
		t.Fatalf("runner called %d times, want 2 (the cancelled run and its retry)", r.calls)
	}
	want := "failover: primary moved from a:5432 to b:5432 during the backup"
	if !errors.Is(r.causes[0], ErrFailover) || r.causes[0].Error() != want {
		t.Errorf("first run's cause = %v, want %q", r.causes[0], want)
	}
	if r.causes[1] != nil {
		t.Errorf("the retry was cancelled too: %v", r.causes[1])
	}
	if !strings.Contains(logs.String(), `"reason":"`+want+`","retry":true`) {
		t.Errorf("the failure and its reason are not logged:\n%s", logs.String())
	}
	if stats.counts[backupRun{"c", "failed"}] != 1 || stats.counts[backupRun{"c", "done"}] != 1 || stats.succeeded["c"].IsZero() {
		t.Errorf("stats %+v, last success %v; want one failed and one done run", stats.counts, stats.succeeded)
	}
}

func TestBackupNotRetriedWhenTheDaemonStops(t *testing.T) {
	var logs bytes.Buffer
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	r := &runs{script: []func(context.Context) (backup.Entry, error){
		func(rctx context.Context) (backup.Entry, error) {
			stop() // the daemon is told to stop while the backup runs
			return untilCancelled(rctx)
		},
		done,
	}}
	s := newTestScheduler(t, &fakeClaimer{won: true}, &fakePrimary{addr: "a:5432"}, r, nil, &logs)
	s.runSlot(ctx, schedule.Slot{Time: time.Now(), At: time.Now()}, "")
	if r.calls != 1 {
		t.Fatalf("runner called %d times, want 1: no retry once the daemon stops", r.calls)
	}
	if !strings.Contains(logs.String(), "the daemon is stopping") || strings.Contains(logs.String(), `"level":"ERROR"`) {
		t.Errorf("want the cut-short backup logged as such, not as an error:\n%s", logs.String())
	}
}

func TestBackupSchedulerRunsSlotsUntilStopped(t *testing.T) {
	ctx, stop := context.WithTimeout(context.Background(), 10*time.Second)
	defer stop()
	r := &runs{script: []func(context.Context) (backup.Entry, error){
		func(context.Context) (backup.Entry, error) { stop(); return done(ctx) },
	}}
	c := &fakeClaimer{won: true}
	s := newTestScheduler(t, c, &fakePrimary{addr: "a:5432"}, r, nil, io.Discard)
	s.Run(ctx) // returns once the first slot's backup stopped it
	if r.calls != 1 || len(c.claims) != 1 {
		t.Fatalf("%d runs, claims %v; want one slot claimed and run", r.calls, c.claims)
	}
	if !c.claims[0].Equal(c.claims[0].Truncate(time.Second)) {
		t.Errorf("slot %v is not on a whole second of @every 1s", c.claims[0])
	}
}

func TestProgressLog(t *testing.T) {
	cases := []struct {
		name  string
		every time.Duration
		write []string
		want  []string
	}{
		{"lines split on newlines and carriage returns", time.Nanosecond,
			[]string{"backing up c from r1\n", "10/20 kB (50%)\r20/", "20 kB (100%)\n\n"},
			[]string{"backing up c from r1", "10/20 kB (50%)", "20/20 kB (100%)"}},
		{"at most one line per interval", time.Hour,
			[]string{"first\nsecond\nthird\n"}, []string{"first"}},
		{"an unfinished line waits", time.Nanosecond, []string{"half"}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			p := &progressLog{log: slog.New(slog.NewTextHandler(&buf, nil)), every: tc.every}
			for _, w := range tc.write {
				if n, err := p.Write([]byte(w)); n != len(w) || err != nil {
					t.Fatalf("Write(%q) = %d, %v", w, n, err)
				}
			}
			var got []string
			for _, l := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
				if _, v, ok := strings.Cut(l, "line="); ok {
					got = append(got, strings.Trim(v, `"`))
				}
			}
			if strings.Join(got, "|") != strings.Join(tc.want, "|") {
				t.Fatalf("logged %q, want %q", got, tc.want)
			}
		})
	}
}

// flakyClaimer fails its first fails claims, then wins.
type flakyClaimer struct {
	fails int

	mu     sync.Mutex
	claims int
}

func (f *flakyClaimer) ClaimBackupSlot(context.Context, string, time.Time, string) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.claims++
	if f.claims <= f.fails {
		return false, errors.New("consul down")
	}
	return true, nil
}

// A slot whose claim fails (Consul out of reach, at start or later) is
// claimed again until the next slot begins, and taken once the claim
// succeeds: made up, not skipped. Dead runs are swept first.
func TestBackupSlotMadeUpWhenConsulReturns(t *testing.T) {
	var logs bytes.Buffer
	r := &runs{script: []func(context.Context) (backup.Entry, error){done}}
	c := &flakyClaimer{fails: 3}
	s := newTestScheduler(t, c, &fakePrimary{addr: "p:5432"}, r, nil, &logs)
	swept := 0
	s.o.Sweep = func(context.Context, config.Cluster) ([]backup.Entry, error) {
		swept++
		return []backup.Entry{{ID: "dead", Error: "left running"}}, nil
	}
	slot := time.Now()
	s.runSlot(context.Background(), schedule.Slot{Time: slot, At: slot}, "")
	if r.calls != 1 || c.claims != 4 || swept != 1 {
		t.Fatalf("runner called %d times after %d claims, %d sweeps; want 1 after 4, 1 sweep\n%s", r.calls, c.claims, swept, logs.String())
	}
	for _, w := range []string{"trying again until the next slot", "it is made up now", `"id":"dead"`, `"msg":"scheduled backup done"`} {
		if !strings.Contains(logs.String(), w) {
			t.Errorf("log lacks %q:\n%s", w, logs.String())
		}
	}
}

// A backup started by hand runs in the background as a slot of its own,
// is refused while one runs, and holds off a scheduled slot meanwhile.
func TestBackupStartedByHand(t *testing.T) {
	ctx, stop := context.WithTimeout(context.Background(), 10*time.Second)
	defer stop()
	release := make(chan struct{})
	r := &runs{script: []func(context.Context) (backup.Entry, error){
		func(context.Context) (backup.Entry, error) { <-release; return done(ctx) },
		done,
	}}
	c := &fakeClaimer{won: true}
	var logs syncBuffer
	s := newTestScheduler(t, c, &fakePrimary{addr: "a:5432"}, r, nil, &logs)
	if err := s.Start("console operator"); err == nil {
		t.Fatal("a backup started before the scheduler runs")
	}
	var running sync.WaitGroup
	running.Go(func() { s.Run(ctx) })
	waitFor(t, func() bool { return s.Start("console operator") == nil })
	by, at := s.StartedByHand()
	if by != "console operator" || at.IsZero() {
		t.Errorf("StartedByHand = %q, %v", by, at)
	}
	err := s.Start("someone else")
	if !errors.Is(err, ErrBackupRunning) || !strings.Contains(err.Error(), "console operator") {
		t.Errorf("a second start while one runs: %v", err)
	}
	// The @every 1s slots pass while the backup started by hand runs.
	waitFor(t, func() bool {
		return strings.Contains(logs.String(), "scheduled backup skipped: one started by hand is running")
	})
	close(release)
	waitFor(t, func() bool { by, _ := s.StartedByHand(); return by == "" })
	stop()
	running.Wait()
	c.mu.Lock()
	defer c.mu.Unlock()
	if !slices.ContainsFunc(c.claims, at.Equal) {
		t.Errorf("claims %v: want the backup started by hand claimed as a slot of its own, %v", c.claims, at)
	}
	if !strings.Contains(logs.String(), `"started_by":"console operator"`) || !strings.Contains(logs.String(), "scheduled backup done") {
		t.Errorf("the log does not say who started the backup, or that it was done:\n%s", logs.String())
	}
}

// syncBuffer is a bytes.Buffer safe for a logger and a reader at once.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// waitFor polls ok for up to 5 s.
func waitFor(t *testing.T, ok func() bool) {
	t.Helper()
	for range 500 {
		if ok() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("condition not met within 5 s")
}
