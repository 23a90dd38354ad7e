package daemon

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/dbha/dbha/alert"
	"github.com/dbha/dbha/backup"
	"github.com/dbha/dbha/checks"
	"github.com/dbha/dbha/config"
	"github.com/dbha/dbha/schedule"
)

// ErrFailover is the cause a scheduled backup is cancelled with when the
// cluster's primary moves while it runs.
var ErrFailover = errors.New("failover")

// BackupRunner takes one backup of cl, choosing its source from a fresh look
// at the topology, and writes the tool's progress lines to progress. It
// records a failed run in the catalog and removes its partial files itself;
// when ctx is cancelled, its error carries context.Cause(ctx). A scheduler
// calls it from its own goroutine, one run at a time.
type BackupRunner func(ctx context.Context, cl config.Cluster, progress io.Writer) (backup.Entry, error)

// SlotClaimer makes sure one manager runs each scheduled backup.
// ClaimBackupSlot returns true to exactly one of the managers that claim the
// same cluster and slot; false, nil when another manager holds the
// cluster's lock or has claimed the slot. An error means nothing was
// claimed. It is called concurrently for different clusters.
type SlotClaimer interface {
	ClaimBackupSlot(ctx context.Context, cluster string, slot time.Time, owner string) (bool, error)
}

// PrimaryView tells where a cluster's primary is, as last seen; "" when
// not known yet. It is called while the monitor runs. *Monitor is one.
type PrimaryView interface {
	Primary(cluster string) string
}

// BackupOptions configure a BackupScheduler.
type BackupOptions struct {
	Cluster  config.Cluster
	Schedule schedule.Spec
	Manager  string // this manager's name, the owner of the slots it claims
	Claimer  SlotClaimer
	Primary  PrimaryView
	Run      BackupRunner
	Stats    *BackupStats // may be nil
	Logger   *slog.Logger
	// WatchEvery is how often the primary is compared while a backup runs
	// (default 1 s).
	WatchEvery time.Duration
	// RetryAfter is the pause before the retry of a failed backup (default
	// 10 s): after a failover it lets the replicas be repointed before a
	// source is chosen again.
	RetryAfter time.Duration
	// Job names what the scheduler runs in its log records ("backup", the
	// default, or "reverify").
	Job string
	// Sweep, when set, is called once this manager has won a slot, before
	// the backup: it marks the entries a dead run left running failed and
	// removes their partial files (backup.Sweep).
	Sweep func(ctx context.Context, cl config.Cluster) ([]backup.Entry, error)
	// Alerts, when set, is notified of a slot whose backup failed, retry
	// included (BackupFailed, at FailedLevel, default warning).
	Alerts      Notifier
	FailedLevel checks.Severity
	// AfterRun, when set, is called after each run, whatever its outcome
	// (a catalog watch's Refresh, so that a failed verification shows at
	// once).
	AfterRun func(ctx context.Context)
	// ProgressEvery is the least time between two progress lines logged
	// (default 10 s): pg_basebackup reports every second, which over an
	// hours-long backup would drown the daemon's log.
	ProgressEvery time.Duration
}

// BackupScheduler runs one cluster's scheduled backups: at each slot it
// claims the slot, takes the backup, cancels it when the primary moves, and
// retries a failed one once.
type BackupScheduler struct {
	o   BackupOptions
	log *slog.Logger

	// one is held by the run in progress, a slot's or one started by
	// hand: they never overlap.
	one sync.Mutex

	mu     sync.Mutex
	ctx    context.Context // the daemon's, once Run has started
	byHand string          // who started the run in progress by hand
	handAt time.Time       // and when
}

// ErrBackupRunning refuses a backup started by hand while one runs.
var ErrBackupRunning = errors.New("a backup of the cluster is running on this manager")

