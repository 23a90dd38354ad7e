package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/dbha/dbha/command"
	"github.com/dbha/dbha/config"
	"github.com/dbha/dbha/consul"
	"github.com/dbha/dbha/drill"
	"github.com/dbha/dbha/integration"
	"github.com/dbha/dbha/promote"
	"github.com/dbha/dbha/topology"
)

func newDrillCmd(g *globalFlags) *cobra.Command {
	var cluster, output string
	var runs int
	var switchover bool
	cmd := &cobra.Command{
		Use:   "drill --cluster C [--runs N] [--switchover]",
		Short: "Kill the primary under a continuous write load and measure RTO and lost rows",
		Long: `drill runs dbha's monitor and streams for the cluster, writes rows without
pause through the writer endpoint (Consul DNS), kills the primary, and measures
the recovery time objective (last write acknowledged by the old primary to the
first acknowledged by the new one) and the acknowledged rows the new primary
lacks; then it restarts the old primary, waits for it to rejoin, lifts the
anti-flap block and repeats. Only for a cluster it may disrupt: the lab, or one
with drill.kill_command and drill.restart_command configured. With
--switchover each run is a planned switchover instead of a kill, and RTO is how
long writes were blocked.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, cl, err := g.loadCluster(output, cluster)
			if err != nil {
				return err
			}
			if runs < 1 {
				return usageError(errors.New("--runs must be at least 1"))
			}
			var breaker drill.Breaker = switchoverBreaker{g: g, cfg: cfg, cl: cl}
			if !switchover {
				if breaker, err = newBreaker(g, cl); err != nil {
					return err
				}
			}
			return runDrill(cmd.Context(), g, cmd.OutOrStdout(), cfg, cl, breaker, runs, output)
		},
	}
	cmd.Flags().StringVar(&cluster, "cluster", "", "the cluster (required)")
	cmd.Flags().IntVar(&runs, "runs", 10, "how many kills")
	cmd.Flags().BoolVar(&switchover, "switchover", false, "replace the primary by a planned switchover instead of killing it")
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	return cmd
}

func runDrill(ctx context.Context, g *globalFlags, out io.Writer, cfg config.Config, cl config.Cluster, b drill.Breaker, runs int, output string) error {
	password, err := readSecret(cl.Drill.Password())
	if err != nil {
		return usageError(fmt.Errorf("cluster %s: drill account: %w (set drill.user and drill.password_file)", cl.Name, err))
	}
	var w drill.Writer = &drill.MariaDBWriter{User: cl.Drill.User, Password: password, Database: cl.Drill.Database}
	if cl.Engine == topology.Postgres {
		w = &drill.PostgresWriter{User: cl.Drill.User, Password: password, Database: cl.Drill.Database}
	}
	defer w.Close()

	// The monitor and the stream run here, as `dbha run` would; their log
	// goes to a file beside the audit log.
	logPath := filepath.Join(cfg.StateDir, "drill-"+cl.Name+".log")
	if err := os.MkdirAll(cfg.StateDir, 0o750); err != nil {
		return err
	}
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o640)
	if err != nil {
		return err
	}
	defer logFile.Close()
	log := slog.New(slog.NewJSONHandler(logFile, nil))
	dcfg := cfg
	dcfg.HTTP.Listen = ""
	streams, err := newStreams(dcfg, []config.Cluster{cl}, log)
	if err != nil {
		return err
	}
	m, closeAll, err := newMonitor(ctx, g, dcfg, []config.Cluster{cl}, streams, true, log)
	if err != nil {
		return err
	}
	defer closeAll()
	dctx, stopDaemon := context.WithCancel(ctx)
	daemonDone := make(chan error, 1)
	// No scheduled backups here: they are `dbha run`'s, and would only
	// add load to the failovers the drill measures.
	go func() { daemonDone <- runDaemon(dctx, dcfg, m, streams, nil, log) }()
	defer func() { stopDaemon(); <-daemonDone }()

	c, err := newConsul(ctx, cfg)
	if err != nil {
		return err
	}
	prober, closeProber, err := newProber(cl)
	if err != nil {
		return err
	}
	defer closeProber()
	// With -o json, standard output carries the JSON document alone.
	progress := out
	if output == "json" {
		progress = os.Stderr
	}
	fmt.Fprintf(progress, "drill of %s: %d kill(s) of the primary under continuous writes through %s (monitor log: %s)\n",
		cl.Name, runs, consul.WriterService(cl.Name)+".service.consul", logPath)
	sum, err := drill.Drill(ctx, drill.Options{Runs: runs, WarmUp: time.Second, Timeout: 2 * time.Minute,
		TargetMedian: 2 * time.Second, TargetMax: 3 * time.Second, Log: progress},
		w, b, drillCluster{cfg: cfg, cl: cl, consul: c, prober: prober})
	if err != nil {
		return err
	}
	if err := writeDrill(out, sum, output); err != nil {
		return err
	}
	if !sum.Pass {
		return &exitError{code: exitProblems, err: errProblemsFound}
	}
	return nil
}

func writeDrill(w io.Writer, s drill.Summary, format string) error {
	if format == "json" {
		return writeJSON(w, s)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "RUN\tOLD -> NEW\tRTO\tTARGET\tACKED\tLOST\tREWOUND (TRX|WAL)\tWHOLE AGAIN\tPASS")
	for _, r := range s.Runs {
		lost := fmt.Sprint(r.LostRows)
		if len(r.Lost) > 0 {
			lost += fmt.Sprintf(" %v", r.Lost)
		}
		rewound := fmt.Sprint(r.Rewound)
		if r.RewoundBytes > 0 {
			rewound = fmt.Sprintf("%d B", r.RewoundBytes)
		}
		fmt.Fprintf(tw, "%d\t%s -> %s\t%.3fs\t<= %.0fs\t%d\t%s\t%s\t%.3fs\t%v\n", r.N, r.OldPrimary, r.NewPrimary, r.RTOSeconds, s.TargetMaxRTO,
			r.AckedRows, lost, rewound, r.RejoinSeconds, r.Pass)
	}
	fmt.Fprintf(tw, "median RTO %.3fs (target <= %.0fs), max %.3fs (target <= %.0fs), lost rows %d: pass %v\n",
		s.MedianRTO, s.TargetMedianRTO, s.MaxRTO, s.TargetMaxRTO, s.LostRows, s.Pass)
	return tw.Flush()
}

// drillCluster answers the drill's questions about the cluster.
type drillCluster struct {
	cfg    config.Config
	cl     config.Cluster
	consul *consul.Client
	prober topology.Prober
}

// Healthy: every configured instance reachable, the primary writable and
// the rest replicating from it, no problem at all.
func (d drillCluster) Healthy(ctx context.Context) (string, error) {
	s := topology.Discover(ctx, d.cl.Topology(), d.prober, d.cfg.Probe.Timeout)
	if !s.Healthy() {
		return "", fmt.Errorf("%d problem(s), first: %s", len(s.Problems), s.Problems[0].Message)
	}
	return s.WritablePrimary()
}

func (d drillCluster) Writer(ctx context.Context) (string, error) {
	addrs, err := consul.Resolve(ctx, d.cfg.Consul.DNS, consul.WriterService(d.cl.Name))
	if err != nil {
		return "", err
	}
	if len(addrs) != 1 {
		return "", fmt.Errorf("the writer endpoint names %d instances", len(addrs))
	}
	return addrs[0], nil
}

func (d drillCluster) Ack(ctx context.Context) error { return d.consul.ClearBlock(ctx, d.cl.Name) }

// Rewound reads the latest recovery's loss ledger.
func (d drillCluster) Rewound(ctx context.Context, old string) (int, int64, error) {
	rec, err := d.consul.Recoveries("").Latest(ctx, d.cl.Name)
	if err != nil || rec == nil || rec.Plan.OldPrimary != old {
		return 0, 0, err
	}
	var n int
	var bytes int64
	for _, r := range rec.Ledger.Rewound {
		n += r.Transactions
		bytes += r.Bytes
	}
	return n, bytes, nil
}

// newBreaker: the lab when the configuration is a lab's, else the
// cluster's drill commands.
func newBreaker(g *globalFlags, cl config.Cluster) (drill.Breaker, error) {
	dir := filepath.Dir(configPath(g.configFile, os.LookupEnv))
	if _, err := integration.Load(dir); err == nil {
		return labBreaker{dir}, nil
	}
	if len(cl.Drill.KillCommand) == 0 || len(cl.Drill.RestartCommand) == 0 {
		return nil, usageError(fmt.Errorf("cluster %s is not a lab's: set drill.kill_command and drill.restart_command to let the drill break it", cl.Name))
	}
	return commandBreaker{kill: cl.Drill.KillCommand, restart: cl.Drill.RestartCommand}, nil
}

// labBreaker breaks lab nodes. It reads the lab afresh each time: a
// rejoin (dbha lab rejoin, run by the monitor) restarts nodes and records
// their new PIDs.
type labBreaker struct{ dir string }

func (b labBreaker) node(addr string) (*integration.Lab, string, error) {
	l, err := integration.Load(b.dir)
	if err != nil {
		return nil, "", err
	}
	n, err := l.NodeByAddr(addr)
	return l, n.Name, err
}

func (b labBreaker) Kill(_ context.Context, addr string) error {
	l, name, err := b.node(addr)
	if err != nil {
		return err
	}
	return l.Signal(name, syscall.SIGKILL)
}

func (b labBreaker) Restart(ctx context.Context, addr string) error {
	l, name, err := b.node(addr)
	if err != nil {
		return err
	}
	return l.Start(ctx, name)
}

// Stop and Start let `dbha backup reseed` rebuild a lab node.
func (b labBreaker) Stop(ctx context.Context, addr string) error {
	l, name, err := b.node(addr)
	if err != nil {
		return err
	}
	return l.Stop(ctx, name)
}

func (b labBreaker) Start(ctx context.Context, addr string) error { return b.Restart(ctx, addr) }

// switchoverBreaker "breaks" the primary by a planned switchover, as
// `dbha promote` would; the old primary stays up, so there is nothing to
// restart (a PostgreSQL one rejoins through rejoin_command).
type switchoverBreaker struct {
	g   *globalFlags
	cfg config.Config
	cl  config.Cluster
}

func (b switchoverBreaker) Kill(ctx context.Context, _ string) error {
	keeper, closeKeeper, err := newClusterKeeper(ctx, b.g, b.cfg, b.cl, nil)
	if err != nil {
		return err
	}
	defer closeKeeper()
	_, err = keeper.Recover(ctx, promote.Trigger{Reason: "drill switchover"}, promote.Choice{})
	return err
}

func (switchoverBreaker) Restart(context.Context, string) error { return nil }

type commandBreaker struct{ kill, restart []string }

func (b commandBreaker) Kill(ctx context.Context, addr string) error {
	_, err := command.Run(ctx, b.kill, command.Options{Placeholders: map[string]string{"{instance}": addr}})
	return err
}

func (b commandBreaker) Restart(ctx context.Context, addr string) error {
	_, err := command.Run(ctx, b.restart, command.Options{Placeholders: map[string]string{"{instance}": addr}})
	return err
}
