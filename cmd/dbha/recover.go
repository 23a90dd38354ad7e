package main

import (
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/dbha/dbha/promote"
)

func newRecoverCmd(g *globalFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "recover",
		Short: "The audit trail of recoveries, and the anti-flap block",
	}
	var cluster, output string
	list := &cobra.Command{
		Use:   "list [--cluster C]",
		Short: "List recoveries, oldest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, clusters, err := g.loadClusters(output, cluster)
			if err != nil {
				return err
			}
			store, c, err := recoveryStore(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			var recs []*promote.Record
			for _, cl := range clusters {
				ids, err := c.RecoveryIDs(cmd.Context(), cl.Name)
				if err != nil {
					return err
				}
				for _, id := range ids {
					r, err := store.Record(cmd.Context(), cl.Name, id)
					if err != nil {
						return err
					}
					recs = append(recs, r)
				}
			}
			if output == "json" {
				return writeJSON(cmd.OutOrStdout(), map[string]any{"recoveries": recs})
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tKIND\tOLD -> NEW\tREASON\tRTO\tLOST\tRESULT")
			for _, r := range recs {
				fmt.Fprintf(tw, "%s\t%s\t%s -> %s\t%s\t%.2fs\t%d trx / %d B\t%s\n", r.ID, r.Kind, r.Plan.OldPrimary, r.Plan.NewPrimary,
					r.Reason, r.RTOSeconds, r.Ledger.Transactions, r.Ledger.Bytes, result(r))
			}
			return tw.Flush()
		},
	}
	list.Flags().StringVar(&cluster, "cluster", "", "only this cluster")
	list.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")

	var showOutput string
	show := &cobra.Command{
		Use:   "show ID",
		Short: "Show one recovery: trigger and evidence, plan, each step, RTO and the loss ledger",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := outputFormat(showOutput); err != nil {
				return err
			}
			cfg, err := g.load()
			if err != nil {
				return err
			}
			store, _, err := recoveryStore(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			for _, cl := range cfg.Clusters {
				if !strings.Contains(args[0], "-"+cl.Name+"-") {
					continue
				}
				r, err := store.Record(cmd.Context(), cl.Name, args[0])
				if err != nil {
					return err
				}
				return writeRecord(cmd.OutOrStdout(), r, showOutput)
			}
			return usageError(fmt.Errorf("%s names no recovery of a configured cluster", args[0]))
		},
	}
	show.Flags().StringVarP(&showOutput, "output", "o", "text", "output format: text or json")

	var ackCluster string
	ack := &cobra.Command{
		Use:   "ack --cluster C",
		Short: "Lift the anti-flap block so that automatic recovery may act again",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := g.load()
			if err != nil {
				return err
			}
			if _, ok := cfg.Cluster(ackCluster); !ok {
				return usageError(fmt.Errorf("--cluster %q: no such cluster in the configuration", ackCluster))
			}
			_, c, err := recoveryStore(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			b, ok, err := c.GetBlock(cmd.Context(), ackCluster)
			if err != nil {
				return err
			}
			if !ok {
				fmt.Fprintf(cmd.OutOrStdout(), "%s is not blocked\n", ackCluster)
				return nil
			}
			if err := c.ClearBlock(cmd.Context(), ackCluster); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "lifted the block on %s (recovery %s, until %s)\n", ackCluster, b.Recovery, b.Until.Format(time.RFC3339))
			return nil
		},
	}
	ack.Flags().StringVar(&ackCluster, "cluster", "", "the cluster (required)")
	cmd.AddCommand(list, show, ack)
	return cmd
}

func result(r *promote.Record) string {
	switch {
	case r.Aborted:
		return "aborted: " + r.Error
	case r.Done && r.Error == "":
		return "done"
	case r.Error != "":
		return "failed at step " + fmt.Sprint(r.Next) + ": " + r.Error
	}
	return "in progress"
}