// NewBackupScheduler builds a scheduler; it starts nothing.
func NewBackupScheduler(o BackupOptions) *BackupScheduler {
	if o.WatchEvery <= 0 {
		o.WatchEvery = time.Second
	}
	if o.RetryAfter <= 0 {
		o.RetryAfter = 10 * time.Second
	}
	if o.ProgressEvery <= 0 {
		o.ProgressEvery = 10 * time.Second
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if o.Job == "" {
		o.Job = "backup"
	}
	return &BackupScheduler{o: o, log: log.With("cluster", o.Cluster.Name, "job", o.Job)}
}

// Run waits for each slot and runs it, until ctx ends. Slots that pass
// while a backup runs are skipped: backups never pile up.
func (b *BackupScheduler) Run(ctx context.Context) {
	b.mu.Lock()
	b.ctx = ctx
	b.mu.Unlock()
	after := time.Now()
	for {
		slot := b.o.Schedule.Next(b.o.Cluster.Name, after)
		if slot.At.IsZero() {
			b.log.Warn("the backup schedule has no further slot")
			return
		}
		if !sleepUntil(ctx, slot.At) {
			return
		}
		if b.one.TryLock() {
			b.runSlot(ctx, slot, "")
			b.one.Unlock()
		} else {
			b.log.Info("scheduled "+b.o.Job+" skipped: one started by hand is running", "slot", slot.Time)
		}
		// A clock set back while sleeping must not bring this slot again.
		after = time.Now()
		if after.Before(slot.At) {
			after = slot.At
		}
		if missed := b.o.Schedule.Next(b.o.Cluster.Name, slot.At); missed.At.Before(after) {
			b.log.Warn("scheduled "+b.o.Job+"s skipped: the last one ran past their start", "first_skipped", missed.Time)
		}
	}
}

// Start takes a backup now, outside the schedule, in the background, as
// a slot of its own: claimed as a scheduled one (so one manager takes it,
// and none while another holds the cluster's lock), watched for a
// failover, retried once, notified when it fails. It refuses while a
// backup of the cluster runs on this manager, and before Run has started.
func (b *BackupScheduler) Start(by string) error {
	b.mu.Lock()
	ctx := b.ctx
	b.mu.Unlock()
	if ctx == nil || ctx.Err() != nil {
		return errors.New("the backup scheduler is not running")
	}
	if !b.one.TryLock() {
		if by, at := b.StartedByHand(); by != "" {
			return fmt.Errorf("%w: started by %s at %s", ErrBackupRunning, by, at.Format(time.RFC3339))
		}
		return fmt.Errorf("%w: a scheduled one", ErrBackupRunning)
	}
	now := time.Now().UTC().Truncate(time.Millisecond)
	b.mu.Lock()
	b.byHand, b.handAt = by, now
	b.mu.Unlock()
	b.log.Info(b.o.Job+" started by hand", "by", by)
	go func() {
		defer b.one.Unlock()
		b.runSlot(ctx, schedule.Slot{Time: now, At: now}, by)
		b.mu.Lock()
		b.byHand, b.handAt = "", time.Time{}
		b.mu.Unlock()
	}()
	return nil
}

// Cluster and Job name what the scheduler runs.
func (b *BackupScheduler) Cluster() string { return b.o.Cluster.Name }
func (b *BackupScheduler) Job() string     { return b.o.Job }

// StartedByHand names who started the backup running now by hand, and
// when; "" when none is.
func (b *BackupScheduler) StartedByHand() (string, time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.byHand, b.handAt
}

// claimName is what slots are claimed under: the cluster's name for its
// backups, with the job's name after it for another job, whose slots are
// apart from the backups'.
func (b *BackupScheduler) claimName() string {
	if b.o.Job == "backup" {
		return b.o.Cluster.Name
	}
	return b.o.Cluster.Name + "." + b.o.Job
}

// runSlot claims the slot and, when won, takes the backup, and once more if
// it fails; by names who started it by hand ("" for the schedule). A claim that fails (Consul out of reach) is tried again every
// RetryAfter until the next slot begins: the slot is made up once Consul
// answers, not skipped.
func (b *BackupScheduler) runSlot(ctx context.Context, slot schedule.Slot, by string) {
	log := b.log.With("slot", slot.Time)
	if by != "" {
		log = log.With("started_by", by)
	}
	next := b.o.Schedule.Next(b.o.Cluster.Name, slot.At).At
	var won bool
	for tries := 1; ; tries++ {
		var err error
		won, err = b.o.Claimer.ClaimBackupSlot(ctx, b.claimName(), slot.Time, b.o.Manager)
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			if tries > 1 {
				log.Info("the slot of a scheduled "+b.o.Job+" was claimed late: it is made up now", "tries", tries)
			}
			break
		}
		retryAt := time.Now().Add(b.o.RetryAfter)
		if !next.IsZero() && !retryAt.Before(next) {
			log.Error("scheduled "+b.o.Job+" skipped: its slot could not be claimed before the next one", "tries", tries, "err", err)
			return
		}
		if tries == 1 {
			log.Warn("scheduled "+b.o.Job+" delayed: its slot could not be claimed; trying again until the next slot", "err", err, "retry_every", b.o.RetryAfter)
		}
		if !sleepUntil(ctx, retryAt) {
			return
		}
	}
	if !won {
		log.Info("scheduled " + b.o.Job + " skipped: another manager holds the cluster's lock or has claimed the slot")
		return
	}
	if b.o.Sweep != nil {
		swept, err := b.o.Sweep(ctx, b.o.Cluster)
		for _, e := range swept {
			log.Warn("a backup left running by a dead run is marked failed and its partial files removed", "id", e.ID, "reason", e.Error)
		}
		if err != nil {
			log.Error("look for backups left running", "err", err)
		}
	}
	for attempt := 1; ; attempt++ {
		alog := log.With("attempt", attempt)
		start := time.Now()
		e, reason, cause := b.attempt(ctx, alog)
		status := backup.Done
		if reason != "" {
			status = backup.Failed
		}
		attrs := []any{"id", e.ID, "source", e.Source, "status", status, "bytes", e.Bytes, "compressed_bytes", e.CompressedBytes,
			"seconds", time.Since(start).Seconds()}
		if reason == "" {
			alog.Info("scheduled "+b.o.Job+" done", attrs...)
			return
		}
		attrs = append(attrs, "reason", reason)
		if cause != nil && !strings.Contains(reason, cause.Error()) {
			attrs = append(attrs, "cause", cause.Error())
		}
		stopping := ctx.Err() != nil
		retry := backup.Retry(attempt, stopping)
		if stopping {
			alog.Warn("scheduled "+b.o.Job+" cut short: the daemon is stopping", attrs...)
		} else {
			alog.Error("scheduled "+b.o.Job+" failed", append(attrs, "retry", retry)...)
		}
		if !stopping && !retry && b.o.Alerts != nil {
			level := b.o.FailedLevel
			if level == "" {
				level = checks.Warning
			}
			b.o.Alerts.Notify(alert.Event{Status: alert.Firing, Cluster: b.o.Cluster.Name, Code: checks.BackupFailed, Level: level,
				Instance: e.Source, Summary: fmt.Sprintf("scheduled %s of slot %s failed after %d attempts: %s", b.o.Job, slot.Time, attempt, reason),
				StartsAt: start, EndsAt: time.Now(), Manager: b.o.Manager})
		}
		if !retry || !sleepUntil(ctx, time.Now().Add(b.o.RetryAfter)) {
			return
		}
	}
}

