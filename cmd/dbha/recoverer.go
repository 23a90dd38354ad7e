package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os/exec"
	"strings"
	"sync"
	"time"

	"github.com/dbha/dbha/config"
	"github.com/dbha/dbha/consul"
	"github.com/dbha/dbha/daemon"
	"github.com/dbha/dbha/promote"
	"github.com/dbha/dbha/topology"
)

// recoverer is the daemon's bridge to promote: one recovery environment per
// cluster, all sharing Consul.
type recoverer struct {
	cfg    config.Config
	consul *consul.Client
	envs   map[string]promote.RecoverEnv
	log    *slog.Logger

	mu           sync.Mutex
	rejoinFailed map[string]time.Time // instance → last failed rejoin_command
}

func newRecoverer(ctx context.Context, cfg config.Config, clusters []config.Cluster, c *consul.Client, log *slog.Logger) (*recoverer, func(), error) {
	r := &recoverer{cfg: cfg, consul: c, envs: map[string]promote.RecoverEnv{}, log: log, rejoinFailed: map[string]time.Time{}}
	var closers []func()
	closeAll := func() {
		for _, f := range closers {
			f()
		}
	}
	for _, cl := range clusters {
		prober, closeProber, err := newProber(cl)
		if err != nil {
			closeAll()
			return nil, nil, err
		}
		closers = append(closers, func() { closeProber() })
		discover := func(ctx context.Context) topology.Snapshot {
			return topology.Discover(ctx, cl.Name, cl.Engine, cl.Instances, prober, cfg.Probe.Timeout)
		}
		env, closeEnv, err := recoverEnv(ctx, cfg, cl, discover, log)
		if err != nil {
			closeAll()
			return nil, nil, err
		}
		closers = append(closers, closeEnv)
		r.envs[cl.Name] = env
	}
	return r, closeAll, nil
}

func (r *recoverer) Resume(ctx context.Context, cluster string) (*promote.Record, error) {
	return promote.Resume(ctx, r.envs[cluster], cluster)
}

func (r *recoverer) Recover(ctx context.Context, cluster string, t promote.Trigger) (*promote.Record, error) {
	cl, _ := r.cfg.Cluster(cluster)
	return promote.Recover(ctx, r.envs[cluster], cluster, promotionRequest(r.cfg, cl, "", false), t)
}

// Publish points the writer and reader endpoints. It never moves the
// writer away from an instance that cannot be reached: that instance may
// be alive behind a partition, and moving writers is a failover's job,
// which fences first.
func (r *recoverer) Publish(ctx context.Context, s topology.Snapshot, writer string, readers []string) error {
	return r.underLock(ctx, s.Cluster, func(fresh topology.Snapshot) error {
		if p, err := fresh.WritablePrimary(); err != nil || p != writer {
			return daemon.ErrBusy // the next cycle publishes what it settles on
		}
		return r.publish(ctx, fresh, writer, readers)
	})
}

func (r *recoverer) publish(ctx context.Context, s topology.Snapshot, writer string, readers []string) error {
	current, err := r.consul.Writer(ctx, s.Cluster)
	if err != nil {
		return err
	}
	if len(current) == 1 && current[0] != writer {
		if in, ok := s.Instance(current[0]); !ok || !in.Reachable {
			return fmt.Errorf("the writer endpoint names %s, which cannot be reached; it is not moved to %s outside a failover", current[0], writer)
		}
	}
	if err := r.consul.SetWriter(ctx, s.Cluster, writer); err != nil {
		return err
	}
	return r.consul.SetReaders(ctx, s.Cluster, readers)
}

// Enforce keeps one writer and brings a former primary back, as
// promote.Enforce decides: writable instances the writer endpoint does not
// name are fenced; the latest recovery's old primary, back and fenced,
// rejoins (MariaDB by a repoint, PostgreSQL through rejoin_command).
func (r *recoverer) Enforce(ctx context.Context, cluster string, _ topology.Snapshot) error {
	return r.underLock(ctx, cluster, func(fresh topology.Snapshot) error { return r.enforce(ctx, cluster, fresh) })
}

