package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/dbha/dbha/binlog"
	"github.com/dbha/dbha/config"
	"github.com/dbha/dbha/consul"
	"github.com/dbha/dbha/promote"
	"github.com/dbha/dbha/topology"
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
dbha recover). --force lets --to name a replica the rules exclude (errant
transactions, broken replication, never, lag); what it overrides is recorded.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, cl, err := g.loadCluster(output, cluster)
			if err != nil {
				return err
			}
			prober, closeProber, err := newProber(cl)
			if err != nil {
				return err
			}
			defer closeProber()
			discover := func(ctx context.Context) topology.Snapshot {
				return topology.Discover(ctx, cl.Name, topology.Engine(cl.Engine), cl.Instances, prober, cfg.Probe.Timeout)
			}
			req := promotionRequest(cfg, cl, to, force)
			if dryRun {
				plan, err := promote.MakePlan(discover(cmd.Context()), req)
				if err != nil {
					return err
				}
				return writePlan(cmd.OutOrStdout(), plan, output)
			}
			env, closeEnv, err := recoverEnv(cmd.Context(), cfg, cl, discover, slog.New(slog.DiscardHandler))
			if err != nil {
				return err
			}
			defer closeEnv()
			rec, err := promote.Recover(cmd.Context(), env, cl.Name, req, promote.Trigger{Reason: "requested with dbha promote"})
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
	cmd.Flags().BoolVar(&force, "force", false, "allow --to to name a replica the rules exclude")
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	return cmd
}

// promotionRequest gathers what a plan needs beyond the snapshot: the
// operator's rules, and what dbha's stream holds of the primary (which is
// also the last position dbha saw it at).
func promotionRequest(cfg config.Config, cl config.Cluster, to string, force bool) promote.Request {
	pr := cl.Promotion
	req := promote.Request{To: to, Force: force, Rules: promote.Rules{
		Prefer: pr.Prefer, Never: pr.Never, Priority: pr.Priority, MaxLagSeconds: pr.MaxLagSeconds}}
	dir := binlog.Dir(cfg.StateDir, cl.Name)
	st, err := binlog.ReadStatus(dir)
	if err != nil {
		return req
	}
	req.LastPrimary = st.Primary
	if st.Position.IsZero() {
		return req
	}
	if store, err := openStore(cfg, cl); err == nil {
		if pos := store.Position(); !pos.IsZero() {
			req.Held = &promote.Held{Position: pos, From: st.Primary}
			req.LastSeen = pos
		}
	}
	return req
}

// recoverEnv wires a recovery: Consul for the lock, records and
// endpoints; the engine; the hooks.
func recoverEnv(ctx context.Context, cfg config.Config, cl config.Cluster, discover func(context.Context) topology.Snapshot, log *slog.Logger) (promote.RecoverEnv, func(), error) {
	c, err := newConsul(ctx, cfg)
	if err != nil {
		return promote.RecoverEnv{}, nil, fmt.Errorf("a promotion needs Consul for its lock and the writer endpoint: %w", err)
	}
	engine, closeEngine, err := newEngine(cfg, cl)
	if err != nil {
		return promote.RecoverEnv{}, nil, err
	}
	pr := cl.Promotion
	return promote.RecoverEnv{
		Store:       c.Recoveries(filepath.Join(cfg.StateDir, "audit.jsonl")),
		Engine:      engine,
		Hooks:       promote.CommandHooks{Before: pr.BeforePromote, After: pr.AfterPromote, Timeout: pr.StepTimeout},
		Manager:     managerName(cfg),
		Discover:    discover,
		StepTimeout: pr.StepTimeout,
		BlockFor:    pr.BlockFor,
	}, func() { closeEngine() }, nil
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
