package mysql

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/go-mysql-org/go-mysql/client"
	"github.com/go-mysql-org/go-mysql/mysql"
	"github.com/go-mysql-org/go-mysql/replication"

	"github.com/dbha/dbha/binlog"
	"github.com/dbha/dbha/topology"
	tmysql "github.com/dbha/dbha/topology/mysql"
)

// Timing of a session.
const (
	flushEvery   = 100 * time.Millisecond // fsync cadence without semi-sync
	watchEvery   = 5 * time.Second        // ask Primary(), re-read the semi-sync setting, retention
	inspectLimit = 10 * time.Second       // bound on the SQL a session runs
)

// session is one replication connection, from the store's tail repair to
// the connection's end. It returns errReconnect (wrapped) when the primary
// moved or its semi-sync setting changed, an error wrapping ErrBroken when
// the stream cannot go on, and the failure otherwise.
func (s *Stream) session(ctx context.Context) (err error) {
	addr, err := s.cfg.Primary(ctx)
	if err != nil {
		return fmt.Errorf("no primary known: %w", err)
	}
	// From here the session's context ends when a recovery cuts addr, and
	// at the latest when the session returns; done, deferred first, runs
	// once the store file is closed.
	ctx, done, err := s.cfg.Hold.Session(ctx, addr)
	if err != nil {
		return err
	}
	defer done()
	ctx, end := context.WithCancel(ctx)
	defer end()
	defer func() {
		if cause := context.Cause(ctx); errors.Is(cause, binlog.ErrHeld) {
			err = cause
		}
	}()
	w, err := openWriter(s.cfg.Dir, s.cfg.Flavor, s.cfg.MaxFileSize, s.log)
	if err != nil {
		return fmt.Errorf("open stream store: %w", err)
	}
	s.st.FlushedFrom(func() (topology.Position, time.Time) {
		st, last := w.synced()
		return st.position(), last
	})
	db, err := tmysql.Open(addr, s.cfg.User, s.cfg.Password, s.cfg.TLS)
	if err != nil {
		return err
	}
	defer db.Close()
	info, err := s.prepare(ctx, db, addr, w)
	if err != nil {
		return err
	}
	sess := &conn{s: s, w: w, db: db, addr: addr, semi: s.cfg.SemiSync && info.semiSync, session: ctx}
	return sess.run(ctx)
}

// sessionDialer dials the primary for go-mysql, both the replication
// connection and the one its Close opens to KILL the dump thread, so that
// the end of session (a recovery's cut) ends them: a dial in flight is
// abandoned, an open connection is closed (ending a handshake that waits
// for a hung server's greeting), and none is made after. Without it, a
// session ending on a dead primary waited for go-mysql's KILL connection:
// its 10 s dial timeout when packets are dropped, the read timeout when
// the server hangs.
func sessionDialer(session context.Context) client.Dialer {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		if err := context.Cause(session); err != nil {
			return nil, fmt.Errorf("dial %s: the session ended: %w", addr, err)
		}
		dctx, cancel := context.WithCancel(ctx)
		defer cancel()
		stop := context.AfterFunc(session, cancel)
		defer stop()
		c, err := (&net.Dialer{}).DialContext(dctx, network, addr)
		if err != nil {
			return nil, err
		}
		context.AfterFunc(session, func() { c.Close() })
		return c, nil
	}
}

// prepare checks the primary before streaming: the login, dbha's server_id,
// the semi-sync setting, and on a first start the position to begin at.
func (s *Stream) prepare(ctx context.Context, db *sql.DB, addr string, w *writer) (primaryInfo, error) {
	ictx, cancel := context.WithTimeout(ctx, inspectLimit)
	defer cancel()
	if err := db.PingContext(ictx); err != nil {
		return primaryInfo{}, fmt.Errorf("connect to primary %s as user %q: %w", addr, s.cfg.User, err)
	}
	info, err := inspect(ictx, db, s.cfg.Flavor, s.registerAs())
	if err != nil {
		return info, fmt.Errorf("primary %s: %w", addr, err)
	}
	if msg := serverIDConflict(s.cfg.ServerID, addr, info); msg != "" {
		return info, &brokenError{sentinel: ErrServerIDInUse, text: msg + ": give dbha a server_id no server uses (stream.server_id)"}
	}
	if !info.replicasKnown {
		s.warnOnce("replicas", "cannot list the primary's replicas to check that none uses dbha's server_id (SHOW SLAVE HOSTS needs REPLICATION MASTER ADMIN); make sure none does",
			"server_id", s.cfg.ServerID, "primary", addr)
	}
	if w.empty() {
		start, err := parseState(s.cfg.Flavor, info.binlogPos)
		if err != nil {
			return info, fmt.Errorf("primary %s position: %w", addr, err)
		}
		s.log.Info("empty store: starting from the primary's current position; transactions before it are not held",
			"primary", addr, "position", start.String())
		w.setStart(start)
	}
	return info, nil
}

