package mysql

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Stopping a replica's IO thread while its primary is dead, hung or cut
// off, as measured on MariaDB 10.11 (loopback lab, the primary SIGSTOPped:
// its kernel still accepts connections, the server never answers):
//
//   - STOP SLAVE IO_THREAD sets abort_slave, shuts the IO thread's socket
//     to the primary and signals the thread (thr_client_alarm) every 2 s
//     until it exits (sql/slave.cc, terminate_slave_thread). A thread that
//     waits for an event, or for the greeting of a primary it reconnects
//     to (connect and read timeouts are slave_net_timeout), is interrupted
//     at once: STOP returns in about 0.1 s. The replica receives nothing
//     more from the moment STOP starts.
//   - A semi-sync replica (rpl_semi_sync_slave_enabled) is slower: on its
//     way out the IO thread connects to the primary to KILL its own dump
//     thread (Repl_semi_sync_slave::kill_connection), waiting up to
//     rpl_semi_sync_slave_kill_conn_timeout (default 5 s) for a greeting
//     that never comes; STOP's 2 s re-signal ends that wait (2.1 s
//     measured), a timeout of 1 s ends it sooner (1.3 s), and a timeout
//     of 0 means none: STOP then blocked 24 s. StopFollowing lowers the
//     timeout to killConnTimeout for the stop and puts it back after.
//   - KILL of the IO thread ends it no sooner: it drops out of the
//     process list at once, but its exit still makes the same call, now
//     without STOP's re-signal, and Slave_IO_Running stays Yes until the
//     call gives up (the full kill_conn_timeout). KILL takes none of the
//     replication locks STOP waits for, though, so it is the fallback for
//     a STOP that does not return within stopWait (another session holding
//     those locks; nothing seen here): STOP is then asked again, bounded by
//     the caller's context, and returns once the thread has exited.
//   - A lower slave_net_timeout only shortens how long the IO thread
//     waits before it notices (detection's business); STOP does not wait
//     for that timeout.
const (
	stopWait        = 3 * time.Second
	killConnTimeout = 1
)

// StopFollowing stops the IO thread without waiting on the source (see
// above): the replica receives nothing more from it, and its SQL thread
// goes on applying its relay log. It is quick when the thread is not
// running.
func (c mariadbControl) StopFollowing(ctx context.Context, addr string) error {
	db, err := c.db(addr)
	if err != nil {
		return err
	}
	io, err := ioThread(ctx, db)
	if err != nil {
		return fmt.Errorf("find the IO thread of %s: %w", addr, err)
	}
	if io == 0 {
		return nil
	}
	restore, err := boundSemiSyncKill(ctx, db)
	if err != nil {
		return fmt.Errorf("bound the semi-sync exit of %s's IO thread: %w", addr, err)
	}
	defer restore()

	sctx, cancel := context.WithTimeout(ctx, stopWait)
	_, err = db.ExecContext(sctx, "STOP SLAVE IO_THREAD")
	cancel()
	if err == nil || ctx.Err() != nil {
		return wrapStmt("STOP SLAVE IO_THREAD", addr, err)
	}
	// The STOP goes on in the server; end the thread as well, then wait
	// for it with a STOP bounded by the caller (it returns once the thread
	// has exited). A KILL error (the thread ended meanwhile) is no failure.
	if io, ierr := ioThread(ctx, db); ierr == nil && io != 0 {
		db.ExecContext(ctx, "KILL CONNECTION "+strconv.FormatInt(io, 10))
	}
	_, err = db.ExecContext(ctx, "STOP SLAVE IO_THREAD")
	return wrapStmt(fmt.Sprintf("STOP SLAVE IO_THREAD (after a first one did not return within %v, and a KILL of the IO thread)", stopWait), addr, err)
}

func wrapStmt(stmt, addr string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s on %s: %w", stmt, addr, err)
}

// ioThread returns the process list id of addr's IO thread, 0 when none
// runs. While it connects to its source its command is Connect, then
// Slave_IO.
func ioThread(ctx context.Context, db *sql.DB) (int64, error) {
	var id int64
	err := db.QueryRowContext(ctx, `SELECT id FROM information_schema.PROCESSLIST
		WHERE user = 'system user' AND command IN ('Slave_IO', 'Connect') ORDER BY id LIMIT 1`).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	return id, err
}

// boundSemiSyncKill lowers rpl_semi_sync_slave_kill_conn_timeout to
// killConnTimeout on a semi-sync replica whose timeout is longer (or 0,
// none), and returns what puts it back. A server without semi-sync
// variables, or not a semi-sync replica, is left alone.
func boundSemiSyncKill(ctx context.Context, db *sql.DB) (restore func(), err error) {
	noop := func() {}
	rows, err := db.QueryContext(ctx, "SHOW GLOBAL VARIABLES WHERE Variable_name IN ('rpl_semi_sync_slave_enabled', 'rpl_semi_sync_slave_kill_conn_timeout')")
	if err != nil {
		return noop, err
	}
	vars := map[string]string{}
	for rows.Next() {
		var name, value string
		if err := rows.Scan(&name, &value); err != nil {
			rows.Close()
			return noop, err
		}
		vars[name] = value
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return noop, err
	}
	timeout, terr := strconv.Atoi(vars["rpl_semi_sync_slave_kill_conn_timeout"])
	if !strings.EqualFold(vars["rpl_semi_sync_slave_enabled"], "ON") || terr != nil || (timeout > 0 && timeout <= killConnTimeout) {
		return noop, nil
	}
	if _, err := db.ExecContext(ctx, fmt.Sprintf("SET GLOBAL rpl_semi_sync_slave_kill_conn_timeout = %d", killConnTimeout)); err != nil {
		return noop, err
	}
	return func() {
		// Put back even when the caller's context has ended; bounded.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), stopWait)
		defer cancel()
		db.ExecContext(rctx, fmt.Sprintf("SET GLOBAL rpl_semi_sync_slave_kill_conn_timeout = %d", timeout))
	}, nil
}
