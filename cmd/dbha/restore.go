package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/dbha/dbha/backup"
	"github.com/dbha/dbha/binlog"
	"github.com/dbha/dbha/config"
	"github.com/dbha/dbha/integration"
	"github.com/dbha/dbha/topology"
)

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
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
			e, err := backup.Find(cl.Backup.Repository, cl.Name, args[0])
			if err != nil {
				return usageError(err)
			}
			owner, err := backupOwner(cl)
			if err != nil {
				return usageError(err)
			}
			meter := backup.NewMeter(cmd.ErrOrStderr(), "verify "+e.ID, e.CompressedBytes)
			e, verr := backup.Verify(cmd.Context(), cl.Backup.Repository, e, backup.VerifyOptions{
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
			e, err := backup.Find(cl.Backup.Repository, cl.Name, args[0])
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
			r, err := backup.Restore(cmd.Context(), cl.Backup.Repository, e, backup.RestoreOptions{
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

func newBackupReseedCmd(g *globalFlags) *cobra.Command {
	var cluster, instance, id, dataDir, output string
	var force bool
	cmd := &cobra.Command{
		Use:   "reseed --cluster C --instance X [--backup ID] [--datadir DIR] [--force]",
		Short: "Rebuild a broken or new replica from the newest verified backup and attach it to the primary",
		Long: `reseed rebuilds instance X (never the primary; a healthy replica only with
--force) from the newest verified backup (or --backup): it stops X when it runs
(backup.stop_command), moves its data directory aside (nothing is deleted: the
old files stay at DIR.before-reseed-<time> until you remove them), restores the
backup there keeping X's own configuration files, starts X
(backup.start_command) and attaches it to the current primary at the backup's
position (MariaDB: gtid_slave_pos and CHANGE MASTER; PostgreSQL: standby.signal,
primary_conninfo and its slot). It returns once X replicates. X's files must be
on this host: --datadir or backup.data_dir says where.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, cl, err := g.loadCluster(output, cluster)
			if err != nil {
				return err
			}
			if instance == "" {
				return usageError(fmt.Errorf("--instance is required: the host:port to rebuild"))
			}
			host, dir, err := reseedHost(g, cl, instance, dataDir)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			snap, err := discoverCluster(ctx, cfg, cl)
			if err != nil {
				return err
			}
			entries, err := backup.List(cl.Backup.Repository, cl.Name)
			if err != nil {
				return err
			}
			choice, err := backup.ChooseReseed(snap, instance, entries, id, force)
			if err != nil {
				return usageError(err)
			}
			owner, err := backupOwner(cl)
			if err != nil {
				return usageError(err)
			}
			eng, closeEng, err := newEngine(cfg, cl)
			if err != nil {
				return err
			}
			defer closeEng()
			replication, ok := eng.(backup.Replication)
			if !ok {
				return fmt.Errorf("cluster %s: its engine cannot attach a rebuilt replica", cl.Name)
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "reseeding %s from backup %s (%s), to follow %s\n", instance, choice.Backup.ID, choice.Backup.Position, choice.Primary)
			r, err := backup.Reseed(ctx, choice, backup.ReseedOptions{
				Repo: cl.Backup.Repository, DataDir: dir, Host: host, Owner: owner, Roles: backupRoles(cl),
				Replication: replication,
				Discover:    func(ctx context.Context) (topology.Snapshot, error) { return discoverCluster(ctx, cfg, cl) },
			})
			if err != nil {
				return err
			}
			if output == "json" {
				return writeJSON(cmd.OutOrStdout(), r)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s rebuilt from backup %s and replicating from %s from %s\n", r.Instance, r.Backup, r.Primary, r.Position)
			if r.Previous != "" {
				fmt.Fprintf(cmd.OutOrStdout(), "its former data directory is at %s: delete it once %s is known good\n", r.Previous, r.Instance)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&cluster, "cluster", "", "the cluster (required)")
	cmd.Flags().StringVar(&instance, "instance", "", "the instance to rebuild (host:port)")
	cmd.Flags().StringVar(&id, "backup", "", "the backup to use (default: the newest verified one)")
	cmd.Flags().StringVar(&dataDir, "datadir", "", "the instance's data directory on this host (default: backup.data_dir)")
	cmd.Flags().BoolVar(&force, "force", false, "rebuild even a healthy replica")
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	return cmd
}

// reseedHost: the lab when the configuration is a lab's, else the
// cluster's backup.stop_command / start_command and data directory.
func reseedHost(g *globalFlags, cl config.Cluster, instance, dataDir string) (backup.Host, string, error) {
	dir := filepath.Dir(configPath(g.configFile, os.LookupEnv))
	if l, err := integration.Load(dir); err == nil {
		n, err := l.NodeByAddr(instance)
		if err != nil {
			return nil, "", usageError(err)
		}
		if dataDir == "" {
			dataDir = n.DataDir
		}
		return labBreaker{dir}, dataDir, nil
	}
	if dataDir == "" && cl.Backup.DataDir != "" {
		_, port, _ := strings.Cut(instance, ":")
		dataDir = strings.ReplaceAll(cl.Backup.DataDir, "{port}", port)
	}
	switch {
	case dataDir == "":
		return nil, "", usageError(fmt.Errorf("where are %s's files? pass --datadir or set backup.data_dir", instance))
	case len(cl.Backup.StopCommand) == 0 || len(cl.Backup.StartCommand) == 0:
		return nil, "", usageError(fmt.Errorf("cluster %s: set backup.stop_command and backup.start_command to let reseed stop and start %s", cl.Name, instance))
	}
	return commandHost{stop: cl.Backup.StopCommand, start: cl.Backup.StartCommand}, dataDir, nil
}

type commandHost struct{ stop, start []string }

func (h commandHost) Stop(ctx context.Context, addr string) error {
	return runCommand(ctx, h.stop, "{instance}", addr)
}

func (h commandHost) Start(ctx context.Context, addr string) error {
	return runCommand(ctx, h.start, "{instance}", addr)
}
