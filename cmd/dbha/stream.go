package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/dbha/dbha/backup"
	"github.com/dbha/dbha/binlog"
	mysqlstream "github.com/dbha/dbha/binlog/mysql"
	pgstream "github.com/dbha/dbha/binlog/postgres"
	"github.com/dbha/dbha/config"
	"github.com/dbha/dbha/topology"
)

func newStreamCmd(g *globalFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "stream",
		Short: "dbha's own copy of each primary's binlog or WAL",
		Long: `stream runs and inspects dbha's change streams: a replication client of each
cluster's primary that keeps its binlog (MariaDB/MySQL) or WAL (PostgreSQL)
under state_dir/streams/<cluster>, so that dbha knows positions and lag and
holds the events a replica may lack. ` + "`dbha run`" + ` runs the streams too.`,
	}
	cmd.AddCommand(newStreamRunCmd(g), newStreamStatusCmd(g), newStreamEventsCmd(g), newStreamResetCmd(g))
	return cmd
}

func newStreamRunCmd(g *globalFlags) *cobra.Command {
	var cluster string
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Run the change streams in the foreground until interrupted",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := g.load()
			if err != nil {
				return err
			}
			clusters, err := selectClusters(cfg, cluster)
			if err != nil {
				return err
			}
			log := slog.New(slog.NewJSONHandler(cmd.ErrOrStderr(), nil))
			return runStreams(cmd.Context(), cfg, clusters, log)
		},
	}
	cmd.Flags().StringVar(&cluster, "cluster", "", "only this cluster")
	return cmd
}

// stream is a change stream of either engine.
type stream interface {
	Run(ctx context.Context) error
	Status() binlog.Status
}

// heldStream is a cluster's stream and the hold through which the
// cluster's recoveries, in this process, cut it from a lost primary.
type heldStream struct {
	stream
	hold *binlog.Hold
}

// runStreams runs one stream per enabled cluster until ctx ends. A broken
// stream is logged and retried every minute (an operator may have fixed
// it); the others keep running.
func runStreams(ctx context.Context, cfg config.Config, clusters []config.Cluster, log *slog.Logger) error {
	streams, err := newStreams(cfg, clusters, log)
	if err != nil {
		return err
	}
	if len(streams) == 0 {
		return usageError(errors.New("no cluster has its stream enabled"))
	}
	var wg sync.WaitGroup
	for name, s := range streams {
		wg.Go(func() { keepRunning(ctx, s.Run, log.With("cluster", name)) })
	}
	wg.Wait()
	return nil
}

// newStreams builds the stream of every cluster that has it enabled.
func newStreams(cfg config.Config, clusters []config.Cluster, log *slog.Logger) (map[string]heldStream, error) {
	out := map[string]heldStream{}
	for _, cl := range clusters {
		if !cl.Stream.IsEnabled() {
			log.Info("stream disabled", "cluster", cl.Name)
			continue
		}
		hold := binlog.NewHold()
		s, err := newStream(cfg, cl, hold, log) // the stream adds the cluster to its logs itself
		if err != nil {
			return nil, err
		}
		out[cl.Name] = heldStream{stream: s, hold: hold}
	}
	return out, nil
}

func keepRunning(ctx context.Context, run func(context.Context) error, log *slog.Logger) {
	for {
		err := run(ctx)
		if ctx.Err() != nil {
			return
		}
		log.Error("stream stopped; retrying in a minute", "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Minute):
		}
	}
}

