package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"slices"
	"time"

	"github.com/dbha/dbha/config"
	"github.com/dbha/dbha/console"
	"github.com/dbha/dbha/consul"
	"github.com/dbha/dbha/daemon"
	"github.com/dbha/dbha/drill"
	"github.com/dbha/dbha/promote"
)

// withConsole serves the console under /console/ beside api (the API and
// metrics): the API token signs in operators, http.viewer_token viewers.
func withConsole(g *globalFlags, cfg config.Config, m *daemon.Monitor, api http.Handler, operatorToken string, schedulers []*daemon.BackupScheduler, log *slog.Logger) (http.Handler, error) {
	viewer := ""
	if t := cfg.HTTP.ViewerToken(); t.File != "" || t.Env != "" {
		v, err := readSecret(t)
		if err != nil {
			return nil, usageError(errors.Join(errors.New("http viewer token"), err))
		}
		viewer = v
	}
	audit := filepath.Join(cfg.StateDir, "audit.jsonl")
	o := console.Options{States: m.States, OperatorToken: operatorToken, ViewerToken: viewer, Logger: log.With("component", "console"),
		Audit: func(a console.AuditLine) error { return consul.AppendAudit(audit, a) }}
	if g != nil {
		backups := map[string]*daemon.BackupScheduler{}
		for _, s := range schedulers {
			if s.Job() == "backup" {
				backups[s.Cluster()] = s
			}
		}
		o.Actions = &consoleActions{g: g, cfg: cfg, backups: backups, lazyConsul: lazyConsul{cfg: cfg}}
	}
	con, err := console.New(o)
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("/console/", con.Handler())
	mux.Handle("/", api)
	return mux, nil
}

// consoleActions carries the console's actions out in Consul, connecting
// at the first one (Consul may have been away when dbha run started) and
// keeping the client.
type consoleActions struct {
	g       *globalFlags
	cfg     config.Config
	backups map[string]*daemon.BackupScheduler // by cluster, those with a backup.schedule
	lazyConsul
}

func (a *consoleActions) consul(ctx context.Context) (*consul.Client, error) { return a.get(ctx) }

func (a *consoleActions) Pause(ctx context.Context, cluster, by, reason string) error {
	c, err := a.consul(ctx)
	if err != nil {
		return err
	}
	return c.SetPause(ctx, cluster, promote.Pause{By: by, At: time.Now().UTC(), Reason: reason})
}

func (a *consoleActions) Paused(ctx context.Context, cluster string) (bool, error) {
	c, err := a.consul(ctx)
	if err != nil {
		return false, err
	}
	_, ok, err := c.GetPause(ctx, cluster)
	return ok, err
}

func (a *consoleActions) Resume(ctx context.Context, cluster, by string) error {
	c, err := a.consul(ctx)
	if err != nil {
		return err
	}
	return c.ClearPause(ctx, cluster)
}

// PlanSwitchover plans as `dbha promote --dry-run` does, and refuses a
// failover.
func (a *consoleActions) PlanSwitchover(ctx context.Context, cluster, to string) (string, error) {
	cl, ok := a.cfg.Cluster(cluster)
	if !ok {
		return "", fmt.Errorf("no cluster %s", cluster)
	}
	planner, closePlanner, err := newKeeper(a.g, a.cfg, cl, nil, nil, nil)
	if err != nil {
		return "", err
	}
	defer closePlanner()
	plan, err := planner.Plan(ctx, promote.Choice{To: to})
	if err != nil {
		return "", err
	}
	var b bytes.Buffer
	if err := promote.WriteText(&b, plan); err != nil {
		return "", err
	}
	if plan.Kind != promote.Switchover {
		return b.String(), errNotSwitchover
	}
	return b.String(), nil
}

var errNotSwitchover = errors.New("the primary does not answer: replacing it is a failover, which dbha run starts on its own and the console never does (dbha promote, on the command line, can)")

// Switchover carries out a planned switchover under the cluster's lock,
// as `dbha promote` does. Should the primary die in between, the plan
// becomes a failover, which the trigger's unheld quorum refuses.
func (a *consoleActions) Switchover(ctx context.Context, cluster, to, by string) (string, error) {
	if _, err := a.PlanSwitchover(ctx, cluster, to); err != nil {
		return "", err
	}
	cl, _ := a.cfg.Cluster(cluster)
	keeper, closeKeeper, err := newClusterKeeper(ctx, a.g, a.cfg, cl, nil)
	if err != nil {
		return "", err
	}
	defer closeKeeper()
	rec, err := keeper.Recover(ctx, promote.Trigger{Reason: "requested from the console by " + by,
		Quorum: &promote.QuorumCount{Summary: "the console starts no failover"}}, promote.Choice{To: to})
	var b bytes.Buffer
	if rec != nil {
		if werr := writeRecord(&b, rec, "text"); werr != nil {
			return b.String(), werr
		}
	}
	return b.String(), err
}

// Recoveries reads the cluster's last n recovery records, newest first.
func (a *consoleActions) Recoveries(ctx context.Context, cluster string, n int) ([]*promote.Record, error) {
	c, err := a.consul(ctx)
	if err != nil {
		return nil, err
	}
	store := c.Recoveries(filepath.Join(a.cfg.StateDir, "audit.jsonl"))
	ids, err := c.RecoveryIDs(ctx, cluster)
	if err != nil {
		return nil, err
	}
	slices.Sort(ids) // ids begin with their time
	slices.Reverse(ids)
	var out []*promote.Record
	for _, id := range ids[:min(n, len(ids))] {
		r, err := store.Record(ctx, cluster, id)
		if err != nil {
			return out, err
		}
		if r != nil {
			out = append(out, r)
		}
	}
	return out, nil
}

func (a *consoleActions) Blocked(ctx context.Context, cluster string) (bool, error) {
	c, err := a.consul(ctx)
	if err != nil {
		return false, err
	}
	_, ok, err := c.GetBlock(ctx, cluster)
	return ok, err
}

// LiftBlock lifts the anti-flap block, as `dbha recover ack` does.
func (a *consoleActions) LiftBlock(ctx context.Context, cluster, _ string) error {
	c, err := a.consul(ctx)
	if err != nil {
		return err
	}
	return c.ClearBlock(ctx, cluster)
}

// Drills reads the cluster's last n drill reports, newest first.
func (a *consoleActions) Drills(ctx context.Context, cluster string, n int) ([]drill.Summary, error) {
	c, err := a.consul(ctx)
	if err != nil {
		return nil, err
	}
	return c.Drills(ctx, cluster, n)
}

// StartBackup starts a backup now through the cluster's scheduler.
func (a *consoleActions) StartBackup(_ context.Context, cluster, by string) error {
	s, ok := a.backups[cluster]
	if !ok {
		return fmt.Errorf("dbha run takes no backups of %s: it has no backup.schedule", cluster)
	}
	return s.Start(by)
}

func (a *consoleActions) BackupByHand(cluster string) (bool, string, time.Time) {
	s, ok := a.backups[cluster]
	if !ok {
		return false, "", time.Time{}
	}
	by, at := s.StartedByHand()
	return true, by, at
}
