package mysql

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	gomysql "github.com/go-sql-driver/mysql"

	"github.com/dbha/dbha/topology"
)

// probeMySQL reads a MySQL server's identity, gtid_executed and replication
// link. MySQL 8.0.22+ answers SHOW REPLICA STATUS; older servers only the
// SLAVE spelling, which we fall back to.
func probeMySQL(ctx context.Context, conn *sql.Conn, in *topology.Instance) error {
	var (
		readOnly bool
		executed string
	)
	err := conn.QueryRowContext(ctx, `SELECT @@version, @@server_id, @@read_only, @@gtid_executed`).
		Scan(&in.Version, &in.ServerID, &readOnly, &executed)
	if err != nil {
		return fmt.Errorf("read server variables: %w", err)
	}
	in.ReadOnly = readOnly
	if in.Current, err = topology.ParseMySQL(executed); err != nil {
		return fmt.Errorf("gtid_executed: %w", err)
	}
	in.Applied = in.Current

	rows, err := queryStatus(ctx, conn, "SHOW REPLICA STATUS")
	var me *gomysql.MySQLError
	if errors.As(err, &me) && me.Number == 1064 { // syntax error: a server older than 8.0.22
		rows, err = queryStatus(ctx, conn, "SHOW SLAVE STATUS")
	}
	if err != nil {
		return err
	}
	if len(rows) == 0 {
		return nil
	}
	row := rows[0]
	in.Replication = replicationFrom(row)
	// What the replica holds is what it executed plus what it retrieved
	// into its relay log and has not applied yet.
	received := executed
	if retrieved := row.get("Retrieved_Gtid_Set"); retrieved != "" && executed != "" {
		received = executed + "," + retrieved
	} else if retrieved != "" {
		received = retrieved
	}
	if in.Received, err = topology.ParseMySQL(received); err != nil {
		return fmt.Errorf("Retrieved_Gtid_Set: %w", err)
	}
	return nil
}
