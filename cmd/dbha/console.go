package main

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"path/filepath"
	"time"

	"github.com/dbha/dbha/config"
	"github.com/dbha/dbha/console"
	"github.com/dbha/dbha/consul"
	"github.com/dbha/dbha/daemon"
	"github.com/dbha/dbha/promote"
)

// withConsole serves the console under /console/ beside api (the API and
// metrics): the API token signs in operators, http.viewer_token viewers.
func withConsole(cfg config.Config, m *daemon.Monitor, api http.Handler, operatorToken string, log *slog.Logger) (http.Handler, error) {
	viewer := ""
	if t := cfg.HTTP.ViewerToken(); t.File != "" || t.Env != "" {
		v, err := readSecret(t)
		if err != nil {
			return nil, usageError(errors.Join(errors.New("http viewer token"), err))
		}
		viewer = v
	}
	audit := filepath.Join(cfg.StateDir, "audit.jsonl")
	con, err := console.New(console.Options{States: m.States, OperatorToken: operatorToken, ViewerToken: viewer,
		Actions: &consoleActions{cfg: cfg}, Logger: log.With("component", "console"),
		Audit: func(a console.AuditLine) error { return consul.AppendAudit(audit, a) }})
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("/console/", con.Handler())
	mux.Handle("/", api)
	return mux, nil
}

// consoleActions carries the console's actions out in Consul, connecting
// at each one (Consul may have been away when dbha run started).
type consoleActions struct{ cfg config.Config }

func (a *consoleActions) Pause(ctx context.Context, cluster, by, reason string) error {
	c, err := newConsul(ctx, a.cfg)
	if err != nil {
		return err
	}
	return c.SetPause(ctx, cluster, promote.Pause{By: by, At: time.Now().UTC(), Reason: reason})
}

func (a *consoleActions) Paused(ctx context.Context, cluster string) (bool, error) {
	c, err := newConsul(ctx, a.cfg)
	if err != nil {
		return false, err
	}
	_, ok, err := c.GetPause(ctx, cluster)
	return ok, err
}

func (a *consoleActions) Resume(ctx context.Context, cluster, by string) error {
	c, err := newConsul(ctx, a.cfg)
	if err != nil {
		return err
	}
	return c.ClearPause(ctx, cluster)
}
