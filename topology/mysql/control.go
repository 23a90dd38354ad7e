package mysql

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/dbha/dbha/tlsconfig"
	"github.com/dbha/dbha/topology"
)

// ErrUnsupported is every replication change (fencing included) asked of
// a MySQL (not MariaDB) server: its controller is not written yet.
var ErrUnsupported = errors.New("promotion of MySQL (not MariaDB) is not implemented: dbha only observes MySQL clusters")

// Controller changes replication on MariaDB or MySQL servers: the
// operations a promotion is made of. Each is idempotent, so a promotion
// resumed after a crash may repeat the step it was in. Safe for concurrent
// use on different instances; the caller orders operations on one
// instance.
//
// The statements are the flavor's: MariaDB's in mariadb_control.go,
// MySQL's in mysql_control.go (none yet: ErrUnsupported).
type Controller struct {
	servers *servers
	flavor  flavor
}

// flavor is one server family's replication control. Its methods are the
// Controller's and keep their contracts.
type flavor interface {
	StopFollowing(ctx context.Context, addr string) error
	WaitApplied(ctx context.Context, addr string, pos topology.Position) error
	CatchUpFrom(ctx context.Context, addr, source string, upto topology.Position) error
	ApplyBinlog(ctx context.Context, addr string, files []string, after, upto topology.Position) error
	Promote(ctx context.Context, addr string) error
	Repoint(ctx context.Context, addr, source string) error
	Attach(ctx context.Context, addr, source string, pos topology.Position) error
	Fence(ctx context.Context, addr string) error
	Unfence(ctx context.Context, addr string) error
	Position(ctx context.Context, addr string) (topology.Position, error)
	Rewind(ctx context.Context, addr, primary, saveDir string) (topology.Rewound, error)
}

// NewController returns a controller for engine (topology.MariaDB or
// topology.MySQL) that logs in as user and points replicas at their
// source with the replication account.
func NewController(engine topology.Engine, user, password, replUser, replPassword string) *Controller {
	s := &servers{user: user, password: password, replUser: replUser, replPassword: replPassword,
		applyUser: user, applyPassword: password, pools: map[string]*sql.DB{}}
	c := &Controller{servers: s}
	switch engine {
	case topology.MySQL:
		c.flavor = mysqlControl{}
	default:
		c.flavor = mariadbControl{s}
	}
	return c
}

// SetTLS makes every connection of the controller use t (nil: clear
// text). Call it before the first operation.
func (c *Controller) SetTLS(t *tlsconfig.Settings) { c.servers.tls = t }

// SetApplyAccount names the account ApplyBinlog replays events with. A
// replayed transaction's statements (DDL in particular) need that
// statement's privileges, as the replication SQL thread has them; row
// events need only BINLOG REPLAY.
func (c *Controller) SetApplyAccount(user, password string) {
	c.servers.applyUser, c.servers.applyPassword = user, password
}

// SetHeartbeat sets the period at which a primary sends a heartbeat to an
// idle replica, which every CHANGE MASTER this controller issues carries
// (MASTER_HEARTBEAT_PERIOD, in milliseconds): a replica that hears nothing
// for a few periods has lost its primary. Zero leaves the server's default,
// half of slave_net_timeout.
func (c *Controller) SetHeartbeat(d time.Duration) { c.servers.heartbeat = d }

// SetSemiSyncPrimary says that the cluster's primary acknowledges commits
// through semi-sync (stream.semi_sync): Promote turns
// rpl_semi_sync_master_enabled on, and Repoint and Attach turn it off, so
// that only the writable primary waits for acknowledgements. A replica
// with it on and rpl_semi_sync_master_wait_no_slave=ON would hold its own
// SQL thread's commits waiting for an acknowledgement no replica of its
// own sends. MariaDB only.
func (c *Controller) SetSemiSyncPrimary(on bool) { c.servers.semiSync = on }

// Close closes every pool.
func (c *Controller) Close() error { return c.servers.close() }

// StopFollowing makes addr receive nothing more from its source; it goes
// on applying what it has received.
func (c *Controller) StopFollowing(ctx context.Context, addr string) error {
	return c.flavor.StopFollowing(ctx, addr)
}