// newStream wires one cluster's stream: its engine, credentials, a view
// of the topology that tells it the primary, and the hold a recovery cuts
// it through.
func newStream(cfg config.Config, cl config.Cluster, hold *binlog.Hold, log *slog.Logger) (stream, error) {
	password, err := readSecret(cl.Password())
	if err != nil {
		return nil, usageError(fmt.Errorf("cluster %s: %w", cl.Name, err))
	}
	view, _, err := newClusterView(cfg, cl) // the stream keeps its view, and its probers' connections, until the process ends
	if err != nil {
		return nil, err
	}
	dir := binlog.Dir(cfg.StateDir, cl.Name)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("cluster %s: stream store: %w", cl.Name, err)
	}
	retention := binlog.Retention{MaxAge: cl.Stream.Retention.MaxAge, MaxSize: int64(cl.Stream.Retention.MaxSize)}
	keep := view.ReplicaPositions
	if cl.Stream.Retention.IsKeepBackups() {
		k := &backupKeeper{cl: cl, store: dir, maxSize: retention.MaxSize, log: log.With("cluster", cl.Name)}
		keep = func(ctx context.Context) ([]topology.Position, error) {
			ps, err := view.ReplicaPositions(ctx)
			if err != nil {
				return nil, err
			}
			if p := k.position(ctx); !p.IsZero() {
				ps = append(ps, p)
			}
			return ps, nil
		}
	}
	switch cl.Engine {
	case topology.MariaDB, topology.MySQL:
		return mysqlstream.New(mysqlstream.Config{
			Cluster: cl.Name, Dir: dir, User: cl.User, Password: password, TLS: cl.TLS.Settings(),
			ServerID: cl.Stream.ServerID, Flavor: string(cl.Engine), SemiSync: cl.Stream.SemiSync,
			Heartbeat: cfg.Checks.Heartbeat, Primary: view.Primary, KeepFor: keep, Retention: retention, Hold: hold, Logger: log,
		})
	case topology.Postgres:
		return pgstream.New(pgstream.Config{
			Cluster: cl.Name, Dir: dir, User: cl.User, Password: password, TLS: cl.TLS.Settings(),
			Slot: cl.Stream.Slot, Synchronous: cl.Stream.Synchronous,
			Primary: view.Primary, KeepFor: keep, Retention: retention, Hold: hold, Logger: log,
		})
	}
	return nil, usageError(fmt.Errorf("cluster %s: unknown engine %q", cl.Name, cl.Engine))
}

// newClusterView builds the view a stream of cl asks about its cluster,
// discovering with cl's probers; closeView releases their connections.
func newClusterView(cfg config.Config, cl config.Cluster) (view *binlog.ClusterView, closeView func() error, err error) {
	p, closeFn, err := newProber(cl)
	if err != nil {
		return nil, nil, err
	}
	discover := func(ctx context.Context) topology.Snapshot {
		return topology.Discover(ctx, cl.Topology(), p, cfg.Probe.Timeout)
	}
	return binlog.NewClusterView(discover), closeFn, nil
}

// openStore opens a cluster's stream store for reading.
func openStore(cfg config.Config, cl config.Cluster) (binlog.Store, error) {
	dir := binlog.Dir(cfg.StateDir, cl.Name)
	if cl.Engine == topology.Postgres {
		return pgstream.OpenStore(dir)
	}
	return mysqlstream.OpenStore(dir)
}

// streamReport is one cluster's line in `dbha stream status`.
type streamReport struct {
	Cluster  string         `json:"cluster"`
	Status   *binlog.Status `json:"status"`
	Running  bool           `json:"running"` // the status was written in the last few seconds
	Error    string         `json:"error,omitempty"`
	Replicas []replicaLag   `json:"replicas"`
}

type replicaLag struct {
	Addr     string            `json:"addr"`
	Position topology.Position `json:"position"`
	Lag      *binlog.Lag       `json:"lag,omitempty"`
	Error    string            `json:"error,omitempty"`
}

