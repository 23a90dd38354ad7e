package mysql

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/dbha/dbha/tlsconfig"
	"github.com/dbha/dbha/topology"
)

// mariadbControl is MariaDB's replication control: its SQL (SLAVE statements,
// MASTER_GTID_WAIT, MASTER_USE_GTID, the gtid_*_pos variables) and its
// mariadb-binlog tool.
type mariadbControl struct{ *servers }

// WaitApplied waits until the instance has applied pos (MASTER_GTID_WAIT
// for replicated transactions; its binlog position for transactions
// applied by a client), polling until ctx ends.
func (c mariadbControl) WaitApplied(ctx context.Context, addr string, pos topology.Position) error {
	db, err := c.db(addr)
	if err != nil {
		return err
	}
	for {
		have, err := c.applied(ctx, db, addr)
		if err != nil {
			return err
		}
		o, err := topology.Compare(have, pos)
		if err != nil {
			return err
		}
		switch o {
		case topology.Ahead, topology.Equal:
			return nil
		case topology.Diverged:
			return fmt.Errorf("%s at %s has diverged from %s", addr, have, pos)
		}
		var res sql.NullInt64
		err = db.QueryRowContext(ctx, "SELECT MASTER_GTID_WAIT(?, 0.5)", pos.String()).Scan(&res)
		if err != nil {
			return fmt.Errorf("wait on %s for %s: %w", addr, pos, err)
		}
	}
}

// applied is everything the instance executed: gtid_current_pos joined with
// gtid_binlog_pos, because transactions replayed by a client (with their
// original server_id) reach only the binlog position.
func (c mariadbControl) applied(ctx context.Context, db *sql.DB, addr string) (topology.Position, error) {
	var current, binlog string
	if err := db.QueryRowContext(ctx, "SELECT @@gtid_current_pos, @@gtid_binlog_pos").Scan(&current, &binlog); err != nil {
		return topology.Position{}, fmt.Errorf("read positions of %s: %w", addr, err)
	}
	cp, err := topology.ParseMariaDB(current)
	if err != nil {
		return cp, err
	}
	bp, err := topology.ParseMariaDB(binlog)
	if err != nil {
		return bp, err
	}
	return topology.Union(cp, bp)
}

func (c mariadbControl) CatchUpFrom(ctx context.Context, addr, source string, upto topology.Position) error {
	change, err := c.changeMaster(source)
	if err != nil {
		return err
	}
	if err := c.exec(ctx, addr, "STOP SLAVE", change,
		fmt.Sprintf("START SLAVE UNTIL master_gtid_pos = '%s'", upto)); err != nil {
		return err
	}
	if err := c.WaitApplied(ctx, addr, upto); err != nil {
		return err
	}
	return c.exec(ctx, addr, "STOP SLAVE")
}

// ApplyBinlog replays on addr the transactions that binlog files hold after
// the position after, up to upto included, keeping their GTIDs: the
// mariadb-binlog tool decodes them and the mariadb client runs the result
// as dbha's user (it needs BINLOG REPLAY). The password goes through a
// private option file, never an argument. gtid_slave_pos then follows the
// binlog, so that the instance replicates on from there.
func (c mariadbControl) ApplyBinlog(ctx context.Context, addr string, files []string, after, upto topology.Position) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if err := requireTools("mariadb-binlog", "mariadb"); err != nil {
		return err
	}
	tt, err := toolTLS(c.tls)
	if err != nil {
		return err
	}
	optFile, cleanup, err := ClientOptionFile(c.applyUser, c.applyPassword, host, port, tt)
	if err != nil {
		return err
	}
	defer cleanup()

	args := []string{"--no-defaults", "--stop-position=" + upto.String()}
	if s := after.String(); s != "" {
		args = append(args, "--start-position="+s)
	}
	err = pipeBinlog(ctx, append(args, files...), []string{"--defaults-extra-file=" + optFile, "--batch", "--binary-mode"})
	if err != nil {
		return fmt.Errorf("replay binlog on %s after %s up to %s: %w", addr, after, upto, err)
	}
	return c.exec(ctx, addr, "STOP SLAVE", "SET GLOBAL gtid_slave_pos = @@gtid_binlog_pos")
}

