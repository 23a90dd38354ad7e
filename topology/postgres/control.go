package postgres

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/dbha/dbha/tlsconfig"
	"github.com/dbha/dbha/topology"
)

// Controller changes PostgreSQL replication: the operations a promotion is
// made of. Each is idempotent, so a resumed promotion may repeat the step
// it was in. It needs, beyond pg_monitor and REPLICATION: EXECUTE on
// pg_promote and pg_reload_conf, ALTER SYSTEM on primary_conninfo,
// primary_slot_name, restore_command and default_transaction_read_only,
// and pg_signal_backend (see the README's grants).
type Controller struct {
	user, password         string
	replUser, replPassword string
	prober                 *Prober // its pools, shared
	rejoinCommand          []string
}

// NewController returns a controller that logs in as user and points
// standbys at their source with the replication account.
func NewController(user, password, replUser, replPassword string) *Controller {
	return &Controller{user: user, password: password, replUser: replUser, replPassword: replPassword,
		prober: NewProber(user, password)}
}

// SetTLS makes every connection of the controller use t (nil: clear
// text). Call it before the first operation.
func (c *Controller) SetTLS(t *tlsconfig.Settings) { c.prober.SetTLS(t) }

// Close closes the pools.
func (c *Controller) Close() error { return c.prober.Close() }

func (c *Controller) pool(ctx context.Context, addr string) (*pgxpool.Pool, error) {
	return c.prober.pool(ctx, addr)
}

func (c *Controller) exec(ctx context.Context, addr string, stmts ...string) error {
	pool, err := c.pool(ctx, addr)
	if err != nil {
		return err
	}
	for _, s := range stmts {
		if _, err := pool.Exec(ctx, s); err != nil {
			return fmt.Errorf("%s on %s: %w", firstWords(s), addr, err)
		}
	}
	return nil
}

// firstWords names a statement in an error without its literals (a
// primary_conninfo carries a password).
func firstWords(s string) string {
	f := strings.Fields(s)
	if len(f) > 4 {
		f = f[:4]
	}
	return strings.Join(f, " ")
}

