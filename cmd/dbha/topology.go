package main

import (
	"context"
	"fmt"
	"io"
	"sync"

	"github.com/spf13/cobra"

	"github.com/dbha/dbha/config"
	"github.com/dbha/dbha/topology"
	"github.com/dbha/dbha/topology/mysql"
	"github.com/dbha/dbha/topology/postgres"
)

func newTopologyCmd(g *globalFlags) *cobra.Command {
	var cluster, output string
	cmd := &cobra.Command{
		Use:   "topology",
		Short: "Show each cluster's primary, replicas, positions, lag and problems",
		Long: `topology probes every instance of each cluster concurrently and prints the
replication tree. Exit status: 0 healthy, 1 problems found, 2 usage or
configuration error.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, clusters, err := g.loadClusters(output, cluster)
			if err != nil {
				return err
			}
			snaps, err := discoverAll(cmd.Context(), cfg, clusters)
			if err != nil {
				return err
			}
			if err := writeSnapshots(cmd.OutOrStdout(), snaps, output); err != nil {
				return err
			}
			for _, s := range snaps {
				if !s.Healthy() {
					return &exitError{code: exitProblems, err: errProblemsFound}
				}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&cluster, "cluster", "", "only this cluster")
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	return cmd
}

func selectClusters(cfg config.Config, name string) ([]config.Cluster, error) {
	if name == "" {
		return cfg.Clusters, nil
	}
	cl, ok := cfg.Cluster(name)
	if !ok {
		return nil, usageError(fmt.Errorf("--cluster %q: no such cluster in the configuration", name))
	}
	return []config.Cluster{cl}, nil
}

// discoverAll probes every cluster concurrently.
func discoverAll(ctx context.Context, cfg config.Config, clusters []config.Cluster) ([]topology.Snapshot, error) {
	probers := make([]topology.Prober, len(clusters))
	for i, cl := range clusters {
		p, closeFn, err := newProber(cl)
		if err != nil {
			return nil, err
		}
		defer closeFn()
		probers[i] = p
	}
	snaps := make([]topology.Snapshot, len(clusters))
	var wg sync.WaitGroup
	for i, cl := range clusters {
		wg.Go(func() {
			snaps[i] = topology.Discover(ctx, cl.Topology(), probers[i], cfg.Probe.Timeout)
		})
	}
	wg.Wait()
	return snaps, nil
}

// newProber builds the engine adapter for a cluster, with its password read
// from the configured file or variable.
func newProber(cl config.Cluster) (topology.Prober, func() error, error) {
	password, err := readSecret(cl.Password())
	if err != nil {
		return nil, nil, usageError(fmt.Errorf("cluster %s: %w", cl.Name, err))
	}
	switch cl.Engine {
	case topology.MariaDB, topology.MySQL:
		p := mysql.NewProber(cl.Engine, cl.User, password)
		p.SetTLS(cl.TLS.Settings())
		return p, p.Close, nil
	case topology.Postgres:
		p := postgres.NewProber(cl.User, password)
		p.SetTLS(cl.TLS.Settings())
		return p, p.Close, nil
	}
	return nil, nil, usageError(fmt.Errorf("cluster %s: unknown engine %q", cl.Name, cl.Engine))
}

// topologyDoc is the JSON document `dbha topology -o json` prints; its
// schema is documented in docs/topology-json.md.
type topologyDoc struct {
	Clusters []topology.Snapshot `json:"clusters"`
}

func writeSnapshots(w io.Writer, snaps []topology.Snapshot, format string) error {
	if format == "json" {
		return writeJSON(w, topologyDoc{Clusters: snaps})
	}
	for i, s := range snaps {
		if i > 0 {
			fmt.Fprintln(w)
		}
		if err := topology.WriteText(w, s); err != nil {
			return err
		}
	}
	return nil
}

// discoverCluster takes one fresh snapshot of a cluster.
func discoverCluster(ctx context.Context, cfg config.Config, cl config.Cluster) (topology.Snapshot, error) {
	prober, closeProber, err := newProber(cl)
	if err != nil {
		return topology.Snapshot{}, err
	}
	defer closeProber()
	return topology.Discover(ctx, cl.Topology(), prober, cfg.Probe.Timeout), nil
}
