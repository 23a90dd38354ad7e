package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"syscall"

	"github.com/dbha/dbha/command"
	"github.com/dbha/dbha/config"
	"github.com/dbha/dbha/consul"
	"github.com/dbha/dbha/drill"
	"github.com/dbha/dbha/integration"
	"github.com/dbha/dbha/promote"
	"github.com/dbha/dbha/topology"
)

// drillCluster answers the drill's questions about the cluster.
type drillCluster struct {
	cfg    config.Config
	cl     config.Cluster
	consul *consul.Client
	prober topology.Prober
}

// Healthy: every configured instance reachable, the primary writable and
// the rest replicating from it, no problem at all.
func (d drillCluster) Healthy(ctx context.Context) (string, error) {
	s := topology.Discover(ctx, d.cl.Topology(), d.prober, d.cfg.Probe.Timeout)
	if !s.Healthy() {
		return "", fmt.Errorf("%d problem(s), first: %s", len(s.Problems), s.Problems[0].Message)
	}
	return s.WritablePrimary()
}

func (d drillCluster) Writer(ctx context.Context) (string, error) {
	addrs, err := consul.Resolve(ctx, d.cfg.Consul.DNS, consul.WriterService(d.cl.Name))
	if err != nil {
		return "", err
	}
	if len(addrs) != 1 {
		return "", fmt.Errorf("the writer endpoint names %d instances", len(addrs))
	}
	return addrs[0], nil
}

func (d drillCluster) Ack(ctx context.Context) error { return d.consul.ClearBlock(ctx, d.cl.Name) }

func (d drillCluster) Instances() []string { return d.cl.Instances }

// State is the cluster as discovery sees it now, with what the latest
// recovery rewound on old.
func (d drillCluster) State(ctx context.Context, old string) (drill.AfterHeal, error) {
	s := topology.Discover(ctx, d.cl.Topology(), d.prober, d.cfg.Probe.Timeout)
	a := drill.StateOf(s)
	rec, err := d.consul.Recoveries("").Latest(ctx, d.cl.Name)
	if err != nil {
		return a, fmt.Errorf("read the latest recovery of %s: %w", d.cl.Name, err)
	}
	if rec == nil || rec.Plan.OldPrimary != old {
		return a, nil
	}
	var n int
	var bytes int64
	for _, r := range rec.Ledger.Rewound {
		n += r.Transactions
		bytes += r.Bytes
	}
	a.AddRewound(old, n, bytes)
	return a, nil
}

// labFaults injects faults through the lab of hosts.
type labFaults struct{ lab *integration.Lab }

func (f labFaults) Inject(ctx context.Context, fault drill.Fault) error {
	return f.lab.Fault(ctx, integration.FaultSpec{Name: fault.Name, Host: fault.Host, Sides: fault.Sides, Percent: fault.Percent,
		Step: fault.Step, For: fault.For})
}

func (f labFaults) TrapFired() (string, bool) { return f.lab.TrapFired() }

func (f labFaults) Heal(ctx context.Context) error { return f.lab.Heal(ctx) }

func (f labFaults) HostOf(addr string) (string, error) { return f.lab.HostOf(addr) }

// newBreaker: the lab when the configuration is a lab's, else the
// cluster's drill commands.
func newBreaker(g *globalFlags, cl config.Cluster) (drill.Breaker, error) {
	dir := filepath.Dir(configPath(g.configFile, os.LookupEnv))
	if _, err := integration.Load(dir); err == nil {
		return labBreaker{dir}, nil
	}
	if len(cl.Drill.KillCommand) == 0 || len(cl.Drill.RestartCommand) == 0 {
		return nil, usageError(fmt.Errorf("cluster %s is not a lab's: set drill.kill_command and drill.restart_command to let the drill break it", cl.Name))
	}
	return commandBreaker{kill: cl.Drill.KillCommand, restart: cl.Drill.RestartCommand}, nil
}

// labBreaker breaks lab nodes. It reads the lab afresh each time: a
// rejoin (dbha lab rejoin, run by the monitor) restarts nodes and records
// their new PIDs.
type labBreaker struct{ dir string }

func (b labBreaker) node(addr string) (*integration.Lab, string, error) {
	l, err := integration.Load(b.dir)
	if err != nil {
		return nil, "", err
	}
	n, err := l.NodeByAddr(addr)
	return l, n.Name, err
}

func (b labBreaker) Kill(_ context.Context, addr string) error {
	l, name, err := b.node(addr)
	if err != nil {
		return err
	}
	return l.Signal(name, syscall.SIGKILL)
}

func (b labBreaker) Restart(ctx context.Context, addr string) error {
	l, name, err := b.node(addr)
	if err != nil {
		return err
	}
	return l.Start(ctx, name)
}

// Stop and Start let `dbha backup reseed` rebuild a lab node.
func (b labBreaker) Stop(ctx context.Context, addr string) error {
	l, name, err := b.node(addr)
	if err != nil {
		return err
	}
	return l.Stop(ctx, name)
}

func (b labBreaker) Start(ctx context.Context, addr string) error { return b.Restart(ctx, addr) }

// switchoverBreaker "breaks" the primary by a planned switchover, as
// `dbha promote` would; the old primary stays up, so there is nothing to
// restart (a PostgreSQL one rejoins through rejoin_command).
type switchoverBreaker struct {
	g   *globalFlags
	cfg config.Config
	cl  config.Cluster
}

func (b switchoverBreaker) Kill(ctx context.Context, _ string) error {
	keeper, closeKeeper, err := newClusterKeeper(ctx, b.g, b.cfg, b.cl, nil)
	if err != nil {
		return err
	}
	defer closeKeeper()
	_, err = keeper.Recover(ctx, promote.Trigger{Reason: "drill switchover"}, promote.Choice{})
	return err
}

func (switchoverBreaker) Restart(context.Context, string) error { return nil }

type commandBreaker struct{ kill, restart []string }

func (b commandBreaker) Kill(ctx context.Context, addr string) error {
	_, err := command.Run(ctx, b.kill, command.Options{Placeholders: map[string]string{"{instance}": addr}})
	return err
}

func (b commandBreaker) Restart(ctx context.Context, addr string) error {
	_, err := command.Run(ctx, b.restart, command.Options{Placeholders: map[string]string{"{instance}": addr}})
	return err
}
