package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/dbha/dbha/backup"
	"github.com/dbha/dbha/binlog"
	"github.com/dbha/dbha/config"
)

func newBackupVerifyCmd(g *globalFlags) *cobra.Command {
	var cluster, output string
	cmd := &cobra.Command{
		Use:   "verify ID --cluster C",
		Short: "Prove a backup restores: checksums, pg_verifybackup or --prepare, every page read and checked on a throwaway server, the point-in-time window",
		Long: `verify checks every file of the backup against the SHA-256 in the catalog
(naming the first missing or altered file), unpacks it under backup.scratch_dir,
runs pg_verifybackup (PostgreSQL) or mariadb-backup --prepare (MariaDB), starts a
throwaway server on the copy on a free loopback port, and reads and checks every
page: CHECK TABLE of every MariaDB table; pg_amcheck of every PostgreSQL table
and B-tree index (every heap tuple looked up in its indexes), and pg_checksums
when data checksums are on. It reports the point-in-time window the backup
supports with what dbha's change-stream store holds, and fails when there is
none. The result and its time are recorded in the catalog; the copy is
removed. Exit status 1 when the backup does not verify.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, cl, err := g.loadCluster(output, cluster)
			if err != nil {
				return err
			}
			repo, err := openRepository(cmd.Context(), cl)
			if err != nil {
				return err
			}
			e, err := backup.Find(cmd.Context(), repo, cl.Name, args[0])
			if err != nil {
				return usageError(err)
			}
			owner, err := backupOwner(cl)
			if err != nil {
				return usageError(err)
			}
			meter := backup.NewMeter(cmd.ErrOrStderr(), "verify "+e.ID, e.CompressedBytes)
			e, verr := backup.Verify(cmd.Context(), repo, e, backup.VerifyOptions{
				Scratch: cl.Backup.ScratchDir, Owner: owner, Roles: backupRoles(cl), Progress: meter.Add, Store: pitrStore(cfg, cl)})
			meter.Finish()
			if output == "json" {
				if err := writeJSON(cmd.OutOrStdout(), e); err != nil {
					return err
				}
			} else if v := e.Verification; v != nil {
				fmt.Fprintf(cmd.OutOrStdout(), "backup %s: verified %v in %.1fs: %s\n", e.ID, v.OK, v.Seconds, v.Detail)
			}
			return verr
		},
	}
	cmd.Flags().StringVar(&cluster, "cluster", "", "the cluster (required)")
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	return cmd
}

// pitrStore is the cluster's change-stream store, whose reach a
// verification reports; "" when the cluster's stream is off.
func pitrStore(cfg config.Config, cl config.Cluster) string {
	if !cl.Stream.IsEnabled() {
		return ""
	}
	return binlog.Dir(cfg.StateDir, cl.Name)
}
