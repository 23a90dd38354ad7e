package mysql

import (
	"context"
	"database/sql"
	"fmt"
	"strconv"
	"time"

	"github.com/dbha/dbha/topology"
)

// probeMariaDB reads a MariaDB server's identity, GTID positions and its
// replication link. It needs no privilege beyond REPLICA MONITOR.
func probeMariaDB(ctx context.Context, conn *sql.Conn, in *topology.Instance) error {
	var (
		readOnly                            bool
		current, slave, binlogState, strict string
		ack                                 topology.Acknowledgement
	)
	// The semi-sync variables are built into MariaDB since 10.3.
	err := conn.QueryRowContext(ctx, `SELECT @@version, @@server_id, @@read_only,
		@@gtid_current_pos, @@gtid_slave_pos, @@gtid_binlog_state, @@gtid_strict_mode,
		@@rpl_semi_sync_master_enabled, @@rpl_semi_sync_master_wait_no_slave,
		@@rpl_semi_sync_master_timeout, @@rpl_semi_sync_master_wait_point`).
		Scan(&in.Version, &in.ServerID, &readOnly, &current, &slave, &binlogState, &strict,
			&ack.SemiSync, &ack.WaitNoReplica, &ack.TimeoutMS, &ack.WaitPoint)
	if err != nil {
		return fmt.Errorf("read server variables: %w", err)
	}
	in.ReadOnly, in.Ack = readOnly, &ack
	if in.Current, err = topology.ParseMariaDB(current); err != nil {
		return fmt.Errorf("gtid_current_pos: %w", err)
	}
	if in.Applied, err = topology.ParseMariaDB(slave); err != nil {
		return fmt.Errorf("gtid_slave_pos: %w", err)
	}
	if in.History, err = topology.ParseMariaDB(binlogState); err != nil {
		return fmt.Errorf("gtid_binlog_state: %w", err)
	}

	rows, err := queryStatus(ctx, conn, "SHOW ALL SLAVES STATUS")
	if err != nil {
		return err
	}
	row, ok := defaultConnection(rows)
	if !ok {
		return nil
	}
	in.Replication = replicationFrom(row)
	if hb, err := strconv.ParseInt(row.get("Slave_received_heartbeats"), 10, 64); err == nil {
		in.Replication.Heartbeats = hb
	}
	if period, err := strconv.ParseFloat(row.get("Slave_heartbeat_period"), 64); err == nil && period > 0 {
		in.Replication.Heartbeat = topology.Duration(period * float64(time.Second))
	}
	if in.Received, err = topology.ParseMariaDB(row.get("Gtid_IO_Pos")); err != nil {
		return fmt.Errorf("Gtid_IO_Pos: %w", err)
	}
	return nil
}

// defaultConnection picks the unnamed replication connection, or the only
// one. MariaDB multi-source replication beyond one source is not modelled.
func defaultConnection(rows []statusRow) (statusRow, bool) {
	for _, r := range rows {
		if r.get("Connection_name") == "" {
			return r, true
		}
	}
	if len(rows) > 0 {
		return rows[0], true
	}
	return nil, false
}
