package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/dbha/dbha/backup"
)

func newBackupVerifyCmd(g *globalFlags) *cobra.Command {
	var cluster, output string
	cmd := &cobra.Command{
		Use:   "verify ID --cluster C",
		Short: "Prove a backup restores: checksums, pg_verifybackup or --prepare, a throwaway server that opens",
		Long: `verify checks every file of the backup against the SHA-256 in the catalog
(naming the first missing or altered file), unpacks it under backup.scratch_dir,
runs pg_verifybackup (PostgreSQL) or mariadb-backup --prepare (MariaDB), starts a
throwaway server on the copy on a free loopback port, and reads a row of every
table. The result and its time are recorded in the catalog; the copy is
removed. Exit status 1 when the backup does not verify.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			_, cl, err := g.loadCluster(output, cluster)
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
				Scratch: cl.Backup.ScratchDir, Owner: owner, Roles: backupRoles(cl), Progress: meter.Add})
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
