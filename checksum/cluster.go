package checksum

import (
	"context"
	"database/sql"
	"fmt"
	"io"

	"github.com/jackc/pgx/v5"

	"github.com/dbha/dbha/tlsconfig"
	"github.com/dbha/dbha/topology"
	"github.com/dbha/dbha/topology/mysql"
	"github.com/dbha/dbha/topology/postgres"
)

// Recorder keeps what a run established (*consul.Client: MergeChecksum).
type Recorder interface {
	MergeChecksum(ctx context.Context, r Report) (Summary, error)
}

// Cluster is one check of a cluster as it stands: its snapshot, the
// account that reads every table, and where the result is recorded
// (nil: nowhere).
type Cluster struct {
	Snapshot       topology.Snapshot
	User, Password string
	TLS            *tlsconfig.Settings // nil: clear text
	Recorder       Recorder
}

// CheckCluster checks the snapshot's primary against its healthy replicas
// (the others are reported lost, with why) and records the report. A
// record that fails is said on o.Progress: the report stands alone.
func CheckCluster(ctx context.Context, c Cluster, o Options) (Report, error) {
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	s := c.Snapshot
	if s.Primary == "" {
		return Report{}, fmt.Errorf("cluster %s: no primary to check against: %v", s.Cluster, s.Problems)
	}
	replicas, unhealthy := HealthyReplicas(s)
	o.Primary = s.Primary
	e, closeEngine, err := Connect(s.Engine, s.Primary, replicas, c.User, c.Password, c.TLS)
	if err != nil {
		return Report{}, err
	}
	defer closeEngine()
	r, err := Run(ctx, e, o)
	r.Lost = append(unhealthy, r.Lost...)
	if err != nil || c.Recorder == nil {
		return r, err
	}
	if _, err := c.Recorder.MergeChecksum(ctx, r); err != nil {
		fmt.Fprintf(o.Progress, "the result is not recorded (promotion will not know it): %v\n", err)
	}
	return r, nil
}

// Connect is the engine of a cluster's primary and replicas, logged in
// with user and password, encrypted as t says.
func Connect(engine topology.Engine, primary string, replicas []string, user, password string, t *tlsconfig.Settings) (Engine, func(), error) {
	switch engine {
	case topology.MariaDB:
		m := NewMariaDB(primary, replicas, func(addr string) (*sql.DB, error) { return mysql.Open(addr, user, password, t) })
		return m, m.Close, nil
	case topology.Postgres:
		p := NewPostgres(primary, replicas, func(ctx context.Context, addr, database string) (*pgx.Conn, error) {
			cc, err := postgres.ConnConfig(addr, user, password, database, t)
			if err != nil {
				return nil, err
			}
			pc, err := pgx.ParseConfig("")
			if err != nil {
				return nil, err
			}
			pc.Config = *cc
			return pgx.ConnectConfig(ctx, pc)
		})
		return p, p.Close, nil
	}
	return nil, nil, fmt.Errorf("dbha checksum supports MariaDB and PostgreSQL, not %s", engine)
}

// HealthyReplicas are the primary's replicas that are reachable and
// replicating; the others, with why, are not compared. Pure.
func HealthyReplicas(snap topology.Snapshot) ([]string, []ReplicaProblem) {
	var ok []string
	var not []ReplicaProblem
	for _, in := range snap.Instances {
		switch {
		case in.Addr == snap.Primary:
		case !in.Reachable:
			not = append(not, ReplicaProblem{Replica: in.Addr, Reason: "unreachable: " + in.Error})
		case in.Replication == nil || in.Replication.Source != snap.Primary:
			not = append(not, ReplicaProblem{Replica: in.Addr, Reason: "does not replicate from the primary " + snap.Primary})
		case !in.Replication.IORunning || !in.Replication.SQLRunning:
			not = append(not, ReplicaProblem{Replica: in.Addr, Reason: fmt.Sprintf("replication is not running (%s / %s)", in.Replication.IOState, in.Replication.SQLState)})
		default:
			ok = append(ok, in.Addr)
		}
	}
	return ok, not
}
