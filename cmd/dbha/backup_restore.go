package main

import (
	"fmt"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/dbha/dbha/backup"
	"github.com/dbha/dbha/binlog"
)

func newBackupRestoreCmd(g *globalFlags) *cobra.Command {
	var cluster, to, until, output string
	cmd := &cobra.Command{
		Use:   "restore ID --cluster C --to DIR [--until GTID|LSN|TIME]",
		Short: "Restore a backup into a data directory, replayed to a point from dbha's store",
		Long: `restore unpacks the backup into DIR (which must be new or empty), checking every
file against the SHA-256 in the catalog as it reads it, and prepares it
(mariadb-backup --prepare). With
--until it then replays, on a throwaway server, the transactions dbha's change
stream holds beyond the backup up to a GTID position (MariaDB, that GTID
included), an LSN (PostgreSQL, the record there included) or a time (RFC 3339),
and shuts the server down cleanly: DIR holds exactly what was committed up to
that point. A MariaDB directory then has gtid_slave_pos at that point, ready to
replicate on. The files belong to backup.run_as when dbha runs as root.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, cl, err := g.loadCluster(output, cluster)
			if err != nil {
				return err
			}
			if to == "" {
				return usageError(fmt.Errorf("--to DIR is required: where the data directory goes"))
			}
			repo, err := openRepository(cmd.Context(), cl)
			if err != nil {
				return err
			}
			e, err := backup.Find(cmd.Context(), repo, cl.Name, args[0])
			if err != nil {
				return usageError(err)
			}
			target, err := backup.ParseTarget(e.Engine, until)
			if err != nil {
				return usageError(err)
			}
			owner, err := backupOwner(cl)
			if err != nil {
				return usageError(err)
			}
			abs, err := filepath.Abs(to)
			if err != nil {
				return usageError(err)
			}
			meter := backup.NewMeter(cmd.ErrOrStderr(), "restore "+e.ID, e.CompressedBytes)
			r, err := backup.Restore(cmd.Context(), repo, e, backup.RestoreOptions{
				To: abs, Until: target, Store: binlog.Dir(cfg.StateDir, cl.Name), Owner: owner, Roles: backupRoles(cl), Progress: meter.Add})
			meter.Finish()
			if err != nil {
				return err
			}
			if output == "json" {
				return writeJSON(cmd.OutOrStdout(), r)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "restored backup %s into %s at %s: %s\n", e.ID, r.Dir, r.Position, r.Detail)
			return nil
		},
	}
	cmd.Flags().StringVar(&cluster, "cluster", "", "the cluster (required)")
	cmd.Flags().StringVar(&to, "to", "", "the data directory to create (new or empty)")
	cmd.Flags().StringVar(&until, "until", "", "replay to this GTID position, LSN or RFC 3339 time")
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	return cmd
}
