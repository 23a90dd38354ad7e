package main

import (
	"fmt"

	"github.com/dbha/dbha/backup"
	"github.com/dbha/dbha/binlog"
	mysqlstream "github.com/dbha/dbha/binlog/mysql"
	pgstream "github.com/dbha/dbha/binlog/postgres"
	"github.com/dbha/dbha/config"
	"github.com/dbha/dbha/promote"
	"github.com/dbha/dbha/topology"
	"github.com/dbha/dbha/topology/mysql"
	"github.com/dbha/dbha/topology/postgres"
)

// newEngine wires a cluster's replication controller, and its stream store
// for the events only dbha holds, into what promote acts through.
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
	dbTLS := cl.TLS.Settings() // one set of configs for every connection of the engine
	if cl.Engine == topology.Postgres {
		c := postgres.NewController(cl.User, password, cl.Replication.User, replPassword)
		c.SetTLS(dbTLS)
		c.SetRejoinCommand(cl.Promotion.RejoinCommand)
		h := pgstream.Handover{Dir: store, RestoreCommand: cl.Promotion.RestoreCommand, Standby: c}
		rw := pgstream.Rewinder{User: cl.Replication.User, Password: replPassword, TLS: dbTLS, Rejoiner: c}
		return postgresEngine{Controller: c, Handover: h, Rewinder: rw}, c.Close, nil
	}
	c := mysql.NewController(cl.Engine, cl.User, password, cl.Replication.User, replPassword)
	c.SetTLS(dbTLS)
	c.SetHeartbeat(cfg.Checks.Heartbeat)
	c.SetSemiSyncPrimary(cl.Stream.SemiSync)
	if a := cl.Promotion.Apply; a.User != "" {
		applyPassword, err := readSecret(a.Password())
		if err != nil {
			return nil, nil, usageError(fmt.Errorf("cluster %s: promotion.apply: %w", cl.Name, err))
		}
		c.SetApplyAccount(a.User, applyPassword)
	}
	// A rewind reads a fenced old primary's tail under the stream's
	// server_id: the stream itself follows the primary, never that instance.
	c.SetTailSaver(mysqlstream.TailCopier{ServerID: cl.Stream.ServerID})
	return mariadbEngine{Controller: c, Replay: mysqlstream.Replay{Dir: store, Replica: c}}, c.Close, nil
}

// mariadbEngine is a MariaDB promotion's engine: the controller (which
// also rewinds a former primary's unreplicated tail), plus replay of
// dbha's binlog store.
type mariadbEngine struct {
	*mysql.Controller
	mysqlstream.Replay
}

// postgresEngine is a PostgreSQL promotion's engine: the controller, plus
// the hand-over of dbha's WAL store through restore_command, plus the
// rewind that saves what pg_rewind discards before the rejoin command runs.
type postgresEngine struct {
	*postgres.Controller
	pgstream.Handover
	pgstream.Rewinder
}

// A reseed attaches the replica it rebuilt through the same engine; the
// keeper rewinds a former primary that holds what the writer lacks
// through it.
var (
	_ backup.Replication = mariadbEngine{}
	_ backup.Replication = postgresEngine{}
	_ promote.Rewinder   = mariadbEngine{}
	_ promote.Rewinder   = postgresEngine{}
)
