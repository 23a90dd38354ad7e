package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/dbha/dbha/binlog"
	"github.com/dbha/dbha/config"
	"github.com/dbha/dbha/consul"
	"github.com/dbha/dbha/promote"
	"github.com/dbha/dbha/topology"
)

// newKeeper wires the keeper of one cluster: a prober for fresh snapshots,
// Consul for the lock, records and endpoints, the engine and the hooks,
// and the cluster's stream in this process (nil when none runs here),
// which its failovers cut from the old primary. With c nil the keeper can
// only plan (`dbha promote --dry-run`, the console's switchover page),
// which needs neither Consul nor the replication account: it reads what
// consistency checks found from Consul if Consul answers (consulSummary),
// and its plan says so when it does not.
func newKeeper(g *globalFlags, cfg config.Config, cl config.Cluster, c *consul.Client, streams promote.Streams, log *slog.Logger) (*promote.Keeper, func(), error) {
	prober, closeProber, err := newProber(cl)
	if err != nil {
		return nil, nil, err
	}
	closeAll := func() { closeProber() }
	pr := cl.Promotion
	env := promote.RecoverEnv{
		Discover: func(ctx context.Context, bounds ...topology.Bound) topology.Snapshot {
			return topology.Discover(ctx, cl.Topology(), prober, cfg.Probe.Timeout, bounds...)
		},
		Hooks:                 promote.CommandHooks{Before: pr.BeforePromote, After: pr.AfterPromote, Timeout: pr.StepTimeout},
		Manager:               managerName(cfg),
		SaveDir:               filepath.Join(cfg.StateDir, "rewinds", cl.Name),
		StepTimeout:           pr.StepTimeout,
		OldPrimaryTimeout:     pr.OldPrimaryTimeout,
		RecheckTimeout:        pr.RecheckTimeout,
		Streams:               streams,
		BlockFor:              pr.Window(),
		RequireFencing:        pr.RequireFencing,
		Managers:              len(cfg.Manager.Members),
		Acks:                  promote.AckFile{Path: filepath.Join(cfg.StateDir, "acks", cl.Name+".json")},
		ProceedOnFenceFailure: pr.ProceedOnFenceFailure(),
		BeforeStep:            stepTrap(os.LookupEnv, log), // a testing hook; nil unless the lab set it
	}
	if len(pr.FenceCommand) > 0 {
		env.Fencer = promote.CommandFencer{Argv: pr.FenceCommand, Timeout: pr.FenceTimeout}
	}
	if c == nil {
		env.Consistency = consulSummary{cfg: cfg}
	} else {
		engine, closeEngine, err := newEngine(cfg, cl)
		if err != nil {
			closeProber()
			return nil, nil, err
		}
		closeAll = func() { closeEngine(); closeProber() }
		env.Engine, env.Store = engine, c.Recoveries(filepath.Join(cfg.StateDir, "audit.jsonl"))
		if pr.LeaseTTL > 0 {
			// The watch lets a revocation wait from the old primary's last
			// renewal rather than from itself (consul.Leases.Watch).
			leases := c.Leases(pr.LeaseTTL)
			wctx, stopWatch := context.WithCancel(context.Background())
			go leases.Watch(wctx, cl.Name)
			env.Leases = leases
			closeAll = func() { stopWatch(); closeEngine(); closeProber() }
		}
	}
	if pr.IsAutoReseed() {
		env.Reseed = func(ctx context.Context, addr string) error {
			_, err := reseedInstance(ctx, g, cfg, cl, reseedRequest{instance: addr}, io.Discard)
			return err
		}
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	request := func() promote.Request { return promotionRequest(cfg, cl) }
	return promote.NewKeeper(cl.Name, env, request, log.With("cluster", cl.Name)), closeAll, nil
}

// summaryTimeout bounds a plan-only keeper's reading of the consistency
// summary, connection included: a dry run without Consul plans after it.
const summaryTimeout = 3 * time.Second

// consulSummary reads the consistency summary (consul.Client.Inconsistent)
// for a keeper without Consul of its own: it connects when the plan asks,
// within summaryTimeout. Its error, such as Consul not answering, is what
// the plan reports as not read.
type consulSummary struct{ cfg config.Config }

func (s consulSummary) Inconsistent(ctx context.Context, cluster string) (map[string]string, error) {
	ctx, cancel := context.WithTimeout(ctx, summaryTimeout)
	defer cancel()
	c, err := newConsul(ctx, s.cfg)
	if err != nil {
		return nil, err
	}
	return c.Inconsistent(ctx, cluster)
}

// newClusterKeeper is newKeeper for a single command: it connects to
// Consul itself.
func newClusterKeeper(ctx context.Context, g *globalFlags, cfg config.Config, cl config.Cluster, log *slog.Logger) (*promote.Keeper, func(), error) {
	c, err := newConsul(ctx, cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("a promotion needs Consul for its lock and the writer endpoint: %w", err)
	}
	return newKeeper(g, cfg, cl, c, nil, log)
}

// promotionRequest gathers what a plan needs beyond the snapshot: the
// operator's rules, and what dbha's stream holds of the primary (which is
// also the last position dbha saw it at).
func promotionRequest(cfg config.Config, cl config.Cluster) promote.Request {
	pr := cl.Promotion
	req := promote.Request{Rules: promote.Rules{
		Prefer: pr.Prefer, Never: pr.Never, Priority: pr.Priority, MaxLagSeconds: pr.MaxLagSeconds}}
	dir := binlog.Dir(cfg.StateDir, cl.Name)
	st, err := binlog.ReadStatus(dir)
	if err != nil {
		return req
	}
	req.LastPrimary = st.Primary
	if st.Position.IsZero() {
		return req
	}
	if store, err := openStore(cfg, cl); err == nil {
		if pos := store.Position(); !pos.IsZero() {
			req.Held = &promote.Held{Position: pos, From: st.Primary}
			req.LastSeen = pos
		}
	}
	return req
}
