package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/dbha/dbha/backup"
	"github.com/dbha/dbha/binlog"
	"github.com/dbha/dbha/config"
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
			store := binlog.Dir(cfg.StateDir, cl.Name)
			if !target.IsZero() {
				var cleanup func()
				if store, cleanup, err = restoreStore(cmd.Context(), repo, cl, e, store, cmd.ErrOrStderr()); err != nil {
					return err
				}
				defer cleanup()
			}
			meter := backup.NewMeter(cmd.ErrOrStderr(), "restore "+e.ID, e.CompressedBytes)
			r, err := backup.Restore(cmd.Context(), repo, e, backup.RestoreOptions{
				To: abs, Until: target, Store: store, Owner: owner, Roles: backupRoles(cl), Progress: meter.Add})
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

// restoreStore is the store a point-in-time restore replays: the one on
// this host when there is one, else a copy of the store archived in the
// repository (backup.archive_stream), fetched into a scratch directory
// that cleanup removes.
func restoreStore(ctx context.Context, repo backup.Repository, cl config.Cluster, e backup.Entry, local string, progress io.Writer) (string, func(), error) {
	if _, err := backup.PITRWindow(e, local); !errors.Is(err, backup.ErrNoStoreHere) {
		return local, func() {}, nil // whatever it reaches: Restore says if too little
	}
	scratch, err := os.MkdirTemp(cl.Backup.ScratchDir, "dbha-restore-store-")
	if err != nil {
		return "", nil, err
	}
	cleanup := func() { os.RemoveAll(scratch) }
	dst := filepath.Join(scratch, "store")
	n, err := backup.FetchStore(ctx, repo, cl.Name, dst)
	if err != nil {
		cleanup()
		return "", nil, fmt.Errorf("no change-stream store of %s on this host, and none to fetch: %w", cl.Name, err)
	}
	fmt.Fprintf(progress, "no change-stream store of %s on this host: replaying the %d files archived in %s\n", cl.Name, n, repo)
	return dst, cleanup, nil
}
