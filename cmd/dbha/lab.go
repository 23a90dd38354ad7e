package main

import (
	"errors"
	"fmt"
	"io/fs"
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

	up := &cobra.Command{
		Use:   "up",
		Short: "Start the lab (a no-op when it already runs)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out := cmd.OutOrStdout()
			l, running, err := integration.Up(cmd.Context(), integration.Options{Dir: dir, Progress: out})
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
	cmd.AddCommand(up, down, status)
	return cmd
}

func loadLab(dir string) (*integration.Lab, error) {
	l, err := integration.Load(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, usageError(fmt.Errorf("no lab in %s (start one with `dbha lab up --dir %s`)", dir, dir))
	}
	return l, err
}
