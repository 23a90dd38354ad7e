package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/spf13/cobra"

	"github.com/dbha/dbha/checks"
	"github.com/dbha/dbha/config"
	"github.com/dbha/dbha/daemon"
	"github.com/dbha/dbha/promote"
)

func newCheckCmd(g *globalFlags) *cobra.Command {
	var cluster, output string
	cmd := &cobra.Command{
		Use:   "check",
		Short: "Analyse each cluster now and show the evidence of every path",
		Long: `check runs as many probe cycles as the analysis needs to count consecutive
failures (checks.failures + 1, checks.interval apart), then prints the findings
and what each path says about the primary. Exit status: 0 no findings, 1
findings, 2 usage or configuration error.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, clusters, err := g.loadClusters(output, cluster)
			if err != nil {
				return err
			}
			m, closeAll, err := newMonitor(cmd.Context(), g, cfg, clusters, nil, nil, false, slog.New(slog.DiscardHandler))
			if err != nil {
				return err
			}
			defer closeAll()
			states := observe(cmd.Context(), m, cfg)
			fencing := map[string]promote.FencingPolicy{}
			for _, cl := range clusters {
				fencing[cl.Name] = promote.FencingPolicy{Leases: cl.Promotion.LeaseTTL > 0, Command: len(cl.Promotion.FenceCommand) > 0}
			}
			if err := writeCheck(cmd.OutOrStdout(), states, cfg.Checks.Policy, fencing, output); err != nil {
				return err
			}
			for _, st := range states {
				if len(st.Findings) > 0 {
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

// observe runs as many probe cycles as the analysis needs to count
// consecutive failures, checks.interval apart, and returns the states.
func observe(ctx context.Context, m *daemon.Monitor, cfg config.Config) []daemon.State {
	for i := range cfg.Checks.Failures + 1 {
		if i > 0 {
			time.Sleep(cfg.Checks.Interval)
		}
		m.Cycle(ctx)
	}
	return m.States()
}

// checkReport is one cluster in `dbha check -o json`.
type checkReport struct {
	daemon.State
	Votes []checks.Vote `json:"votes"`
	// Fencing warns when a failover would have nothing but reaching the
	// old primary to stop it taking writes (promote.FencingWarning).
	Fencing string `json:"fencing_warning,omitempty"`
}

func writeCheck(w io.Writer, states []daemon.State, p checks.Policy, fencing map[string]promote.FencingPolicy, format string) error {
	reports := make([]checkReport, len(states))
	for i, st := range states {
		reports[i] = checkReport{State: st, Votes: checks.Votes(st.Evidence, p),
			Fencing: promote.FencingWarning(st.Evidence.Snapshot, st.Evidence.Primary, fencing[st.Cluster])}
	}
	if format == "json" {
		return writeJSON(w, map[string]any{"clusters": reports})
	}
	for i, r := range reports {
		if i > 0 {
			fmt.Fprintln(w)
		}
		status := "no findings"
		if n := len(r.Findings); n > 0 {
			status = fmt.Sprintf("%d finding(s)", n)
		}
		fmt.Fprintf(w, "%s (%s)  primary %s  %s\n", r.Cluster, r.Engine, orNone(r.Evidence.Primary), status)
		fmt.Fprintln(w, "  evidence:")
		for _, v := range r.Votes {
			fmt.Fprintf(w, "    %-8s %-24s %-7s %s\n", v.Path, v.Source, v.Verdict, v.Detail)
		}
		if r.Evidence.Primary != "" {
			fmt.Fprintf(w, "  quorum: %s\n", r.Quorum)
			fmt.Fprintf(w, "  shape:  %s\n", r.Shape.Summary)
		}
		if r.Fencing != "" {
			fmt.Fprintf(w, "  warning: %s\n", r.Fencing)
		}
		for _, f := range r.Findings {
			inst := ""
			if f.Instance != "" {
				inst = " " + f.Instance
			}
			fmt.Fprintf(w, "  %s (%s)%s: %s\n", f.Code, f.Severity, inst, f.Summary)
		}
	}
	return nil
}
