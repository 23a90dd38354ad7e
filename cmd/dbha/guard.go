package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"time"

	"github.com/spf13/cobra"

	"github.com/dbha/dbha/config"
	"github.com/dbha/dbha/guard"
	"github.com/dbha/dbha/topology"
	"github.com/dbha/dbha/topology/mysql"
	"github.com/dbha/dbha/topology/postgres"
	"github.com/dbha/dbha/vip"
)

func newGuardCmd(g *globalFlags) *cobra.Command {
	var (
		cluster, instance string
		ttl               time.Duration
	)
	cmd := &cobra.Command{
		Use:   "guard",
		Short: "Hold one database server's write lease; fence the server when it cannot be renewed",
		Long: `guard runs beside one database server (--instance, as the cluster's
configuration names it) until interrupted. While the server is writable and
the cluster's grant in Consul names it, the guard renews its write lease
every ttl/3; when it cannot — Consul unreachable, or the grant withdrawn by a
failover — it makes the server read-only and ends its client sessions before
the lease's ttl has passed since its last renewal. It never makes the server
writable. With the cluster's vip.address, it holds the writer's virtual
address on its host while its lease is valid and its server writable, and
takes it off before it fences. It logs in with the cluster's account (user, password_file or
password_env) and reaches Consul at consul.address (DBHA_CONSUL_ADDRESS).
See the README, "Guards: write leases".`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, cl, err := g.loadCluster("text", cluster)
			if err != nil {
				return err
			}
			if !slices.Contains(cl.Instances, instance) {
				return usageError(fmt.Errorf("--instance %q: not an instance of cluster %s (%v)", instance, cl.Name, cl.Instances))
			}
			if !cmd.Flags().Changed("ttl") && cl.Promotion.LeaseTTL > 0 {
				ttl = cl.Promotion.LeaseTTL
			}
			if ttl < guard.MinTTL {
				return usageError(fmt.Errorf("--ttl %v: at least %v", ttl, guard.MinTTL))
			}
			log := slog.New(slog.NewJSONHandler(cmd.ErrOrStderr(), nil)).With("cluster", cl.Name, "instance", instance)
			return runGuard(cmd.Context(), cfg, cl, instance, ttl, log)
		},
	}
	cmd.Flags().StringVar(&cluster, "cluster", "", "the cluster (required)")
	cmd.Flags().StringVar(&instance, "instance", "", "the guarded server, host:port as the cluster's instances name it (required)")
	cmd.Flags().DurationVar(&ttl, "ttl", 2*time.Second, "the lease: the server is fenced within this of the last renewal (default: the cluster's promotion.lease_ttl, else 2s)")
	return cmd
}

// runGuard wires a guard: the cluster's prober and fence for the server,
// Consul for the lease. Consul is not asked at start: a guard that cannot
// reach it fences a writable server.
func runGuard(ctx context.Context, cfg config.Config, cl config.Cluster, instance string, ttl time.Duration, log *slog.Logger) error {
	server, closeServer, err := guardedServer(cl, instance)
	if err != nil {
		return err
	}
	defer closeServer()
	c, err := consulClient(cfg)
	if err != nil {
		return err
	}
	host, _ := os.Hostname()
	lease := c.GuardLease(cl.Name, instance, ttl, host)
	defer func() {
		// The session goes; the key keeps its last value (and its fenced flag).
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		defer cancel()
		lease.Close(cctx)
	}()
	gd, err := guard.New(server, lease, ttl, log)
	if err != nil {
		return usageError(err)
	}
	if cl.VIP.Address != "" {
		a, err := writerAddress(cl, instance, log)
		if err != nil {
			return err
		}
		gd.HoldVIP(a)
		log.Info("the guard holds the writer address while it holds the lease", "vip", a.String())
	}
	return gd.Run(ctx)
}

// guardedServer is the guarded instance through the cluster's prober and
// controller (whose fence spares only dbha's and replication's sessions).
func guardedServer(cl config.Cluster, instance string) (guard.Instance, func(), error) {
	password, err := readSecret(cl.Password())
	if err != nil {
		return guard.Instance{}, nil, usageError(fmt.Errorf("cluster %s: %w", cl.Name, err))
	}
	dbTLS := cl.TLS.Settings()
	switch cl.Engine {
	case topology.MariaDB:
		p := mysql.NewProber(cl.Engine, cl.User, password)
		c := mysql.NewController(cl.Engine, cl.User, password, cl.Replication.User, "")
		p.SetTLS(dbTLS)
		c.SetTLS(dbTLS)
		return guard.Instance{Addr: instance, Prober: p, Fencer: c}, func() { c.Close(); p.Close() }, nil
	case topology.Postgres:
		c := postgres.NewController(cl.User, password, cl.Replication.User, "")
		p := postgres.NewProber(cl.User, password)
		p.SetTLS(dbTLS)
		c.SetTLS(dbTLS)
		return guard.Instance{Addr: instance, Prober: p, Fencer: c}, func() { c.Close(); p.Close() }, nil
	}
	return guard.Instance{}, nil, usageError(fmt.Errorf("cluster %s: dbha guard supports MariaDB and PostgreSQL, not %s", cl.Name, cl.Engine))
}

// writerAddress is the cluster's vip on this host: on vip.interface, or
// the interface that holds the instance's own address.
func writerAddress(cl config.Cluster, instance string, log *slog.Logger) (*vip.Address, error) {
	prefix, err := cl.VIP.Prefix()
	if err != nil {
		return nil, usageError(fmt.Errorf("cluster %s: vip.address: %w", cl.Name, err))
	}
	var near netip.Addr
	if host, _, err := net.SplitHostPort(instance); err == nil {
		near, _ = netip.ParseAddr(host)
	}
	if !near.IsValid() && cl.VIP.Interface == "" {
		return nil, usageError(fmt.Errorf("cluster %s: instance %s is not an IP address: set vip.interface", cl.Name, instance))
	}
	return vip.New(prefix, cl.VIP.Interface, near, log)
}
