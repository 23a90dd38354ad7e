package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/dbha/dbha/config"
	"github.com/dbha/dbha/consul"
	"github.com/dbha/dbha/drill"
	"github.com/dbha/dbha/integration"
	"github.com/dbha/dbha/topology"
)

// drillFlags are `dbha drill`'s flags.
type drillFlags struct {
	cluster, output      string
	runs, writers        int
	switchover, hosts    bool
	fault, host, sides   string
	step                 string
	downFor              time.Duration
	expect               string
	percent              int
	writeTimeout, dialTO time.Duration
	observe, pace, life  time.Duration
}

func newDrillCmd(g *globalFlags) *cobra.Command {
	var f drillFlags
	cmd := &cobra.Command{
		Use:   "drill --cluster C [--runs N] [--writers W] [--switchover | --hosts --fault NAME [--host H] [--sides A,B|C,D] [--percent P]]",
		Short: "Break the primary under concurrent writes and check what clients lived: RTO, lost and in-flight writes, two writers",
		Long: `drill writes unique ids from W concurrent writers (8 by default), each on a
connection of its own that resolves the writer endpoint (Consul DNS) on every
reconnect, records when each write was sent, when it was acknowledged (or
failed, or got no answer within --write-timeout) and which server
acknowledged it; injects a fault, waits for the outcome the fault should
cause (a new primary taking writes, or --observe seconds without a
failover), heals it, waits for the cluster to be whole, and reads every
server's rows back. Each run reports the RTO (fault to the first write
acknowledged by the new primary), the acknowledged writes lost, the writes
in flight at the fault (the commits actually at risk), two writers (the
window during which two servers acknowledged writes), a false failover, and
the state after the heal. Runs that do not recover are shown, never dropped;
the command exits 1 when a run or the drill misses its targets.

Without --hosts (a loopback lab, or a cluster with drill.kill_command and
drill.restart_command), the drill runs dbha's monitor and streams itself and
kills the primary (--switchover: replaces it by a planned switchover); the
heal restarts it. With --hosts (a lab of hosts, dbha lab up --hosts), the
managers are the lab's own dbha run processes: the drill only writes, from
the clients' host, and injects --fault through the lab: kill, host-down,
hang, isolate, manager-cut, loss (--percent), split (--sides), flap,
consul-down, manager-crash (--step). A fault on the primary strikes the
primary's host unless --host names another. manager-crash --step S and
consul-down [--step S] [--down-for D] take the primary's host down and
strike when the recovery reaches step S: the manager running it is killed
(-9) there (with one manager the lab restarts it after 1 s, as a service
manager would), or the managers' Consul servers are stopped there and
started again after D.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, cl, err := g.loadCluster(f.output, f.cluster)
			if err != nil {
				return err
			}
			o, err := f.options(cl)
			if err != nil {
				return usageError(err)
			}
			return runDrill(cmd.Context(), g, cmd.OutOrStdout(), cfg, cl, f, o)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.cluster, "cluster", "", "the cluster (required)")
	fl.IntVar(&f.runs, "runs", 10, "how many runs")
	fl.IntVar(&f.writers, "writers", drill.DefaultWriterOptions().Writers, "concurrent writers, each on a connection of its own")
	fl.BoolVar(&f.switchover, "switchover", false, "without --hosts: replace the primary by a planned switchover instead of killing it")
	fl.BoolVar(&f.hosts, "hosts", false, "the lab of hosts: inject --fault through the lab, with the lab's managers deciding")
	fl.StringVar(&f.fault, "fault", "kill", "the fault: "+strings.Join(drill.FaultNames(), ", "))
	fl.StringVar(&f.host, "host", "", "the host the fault strikes (default: the primary's, for faults on the primary)")
	fl.StringVar(&f.sides, "sides", "", "a split's two sides: host,host|host,host; primary and replica-N name hosts by role (e.g. manager-1,replica-1|primary,replica-2,clients)")
	fl.IntVar(&f.percent, "percent", 0, "the packets a loss drops, in percent")
	fl.StringVar(&f.step, "step", "", "manager-crash, consul-down: the step of the recovery to strike at, <action>[:<n>] (e.g. promote, repoint:2; consul-down: lock by default); the primary's host goes down to start the recovery")
	fl.DurationVar(&f.downFor, "down-for", 0, "consul-down: how long the Consul servers stay down (default 5s)")
	fl.StringVar(&f.expect, "expect", "", "the outcome the fault should cause, overriding the catalogue: failover or none")
	fl.DurationVar(&f.writeTimeout, "write-timeout", drill.DefaultWriterOptions().WriteTimeout, "a write without an answer by then has an unknown outcome")
	fl.DurationVar(&f.dialTO, "dial-timeout", drill.DefaultWriterOptions().DialTimeout, "bound on a writer's connection (dial, login, identity)")
	fl.DurationVar(&f.life, "conn-lifetime", drill.DefaultWriterOptions().ConnLifetime, "each writer reconnects (and looks the writer endpoint up) after this long, as a pool with a maximum connection lifetime (0: only after an error)")
	fl.DurationVar(&f.pace, "pace", drill.DefaultWriterOptions().Pace, "each writer's pause between two acknowledged writes (0: as fast as the server answers)")
	fl.DurationVar(&f.observe, "observe", drill.DefaultOptions().Observe, "how long a fault that must not fail over stays in place")
	cmd.Flags().StringVarP(&f.output, "output", "o", "text", "output format: text or json")
	cmd.AddCommand(newDrillMatrixCmd())
	return cmd
}

func newDrillMatrixCmd() *cobra.Command {
	var command, output string
	cmd := &cobra.Command{
		Use:   "matrix SUMMARY.json... [--command CMD] [-o json]",
		Short: "Render drill summaries (dbha drill -o json) as the fault matrix: Markdown for docs/faults.md, or JSON rows",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, files []string) error {
			if err := outputFormat(output); err != nil {
				return err
			}
			var rows []drill.MatrixRow
			for _, name := range files {
				raw, err := os.ReadFile(name)
				if err != nil {
					return err
				}
				var s drill.Summary
				if err := json.Unmarshal(raw, &s); err != nil {
					return usageError(fmt.Errorf("%s: not a drill summary (dbha drill -o json): %w", name, err))
				}
				rows = append(rows, drill.RowOf(s))
			}
			if output == "json" {
				raw, err := drill.MatrixJSON(rows)
				if err != nil {
					return err
				}
				_, err = fmt.Fprintf(cmd.OutOrStdout(), "%s\n", raw)
				return err
			}
			_, err := io.WriteString(cmd.OutOrStdout(), drill.MatrixMarkdown(command, rows))
			return err
		},
	}
	cmd.Flags().StringVar(&command, "command", "make faults", "the command the header names as the one that made the figures")
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text (Markdown) or json")
	return cmd
}

// options turns the flags into the drill's options (the lab mode and
// managers are added once the lab is known).
func (f drillFlags) options(cl config.Cluster) (drill.Options, error) {
	o := drill.DefaultOptions()
	o.Runs, o.Cluster, o.Engine, o.Mode = f.runs, cl.Name, string(cl.Engine), "async"
	if cl.Stream.SemiSync || cl.Stream.Synchronous {
		o.Mode = "lossless"
	}
	if cl.Promotion.LeaseTTL > 0 {
		o.Mode += "+guards"
	}
	o.Writers.Writers, o.Writers.WriteTimeout, o.Writers.DialTimeout, o.Writers.Pace, o.Writers.ConnLifetime = f.writers, f.writeTimeout, f.dialTO, f.pace, f.life
	o.Observe, o.Expect = f.observe, drill.Expect(f.expect)
	o.Fault = drill.Fault{Name: f.fault, Host: f.host, Percent: f.percent, Step: f.step, For: f.downFor}
	if f.sides != "" {
		sides, err := drill.ParseSides(f.sides)
		if err != nil {
			return o, err
		}
		o.Fault.Sides = sides
	}
	switch {
	case f.switchover && f.hosts:
		return o, errors.New("--switchover is for the drill without --hosts")
	case f.switchover:
		o.Fault.Name = "switchover"
	case !f.hosts && f.fault != "kill":
		return o, fmt.Errorf("--fault %s needs --hosts (a lab of hosts); without it the drill kills the primary", f.fault)
	}
	if !f.hosts {
		// Today's loopback targets: a failover within 3 s, 2 s median.
		o.TargetMedian, o.TargetMax = 2*time.Second, 3*time.Second
	}
	return o, o.Validate()
}

func runDrill(ctx context.Context, g *globalFlags, out io.Writer, cfg config.Config, cl config.Cluster, f drillFlags, o drill.Options) error {
	password, err := readSecret(cl.Drill.Password())
	if err != nil {
		return usageError(fmt.Errorf("cluster %s: drill account: %w (set drill.user and drill.password_file)", cl.Name, err))
	}
	var e drill.Engine = &drill.MariaDB{User: cl.Drill.User, Password: password, Database: cl.Drill.Database, TLS: cl.TLS.Settings()}
	if cl.Engine == topology.Postgres {
		e = &drill.Postgres{User: cl.Drill.User, Password: password, Database: cl.Drill.Database, TLS: cl.TLS.Settings()}
	}
	c, err := newConsul(ctx, cfg)
	if err != nil {
		return err
	}
	prober, closeProber, err := newProber(cl)
	if err != nil {
		return err
	}
	defer closeProber()
	dc := drillCluster{cfg: cfg, cl: cl, consul: c, prober: prober}

	// With -o json, standard output carries the JSON document alone.
	progress := out
	if f.output == "json" {
		progress = os.Stderr
	}
	var faults drill.Faults
	if f.hosts {
		lab, err := integration.Load(filepath.Dir(configPath(g.configFile, os.LookupEnv)))
		if err != nil {
			return usageError(fmt.Errorf("--hosts needs the configuration of a lab of hosts (dbha lab up --hosts): %w", err))
		}
		faults, o.Lab, o.Managers = labFaults{lab}, drill.LabHosts, managerHosts(lab.Hosts())
	} else {
		// A dbha run already watching the cluster detects and recovers;
		// a second monitor here would only race it.
		live, err := liveManagers(ctx, c, cl.Name)
		if err != nil {
			return err
		}
		if len(live) > 0 {
			fmt.Fprintf(progress, "%s is watched by dbha run (%s): the drill leaves detection and recovery to it\n", cl.Name, strings.Join(live, ", "))
		} else {
			stop, err := startMonitor(ctx, g, cfg, cl, progress)
			if err != nil {
				return err
			}
			defer stop()
		}
		var b drill.Breaker = switchoverBreaker{g: g, cfg: cfg, cl: cl}
		if !f.switchover {
			if b, err = newBreaker(g, cl); err != nil {
				return err
			}
		}
		faults, o.Lab = drill.BreakerFaults(b), drillLabMode(g)
	}
	o.Log = progress
	fmt.Fprintf(progress, "drill of %s (%s, %s, %s lab): %d run(s) of %s, %d writers through %s\n",
		cl.Name, cl.Engine, o.Mode, o.Lab, o.Runs, o.Fault, o.Writers.Writers, consul.WriterService(cl.Name)+".service.consul")
	sum, err := drill.Drill(ctx, o, e, faults, dc)
	if err != nil {
		return err
	}
	// The report is kept where every manager's console reads it.
	if err := c.PutDrill(ctx, sum); err != nil {
		fmt.Fprintf(progress, "the drill's report is not kept in Consul (the console will not show it): %v\n", err)
	}
	if err := writeDrill(out, sum, f.output); err != nil {
		return err
	}
	if !sum.Pass {
		return &exitError{code: exitProblems, err: errProblemsFound}
	}
	return nil
}

// liveManagers are the dbha run processes watching the cluster now: those
// whose observation in Consul moves on within two of their refreshes.
func liveManagers(ctx context.Context, c *consul.Client, cluster string) ([]string, error) {
	before, err := c.Peers(ctx, cluster, "")
	if err != nil {
		return nil, fmt.Errorf("look for managers watching %s: %w", cluster, err)
	}
	if len(before) == 0 {
		return nil, nil
	}
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(2*time.Second + 500*time.Millisecond):
	}
	after, err := c.Peers(ctx, cluster, "")
	if err != nil {
		return nil, fmt.Errorf("look for managers watching %s: %w", cluster, err)
	}
	return drill.LiveManagers(before, after), nil
}

// startMonitor runs dbha's monitor and stream for the cluster in this
// process, as `dbha run` would, logging to a file beside the audit log;
// stop ends them.
func startMonitor(ctx context.Context, g *globalFlags, cfg config.Config, cl config.Cluster, progress io.Writer) (stop func(), err error) {
	logPath := filepath.Join(cfg.StateDir, "drill-"+cl.Name+".log")
	if err := os.MkdirAll(cfg.StateDir, 0o750); err != nil {
		return nil, err
	}
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o640)
	if err != nil {
		return nil, err
	}
	log := slog.New(slog.NewJSONHandler(logFile, nil))
	dcfg := cfg
	dcfg.HTTP.Listen = ""
	streams, err := newStreams(dcfg, []config.Cluster{cl}, log)
	if err != nil {
		logFile.Close()
		return nil, err
	}
	m, closeAll, err := newMonitor(ctx, g, dcfg, []config.Cluster{cl}, streams, nil, true, log)
	if err != nil {
		logFile.Close()
		return nil, err
	}
	dctx, stopDaemon := context.WithCancel(ctx)
	daemonDone := make(chan error, 1)
	// No scheduled backups here: they are `dbha run`'s, and would only
	// add load to the failovers the drill measures.
	go func() { daemonDone <- runDaemon(dctx, dcfg, m, streams, nil, nil, log) }()
	fmt.Fprintf(progress, "monitor log: %s\n", logPath)
	return func() {
		stopDaemon()
		<-daemonDone
		closeAll()
		logFile.Close()
	}, nil
}

// drillLabMode: loopback when the configuration is a lab's, else an
// operator's cluster.
func drillLabMode(g *globalFlags) string {
	if _, err := integration.Load(filepath.Dir(configPath(g.configFile, os.LookupEnv))); err == nil {
		return drill.LabLoopback
	}
	return drill.LabExternal
}

// managerHosts are the lab's hosts that run a dbha manager.
func managerHosts(hosts []string) []string {
	var out []string
	for _, h := range hosts {
		if strings.HasPrefix(h, "manager") {
			out = append(out, h)
		}
	}
	return out
}
