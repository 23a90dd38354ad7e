package main

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"

	"github.com/dbha/dbha/binlog"
	mariadbstream "github.com/dbha/dbha/binlog/mariadb"
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
		return postgresEngine{Controller: c}, c.Close, nil
	}
	c := mysql.NewController(cl.User, password, cl.Replication.User, replPassword)
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
// another standby.
type postgresEngine struct {
	*postgres.Controller
}

func (postgresEngine) StopFollowing(context.Context, string) error { return nil }

func (postgresEngine) CatchUpFrom(_ context.Context, addr, source string, _ topology.Position) error {
	return fmt.Errorf("catch %s up from %s: PostgreSQL standbys cannot take WAL from one another", addr, source)
}

// errNoWALHandover: handing dbha's WAL to a candidate is not wired yet.
var errNoWALHandover = errors.New("handing WAL from dbha's store to a PostgreSQL candidate is not available yet")

func (postgresEngine) ApplyFromStream(_ context.Context, addr string, upto topology.Position) error {
	return fmt.Errorf("apply WAL up to %s on %s: %w", upto, addr, errNoWALHandover)
}
