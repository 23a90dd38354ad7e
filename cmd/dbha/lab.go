package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"syscall"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/dbha/dbha/integration"
)

// defaultLabDir is where `dbha lab` keeps its servers unless --dir says.
const defaultLabDir = "lab"

func newLabCmd() *cobra.Command {
	var dir string
	cmd := &cobra.Command{
		Use:   "lab",
		Short: "Run a local lab of real MariaDB, PostgreSQL and Consul servers",
		Long: `lab starts, as background processes on loopback ports under one directory:
a MariaDB primary with two GTID replicas (cluster lab-mariadb), a PostgreSQL 15
primary with two streaming standbys (cluster lab-postgres) and a Consul dev
agent, and writes DIR/dbha.yaml ready for every other command:

    dbha lab up && dbha --config lab/dbha.yaml topology`,
	}
	cmd.PersistentFlags().StringVar(&dir, "dir", defaultLabDir, "lab directory")
	var lossless bool

	up := &cobra.Command{
		Use:   "up",
		Short: "Start the lab (a no-op when it already runs)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out := cmd.OutOrStdout()
			self, _ := os.Executable()
			l, running, err := integration.Up(cmd.Context(), integration.Options{Dir: dir, Progress: out, Binary: self, Lossless: lossless})
			if err != nil {
				return err
			}
			if running {
				fmt.Fprintf(out, "lab in %s is already running; nothing started\n", l.Dir)
			}
			fmt.Fprintf(out, "configuration: %s\ntry: dbha --config %s topology\n", l.ConfigPath, l.ConfigPath)
			return nil
		},
	}

	up.Flags().BoolVar(&lossless, "lossless", false, "dbha's stream acknowledges commits: MariaDB semi-sync, PostgreSQL synchronous_standby_names = 'dbha' (commits then wait for a running stream)")

	var purge bool
	down := &cobra.Command{
		Use:   "down",
		Short: "Stop the servers the lab started (--purge also removes DIR)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			l, err := loadLab(dir)
			if err != nil {
				return err
			}
			if err := l.Down(cmd.Context(), purge); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "lab in %s stopped%s\n", l.Dir, map[bool]string{true: " and removed"}[purge])
			return nil
		},
	}
	down.Flags().BoolVar(&purge, "purge", false, "remove the lab directory after stopping")

	status := &cobra.Command{
		Use:   "status",
		Short: "Show the lab's servers and whether they run",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			l, err := loadLab(dir)
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NODE\tKIND\tADDRESS\tPID\tSTATE")
			down := 0
			for _, st := range l.Status(cmd.Context()) {
				state := "running"
				if !st.Running {
					state, down = "stopped", down+1
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\n", st.Name, st.Kind, st.Addr, st.PID, state)
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			if down > 0 {
				return &exitError{code: exitProblems, err: errProblemsFound}
			}
			return nil
		},
	}
	node := func(use, short string, act func(cmd *cobra.Command, l *integration.Lab, name string) error) *cobra.Command {
		return &cobra.Command{
			Use: use + " NODE", Short: short, Args: cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				l, err := loadLab(dir)
				if err != nil {
					return err
				}
				name := args[0]
				if n, err := l.NodeByAddr(name); err == nil {
					name = n.Name // commands may name a node by host:port
				}
				if _, err := l.Node(name); err != nil {
					return usageError(err)
				}
				return act(cmd, l, name)
			},
		}
	}
	start := node("start", "Start a stopped node of the lab again", func(cmd *cobra.Command, l *integration.Lab, name string) error {
		return l.Start(cmd.Context(), name)
	})
	stop := node("stop", "Stop one node of the lab cleanly", func(cmd *cobra.Command, l *integration.Lab, name string) error {
		return l.Stop(cmd.Context(), name)
	})
	kill := node("kill", "Kill one node of the lab with SIGKILL (a crash, for drills)", func(_ *cobra.Command, l *integration.Lab, name string) error {
		return l.Signal(name, syscall.SIGKILL)
	})
	var primary string
	rejoin := node("rejoin", "Make a PostgreSQL node that was a primary a standby of --primary (pg_rewind)", func(cmd *cobra.Command, l *integration.Lab, name string) error {
		if primary == "" {
			return usageError(errors.New("--primary is required"))
		}
		return l.Rejoin(cmd.Context(), name, primary)
	})
	rejoin.Flags().StringVar(&primary, "primary", "", "the new primary: a node name or host:port")
	cmd.AddCommand(up, down, status, start, stop, kill, rejoin)
	return cmd
}

func loadLab(dir string) (*integration.Lab, error) {
	l, err := integration.Load(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, usageError(fmt.Errorf("no lab in %s (start one with `dbha lab up --dir %s`)", dir, dir))
	}
	return l, err
}
