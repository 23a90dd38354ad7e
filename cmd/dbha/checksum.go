package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/dbha/dbha/checksum"
	"github.com/dbha/dbha/config"
)

// exitIncomplete: the check found no difference but could not compare
// everything (a table cut short, a replica lost, chunks that kept
// changing).
const exitIncomplete = 3

func newChecksumCmd(g *globalFlags) *cobra.Command {
	var (
		cluster, output string
		tables          []string
		chunkTime       time.Duration
		maxLag          time.Duration
		maxLoad         int
		resume, rows    bool
	)
	cmd := &cobra.Command{
		Use:   "checksum --cluster C [--table T ...] [--rows] [--chunk-time 0.5s] [--max-lag 10s] [--max-load 25] [-o text|json]",
		Short: "Prove that every healthy replica holds the primary's data: chunked checksums, compared at the same point of history",
		Long: `checksum checks every user table of the primary (or the --table ones:
db.table on MariaDB, database.schema.table on PostgreSQL) against every
healthy replica, in chunks by primary key (or a unique key on NOT NULL
columns; a table without one is checked as one chunk when small, skipped
with the reason when not), each chunk sized to take about --chunk-time on
the primary. MariaDB: pt-table-checksum's method (the checksum statement
replicates as a statement into dbha_checksum.checksums, so each replica
computes the same chunk at the same point). PostgreSQL: each chunk hashed
on the primary, on each standby once it has replayed that far, and on the
primary again; only a chunk the primary held still through both reads is
compared (see the README). It pauses while a replica lags more than
--max-lag or more than --max-load sessions run statements on the primary
(5 minutes at most, then the table is cut short). With --rows, the keys of the rows that differ are named too
(MariaDB: each differing chunk again, row by row, by the same replicated
statements; PostgreSQL names them always). Exit status: 0 consistent, 1 a difference found, 2 usage or
configuration, 3 no difference found but not everything compared.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := outputFormat(output); err != nil {
				return err
			}
			cfg, cl, err := g.loadCluster(output, cluster)
			if err != nil {
				return err
			}
			o := checksumOptions(cl)
			o.Tables, o.Rows = tables, rows
			if cmd.Flags().Changed("max-lag") {
				o.MaxLag = maxLag
			}
			if cmd.Flags().Changed("max-load") {
				if maxLoad < 0 {
					return usageError(fmt.Errorf("--max-load %d: must not be negative", maxLoad))
				}
				o.MaxLoad = maxLoad
			}
			if cmd.Flags().Changed("chunk-time") {
				if chunkTime <= 0 {
					return usageError(fmt.Errorf("--chunk-time %v: must be positive", chunkTime))
				}
				o.Sizing.Target = chunkTime
			}
			o.Progress = cmd.ErrOrStderr()
			// Each chunk is checkpointed; --resume continues a run that
			// was stopped, if the primary and tables are the same.
			path := checkpointPath(cfg, cl)
			if resume {
				cp, err := checksum.ReadCheckpoint(path)
				if err != nil {
					return err
				}
				if cp != nil {
					fmt.Fprintf(o.Progress, "resuming the run of %s from %s\n", cp.Started.UTC().Format(time.RFC3339), cp.Next())
				}
				o.Resume = cp
			}
			o.Save = func(cp checksum.Checkpoint) error { return checksum.WriteCheckpoint(path, cp) }
			err = runChecksum(cmd.Context(), cfg, cl, o, output, cmd.OutOrStdout())
			if cmd.Context().Err() != nil {
				next := "the start"
				if cp, _ := checksum.ReadCheckpoint(path); cp != nil {
					next = cp.Next()
				}
				return &exitError{code: exitIncomplete, err: fmt.Errorf("stopped: dbha checksum --cluster %s --resume continues from %s", cl.Name, next)}
			}
			os.Remove(path) // done (a run that failed starts over)
			return err
		},
	}
	cmd.Flags().StringVar(&cluster, "cluster", "", "the cluster (required)")
	cmd.Flags().StringArrayVar(&tables, "table", nil, "check only this table (repeatable)")
	cmd.Flags().DurationVar(&chunkTime, "chunk-time", checksum.DefaultSizing().Target, "how long one chunk should take on the primary (default: checksum.chunk_time, else 0.5s)")
	cmd.Flags().DurationVar(&maxLag, "max-lag", checksum.DefaultOptions().MaxLag, "pause while a replica lags more than this, 0: never (default: checksum.max_lag, else 10s)")
	cmd.Flags().IntVar(&maxLoad, "max-load", checksum.DefaultOptions().MaxLoad, "pause while more sessions than this run statements on the primary, 0: never (default: checksum.max_load, else 25)")
	cmd.Flags().BoolVar(&rows, "rows", false, "name the differing rows' keys (MariaDB: a second pass over each differing chunk, row by row; PostgreSQL always names them)")
	cmd.Flags().BoolVar(&resume, "resume", false, "continue the last run that was stopped (the same primary and tables), from its last chunk")
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	return cmd
}

// checkpointPath is where a run of the cluster keeps its checkpoint.
func checkpointPath(cfg config.Config, cl config.Cluster) string {
	return filepath.Join(cfg.StateDir, "checksum", cl.Name+".json")
}

func runChecksum(ctx context.Context, cfg config.Config, cl config.Cluster, o checksum.Options, output string, out io.Writer) error {
	r, err := checksumOnce(ctx, cfg, cl, o)
	if err != nil {
		return err
	}
	if output == "json" {
		err = writeJSON(out, r)
	} else {
		err = r.WriteText(out)
	}
	if err != nil {
		return err
	}
	switch {
	case r.Differences() > 0:
		return &exitError{code: exitProblems, err: errProblemsFound}
	case len(r.Missing()) > 0:
		return usageError(fmt.Errorf("no such table: %s", strings.Join(r.Missing(), ", ")))
	case !r.Complete():
		return &exitError{code: exitIncomplete, err: errProblemsFound}
	}
	return nil
}

// checksumOptions are the cluster's checksum settings over the defaults.
func checksumOptions(cl config.Cluster) checksum.Options {
	o := checksum.DefaultOptions()
	o.Cluster, o.Engine = cl.Name, string(cl.Engine)
	if cl.Checksum.ChunkTime > 0 {
		o.Sizing.Target = cl.Checksum.ChunkTime
	}
	if cl.Checksum.MaxLag > 0 {
		o.MaxLag = cl.Checksum.MaxLag
	}
	if cl.Checksum.MaxLoad > 0 {
		o.MaxLoad = cl.Checksum.MaxLoad
	}
	return o
}

// checksumOnce checks the cluster as it stands and records the result in
// Consul, where promotion and dbha run read it (when Consul cannot be
// reached, the report stands alone, and o.Progress says so).
func checksumOnce(ctx context.Context, cfg config.Config, cl config.Cluster, o checksum.Options) (checksum.Report, error) {
	snap, err := discoverCluster(ctx, cfg, cl)
	if err != nil {
		return checksum.Report{}, err
	}
	account := cl.ChecksumAccount()
	password, err := readSecret(account.Password())
	if err != nil {
		return checksum.Report{}, usageError(fmt.Errorf("cluster %s: %w", cl.Name, err))
	}
	c := checksum.Cluster{Snapshot: snap, User: account.User, Password: password, TLS: cl.TLS.Settings()}
	if rec, err := newConsul(ctx, cfg); err != nil {
		if o.Progress != nil {
			fmt.Fprintf(o.Progress, "the result is not recorded in Consul (promotion will not know it): %v\n", err)
		}
	} else {
		c.Recorder = rec
	}
	r, err := checksum.CheckCluster(ctx, c, o)
	if err == nil {
		// Every run's whole report is kept on this machine too (the
		// summary in Consul holds only what promotion needs).
		if _, serr := checksum.SaveReport(reportsDir(cfg, cl), r, keepReports); serr != nil && o.Progress != nil {
			fmt.Fprintf(o.Progress, "the report is not kept in %s: %v\n", reportsDir(cfg, cl), serr)
		}
	}
	return r, err
}

// keepReports is how many reports of a cluster's checks are kept.
const keepReports = 50

// reportsDir is where the cluster's check reports are kept.
func reportsDir(cfg config.Config, cl config.Cluster) string {
	return filepath.Join(cfg.StateDir, "checksum", "reports", cl.Name)
}
