package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/dbha/dbha/config"
	"github.com/dbha/dbha/consul"
	"github.com/dbha/dbha/promote"
)

func newPromoteCmd(g *globalFlags) *cobra.Command {
	var cluster, to, output string
	var dryRun, force bool
	cmd := &cobra.Command{
		Use:   "promote --cluster C [--to INSTANCE] [--dry-run] [--force]",
		Short: "Replace a cluster's primary: failover if it is dead, switchover if it is alive",
		Long: `promote plans the replacement of a cluster's primary from a fresh look at the
topology: the candidates ranked with their reasons, what every replica lacks
and where it will come from, the expected loss and the steps. With --dry-run it
prints that plan and changes nothing. Otherwise it takes the cluster's lock in
Consul, plans again, carries the steps out and records the recovery (see
dbha recover). A failover needs, as an automatic one does, a strict majority
of the cluster's voters to say the primary is lost (see dbha check), and stops
when no layer secures the old primary under promotion.require_fencing or a
failing fence_command; --force overrides both, and lets --to name a replica
the rules exclude (errant transactions, broken replication, never, lag); what
it overrides is recorded.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, cl, err := g.loadCluster(output, cluster)
			if err != nil {
				return err
			}
			choice := promote.Choice{To: to, Force: force}
			if dryRun {
				planner, closePlanner, err := newKeeper(g, cfg, cl, nil, nil, nil)
				if err != nil {
					return err
				}
				defer closePlanner()
				plan, err := planner.Plan(cmd.Context(), choice)
				if err != nil {
					return err
				}
				return writePlan(cmd.OutOrStdout(), plan, output)
			}
			quorum, err := judgeQuorum(cmd.Context(), g, cfg, cl)
			if err != nil {
				return err
			}
			keeper, closeKeeper, err := newClusterKeeper(cmd.Context(), g, cfg, cl, nil)
			if err != nil {
				return err
			}
			defer closeKeeper()
			rec, err := keeper.Recover(cmd.Context(), promote.Trigger{Reason: "requested with dbha promote", Quorum: quorum}, choice)
			if rec != nil {
				if werr := writeRecord(cmd.OutOrStdout(), rec, output); werr != nil {
					return werr
				}
			}
			return err
		},
	}
	cmd.Flags().StringVar(&cluster, "cluster", "", "the cluster (required)")
	cmd.Flags().StringVar(&to, "to", "", "promote this instance (host:port) instead of the best ranked")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "print the plan and change nothing")
	cmd.Flags().BoolVar(&force, "force", false, "allow --to to name a replica the rules exclude, a failover no majority of voters backs, and one no fencing layer secures")
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	return cmd
}

// judgeQuorum runs the checks on cl as `dbha check` does, for the voters'
// count a failover is judged by.
func judgeQuorum(ctx context.Context, g *globalFlags, cfg config.Config, cl config.Cluster) (*promote.QuorumCount, error) {
	m, closeAll, err := newMonitor(ctx, g, cfg, []config.Cluster{cl}, nil, nil, false, slog.New(slog.DiscardHandler))
	if err != nil {
		return nil, err
	}
	defer closeAll()
	q := observe(ctx, m, cfg)[0].Quorum
	return &promote.QuorumCount{Held: q.Held(), Summary: q.String()}, nil
}

func writePlan(w io.Writer, p promote.Plan, format string) error {
	if format == "json" {
		return writeJSON(w, p)
	}
	return promote.WriteText(w, p)
}

// writeRecord prints what a recovery did.
func writeRecord(w io.Writer, r *promote.Record, format string) error {
	if format == "json" {
		return writeJSON(w, r)
	}
	if err := promote.WriteText(w, r.Plan); err != nil {
		return err
	}
	fmt.Fprintf(w, "recovery %s (%s), started %s\n", r.ID, r.Reason, r.Started.Format(time.RFC3339Nano))
	for _, s := range r.Steps {
		status := "ok"
		if s.Error != "" {
			status = "FAILED: " + s.Error
		}
		note := ""
		if s.Note != "" {
			note = " (" + s.Note + ")"
		}
		fmt.Fprintf(w, "  %2d. %-15s %-22s %6.3fs  %s%s\n", s.N, s.Action, s.Target, s.Finished.Sub(s.Started).Seconds(), status, note)
	}
	switch {
	case r.Aborted:
		fmt.Fprintf(w, "aborted before any change: %s\n", r.Error)
	case !r.Done:
		fmt.Fprintf(w, "NOT FINISHED at step %d: %s\nthe next `dbha promote` or `dbha run` resumes it\n", r.Next, r.Error)
	default:
		fmt.Fprintf(w, "done: writer is %s; %.3fs from start to the writer moving; loss: %d transactions, %d bytes (new primary holds %s)\n",
			r.Plan.NewPrimary, r.RTOSeconds, r.Ledger.Transactions, r.Ledger.Bytes, r.Ledger.NewPrimary)
	}
	return nil
}

// recoveryStore opens the recovery records for `dbha recover`.
func recoveryStore(ctx context.Context, cfg config.Config) (*consul.RecoveryStore, *consul.Client, error) {
	c, err := newConsul(ctx, cfg)
	if err != nil {
		return nil, nil, err
	}
	return c.Recoveries(filepath.Join(cfg.StateDir, "audit.jsonl")), c, nil
}