// underLock runs fn holding the cluster's lock, only when no recovery is in
// progress, and with a snapshot taken under the lock: a recovery between
// its promote and its move-writer steps has a writable new primary the
// writer endpoint does not name yet, which an unlocked Enforce, or one
// acting on a snapshot from before the recovery, would fence. While another
// manager (or a recovery) holds the lock, fn is skipped: the holder keeps
// the cluster in order.
func (r *recoverer) underLock(ctx context.Context, cluster string, fn func(topology.Snapshot) error) error {
	env := r.envs[cluster]
	lease, err := env.Store.Acquire(ctx, cluster, env.Manager)
	if errors.Is(err, promote.ErrLocked) {
		return daemon.ErrBusy
	}
	if err != nil {
		return err
	}
	defer lease.Release()
	if rec, err := env.Store.Unfinished(ctx, cluster); err != nil || rec != nil {
		if err == nil {
			err = daemon.ErrBusy
		}
		return err
	}
	return fn(env.Discover(ctx))
}

func (r *recoverer) enforce(ctx context.Context, cluster string, s topology.Snapshot) error {
	writers, err := r.consul.Writer(ctx, cluster)
	if err != nil || len(writers) != 1 {
		return err
	}
	writer := writers[0]
	latest, err := r.consul.Recoveries("").Latest(ctx, cluster)
	if err != nil {
		return err
	}
	e := promote.Enforce(s, writer, latest)
	engine := r.envs[cluster].Engine
	for _, addr := range e.Fence {
		if err := engine.Fence(ctx, addr); err != nil {
			return fmt.Errorf("fence %s (the writer is %s): %w", addr, writer, err)
		}
		r.log.Warn("fenced a writable instance that is not the writer", "cluster", cluster, "instance", addr, "writer", writer)
	}
	switch {
	case e.Hold != "":
		r.log.Warn("the old primary stays fenced", "cluster", cluster, "why", e.Hold)
	case e.Rejoin != "" && s.Engine == topology.Postgres:
		return r.rejoinCommand(ctx, cluster, e.Rejoin, writer)
	case e.Rejoin != "":
		if err := engine.Repoint(ctx, e.Rejoin, writer); err != nil {
			return fmt.Errorf("rejoin %s as a replica of %s: %w", e.Rejoin, writer, err)
		}
		r.log.Warn("the old primary rejoined as a replica", "cluster", cluster, "instance", e.Rejoin, "primary", writer)
	}
	return nil
}

// rejoinCommand runs a PostgreSQL cluster's rejoin_command for a fenced old
// primary; after a failure, not again for 30 s: pg_rewind is heavy, and a
// failing one must not run every cycle.
func (r *recoverer) rejoinCommand(ctx context.Context, cluster, instance, primary string) error {
	cl, _ := r.cfg.Cluster(cluster)
	argv := cl.Promotion.RejoinCommand
	if len(argv) == 0 {
		return nil
	}
	r.mu.Lock()
	if time.Since(r.rejoinFailed[instance]) < 30*time.Second {
		r.mu.Unlock()
		return nil
	}
	r.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if err := runCommand(ctx, argv, "{instance}", instance, "{primary}", primary); err != nil {
		r.mu.Lock()
		r.rejoinFailed[instance] = time.Now()
		r.mu.Unlock()
		return fmt.Errorf("rejoin_command for %s: %w", instance, err)
	}
	r.log.Warn("the old primary rejoined as a standby", "cluster", cluster, "instance", instance, "primary", primary)
	return nil
}

// runCommand runs an operator's command with placeholders replaced (pairs
// of placeholder and value), and returns its output in the error.
func runCommand(ctx context.Context, argv []string, replace ...string) error {
	r := strings.NewReplacer(replace...)
	args := make([]string, len(argv))
	for i, a := range argv {
		args[i] = r.Replace(a)
	}
	out, err := exec.CommandContext(ctx, args[0], args[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %w: %s", args[0], err, strings.TrimSpace(string(out)))
	}
	return nil
}