// WaitApplied waits until addr has applied pos, polling until ctx ends. An
// instance that has diverged from pos is an error.
func (c *Controller) WaitApplied(ctx context.Context, addr string, pos topology.Position) error {
	return c.flavor.WaitApplied(ctx, addr, pos)
}

// CatchUpFrom makes addr replicate from source until it holds upto, then
// stops it. The source must log what it replicated (log_slave_updates).
func (c *Controller) CatchUpFrom(ctx context.Context, addr, source string, upto topology.Position) error {
	return c.flavor.CatchUpFrom(ctx, addr, source, upto)
}

// ApplyBinlog replays on addr the transactions that binlog files hold after
// the position after, up to upto included, keeping their GTIDs, so that
// addr replicates on from there. The apply account (SetApplyAccount) runs
// them; its password never appears in an argument.
func (c *Controller) ApplyBinlog(ctx context.Context, addr string, files []string, after, upto topology.Position) error {
	return c.flavor.ApplyBinlog(ctx, addr, files, after, upto)
}

// Promote makes addr a primary: it stops replicating, forgets its source
// and becomes writable.
func (c *Controller) Promote(ctx context.Context, addr string) error {
	return c.flavor.Promote(ctx, addr)
}

// Repoint makes addr replicate from source with GTID auto-positioning. An
// instance that was a primary starts from what its binlog holds.
func (c *Controller) Repoint(ctx context.Context, addr, source string) error {
	return c.flavor.Repoint(ctx, addr, source)
}

// Attach makes a freshly restored addr replicate from source, starting
// after pos (the restored backup's position).
func (c *Controller) Attach(ctx context.Context, addr, source string, pos topology.Position) error {
	return c.flavor.Attach(ctx, addr, source, pos)
}

// Fence makes addr refuse writes: read-only, then every client session
// ended (replication threads, dbha and the replication account are kept).
func (c *Controller) Fence(ctx context.Context, addr string) error {
	return c.flavor.Fence(ctx, addr)
}

// Unfence lets addr take writes again: a switchover that could not finish
// gives the old primary back its role.
func (c *Controller) Unfence(ctx context.Context, addr string) error {
	return c.flavor.Unfence(ctx, addr)
}

// Position returns what addr's binlog holds: the final position of an old
// primary made read-only in a switchover.
func (c *Controller) Position(ctx context.Context, addr string) (topology.Position, error) {
	return c.flavor.Position(ctx, addr)
}

// servers is how a controller reaches instances, whatever their flavor:
// its accounts and one small pool per address.
type servers struct {
	user, password           string
	replUser, replPassword   string
	applyUser, applyPassword string    // replays binlog events; defaults to user
	tail                     TailSaver // saves a rewound instance's tail; nil until SetTailSaver
	// heartbeat is the MASTER_HEARTBEAT_PERIOD every replica is pointed
	// with; zero leaves the server's default (half of slave_net_timeout).
	heartbeat time.Duration
	// semiSync: only the primary has rpl_semi_sync_master_enabled (see
	// SetSemiSyncPrimary).
	semiSync bool
	// tls encrypts every connection (nil: clear text; see SetTLS).
	tls *tlsconfig.Settings

	mu    sync.Mutex
	pools map[string]*sql.DB
}

func (s *servers) close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for addr, db := range s.pools {
		db.Close()
		delete(s.pools, addr)
	}
	return nil
}

func (s *servers) db(addr string) (*sql.DB, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if db, ok := s.pools[addr]; ok {
		return db, nil
	}
	db, err := Open(addr, s.user, s.password, s.tls)
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(2)
	s.pools[addr] = db
	return db, nil
}

func (s *servers) exec(ctx context.Context, addr string, stmts ...string) error {
	db, err := s.db(addr)
	if err != nil {
		return err
	}
	for _, stmt := range stmts {
		if _, err := db.ExecContext(ctx, stmt); err != nil {
			return fmt.Errorf("%s on %s: %w", firstWords(stmt), addr, err)
		}
	}
	return nil
}

// firstWords names a statement in an error without its literals (a
// CHANGE MASTER carries a password).
func firstWords(s string) string {
	f := strings.Fields(s)
	if len(f) > 3 {
		f = f[:3]
	}
	return strings.Join(f, " ")
}

// quote escapes a string for a single-quoted SQL literal.
func quote(s string) string {
	return strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s)
}
