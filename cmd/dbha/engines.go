package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/dbha/dbha/binlog"
	mariadbstream "github.com/dbha/dbha/binlog/mariadb"
	walstream "github.com/dbha/dbha/binlog/wal"
	"github.com/dbha/dbha/config"
	"github.com/dbha/dbha/promote"
	"github.com/dbha/dbha/topology"
	"github.com/dbha/dbha/topology/mysql"
	"github.com/dbha/dbha/topology/postgres"
)

// newEngine wires a cluster's replication controller, and its stream store
// for the events only dbha holds, into what promote.Execute acts through.
func newEngine(cfg config.Config, cl config.Cluster) (promote.Engine, func() error, error) {
	password, err := readSecret(cl.Password())
	if err != nil {
		return nil, nil, usageError(fmt.Errorf("cluster %s: %w", cl.Name, err))
	}
	replPassword, err := readSecret(cl.Replication.Password())
	if err != nil {
		return nil, nil, usageError(fmt.Errorf("cluster %s: replication: %w", cl.Name, err))
	}
	store := binlog.Dir(cfg.StateDir, cl.Name)
	if cl.Engine == config.Postgres {
		c := postgres.NewController(cl.User, password, cl.Replication.User, replPassword)
		return postgresEngine{Controller: c, storeDir: store, restoreCommand: cl.Promotion.RestoreCommand}, c.Close, nil
	}
	c := mysql.NewController(topology.Engine(cl.Engine), cl.User, password, cl.Replication.User, replPassword)
	if a := cl.Promotion.Apply; a.User != "" {
		applyPassword, err := readSecret(a.Password())
		if err != nil {
			return nil, nil, usageError(fmt.Errorf("cluster %s: promotion.apply: %w", cl.Name, err))
		}
		c.SetApplyAccount(a.User, applyPassword)
	}
	return mariadbEngine{Controller: c, storeDir: store}, c.Close, nil
}

// mariadbEngine is a MariaDB promotion's engine: the controller, plus
// replay of dbha's binlog store.
type mariadbEngine struct {
	*mysql.Controller
	storeDir string
}

// ApplyFromStream replays on addr what the store holds beyond addr's
// binlog position, up to upto.
func (e mariadbEngine) ApplyFromStream(ctx context.Context, addr string, upto topology.Position) error {
	st, err := mariadbstream.OpenStore(e.storeDir)
	if err != nil {
		return fmt.Errorf("open dbha's binlog store: %w", err)
	}
	var files []string
	for _, f := range st.Files() {
		files = append(files, filepath.Join(e.storeDir, f))
	}
	after, err := e.Position(ctx, addr)
	if err != nil {
		return err
	}
	return e.ApplyBinlog(ctx, addr, files, after, upto)
}

// postgresEngine is a PostgreSQL promotion's engine. Standbys keep
// streaming until promoted (nothing to stop), and cannot take WAL from
// another standby; WAL only dbha holds reaches the candidate through
// restore_command.
type postgresEngine struct {
	*postgres.Controller
	storeDir       string
	restoreCommand string // "{store}" stands for the directory the WAL is staged in
}

func (postgresEngine) StopFollowing(context.Context, string) error { return nil }

func (postgresEngine) CatchUpFrom(_ context.Context, addr, source string, _ topology.Position) error {
	return fmt.Errorf("catch %s up from %s: PostgreSQL standbys cannot take WAL from one another", addr, source)
}

// ApplyFromStream stages the WAL dbha holds beyond addr's replay position
// in a fresh directory the database server can read, points addr's
// restore_command at it, waits until addr has replayed upto, and then
// removes both. A standby whose primary is gone tries restore_command for
// the WAL it lacks on its own.
func (e postgresEngine) ApplyFromStream(ctx context.Context, addr string, upto topology.Position) error {
	st, err := walstream.OpenStore(e.storeDir)
	if err != nil {
		return fmt.Errorf("open dbha's WAL store: %w", err)
	}
	from, err := e.Position(ctx, addr)
	if err != nil {
		return err
	}
	staging, err := os.MkdirTemp("", "dbha-wal-")
	if err != nil {
		return fmt.Errorf("stage WAL for %s: %w", addr, err)
	}
	defer os.RemoveAll(staging)
	if err := os.Chmod(staging, 0o755); err != nil {
		return err
	}
	if _, err := st.Stage(staging, from); err != nil {
		return fmt.Errorf("stage WAL for %s: %w", addr, err)
	}
	if err := e.SetRestoreCommand(ctx, addr, strings.ReplaceAll(e.restoreCommand, "{store}", staging)); err != nil {
		return err
	}
	defer e.ResetRestoreCommand(context.WithoutCancel(ctx), addr)
	return e.WaitApplied(ctx, addr, upto)
}