func newStreamStatusCmd(g *globalFlags) *cobra.Command {
	var cluster, output string
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show each stream: connected, primary followed, position held, lag per replica",
		Long: `status reads what each running stream last published, and measures every
replica's lag against what the stream holds. Exit status 1 when a stream is
not running, broken or disconnected.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, clusters, err := g.loadClusters(output, cluster)
			if err != nil {
				return err
			}
			reports := make([]streamReport, len(clusters))
			var wg sync.WaitGroup
			for i, cl := range clusters {
				wg.Go(func() { reports[i] = reportStream(cmd.Context(), cfg, cl, time.Now()) })
			}
			wg.Wait()
			if err := writeStreamReports(cmd.OutOrStdout(), reports, output); err != nil {
				return err
			}
			for _, r := range reports {
				if !r.Running || r.Status == nil || !r.Status.Connected || r.Status.Broken != "" {
					return &exitError{code: exitProblems, err: errProblemsFound}
				}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&cluster, "cluster", "", "only this cluster")
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	return cmd
}

func reportStream(ctx context.Context, cfg config.Config, cl config.Cluster, now time.Time) streamReport {
	r := streamReport{Cluster: cl.Name, Replicas: []replicaLag{}}
	st, err := binlog.ReadStatus(binlog.Dir(cfg.StateDir, cl.Name))
	if err != nil {
		r.Error = err.Error()
		return r
	}
	r.Status, r.Running = &st, !st.Stale(now)
	store, err := openStore(cfg, cl)
	if err != nil {
		r.Error = err.Error()
		return r
	}
	view, closeView, err := newClusterView(cfg, cl)
	if err != nil {
		r.Error = err.Error()
		return r
	}
	defer closeView()
	for _, in := range view.Discover(ctx).Instances {
		if in.Role != topology.RoleReplica {
			continue
		}
		rl := replicaLag{Addr: in.Addr, Position: binlog.ReplicaPosition(in)}
		if !in.Reachable {
			rl.Error = in.Error
		} else if lag, err := store.Lag(rl.Position, now); err != nil {
			rl.Error = err.Error()
		} else {
			rl.Lag = &lag
		}
		r.Replicas = append(r.Replicas, rl)
	}
	return r
}

func writeStreamReports(w io.Writer, reports []streamReport, format string) error {
	if format == "json" {
		return writeJSON(w, map[string]any{"streams": reports})
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, r := range reports {
		writeStreamReport(tw, r)
	}
	return tw.Flush()
}

func writeStreamReport(w io.Writer, r streamReport) {
	if r.Status == nil {
		fmt.Fprintf(w, "%s\tno stream: %s\n", r.Cluster, r.Error)
		return
	}
	st := r.Status
	state := "disconnected"
	switch {
	case !r.Running:
		state = fmt.Sprintf("NOT RUNNING (status last written %s)", st.UpdatedAt.Format(time.RFC3339))
	case st.Broken != "":
		state = "BROKEN: " + st.Broken
	case st.Connected:
		state = "connected"
	}
	fmt.Fprintf(w, "%s\t%s since %s\tfollowing %s\n", r.Cluster, state, st.Since.Format(time.RFC3339), orNone(st.Primary))
	fmt.Fprintf(w, "  held\t%s\tlast event %s\treceived %d events, %s\tdisk %s\tacknowledging %v\n",
		orNone(st.Position.String()), formatTime(st.LastEventTime), st.Events, backup.HumanBytes(st.Bytes), backup.HumanBytes(st.DiskBytes), st.Acknowledging)
	if st.LastError != "" {
		fmt.Fprintf(w, "  last error\t%s\n", st.LastError)
	}
	if r.Error != "" {
		fmt.Fprintf(w, "  error\t%s\n", r.Error)
	}
	for _, rl := range r.Replicas {
		if rl.Lag == nil {
			fmt.Fprintf(w, "  replica %s\tlag unknown: %s\n", rl.Addr, rl.Error)
			continue
		}
		fmt.Fprintf(w, "  replica %s\tat %s\tlag %.1fs, %d trx, %s\n", rl.Addr, rl.Position, rl.Lag.Seconds, rl.Lag.Transactions, backup.HumanBytes(rl.Lag.Bytes))
	}
}

func newStreamEventsCmd(g *globalFlags) *cobra.Command {
	var cluster, since, output string
	var limit int
	cmd := &cobra.Command{
		Use:   "events --cluster C [--since POSITION]",
		Short: "List the transactions (MariaDB/MySQL) or WAL ranges (PostgreSQL) the stream holds",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, cl, err := g.loadCluster(output, cluster)
			if err != nil {
				return err
			}
			from, err := parseSince(cl.Engine, since)
			if err != nil {
				return usageError(fmt.Errorf("--since %q: %w", since, err))
			}
			store, err := openStore(cfg, cl)
			if err != nil {
				return err
			}
			txs, err := store.Transactions(from, limit)
			if err != nil {
				return err
			}
			return writeTransactions(cmd.OutOrStdout(), txs, output)
		},
	}
	cmd.Flags().StringVar(&cluster, "cluster", "", "the cluster (required)")
	cmd.Flags().StringVar(&since, "since", "", "only what comes after this GTID position (0-1-42) or LSN (0/3000000)")
	cmd.Flags().IntVar(&limit, "limit", 0, "at most this many (0: all)")
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	return cmd
}

// parseSince reads --since in the cluster's engine's terms.
func parseSince(engine topology.Engine, s string) (topology.Position, error) {
	switch {
	case s == "":
		return topology.Position{}, nil
	case engine == topology.Postgres:
		lsn, err := topology.ParseLSN(s)
		if err != nil {
			return topology.Position{}, err
		}
		return topology.PostgresAt(lsn, 0), nil
	case engine == topology.MySQL:
		return topology.ParseMySQL(s)
	}
	return topology.ParseMariaDB(s)
}

func writeTransactions(w io.Writer, txs []binlog.Transaction, format string) error {
	if format == "json" {
		if txs == nil {
			txs = []binlog.Transaction{}
		}
		return writeJSON(w, map[string]any{"transactions": txs})
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "POSITION\tTIME\tSIZE\tEVENTS\tFILE\tOFFSET")
	for _, t := range txs {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\t%d\n", t.Position, formatTime(t.Time), t.Size, t.Events, t.File, t.Offset)
	}
	return tw.Flush()
}

func newStreamResetCmd(g *globalFlags) *cobra.Command {
	var cluster string
	cmd := &cobra.Command{
		Use:   "reset --cluster C",
		Short: "Set a broken stream's store aside so the stream starts afresh from the primary's position",
		Long: `reset renames the cluster's store to <store>.reset-<time> (nothing is deleted)
so that the next stream run starts from the primary's current position.
Use it after a stream broke on binlogs or WAL the primary no longer has;
stop the stream first.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := g.load()
			if err != nil {
				return err
			}
			cl, err := requireCluster(cfg, cluster)
			if err != nil {
				return err
			}
			aside, err := binlog.SetAside(binlog.Dir(cfg.StateDir, cl.Name), time.Now())
			if err != nil {
				return fmt.Errorf("reset the stream of %s: %w", cl.Name, err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "store of %s moved to %s; the next run starts afresh\n", cl.Name, aside)
			return nil
		},
	}
	cmd.Flags().StringVar(&cluster, "cluster", "", "the cluster (required)")
	return cmd
}

func formatTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Local().Format("2006-01-02 15:04:05")
}

// backupKeeper tells the store's retention where the point-in-time window
// of the oldest backup in the repository starts, so that what a restore of
// it replays is kept. A backup the store no longer reaches back to is not
// counted (its window is gone and cannot come back; keeping from it would
// keep everything). When the catalog cannot be read, the last answer
// stands.
type backupKeeper struct {
	cl      config.Cluster
	store   string
	maxSize int64
	log     *slog.Logger

	mu     sync.Mutex
	repo   *backup.Repository
	last   topology.Position
	lastID string
	warned time.Time
}

func (k *backupKeeper) position(ctx context.Context) topology.Position {
	k.mu.Lock()
	defer k.mu.Unlock()
	// The repository is opened once (an S3 client checks its bucket when
	// made), and again after a failure.
	var err error
	if k.repo == nil {
		var repo backup.Repository
		if repo, err = openRepository(ctx, k.cl); err == nil {
			k.repo = &repo
		}
	}
	var entries []backup.Entry
	if k.repo != nil {
		if entries, err = backup.List(ctx, *k.repo, k.cl.Name); err != nil && len(entries) == 0 {
			k.repo = nil
		}
	}
	if err != nil && len(entries) == 0 {
		k.log.Warn("retention: the backup catalog cannot be read; keeping what the last reading asked for", "backup", k.lastID, "err", err)
		return k.last
	}
	k.last, k.lastID = topology.Position{}, ""
	if e, w, ok := backup.OldestWindow(entries, func(e backup.Entry) (*backup.Window, error) { return backup.PITRWindow(e, k.store) }); ok {
		k.last, k.lastID = w.From, e.ID
	}
	if k.lastID != "" && k.maxSize > 0 && time.Since(k.warned) > time.Hour {
		if size, err := binlog.DirBytes(k.store); err == nil && size > k.maxSize {
			k.warned = time.Now()
			k.log.Warn("retention keeps the store past its max_size for the oldest backup's point-in-time window: prune old backups (backup.keep, backup.max_age) or raise stream.retention.max_size, or set keep_backups: false and let the window shrink",
				"backup", k.lastID, "from", k.last.String(), "store_bytes", size, "max_size", k.maxSize)
		}
	}
	return k.last
}