// attempt runs the backup once under a watch of the primary, and returns
// the entry, why it failed ("" when it did not) and why it was cancelled
// (nil when it was not).
func (b *BackupScheduler) attempt(ctx context.Context, log *slog.Logger) (backup.Entry, string, error) {
	runCtx, cancel := context.WithCancelCause(ctx)
	// The primary is read before the run starts, so that a failover
	// during the run is never taken for the starting point.
	primary := b.o.Primary.Primary(b.o.Cluster.Name)
	var watch sync.WaitGroup
	watch.Go(func() { b.watchPrimary(runCtx, cancel, primary) })
	log.Info("scheduled "+b.o.Job+" started", "primary", primary)
	progress := &progressLog{log: log, every: b.o.ProgressEvery}
	e, err := b.o.Run(runCtx, b.o.Cluster, progress)
	cause := context.Cause(runCtx) // nil unless the run was cancelled
	cancel(nil)
	watch.Wait()
	reason := backup.FailureReason(e, err)
	b.o.Stats.record(b.o.Cluster.Name, reason == "", time.Now())
	if b.o.AfterRun != nil {
		b.o.AfterRun(ctx)
	}
	return e, reason, cause
}

// watchPrimary cancels the run, with ErrFailover as the cause, when the
// monitor sees another primary: the source was chosen from a topology that
// is gone (a replica of the old primary, or now the new primary itself).
// was is the primary when the run started. It returns when ctx ends.
func (b *BackupScheduler) watchPrimary(ctx context.Context, cancel context.CancelCauseFunc, was string) {
	name := b.o.Cluster.Name
	t := time.NewTicker(b.o.WatchEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := b.o.Primary.Primary(name)
		switch {
		case was == "":
			was = now // the monitor had not seen the cluster yet
		case now != "" && now != was:
			cancel(fmt.Errorf("%w: primary moved from %s to %s during the backup", ErrFailover, was, now))
			return
		}
	}
}

// sleepUntil waits until t and reports false when ctx ended first.
func sleepUntil(ctx context.Context, t time.Time) bool {
	timer := time.NewTimer(time.Until(t))
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-timer.C:
		return true
	}
}

// progressLog logs a backup tool's progress, one record per line (split at
// \n and \r, which pg_basebackup uses on a terminal), at most one every
// every.
type progressLog struct {
	log   *slog.Logger
	every time.Duration

	mu      sync.Mutex
	partial []byte
	last    time.Time
}

// maxLine bounds what is kept of a line that never ends.
const maxLine = 4096

func (p *progressLog) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.partial = append(p.partial, b...)
	for {
		i := bytes.IndexAny(p.partial, "\r\n")
		if i < 0 && len(p.partial) < maxLine {
			return len(b), nil
		}
		if i < 0 {
			i = len(p.partial) - 1
		}
		line := strings.TrimSpace(string(p.partial[:i+1]))
		p.partial = p.partial[i+1:]
		if now := time.Now(); line != "" && (p.last.IsZero() || now.Sub(p.last) >= p.every) {
			p.last = now
			p.log.Info("backup progress", "line", line)
		}
	}
}