// registerAs is the host name dbha registers with the primary (SHOW SLAVE
// HOSTS), which tells its own connections from replicas'.
func (s *Stream) registerAs() string { return "dbha-" + s.cfg.Cluster }

// conn is one replication connection and what runs beside it.
type conn struct {
	s    *Stream
	w    *writer
	db   *sql.DB
	addr string
	semi bool
	// session ends when the session does, or when a recovery cuts it; it
	// bounds every connection go-mysql makes (sessionDialer).
	session context.Context

	rotated bool // a real Rotate came: the next Format_description starts a new file

	mu       sync.Mutex
	storeErr error // the first write or fsync failure
}

func (c *conn) run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	syncer, err := c.newSyncer()
	if err != nil {
		c.w.close()
		return err
	}
	gset, err := c.w.position().gtidSet()
	if err != nil {
		c.w.close()
		return err
	}
	stream, err := syncer.StartSyncGTID(gset)
	if err != nil {
		syncer.Close()
		c.w.close()
		return fmt.Errorf("connect to primary %s as user %q: %w", c.addr, c.s.cfg.User, err)
	}
	c.s.st.Connected(c.addr, c.semi)
	c.s.log.Info("streaming", "primary", c.addr, "from", gset.String(), "semi_sync", c.semi)
	if c.s.cfg.SemiSync && !c.semi {
		// go-mysql would turn semi-sync off silently; say it.
		c.s.st.Failed(fmt.Errorf("semi_sync is configured but the primary %s has rpl_semi_sync_master_enabled=OFF: dbha is not acknowledging (commits do not wait for it)", c.addr))
		c.s.warnOnce("semisync-off-"+c.addr, "semi-sync configured but off on the primary: not acknowledging", "primary", c.addr)
	}

	var bg sync.WaitGroup
	reason := make(chan error, 2)
	bg.Go(func() { c.flushLoop(ctx, cancel) })
	bg.Go(func() { c.watchLoop(ctx, cancel, reason) })
	_, err = stream.GetEvent(ctx) // returns only when the connection ends: the handler takes the events
	cancel()
	bg.Wait()
	syncer.Close()
	return c.finish(err, reason)
}

// finish closes the writer (cutting it back to its last fsync after a
// store failure) and says why the session ended.
func (c *conn) finish(streamErr error, reason chan error) error {
	c.mu.Lock()
	storeErr := c.storeErr
	c.mu.Unlock()
	if storeErr != nil {
		c.w.abort()
		return fmt.Errorf("stream store failed, not acknowledging: %w", storeErr)
	}
	if err := c.w.close(); err != nil {
		return fmt.Errorf("close stream store file: %w", err)
	}
	select {
	case r := <-reason:
		return r
	default:
	}
	if mysqlErrorNumber(streamErr) == 1236 { // ER_MASTER_FATAL_ERROR_READING_BINLOG
		return c.broken(streamErr)
	}
	return fmt.Errorf("replication connection to %s: %w", c.addr, streamErr)
}

func (c *conn) newSyncer() (*replication.BinlogSyncer, error) {
	host, portText, err := net.SplitHostPort(c.addr)
	if err != nil {
		return nil, fmt.Errorf("primary address %q: %w", c.addr, err)
	}
	port, err := strconv.ParseUint(portText, 10, 16)
	if err != nil {
		return nil, fmt.Errorf("primary address %q: bad port", c.addr)
	}
	cfg := c.s.cfg
	tlsCfg, err := cfg.TLS.For(c.addr)
	if err != nil {
		return nil, err
	}
	sc := replication.BinlogSyncerConfig{
		ServerID: cfg.ServerID, Flavor: cfg.Flavor, Host: host, Port: uint16(port),
		User: cfg.User, Password: cfg.Password, Localhost: c.s.registerAs(), TLSConfig: tlsCfg,
		// Raw mode: events are stored as received and decoded by dbha only
		// as far as it needs (GTID, end of transaction). go-mysql's own
		// reconnect is off: in raw mode it would resume from the position
		// it started at and deliver events twice; dbha reconnects from its
		// own on-disk position instead.
		RawModeEnabled: true, DisableRetrySync: true,
		HeartbeatPeriod: cfg.Heartbeat, ReadTimeout: 2*cfg.Heartbeat + time.Second,
		// The handler runs before go-mysql sends a semi-sync ACK for the
		// event, so an ACK always follows dbha's fsync.
		SynchronousEventHandler: c,
		SemiSyncEnabled:         c.semi,
		Dialer:                  sessionDialer(c.session),
		Logger:                  quiet(c.s.log),
	}
	if cfg.Flavor == mysql.MariaDBFlavor {
		sc.DumpCommandFlag = replication.BINLOG_SEND_ANNOTATE_ROWS_EVENT // keep the statements' text, as replicas do
	}
	return replication.NewBinlogSyncer(sc), nil
}

