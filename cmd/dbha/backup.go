package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"filippo.io/age"
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
		newBackupVerifyCmd(g), newBackupRestoreCmd(g), newBackupReseedCmd(g), newBackupNewKeyCmd())
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
	repo, err := openRepository(ctx, cl)
	if err != nil {
		return backup.Entry{}, err
	}
	job := backup.Job{Repo: repo, ID: backup.NewID(time.Now()), Cluster: cl.Name, Source: src.Addr, User: acct.User,
		Password: password, TLS: cl.TLS.Settings(), Progress: meter, MaxRate: int64(cl.Backup.MaxRate), Scratch: cl.Backup.ScratchDir}
	if cl.Engine == topology.Postgres {
		return backup.RunPostgres(ctx, job)
	}
	if job.DataDir, err = backup.SourceDataDir(ctx, src.Addr, acct.User, password, job.TLS); err != nil {
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
				repo, err := openRepository(cmd.Context(), cl)
				if err != nil {
					return err
				}
				entries, err := backup.List(cmd.Context(), repo, cl.Name)
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
			repo, err := openRepository(cmd.Context(), cl)
			if err != nil {
				return err
			}
			e, err := backup.Find(cmd.Context(), repo, cl.Name, args[0])
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
		Short: "Mark backups a dead run left running failed, then delete backups beyond backup.keep and backup.max_age (never the newest verified one)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, clusters, err := g.loadClusters("text", cluster)
			if err != nil {
				return err
			}
			for _, cl := range clusters {
				repo, err := openRepository(cmd.Context(), cl)
				if err != nil {
					return err
				}
				swept, err := backup.Sweep(cmd.Context(), repo, cl.Name, time.Now())
				for _, e := range swept {
					fmt.Fprintf(cmd.OutOrStdout(), "marked backup %s of %s failed: %s\n", e.ID, cl.Name, e.Error)
				}
				if err != nil {
					return err
				}
				deleted, err := backup.PruneRepository(cmd.Context(), repo, cl.Name, backup.Retention{Keep: cl.Backup.Keep, MaxAge: cl.Backup.MaxAge}, time.Now())
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

// openRepository is a cluster's backup repository: backup.repository, a
// local directory or s3://bucket/prefix, encrypted with
// backup.encryption_key_file when it is set.
func openRepository(ctx context.Context, cl config.Cluster) (backup.Repository, error) {
	b := cl.Backup
	var key *age.X25519Identity
	if b.EncryptionKeyFile != "" {
		var err error
		if key, err = backup.ReadKey(b.EncryptionKeyFile); err != nil {
			return backup.Repository{}, usageError(fmt.Errorf("cluster %s: %w", cl.Name, err))
		}
	}
	if !config.IsS3Repository(b.Repository) {
		return backup.NewRepository(backup.DirObjects(b.Repository), key), nil
	}
	secret, err := readSecret(b.S3.SecretKey())
	if err != nil {
		return backup.Repository{}, usageError(fmt.Errorf("cluster %s: backup.s3 secret key: %w", cl.Name, err))
	}
	bucket, prefix, _ := strings.Cut(strings.TrimPrefix(b.Repository, "s3://"), "/")
	objects, err := backup.NewS3Objects(ctx, backup.S3{Endpoint: b.S3.Endpoint, Region: b.S3.Region, Bucket: bucket, Prefix: prefix,
		AccessKey: b.S3.AccessKey, SecretKey: secret, Insecure: b.S3.Insecure})
	if err != nil {
		return backup.Repository{}, fmt.Errorf("cluster %s: %w", cl.Name, err)
	}
	return backup.NewRepository(objects, key), nil
}

func newBackupNewKeyCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "new-key FILE",
		Short: "Write a new age key for backup.encryption_key_file (mode 0600) and print its public key",
		Long: `new-key writes a new age X25519 identity into FILE, which must not exist,
readable by its owner only. Set backup.encryption_key_file to it and every
backup file is encrypted before it leaves dbha. Keep a copy of the key apart
from the backups: without it they cannot be read.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			public, err := backup.NewKey(args[0])
			if err != nil {
				return usageError(err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s; public key %s\n", args[0], public)
			return nil
		},
	}
}