// literal quotes a string as an SQL literal (standard_conforming_strings).
func literal(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// conninfoValue quotes a value for a libpq connection string.
func conninfoValue(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}

// Position returns what addr holds: its current WAL position as a primary,
// its replayed position as a standby.
func (c *Controller) Position(ctx context.Context, addr string) (topology.Position, error) {
	in := c.prober.Probe(ctx, addr)
	if !in.Reachable {
		return topology.Position{}, fmt.Errorf("read the position of %s: %s", addr, in.Error)
	}
	return in.Current, nil
}

// WaitApplied waits until addr has replayed pos (or, as a primary, holds
// it), polling until ctx ends. A standby that received pos but whose
// replay has stood still short of it for replayStill has replayed every
// complete record it holds: the rest is the head of a record its source
// never finished sending (a primary flushes, and so sends, WAL in pages
// while a record that crosses a page is still being written: an idle
// primary can sit like that until its next commit). No standby can replay
// that head, and promotion discards it, so it counts as applied; waiting
// for it would block a failover for good.
func (c *Controller) WaitApplied(ctx context.Context, addr string, pos topology.Position) error {
	pool, err := c.pool(ctx, addr)
	if err != nil {
		return err
	}
	var lastReplay string
	var still time.Time
	for {
		var done, received bool
		var replay string
		err := pool.QueryRow(ctx, `SELECT CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END >= $1::pg_lsn,
			pg_is_in_recovery() AND coalesce(pg_last_wal_receive_lsn() >= $1::pg_lsn, false),
			coalesce(pg_last_wal_replay_lsn()::text, '')`,
			pos.LSN().String()).Scan(&done, &received, &replay)
		if err != nil {
			return fmt.Errorf("wait on %s for %s: %w", addr, pos, err)
		}
		switch {
		case done:
			return nil
		case !received || replay != lastReplay:
			lastReplay, still = replay, time.Now()
		case time.Since(still) >= replayStill:
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait on %s for %s: %w", addr, pos, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// replayStill is how long replay must stand still, with everything
// received, before the unreplayed rest counts as an unfinished record.
const replayStill = 500 * time.Millisecond

// SetRestoreCommand makes a standby fetch WAL it lacks with command (for
// WAL only dbha's store holds) and reloads its configuration.
func (c *Controller) SetRestoreCommand(ctx context.Context, addr, command string) error {
	return c.exec(ctx, addr, "ALTER SYSTEM SET restore_command = "+literal(command), "SELECT pg_reload_conf()")
}

// ResetRestoreCommand removes restore_command again, once the WAL it
// served is replayed.
func (c *Controller) ResetRestoreCommand(ctx context.Context, addr string) error {
	return c.exec(ctx, addr, "ALTER SYSTEM RESET restore_command", "SELECT pg_reload_conf()")
}

// Promote ends recovery on addr: it becomes a primary on a new timeline.
// An instance already out of recovery is left as it is.
func (c *Controller) Promote(ctx context.Context, addr string) error {
	pool, inRecovery, err := c.standby(ctx, addr)
	if err != nil || !inRecovery {
		return wrapIf(err, "promote %s", addr)
	}
	// pg_promote waits for the startup process to end recovery, which
	// first stops the walreceiver; a walreceiver stuck on a hung primary
	// ends at once on that signal (0.3-1 s measured with the primary
	// SIGSTOPped). The server's wait is bounded by what ctx leaves, so it
	// never outlives dbha's.
	wait := promoteWait(ctx)
	var ok bool
	if err := pool.QueryRow(ctx, "SELECT pg_promote(true, $1)", wait).Scan(&ok); err != nil {
		return fmt.Errorf("promote %s: %w", addr, err)
	}
	if !ok {
		return fmt.Errorf("promote %s: pg_promote did not finish within %d s", addr, wait)
	}
	return nil
}

// promoteWait is pg_promote's wait_seconds: the whole seconds ctx leaves,
// at least 1, at most 60 (pg_promote's default).
func promoteWait(ctx context.Context) int {
	d, ok := ctx.Deadline()
	if !ok {
		return 60
	}
	return min(max(int(time.Until(d)/time.Second), 1), 60)
}

// standby returns addr's pool and whether addr is in recovery.
func (c *Controller) standby(ctx context.Context, addr string) (*pgxpool.Pool, bool, error) {
	pool, err := c.pool(ctx, addr)
	if err != nil {
		return nil, false, err
	}
	var inRecovery bool
	err = pool.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&inRecovery)
	return pool, inRecovery, err
}

// wrapIf prefixes a non-nil err with what was being done.
func wrapIf(err error, format string, args ...any) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf(format+": %w", append(args, err)...)
}

// StopFollowing makes the standby addr receive nothing more from its
// source: primary_conninfo emptied and reloaded, then a wait (bounded by
// ctx) until its walreceiver has exited. The startup process ends the
// walreceiver as soon as it sees the setting change, even one stuck on a
// silent primary, and goes on replaying what was received, then reads
// pg_wal and restore_command (dbha's hand-over of the WAL only its store
// holds) with no wait for wal_receiver_timeout. Without a walreceiver the
// standby acknowledges no commit of the old primary, and does not follow
// it if it returns; Repoint gives it a source again. A server out of
// recovery follows nothing and is left alone.
func (c *Controller) StopFollowing(ctx context.Context, addr string) error {
	pool, inRecovery, err := c.standby(ctx, addr)
	if err != nil || !inRecovery {
		return wrapIf(err, "stop %s following", addr)
	}
	if err := c.exec(ctx, addr, "ALTER SYSTEM SET primary_conninfo = ''", "SELECT pg_reload_conf()"); err != nil {
		return err
	}
	for {
		var receivers int
		if err := pool.QueryRow(ctx, "SELECT count(*) FROM pg_stat_wal_receiver").Scan(&receivers); err != nil {
			return fmt.Errorf("stop %s following: wait for its WAL receiver to exit: %w", addr, err)
		}
		if receivers == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("stop %s following: its WAL receiver still runs: %w", addr, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// ErrNotStandby: the instance is out of recovery (a primary, or a fenced
// former one); it follows a source only once restarted as a standby.
var ErrNotStandby = errors.New("not a standby: it needs pg_rewind and a restart as a standby (promotion.rejoin_command)")

// Repoint makes the standby addr stream from source: a slot of the same
// name on source (created when missing), then primary_conninfo and
// primary_slot_name, and a reload. The standby keeps its
// application_name, so synchronous_standby_names still names it; with the
// default recovery_target_timeline (latest) it follows source's timeline.
func (c *Controller) Repoint(ctx context.Context, addr, source string) error {
	pool, err := c.pool(ctx, addr)
	if err != nil {
		return err
	}
	var conninfo, slot string
	var inRecovery bool
	if err := pool.QueryRow(ctx, "SELECT current_setting('primary_conninfo'), current_setting('primary_slot_name'), pg_is_in_recovery()").Scan(&conninfo, &slot, &inRecovery); err != nil {
		return fmt.Errorf("read the replication settings of %s: %w", addr, err)
	}
	if !inRecovery {
		// primary_conninfo means nothing to a server out of recovery: it
		// becomes a standby only by a restart (after pg_rewind), which is
		// the rejoin's job. Reporting success here would list it among the
		// replicas (and in the reader service) while it follows nobody.
		return fmt.Errorf("repoint %s to %s: %w", addr, source, ErrNotStandby)
	}
	appName := addr
	if cfg, err := pgconn.ParseConfig(conninfo); err == nil && cfg.RuntimeParams["application_name"] != "" {
		appName = cfg.RuntimeParams["application_name"]
	}
	if slot != "" {
		if err := c.exec(ctx, source, fmt.Sprintf(
			"SELECT pg_create_physical_replication_slot(%s, true) WHERE NOT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = %s)",
			literal(slot), literal(slot))); err != nil {
			return err
		}
	}
	host, port, err := net.SplitHostPort(source)
	if err != nil {
		return err
	}
	info := fmt.Sprintf("host=%s port=%s user=%s password=%s application_name=%s",
		conninfoValue(host), port, conninfoValue(c.replUser), conninfoValue(c.replPassword), conninfoValue(appName)) + conninfoSSL(c.prober.tls)
	return c.exec(ctx, addr, "ALTER SYSTEM SET primary_conninfo = "+literal(info), "SELECT pg_reload_conf()")
}

// conninfoSSL is the part of a primary_conninfo that encrypts the
// standby's link as dbha's own connections are: the cluster's sslmode and
// the CA it verifies against. Disabled: nothing (libpq's default stands).
// Pure.
func conninfoSSL(t *tlsconfig.Settings) string {
	if !t.Enabled() {
		return ""
	}
	s := " sslmode=" + string(t.Mode)
	if ca := t.ReplicaCAFile(); ca != "" {
		s += " sslrootcert=" + conninfoValue(ca)
	}
	return s
}

// Attach makes a standby just restored from a backup stream from source.
// It starts from its restored files' own WAL position, so pos is not
// needed: this is Repoint.
func (c *Controller) Attach(ctx context.Context, addr, source string, _ topology.Position) error {
	return c.Repoint(ctx, addr, source)
}

// Fence makes addr refuse writes by default and ends every client session
// but dbha's and replication's. A client may still ask for a read-write
// transaction explicitly, so the writer service never names a fenced
// instance, and a configured fence command can stop it outright.
func (c *Controller) Fence(ctx context.Context, addr string) error {
	return c.exec(ctx, addr,
		"ALTER SYSTEM SET default_transaction_read_only = on",
		"SELECT pg_reload_conf()",
		// pg_signal_backend may not end a superuser's session; those keep
		// running, and their next transaction is read-only by default too,
		// unless dbha's own account is a superuser, which ends them as well.
		fmt.Sprintf(`SELECT pg_terminate_backend(a.pid) FROM pg_stat_activity a JOIN pg_roles r ON r.oid = a.usesysid
			WHERE a.backend_type = 'client backend' AND a.pid <> pg_backend_pid()
			AND (NOT r.rolsuper OR (SELECT rolsuper FROM pg_roles WHERE rolname = current_user))
			AND a.usename NOT IN (%s, %s)`,
			literal(c.user), literal(c.replUser)))
}

// Unfence lets addr take writes again (a fenced instance that becomes
// primary again).
func (c *Controller) Unfence(ctx context.Context, addr string) error {
	return c.exec(ctx, addr, "ALTER SYSTEM RESET default_transaction_read_only", "SELECT pg_reload_conf()")
}
