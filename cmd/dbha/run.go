package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"

	"github.com/spf13/cobra"

	"github.com/dbha/dbha/binlog"
	"github.com/dbha/dbha/config"
	"github.com/dbha/dbha/consul"
	"github.com/dbha/dbha/daemon"
)

func newRunCmd(g *globalFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "run",
		Short: "Watch every cluster continuously: probes, analysis, HTTP API and metrics",
		Long: `run probes every configured cluster along every path (dbha's own probes, each
replica's link to the primary, peer managers through Consul, an optional
check command) every checks.interval, logs findings as JSON lines when they
appear and when they clear, and serves the HTTP API and Prometheus metrics on
http.listen. It runs until interrupted.`,
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
			m, closeAll, err := newMonitor(cmd.Context(), cfg, cfg.Clusters, streams, true, log)
			if err != nil {
				return err
			}
			defer closeAll()
			return runDaemon(cmd.Context(), cfg, m, streams, log)
		},
	}
}

// runDaemon runs the monitor and, when configured, the HTTP endpoint until
// ctx ends.
func runDaemon(ctx context.Context, cfg config.Config, m *daemon.Monitor, streams map[string]stream, log *slog.Logger) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var httpErr error
	var wg sync.WaitGroup
	if cfg.HTTP.Listen != "" {
		token, err := readSecret(cfg.HTTP.Token())
		if err != nil {
			return usageError(fmt.Errorf("http token: %w", err))
		}
		wg.Go(func() {
			httpErr = daemon.Serve(ctx, cfg.HTTP.Listen, daemon.Handler(m, token), func(a net.Addr) {
				log.Info("http listening", "addr", a.String())
			})
			cancel() // a dead endpoint stops the daemon rather than hiding
		})
	}
	for name, s := range streams {
		wg.Go(func() { keepRunning(ctx, s.Run, log.With("cluster", name)) })
	}
	log.Info("dbha run started", "clusters", len(cfg.Clusters), "streams", len(streams), "interval", cfg.Checks.Interval.String())
	m.Run(ctx)
	wg.Wait()
	if httpErr != nil && !errors.Is(httpErr, context.Canceled) {
		return httpErr
	}
	return nil
}

// newMonitor wires the monitor: one prober per cluster, and Consul for
// peer observations when it answers (without it the other paths still
// decide; no peer is then no evidence either way). With recover set, and
// Consul there for the lock, the monitor also recovers dead primaries and
// fences stray writers.
func newMonitor(ctx context.Context, cfg config.Config, clusters []config.Cluster, streams map[string]stream, recover bool, log *slog.Logger) (*daemon.Monitor, func(), error) {
	var closers []func()
	closeAll := func() {
		for _, c := range closers {
			c()
		}
	}
	opts := daemon.Options{
		Manager: managerName(cfg), Interval: cfg.Checks.Interval, ProbeTimeout: cfg.Probe.Timeout,
		Policy: cfg.Checks.Policy, ExternalTimeout: cfg.Checks.ExternalTimeout, ExternalInterval: cfg.Checks.ExternalInterval,
		Logger: log,
	}
	for _, cl := range clusters {
		p, closeFn, err := newProber(cl)
		if err != nil {
			closeAll()
			return nil, nil, err
		}
		closers = append(closers, func() { closeFn() })
		dc := daemon.Cluster{Config: cl, Prober: p}
		if s, ok := streams[cl.Name]; ok {
			dc.Stream = func() *binlog.Status { st := s.Status(); return &st }
		}
		opts.Clusters = append(opts.Clusters, dc)
	}
	c, err := newConsul(ctx, cfg)
	switch {
	case err != nil && recover:
		log.Warn("consul unavailable: deciding without peer managers, and no automatic failover (it needs the cluster lock)", "err", err)
	case err != nil:
		log.Warn("consul unavailable: deciding without peer managers", "err", err)
	default:
		opts.Peers = c
		if recover {
			r, closeRec, err := newRecoverer(ctx, cfg, clusters, c, log)
			if err != nil {
				closeAll()
				return nil, nil, err
			}
			closers = append(closers, closeRec)
			opts.Recoverer = r
		}
	}
	return daemon.New(opts), closeAll, nil
}

func newConsul(ctx context.Context, cfg config.Config) (*consul.Client, error) {
	token := ""
	if t := cfg.Consul.Token(); t.File != "" || t.Env != "" {
		var err error
		if token, err = readSecret(t); err != nil {
			return nil, usageError(fmt.Errorf("consul token: %w", err))
		}
	}
	c, err := consul.New(cfg.Consul.Address, token)
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