// ClientOptions is a [client] option file's text for the MariaDB tools
// dbha runs (mariadb, mariadb-binlog, mariadb-backup), which read the
// password from it, never from their arguments, and the TLS settings
// (ToolTLS). Every value is quoted, with the escapes option files read: a
// quote, a backslash or a line break in a value cannot end it and start
// another option.
func ClientOptions(user, password, host, port string, t ToolTLS) []byte {
	esc := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`, "\r", `\r`).Replace
	b := fmt.Appendf(nil, "[client]\nuser=\"%s\"\npassword=\"%s\"\nhost=\"%s\"\nport=\"%s\"\n", esc(user), esc(password), esc(host), esc(port))
	if t.CA != "" {
		// The client of MariaDB 10.x encrypts with --ssl alone only if the
		// server offers it, and falls back to clear text otherwise; with
		// --ssl-verify-server-cert it refuses a server without TLS, and
		// checks the chain and the server's name.
		b = fmt.Appendf(b, "ssl-ca=\"%s\"\nssl-verify-server-cert\n", esc(t.CA))
	}
	if t.Cert != "" {
		b = fmt.Appendf(b, "ssl-cert=\"%s\"\nssl-key=\"%s\"\n", esc(t.Cert), esc(t.Key))
	}
	return b
}

// ToolTLS is what a MariaDB tool is given to encrypt its connection: the
// CA it verifies the server against, and a client certificate (optional).
// The zero value is clear text.
type ToolTLS struct{ CA, Cert, Key string }

// ErrToolTLS: the tools cannot encrypt without verifying.
var ErrToolTLS = errors.New("the MariaDB client tools (mariadb, mariadb-binlog, mariadb-backup) fall back to clear text unless they verify the server: TLS mode require needs a ca_file for them (it then verifies as they do, the name included)")

// toolTLS is t for a tool that runs where dbha does: its files.
func toolTLS(t *tlsconfig.Settings) (ToolTLS, error) {
	if !t.Enabled() {
		return ToolTLS{}, nil
	}
	if t.Files.CA == "" {
		return ToolTLS{}, ErrToolTLS
	}
	return ToolTLS{CA: t.Files.CA, Cert: t.Files.Cert, Key: t.Files.Key}, nil
}

// ServerHostToolTLS is t for a tool that runs on a database server's host
// (mariadb-backup): the CA at its path there (replica_ca_file), no client
// certificate (dbha's is not on that host).
func ServerHostToolTLS(t *tlsconfig.Settings) (ToolTLS, error) {
	if !t.Enabled() {
		return ToolTLS{}, nil
	}
	if t.ReplicaCAFile() == "" {
		return ToolTLS{}, ErrToolTLS
	}
	return ToolTLS{CA: t.ReplicaCAFile()}, nil
}

// ClientOptionFile writes ClientOptions into a file readable only by this
// process's user, and returns its path and a function that removes it.
func ClientOptionFile(user, password, host, port string, t ToolTLS) (string, func(), error) {
	f, err := os.CreateTemp("", "dbha-client-*.cnf")
	if err != nil {
		return "", nil, fmt.Errorf("client option file: %w", err)
	}
	cleanup := func() { os.Remove(f.Name()) }
	_, err = f.Write(ClientOptions(user, password, host, port, t))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		cleanup()
		return "", nil, fmt.Errorf("client option file: %w", err)
	}
	return f.Name(), cleanup, nil
}

// Promote stops the IO thread first as StopFollowing does (bounded, even
// when a failed stop-following step left it stuck on the old primary).
func (c mariadbControl) Promote(ctx context.Context, addr string) error {
	if err := c.StopFollowing(ctx, addr); err != nil {
		return err
	}
	stmts := []string{"STOP SLAVE", "RESET SLAVE ALL"}
	if c.semiSync {
		// Before it takes writes: none of them returns unacknowledged.
		stmts = append(stmts, "SET GLOBAL rpl_semi_sync_master_enabled = ON")
	}
	return c.exec(ctx, addr, append(stmts, "SET GLOBAL read_only = OFF")...)
}

// replicaSemiSync is what a replica runs, in a semi-sync cluster, once it
// is read-only: it waits for no acknowledgement of its own (see
// Controller.SetSemiSyncPrimary). Commits still waiting on a fenced
// former primary were ended with their sessions by Fence.
func (c mariadbControl) replicaSemiSync() []string {
	if !c.semiSync {
		return nil
	}
	return []string{"SET GLOBAL rpl_semi_sync_master_enabled = OFF"}
}

func (c mariadbControl) Repoint(ctx context.Context, addr, source string) error {
	change, err := c.changeMaster(source)
	if err != nil {
		return err
	}
	db, err := c.db(addr)
	if err != nil {
		return err
	}
	var replicas int
	rows, err := db.QueryContext(ctx, "SHOW ALL SLAVES STATUS")
	if err != nil {
		return fmt.Errorf("read replication status of %s: %w", addr, err)
	}
	for rows.Next() {
		replicas++
	}
	rows.Close()
	if replicas > 0 {
		// Its IO thread may still be stuck on the old primary (its
		// stop-following step failed): stop it as StopFollowing does.
		if err := c.StopFollowing(ctx, addr); err != nil {
			return err
		}
	}
	stmts := append([]string{"SET GLOBAL read_only = ON"}, c.replicaSemiSync()...)
	stmts = append(stmts, "STOP SLAVE")
	if replicas == 0 {
		// A former primary's own transactions are in its binlog, not in
		// gtid_slave_pos: start from the binlog, or it would ask its new
		// source for everything again.
		stmts = append(stmts, "SET GLOBAL gtid_slave_pos = @@gtid_binlog_pos")
	}
	return c.exec(ctx, addr, append(stmts, change, "START SLAVE")...)
}

// Attach makes a freshly restored addr replicate from source, starting
// after pos (the restored backup's position): read-only, gtid_slave_pos
// set to pos, GTID auto-positioning.
func (c mariadbControl) Attach(ctx context.Context, addr, source string, pos topology.Position) error {
	change, err := c.changeMaster(source)
	if err != nil {
		return err
	}
	stmts := append([]string{"SET GLOBAL read_only = ON"}, c.replicaSemiSync()...)
	return c.exec(ctx, addr, append(stmts, "STOP SLAVE", "RESET SLAVE ALL",
		"SET GLOBAL gtid_slave_pos = '"+quote(pos.String())+"'", change, "START SLAVE")...)
}

// changeMaster is the CHANGE MASTER statement that points a replica at
// source, with the controller's heartbeat period when one is set. It
// carries the replication password: never log it or put it in an error.
func (c mariadbControl) changeMaster(source string) (string, error) {
	host, port, err := net.SplitHostPort(source)
	if err != nil {
		return "", fmt.Errorf("source %q: %w", source, err)
	}
	var heartbeat string
	if c.heartbeat > 0 {
		heartbeat = fmt.Sprintf(", MASTER_HEARTBEAT_PERIOD=%.3f", c.heartbeat.Seconds())
	}
	return fmt.Sprintf("CHANGE MASTER TO MASTER_HOST='%s', MASTER_PORT=%s, MASTER_USER='%s', MASTER_PASSWORD='%s', MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1%s%s",
		quote(host), port, quote(c.replUser), quote(c.replPassword), heartbeat, masterSSL(c.tls)), nil
}

// masterSSL is the part of a CHANGE MASTER that encrypts the replica's
// link as dbha's own connections are: MASTER_SSL with the CA the replica
// verifies its source against, and the source's name checked in
// verify-full. Disabled: nothing (the server's default stands). Pure.
func masterSSL(t *tlsconfig.Settings) string {
	if !t.Enabled() {
		return ""
	}
	verify := 0
	if t.Mode == tlsconfig.VerifyFull {
		verify = 1
	}
	return fmt.Sprintf(", MASTER_SSL=1, MASTER_SSL_CA='%s', MASTER_SSL_VERIFY_SERVER_CERT=%d", quote(t.ReplicaCAFile()), verify)
}

// fenceStall is how long Fence lets SET GLOBAL read_only wait for the
// commits in flight before it ends their sessions.
const fenceStall = 250 * time.Millisecond

// Fence makes addr refuse writes and ends its client sessions. read_only
// comes first: from the moment it takes the global read lock no new write
// starts. It then waits for the commits in flight, and on a lossless
// primary cut off from every acknowledger those wait for ever (semi-sync
// without fallback): a SET GLOBAL read_only that has not returned after
// fenceStall has the client sessions ended, which ends their waits — their
// clients get an error, never an acknowledgement — and then returns.
func (c mariadbControl) Fence(ctx context.Context, addr string) error {
	done := make(chan error, 1)
	go func() { done <- c.exec(ctx, addr, "SET GLOBAL read_only = ON") }()
	select {
	case err := <-done:
		if err != nil {
			return err
		}
	case <-time.After(fenceStall):
		if err := c.endClientSessions(ctx, addr); err != nil {
			return err
		}
		if err := <-done; err != nil {
			return err
		}
	}
	return c.endClientSessions(ctx, addr)
}

// endClientSessions kills every client session on addr but dbha's own and
// the replication threads.
func (c mariadbControl) endClientSessions(ctx context.Context, addr string) error {
	db, err := c.db(addr)
	if err != nil {
		return err
	}
	rows, err := db.QueryContext(ctx, `SELECT id FROM information_schema.PROCESSLIST
		WHERE id <> CONNECTION_ID() AND user NOT IN ('system user', 'event_scheduler', ?, ?)
		AND command NOT IN ('Binlog Dump', 'Daemon', 'Slave_IO', 'Slave_SQL', 'Slave_worker')`, c.user, c.replUser)
	if err != nil {
		return fmt.Errorf("list client sessions on %s: %w", addr, err)
	}
	var ids []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err == nil {
			ids = append(ids, id)
		}
	}
	rows.Close()
	for _, id := range ids {
		// A session may end by itself meanwhile: its KILL error is no failure.
		db.ExecContext(ctx, fmt.Sprintf("KILL CONNECTION %d", id))
	}
	return nil
}

func (c mariadbControl) Unfence(ctx context.Context, addr string) error {
	return c.exec(ctx, addr, "SET GLOBAL read_only = OFF")
}

// Position returns what addr's binlog holds (gtid_binlog_pos): the final
// position of an old primary made read-only in a switchover.
func (c mariadbControl) Position(ctx context.Context, addr string) (topology.Position, error) {
	db, err := c.db(addr)
	if err != nil {
		return topology.Position{}, err
	}
	var s string
	if err := db.QueryRowContext(ctx, "SELECT @@gtid_binlog_pos").Scan(&s); err != nil {
		return topology.Position{}, fmt.Errorf("read gtid_binlog_pos on %s: %w", addr, err)
	}
	return topology.ParseMariaDB(s)
}
