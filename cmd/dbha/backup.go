package main

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/dbha/dbha/backup"
	"github.com/dbha/dbha/config"
	"github.com/dbha/dbha/topology"
)

func newBackupCmd(g *globalFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "backup",
		Short: "Backups that follow the topology: run, list, show, prune",
	}
	cmd.AddCommand(newBackupRunCmd(g), newBackupListCmd(g), newBackupShowCmd(g), newBackupPruneCmd(g),
		newBackupVerifyCmd(g), newBackupRestoreCmd(g), newBackupReseedCmd(g))
	return cmd
}

// backupOwner is the account restored files and throwaway servers belong
// to: backup.run_as, else the engine's package account.
func backupOwner(cl config.Cluster) (backup.Owner, error) {
	name := cl.Backup.RunAs
	if name == "" {
		name = backup.DefaultOwner(topology.Engine(cl.Engine))
	}
	return backup.LookupOwner(name)
}

// backupRoles are role names the backup of a PostgreSQL cluster holds.
func backupRoles(cl config.Cluster) []string {
	return []string{cl.User, cl.BackupAccount().User}
}

func newBackupRunCmd(g *globalFlags) *cobra.Command {
	var cluster, from, output string
	cmd := &cobra.Command{
		Use:   "run --cluster C [--from INSTANCE]",
		Short: "Take a backup from the right instance and catalogue it",
		Long: `run picks the source from a fresh look at the topology (a healthy replica with
the least lag, never one with errant transactions, the primary only when
backup.allow_primary is set or it is the only instance), or --from, and takes a
mariadb-backup or pg_basebackup (over the replication protocol). mariadb-backup
reads the server's files, so it runs on the source's host: this one, or the
one backup.remote_command reaches; there dbha first proves that the directory
is the working directory of the process serving the source's port, or refuses.
The backup goes into backup.repository, compressed with zstd,
with a SHA-256 for every file and the backup's position in the catalog.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, cl, err := g.loadCluster(output, cluster)
			if err != nil {
				return err
			}
			e, err := runBackup(cmd.Context(), cfg, cl, from, cmd.ErrOrStderr())
			if e.ID != "" {
				if werr := writeBackups(cmd.OutOrStdout(), []backup.Entry{e}, output); werr != nil {
					return werr
				}
			}
			return err
		},
	}
	cmd.Flags().StringVar(&cluster, "cluster", "", "the cluster (required)")
	cmd.Flags().StringVar(&from, "from", "", "take the backup from this instance (host:port)")
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	return cmd
}

// runBackup wires one backup: the source from a fresh snapshot, the
// account, the engine's tool.
func runBackup(ctx context.Context, cfg config.Config, cl config.Cluster, from string, progress io.Writer) (backup.Entry, error) {
	snap, err := discoverCluster(ctx, cfg, cl)
	if err != nil {
		return backup.Entry{}, err
	}
	src, err := backup.ChooseSource(snap, backup.SourcePolicy{AllowPrimary: cl.Backup.AllowPrimary, From: from})
	if err != nil {
		return backup.Entry{}, err
	}
	acct := cl.BackupAccount()
	password, err := readSecret(acct.Password())
	if err != nil {
		return backup.Entry{}, usageError(fmt.Errorf("cluster %s: backup account: %w", cl.Name, err))
	}
	fmt.Fprintf(progress, "backing up %s from %s: %s\n", cl.Name, src.Addr, src.Reason)
	meter := backup.NewMeter(progress, "backup of "+cl.Name+" from "+src.Addr, 0)
	defer meter.Finish()
	job := backup.Job{Repo: cl.Backup.Repository, ID: backup.NewID(time.Now()), Cluster: cl.Name,
		Source: src.Addr, User: acct.User, Password: password, Progress: meter, MaxRate: int64(cl.Backup.MaxRate)}
	if cl.Engine == topology.Postgres {
		return backup.RunPostgres(ctx, job)
	}
	if job.DataDir, err = backup.SourceDataDir(ctx, src.Addr, acct.User, password); err != nil {
		return backup.Entry{}, err
	}
	job.Remote = cl.Backup.RemoteCommand
	return backup.RunMariaDB(ctx, job)
}

func newBackupListCmd(g *globalFlags) *cobra.Command {
	var cluster, output string
	cmd := &cobra.Command{
		Use:   "list [--cluster C]",
		Short: "List the catalogued backups, oldest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, clusters, err := g.loadClusters(output, cluster)
			if err != nil {
				return err
			}
			var all []backup.Entry
			for _, cl := range clusters {
				entries, err := backup.List(cl.Backup.Repository, cl.Name)
				if err != nil {
					return err
				}
				all = append(all, entries...)
			}
			return writeBackups(cmd.OutOrStdout(), all, output)
		},
	}
	cmd.Flags().StringVar(&cluster, "cluster", "", "only this cluster")
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	return cmd
}

func newBackupShowCmd(g *globalFlags) *cobra.Command {
	var cluster string
	cmd := &cobra.Command{
		Use:   "show ID --cluster C",
		Short: "Show one backup's catalog entry (JSON)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			_, cl, err := g.loadCluster("json", cluster)
			if err != nil {
				return err
			}
			e, err := backup.Find(cl.Backup.Repository, cl.Name, args[0])
			if err != nil {
				return usageError(err)
			}
			return writeJSON(cmd.OutOrStdout(), e)
		},
	}
	cmd.Flags().StringVar(&cluster, "cluster", "", "the cluster (required)")
	return cmd
}

func newBackupPruneCmd(g *globalFlags) *cobra.Command {
	var cluster string
	cmd := &cobra.Command{
		Use:   "prune [--cluster C]",
		Short: "Delete backups beyond backup.keep and backup.max_age (never the newest verified one)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, clusters, err := g.loadClusters("text", cluster)
			if err != nil {
				return err
			}
			for _, cl := range clusters {
				deleted, err := backup.PruneRepository(cl.Backup.Repository, cl.Name, backup.Retention{Keep: cl.Backup.Keep, MaxAge: cl.Backup.MaxAge}, time.Now())
				for _, id := range deleted {
					fmt.Fprintf(cmd.OutOrStdout(), "deleted backup %s of %s\n", id, cl.Name)
				}
				if err != nil {
					return err
				}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&cluster, "cluster", "", "only this cluster")
	return cmd
}

func writeBackups(w io.Writer, entries []backup.Entry, format string) error {
	if format == "json" {
		if entries == nil {
			entries = []backup.Entry{}
		}
		return writeJSON(w, map[string]any{"backups": entries})
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tCLUSTER\tSOURCE\tSTATUS\tPOSITION\tSIZE\tON DISK\tTOOK\tVERIFIED")
	for _, e := range entries {
		verified := "-"
		if v := e.Verification; v != nil {
			verified = fmt.Sprintf("%v at %s", v.OK, v.At.Format(time.RFC3339))
		}
		status := string(e.Status)
		if e.Error != "" {
			status += ": " + e.Error
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%.1fs\t%s\n", e.ID, e.Cluster, e.Source, status, orNone(e.Position.String()),
			backup.HumanBytes(e.Bytes), backup.HumanBytes(e.CompressedBytes), e.Finished.Sub(e.Started).Seconds(), verified)
	}
	return tw.Flush()
}