// HandleEvent stores one event; go-mysql calls it for every packet, in
// order, on its reading goroutine. An error ends the connection before any
// acknowledgement of the event.
func (c *conn) HandleEvent(e *replication.BinlogEvent) error {
	c.s.st.Received(len(e.RawData), time.Now())
	h := header{Timestamp: e.Header.Timestamp, Type: e.Header.EventType, ServerID: e.Header.ServerID,
		Size: e.Header.EventSize, LogPos: e.Header.LogPos, Flags: e.Header.Flags}
	switch classify(h) {
	case skip:
		return nil
	case primaryRotate:
		c.rotated = true
		return nil
	case newFormat:
		rotated := c.rotated
		c.rotated = false
		return c.fail(c.w.onFormat(e.RawData, rotated))
	}
	a, err := c.w.append(e.RawData)
	if err != nil {
		return c.fail(err)
	}
	if a.inside {
		return nil
	}
	if a.done {
		c.s.st.Event()
	}
	if c.semi { // the primary may wait for an ACK of this event: fsync first
		if err := c.w.sync(); err != nil {
			return c.fail(err)
		}
	}
	if c.w.full() {
		return c.fail(c.w.rotate())
	}
	return nil
}

// fail records the first store failure; it ends the connection.
func (c *conn) fail(err error) error {
	if err == nil {
		return nil
	}
	c.mu.Lock()
	if c.storeErr == nil {
		c.storeErr = err
	}
	c.mu.Unlock()
	return err
}

// flushLoop fsyncs what was written every flushEvery. A failure ends the
// session: nothing more is acknowledged, and the next session starts from
// what is on disk.
func (c *conn) flushLoop(ctx context.Context, cancel context.CancelFunc) {
	t := time.NewTicker(flushEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := c.w.sync(); err != nil {
			c.fail(err)
			cancel()
			return
		}
	}
}

// watchLoop asks Primary() and re-reads the primary's semi-sync setting
// every watchEvery, ending the session (errReconnect) when either changed,
// and applies retention when it is due.
func (c *conn) watchLoop(ctx context.Context, cancel context.CancelFunc, reason chan<- error) {
	t := time.NewTicker(watchEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := c.watch(ctx); err != nil {
			reason <- err
			cancel()
			return
		}
		c.s.retain(ctx, c.w)
	}
}

func (c *conn) watch(ctx context.Context) error {
	if addr, err := c.s.cfg.Primary(ctx); err == nil && addr != c.addr {
		return fmt.Errorf("%w: the primary is now %s (was %s)", errReconnect, addr, c.addr)
	}
	if !c.s.cfg.SemiSync {
		return nil
	}
	ictx, cancel := context.WithTimeout(ctx, inspectLimit)
	defer cancel()
	on, err := semiSyncEnabled(ictx, c.db)
	if err != nil || on == c.semi {
		return nil
	}
	return fmt.Errorf("%w: rpl_semi_sync_master_enabled is now %v on %s", errReconnect, on, c.addr)
}

// broken turns the primary's refusal of dbha's position into the
// operator-facing description (see describeBroken).
func (c *conn) broken(streamErr error) error {
	ctx, cancel := context.WithTimeout(context.Background(), inspectLimit)
	defer cancel()
	held := c.w.position()
	serverMsg := streamErr.Error()
	var me *mysql.MyError
	if errors.As(streamErr, &me) {
		serverMsg = me.Message
	}
	if c.s.cfg.Flavor == mysql.MySQLFlavor {
		var purged, executed string
		_ = c.db.QueryRowContext(ctx, "SELECT @@gtid_purged, @@gtid_executed").Scan(&purged, &executed)
		return &brokenError{text: describeBrokenMySQL(c.addr, held, purged, executed, serverMsg)}
	}
	var primaryPos string
	_ = c.db.QueryRowContext(ctx, "SELECT @@gtid_binlog_pos").Scan(&primaryPos)
	name, before, err := oldestBinlog(ctx, c.db)
	oldest, perr := parseState(c.s.cfg.Flavor, before)
	if err != nil || perr != nil {
		oldest = newState(c.s.cfg.Flavor)
	}
	return &brokenError{text: describeBroken(c.addr, held, name, oldest, primaryPos, serverMsg)}
}

// quiet passes go-mysql's warnings and errors on to log, not its chatter
// (it logs every connect and rotation at Info).
func quiet(log *slog.Logger) *slog.Logger {
	return slog.New(minLevel{log.Handler().WithGroup("go-mysql"), slog.LevelWarn})
}

type minLevel struct {
	slog.Handler
	min slog.Level
}

func (h minLevel) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.min && h.Handler.Enabled(ctx, l)
}

func (h minLevel) WithAttrs(a []slog.Attr) slog.Handler {
	return minLevel{h.Handler.WithAttrs(a), h.min}
}

func (h minLevel) WithGroup(g string) slog.Handler { return minLevel{h.Handler.WithGroup(g), h.min} }
