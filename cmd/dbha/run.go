package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"

	"github.com/dbha/dbha/alert"
	"github.com/dbha/dbha/backup"
	"github.com/dbha/dbha/binlog"
	"github.com/dbha/dbha/checks"
	"github.com/dbha/dbha/config"
	"github.com/dbha/dbha/consul"
	"github.com/dbha/dbha/daemon"
	"github.com/dbha/dbha/promote"
	"github.com/dbha/dbha/schedule"
	"github.com/dbha/dbha/tlsconfig"
)

func newRunCmd(g *globalFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "run",
		Short: "Watch every cluster continuously: probes, analysis, HTTP API and metrics",
		Long: `run probes every configured cluster along every path (dbha's own probes, each
replica's link to the primary, peer managers through Consul, an optional
check command) every checks.interval, logs findings as JSON lines when they
appear and when they clear, and serves the HTTP API and Prometheus metrics on
http.listen (HTTPS only with http.tls). It runs until interrupted.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := g.load()
			if err != nil {
				return err
			}
			log := slog.New(slog.NewJSONHandler(cmd.ErrOrStderr(), nil))
			streams, err := newStreams(cfg, cfg.Clusters, log)
			if err != nil {
				return err
			}
			alerts, err := newNotifier(cfg, log)
			if err != nil {
				return err
			}
			side := &daemonSide{catalogs: newCatalogWatches(cfg, log), alerts: alerts, flags: g}
			m, closeAll, err := newMonitor(cmd.Context(), g, cfg, cfg.Clusters, streams, side, true, log)
			if err != nil {
				return err
			}
			defer closeAll()
			return runDaemon(cmd.Context(), cfg, m, streams, side, backupClaimer(cmd.Context(), cfg, log), log)
		},
	}
}

// daemonSide is what `dbha run` adds to a monitor beyond the streams: the
// watches of the backup catalogs and the notifier.
type daemonSide struct {
	catalogs map[string]*daemon.CatalogWatch
	alerts   *alert.Notifier
	flags    *globalFlags // for the console's switchovers; nil: the console acts on nothing
}

// runDaemon runs the monitor, the change streams, the side (nil for
// none), the scheduled backups (when claims is not nil) and, when
// configured, the HTTP endpoint until ctx ends.
func runDaemon(ctx context.Context, cfg config.Config, m *daemon.Monitor, streams map[string]heldStream, side *daemonSide, claims daemon.SlotClaimer, log *slog.Logger) error {
	if side == nil {
		side = &daemonSide{}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stats := daemon.NewBackupStats()
	var schedulers []*daemon.BackupScheduler
	if claims != nil {
		var err error
		if schedulers, err = newBackupSchedulers(cfg, m, claims, stats, side, log); err != nil {
			return err
		}
	}
	var httpErr error
	var wg sync.WaitGroup
	if cfg.HTTP.Listen != "" {
		token, err := readSecret(cfg.HTTP.Token())
		if err != nil {
			return usageError(fmt.Errorf("http token: %w", err))
		}
		collectors := []prometheus.Collector{stats}
		if side.alerts != nil {
			collectors = append(collectors, side.alerts)
		}
		handler, err := withConsole(side.flags, cfg, m, daemon.Handler(m, token, collectors...), token, schedulers, log)
		if err != nil {
			return err
		}
		ep, err := httpEndpoint(cfg.HTTP, log)
		if err != nil {
			return err
		}
		wg.Go(func() {
			httpErr = daemon.Serve(ctx, ep, handler, func(a net.Addr) {
				log.Info("http listening", "addr", a.String(), "tls", ep.TLS != nil, "mutual_tls", cfg.HTTP.TLS.ClientCAFile != "")
			})
			cancel() // a dead endpoint stops the daemon rather than hiding
		})
	}
	for name, s := range streams {
		wg.Go(func() { keepRunning(ctx, s.Run, log.With("cluster", name)) })
	}
	for _, s := range schedulers {
		wg.Go(func() { s.Run(ctx) })
	}
	for _, c := range side.catalogs {
		wg.Go(func() { c.Run(ctx) })
	}
	if side.alerts != nil {
		wg.Go(func() { side.alerts.Run(ctx) })
	}
	for _, cl := range cfg.Clusters {
		if _, held := streams[cl.Name]; held && cl.Backup.IsArchiveStream() {
			wg.Go(func() { archiveStream(ctx, cfg, cl, log.With("cluster", cl.Name)) })
		}
	}
	log.Info("dbha run started", "clusters", len(cfg.Clusters), "streams", len(streams), "schedules", len(schedulers),
		"interval", cfg.Checks.Interval.String())
	m.Run(ctx)
	wg.Wait()
	if httpErr != nil && !errors.Is(httpErr, context.Canceled) {
		return httpErr
	}
	return nil
}

// httpEndpoint is where and how `dbha run` serves its endpoint: HTTPS
// only when http.tls is set (a certificate that cannot be loaded stops
// the daemon here; it never serves plain HTTP instead), plain HTTP
// otherwise.
func httpEndpoint(h config.HTTP, log *slog.Logger) (daemon.Endpoint, error) {
	ep := daemon.Endpoint{Addr: h.Listen, Log: log.With("component", "http")}
	if !h.TLS.IsEnabled() {
		return ep, nil
	}
	tc, err := tlsconfig.Server(h.TLS.Files())
	if err != nil {
		return ep, usageError(fmt.Errorf("http.tls: %w", err))
	}
	ep.TLS = tc
	return ep, nil
}

// newMonitor wires the monitor: one prober per cluster, and Consul for
// peer observations when it answers (without it the other paths still
// decide; no peer is then no evidence either way). With recover set, and
// Consul there for the lock, the monitor also recovers dead primaries and
// fences stray writers.
func newMonitor(ctx context.Context, g *globalFlags, cfg config.Config, clusters []config.Cluster, streams map[string]heldStream, side *daemonSide, recover bool, log *slog.Logger) (*daemon.Monitor, func(), error) {
	if side == nil {
		side = &daemonSide{}
	}
	levels, err := cfg.Alerts.LevelMap()
	if err != nil {
		return nil, nil, usageError(fmt.Errorf("alerts.levels: %w", err))
	}
	var closers []func()
	closeAll := func() {
		for _, c := range closers {
			c()
		}
	}
	opts := daemon.Options{
		Manager: managerName(cfg), Members: cfg.Manager.Members, Interval: cfg.Checks.Interval, ProbeTimeout: cfg.Probe.Timeout,
		Policy: cfg.Checks.Policy, ExternalTimeout: cfg.Checks.ExternalTimeout, ExternalInterval: cfg.Checks.ExternalInterval,
		Logger: log, Levels: levels,
	}
	if side.alerts != nil {
		opts.Alerts = side.alerts
	}
	c, err := newConsul(ctx, cfg)
	switch {
	case err != nil && recover:
		log.Warn("consul unavailable: deciding without peer managers, and no automatic failover (it needs the cluster lock)", "err", err)
	case err != nil:
		log.Warn("consul unavailable: deciding without peer managers", "err", err)
	default:
		opts.Peers, opts.Pauses, opts.Endpoints, opts.Consistency = c, c, c, c
	}
	for _, cl := range clusters {
		p, closeFn, err := newProber(cl)
		if err != nil {
			closeAll()
			return nil, nil, err
		}
		closers = append(closers, func() { closeFn() })
		dc := daemon.Cluster{Config: cl, Prober: p}
		var cut promote.Streams // the cluster's recoveries cut its stream here from a lost primary
		if s, ok := streams[cl.Name]; ok {
			dc.Stream = func() *binlog.Status { st := s.Status(); return &st }
			cut = s.hold
		}
		if c, ok := side.catalogs[cl.Name]; ok {
			dc.Backups = c.View
		}
		if recover && opts.Peers != nil {
			k, closeKeeper, err := newKeeper(g, cfg, cl, c, cut, log)
			if err != nil {
				closeAll()
				return nil, nil, err
			}
			closers = append(closers, closeKeeper)
			dc.Keeper = k
		}
		opts.Clusters = append(opts.Clusters, dc)
	}
	return daemon.New(opts), closeAll, nil
}

// newCatalogWatches watches the backup catalog of every cluster that dbha
// run backs up or reverifies, so that a backup that no longer verifies is
// a finding. The repository is opened at the first reading, and again
// after one that failed (an S3 client checks its bucket when made).
func newCatalogWatches(cfg config.Config, log *slog.Logger) map[string]*daemon.CatalogWatch {
	out := map[string]*daemon.CatalogWatch{}
	for _, cl := range cfg.Clusters {
		if cl.Backup.Schedule == "" && cl.Backup.Reverify == "" {
			continue
		}
		var mu sync.Mutex
		var repo *backup.Repository
		list := func(ctx context.Context) ([]backup.Entry, error) {
			mu.Lock()
			defer mu.Unlock()
			if repo == nil {
				r, err := openRepository(ctx, cl)
				if err != nil {
					return nil, err
				}
				repo = &r
			}
			entries, err := backup.List(ctx, *repo, cl.Name)
			if err != nil && len(entries) == 0 {
				repo = nil
			}
			return entries, err
		}
		out[cl.Name] = daemon.NewCatalogWatch(list, time.Minute, log.With("cluster", cl.Name))
	}
	return out
}

// backupClaimer is what makes one manager run each scheduled backup:
// Consul, for the cluster's lock and the slot records. Without it no
// scheduled backup runs, since every manager would run each one.
func backupClaimer(ctx context.Context, cfg config.Config, log *slog.Logger) daemon.SlotClaimer {
	if !slices.ContainsFunc(cfg.Clusters, func(cl config.Cluster) bool {
		return cl.Backup.Schedule != "" || cl.Backup.Reverify != "" || cl.Checksum.Schedule != ""
	}) {
		return nil
	}
	c, err := newConsul(ctx, cfg)
	if err != nil {
		log.Warn("consul unavailable: scheduled backups and checks wait for it (without the cluster lock every manager would run them)", "err", err)
		return &lateClaimer{lazyConsul{cfg: cfg}}
	}
	return c
}

// lateClaimer connects to Consul at a claim, and again at each claim
// until it succeeds: Consul out of reach when dbha run starts delays the
// scheduled backups, never disables them.
type lateClaimer struct{ lazyConsul }

func (l *lateClaimer) ClaimBackupSlot(ctx context.Context, cluster string, slot time.Time, owner string) (bool, error) {
	c, err := l.get(ctx)
	if err != nil {
		return false, err
	}
	return c.ClaimBackupSlot(ctx, cluster, slot, owner)
}

// lazyConsul connects to Consul at its first use, and again at each use
// until it succeeds; then it keeps the client.
type lazyConsul struct {
	cfg config.Config
	mu  sync.Mutex
	c   *consul.Client
}

func (l *lazyConsul) get(ctx context.Context) (*consul.Client, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.c == nil {
		c, err := newConsul(ctx, l.cfg)
		if err != nil {
			return nil, err
		}
		l.c = c
	}
	return l.c, nil
}

// newBackupSchedulers builds one scheduler per cluster with a
// backup.schedule; each backup is runBackup's, as `dbha backup run` takes
// it, with the tool's progress in the daemon's log.
func newBackupSchedulers(cfg config.Config, m *daemon.Monitor, claims daemon.SlotClaimer, stats *daemon.BackupStats, side *daemonSide, log *slog.Logger) ([]*daemon.BackupScheduler, error) {
	var out []*daemon.BackupScheduler
	levels, err := cfg.Alerts.LevelMap()
	if err != nil {
		return nil, usageError(fmt.Errorf("alerts.levels: %w", err))
	}
	var alerts daemon.Notifier
	if side.alerts != nil {
		alerts = side.alerts
	}
	for _, cl := range cfg.Clusters {
		var afterRun func(context.Context)
		if c, ok := side.catalogs[cl.Name]; ok {
			afterRun = c.Refresh
		}
		if cl.Backup.Reverify != "" {
			spec, err := schedule.Parse(cl.Backup.Reverify, cl.Backup.Jitter)
			if err != nil {
				return nil, usageError(fmt.Errorf("cluster %s: backup.reverify: %w", cl.Name, err))
			}
			out = append(out, daemon.NewBackupScheduler(daemon.BackupOptions{
				Cluster: cl, Schedule: spec, Manager: managerName(cfg), Claimer: claims, Primary: m, Logger: log, Job: "reverify", AfterRun: afterRun,
				Alerts: alerts, FailedLevel: levels[checks.BackupFailed],
				Run: func(ctx context.Context, cl config.Cluster, progress io.Writer) (backup.Entry, error) {
					return reverifyOldest(ctx, cfg, cl, progress, log.With("cluster", cl.Name))
				},
			}))
		}
		if cl.Checksum.Schedule != "" {
			out = append(out, checksumScheduler(cfg, cl, m, claims, log))
		}
		if cl.Backup.Schedule == "" {
			continue
		}
		sched, err := schedule.Parse(cl.Backup.Schedule, cl.Backup.Jitter)
		if err != nil {
			return nil, usageError(fmt.Errorf("cluster %s: backup.schedule: %w", cl.Name, err))
		}
		out = append(out, daemon.NewBackupScheduler(daemon.BackupOptions{
			Cluster: cl, Schedule: sched, Manager: managerName(cfg), Claimer: claims, Primary: m, Stats: stats, Logger: log, AfterRun: afterRun,
			Alerts: alerts, FailedLevel: levels[checks.BackupFailed],
			Sweep: func(ctx context.Context, cl config.Cluster) ([]backup.Entry, error) {
				repo, err := openRepository(ctx, cl)
				if err != nil {
					return nil, err
				}
				return backup.Sweep(ctx, repo, cl.Name, time.Now())
			},
			Run: func(ctx context.Context, cl config.Cluster, progress io.Writer) (backup.Entry, error) {
				e, err := runBackup(ctx, cfg, cl, "", progress)
				if err == nil && e.Status == backup.Done && cl.Backup.IsVerify() {
					e = verifyAndPrune(ctx, cfg, cl, e, progress, log.With("cluster", cl.Name))
				}
				return e, err
			},
		}))
	}
	return out, nil
}

// checksumScheduler runs the cluster's scheduled consistency checks: one
// manager per slot, cancelled when the primary moves, retried once. A
// difference is not a failure: the run is done, and its summary in Consul
// makes the finding.
func checksumScheduler(cfg config.Config, cl config.Cluster, m *daemon.Monitor, claims daemon.SlotClaimer, log *slog.Logger) *daemon.BackupScheduler {
	spec, _ := schedule.Parse(cl.Checksum.Schedule, 0) // validated with the configuration
	return daemon.NewBackupScheduler(daemon.BackupOptions{
		Cluster: cl, Schedule: spec, Manager: managerName(cfg), Claimer: claims, Primary: m, Logger: log, Job: "checksum",
		Run: func(ctx context.Context, cl config.Cluster, progress io.Writer) (backup.Entry, error) {
			o := checksumOptions(cl)
			o.Progress = progress
			r, err := checksumOnce(ctx, cfg, cl, o)
			e := backup.Entry{ID: "checksum", Cluster: cl.Name, Source: r.Primary, Status: backup.Done}
			if err != nil {
				e.Status, e.Error = backup.Failed, err.Error()
				return e, err
			}
			log.Info("consistency check done", "cluster", cl.Name, "tables", len(r.Tables), "differences", r.Differences(), "complete", r.Complete(),
				"seconds", r.Finished.Sub(r.Started).Seconds())
			return e, nil
		},
	})
}

// reverifyOldest verifies again the done backup whose last verification
// is the oldest (one never verified first). A backup that no longer
// verifies is logged as an error, recorded in the catalog, and returned as
// failed (the scheduler tries once more, then reports it).
func reverifyOldest(ctx context.Context, cfg config.Config, cl config.Cluster, progress io.Writer, log *slog.Logger) (backup.Entry, error) {
	repo, err := openRepository(ctx, cl)
	if err != nil {
		return backup.Entry{}, err
	}
	entries, err := backup.List(ctx, repo, cl.Name)
	if err != nil && len(entries) == 0 {
		return backup.Entry{}, err
	}
	e, ok := backup.Oldest(entries)
	if !ok {
		log.Info("reverify: no done backup to verify")
		return backup.Entry{Status: backup.Done}, nil
	}
	owner, err := backupOwner(cl)
	if err != nil {
		return e, err
	}
	meter := backup.NewMeter(progress, "reverify "+e.ID, e.CompressedBytes)
	e, err = backup.Verify(ctx, repo, e, backup.VerifyOptions{
		Scratch: cl.Backup.ScratchDir, Owner: owner, Roles: backupRoles(cl), Progress: meter.Add, Store: pitrStore(cfg, cl)})
	meter.Finish()
	if err != nil {
		log.Error("a backup no longer verifies", "id", e.ID, "err", err)
		return e, err
	}
	log.Info("backup verified again", "id", e.ID, "seconds", e.Verification.Seconds, "detail", e.Verification.Detail)
	return e, nil
}

// verifyAndPrune verifies a scheduled backup that was just taken, so that
// reseeds and retention can count on it, and then applies the catalog's
// retention. Failures are logged: the backup itself is done.
func verifyAndPrune(ctx context.Context, cfg config.Config, cl config.Cluster, e backup.Entry, progress io.Writer, log *slog.Logger) backup.Entry {
	owner, err := backupOwner(cl)
	if err != nil {
		log.Error("scheduled backup not verified", "id", e.ID, "err", err)
		return e
	}
	repo, err := openRepository(ctx, cl)
	if err != nil {
		log.Error("scheduled backup not verified", "id", e.ID, "err", err)
		return e
	}
	meter := backup.NewMeter(progress, "verify "+e.ID, e.CompressedBytes)
	e, err = backup.Verify(ctx, repo, e, backup.VerifyOptions{
		Scratch: cl.Backup.ScratchDir, Owner: owner, Roles: backupRoles(cl), Progress: meter.Add, Store: pitrStore(cfg, cl)})
	meter.Finish()
	if err != nil {
		log.Error("scheduled backup failed its verification", "id", e.ID, "err", err)
		return e
	}
	log.Info("scheduled backup verified", "id", e.ID, "seconds", e.Verification.Seconds, "detail", e.Verification.Detail)
	deleted, err := backup.PruneRepository(ctx, repo, cl.Name, backup.Retention{Keep: cl.Backup.Keep, MaxAge: cl.Backup.MaxAge}, time.Now())
	if err != nil {
		log.Error("prune the backup catalog", "err", err)
	}
	if len(deleted) > 0 {
		log.Info("backups pruned", "deleted", deleted)
	}
	return e
}

func newConsul(ctx context.Context, cfg config.Config) (*consul.Client, error) {
	c, err := consulClient(cfg)
	if err != nil {
		return nil, err
	}
	if err := c.Ping(ctx); err != nil {
		return nil, fmt.Errorf("consul at %s: %w", cfg.Consul.Address, err)
	}
	return c, nil
}

// managerName is manager.name, else the host name.
func managerName(cfg config.Config) string {
	if cfg.Manager.Name != "" {
		return cfg.Manager.Name
	}
	if h, err := os.Hostname(); err == nil {
		return h
	}
	return "dbha"
}

// archiveStream copies the cluster's change-stream store into its backup
// repository every 30 seconds until ctx ends (backup.archive_stream). A
// repository out of reach is tried again each minute.
func archiveStream(ctx context.Context, cfg config.Config, cl config.Cluster, log *slog.Logger) {
	for {
		repo, err := openRepository(ctx, cl)
		if err == nil {
			log.Info("archiving the change-stream store", "repository", repo.String())
			a := &backup.Archiver{Repo: repo, Cluster: cl.Name, Dir: binlog.Dir(cfg.StateDir, cl.Name), Log: log}
			a.Run(ctx, 30*time.Second)
			return
		}
		log.Warn("the backup repository is out of reach: the change-stream store is not archived yet", "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Minute):
		}
	}
}
