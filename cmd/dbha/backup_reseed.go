package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/dbha/dbha/backup"
	"github.com/dbha/dbha/command"
	"github.com/dbha/dbha/config"
	"github.com/dbha/dbha/integration"
	"github.com/dbha/dbha/topology"
)

func newBackupReseedCmd(g *globalFlags) *cobra.Command {
	var cluster, instance, id, dataDir, output string
	var force bool
	cmd := &cobra.Command{
		Use:   "reseed --cluster C --instance X [--backup ID] [--datadir DIR] [--force]",
		Short: "Rebuild a broken or new replica from the newest verified backup and attach it to the primary",
		Long: `reseed rebuilds instance X (never the primary; a healthy replica only with
--force) from the newest verified backup (or --backup). It first proves that
DIR is X's: the process serving X's port on this host works in it (when X does
not answer here, a DIR with files in it is rebuilt only when --datadir names
it). It stops X (backup.stop_command), answering or not, and proves it stopped:
no process works in DIR, no lock is held on its files, X's port refuses
connections. It moves the data directory aside (nothing is deleted: the old
files stay at DIR.before-reseed-<time>, or, when DIR is a mount point, in
DIR/.before-reseed-<time>, until you remove them), restores the backup there
keeping X's own configuration files, starts X
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
			r, err := reseedInstance(cmd.Context(), g, cfg, cl, reseedRequest{instance: instance, backup: id, dataDir: dataDir, force: force}, cmd.ErrOrStderr())
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

// reseedRequest is what `dbha backup reseed` is asked to rebuild.
type reseedRequest struct {
	instance, backup, dataDir string
	force                     bool
}

// reseedInstance wires one reseed: the host that stops and starts the
// instance, a fresh snapshot, the catalog's choice, the engine that
// attaches the rebuilt replica.
func reseedInstance(ctx context.Context, g *globalFlags, cfg config.Config, cl config.Cluster, req reseedRequest, progress io.Writer) (backup.Reseeded, error) {
	instance := req.instance
	host, dir, given, err := reseedHost(g, cl, instance, req.dataDir)
	if err != nil {
		return backup.Reseeded{}, err
	}
	snap, err := discoverCluster(ctx, cfg, cl)
	if err != nil {
		return backup.Reseeded{}, err
	}
	repo, err := openRepository(ctx, cl)
	if err != nil {
		return backup.Reseeded{}, err
	}
	entries, err := backup.List(ctx, repo, cl.Name)
	if err != nil {
		return backup.Reseeded{}, err
	}
	choice, err := backup.ChooseReseed(snap, instance, entries, req.backup, req.force)
	if err != nil {
		return backup.Reseeded{}, usageError(err)
	}
	owner, err := backupOwner(cl)
	if err != nil {
		return backup.Reseeded{}, usageError(err)
	}
	eng, closeEng, err := newEngine(cfg, cl)
	if err != nil {
		return backup.Reseeded{}, err
	}
	defer closeEng()
	replication, ok := eng.(backup.Replication)
	if !ok {
		return backup.Reseeded{}, fmt.Errorf("cluster %s: its engine cannot attach a rebuilt replica", cl.Name)
	}
	fmt.Fprintf(progress, "reseeding %s from backup %s (%s), to follow %s\n", instance, choice.Backup.ID, choice.Backup.Position, choice.Primary)
	return backup.Reseed(ctx, choice, backup.ReseedOptions{
		Repo: repo, DataDir: dir, DataDirGiven: given, Host: host, Owner: owner, Roles: backupRoles(cl),
		Replication: replication,
		Discover:    func(ctx context.Context) (topology.Snapshot, error) { return discoverCluster(ctx, cfg, cl) },
	})
}

// reseedHost: the lab when the configuration is a lab's, else the
// cluster's backup.stop_command / start_command and data directory. given
// says whether the directory was named for this instance (--datadir, or
// the lab's record of its nodes) rather than derived from backup.data_dir.
func reseedHost(g *globalFlags, cl config.Cluster, instance, dataDir string) (backup.Host, string, bool, error) {
	dir := filepath.Dir(configPath(g.configFile, os.LookupEnv))
	if l, err := integration.Load(dir); err == nil {
		n, err := l.NodeByAddr(instance)
		if err != nil {
			return nil, "", false, usageError(err)
		}
		if dataDir == "" {
			dataDir = n.DataDir
		}
		return labBreaker{dir}, dataDir, true, nil
	}
	given := dataDir != ""
	if dataDir == "" && cl.Backup.DataDir != "" {
		_, port, _ := strings.Cut(instance, ":")
		dataDir = strings.ReplaceAll(cl.Backup.DataDir, "{port}", port)
	}
	switch {
	case dataDir == "":
		return nil, "", false, usageError(fmt.Errorf("where are %s's files? pass --datadir or set backup.data_dir", instance))
	case len(cl.Backup.StopCommand) == 0 || len(cl.Backup.StartCommand) == 0:
		return nil, "", false, usageError(fmt.Errorf("cluster %s: set backup.stop_command and backup.start_command to let reseed stop and start %s", cl.Name, instance))
	}
	return commandHost{stop: cl.Backup.StopCommand, start: cl.Backup.StartCommand}, dataDir, given, nil
}

type commandHost struct{ stop, start []string }

func (h commandHost) Stop(ctx context.Context, addr string) error {
	_, err := command.Run(ctx, h.stop, command.Options{Placeholders: map[string]string{"{instance}": addr}})
	return err
}

func (h commandHost) Start(ctx context.Context, addr string) error {
	_, err := command.Run(ctx, h.start, command.Options{Placeholders: map[string]string{"{instance}": addr}})
	return err
}
