package postgres

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/dbha/dbha/binlog"
	"github.com/dbha/dbha/topology"
)

// session is one replication connection to one primary: identify, choose
// the start, stream (across timeline ends), until an error, the end of ctx
// or a change of primary.
type session struct {
	cfg    Config
	tr     *binlog.Tracker
	addr   string
	walDir string
	rule   flushRule
	prune  func()

	conn     *pgconn.PgConn
	info     serverInfo
	slot     slotState
	ack      bool // the primary's synchronous_standby_names names dbha and dbha is synchronous
	streamed bool

	// per timeline streamed
	w            *segmentWriter
	lastFlush    time.Time
	lastFeedback time.Time
	lastHeard    time.Time // when the primary last sent anything
	sent         feedback
	asked        bool
	reported     LSN       // flush position last given to the tracker
	eventTime    time.Time // the primary's time of the newest WAL written
	warned       bool      // the arrivals error was logged
}

func (ss *session) run(ctx context.Context) error {
	conn, err := dial(ctx, ss.addr, ss.cfg)
	if err != nil {
		return err
	}
	ss.conn = conn
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		conn.Close(cctx)
	}()
	if inRecovery(conn) {
		return fmt.Errorf("%s is a standby (in recovery), not a primary: waiting until Primary names the primary", ss.addr)
	}
	if err := ss.prepare(ctx); err != nil {
		return err
	}
	for range 16 { // each round streams one timeline; more means a loop
		p, err := ss.plan(ctx)
		if err != nil {
			return err
		}
		end, err := ss.streamTimeline(ctx, p)
		if err != nil {
			return err
		}
		ss.cfg.Logger.Info("timeline ended", "cluster", ss.cfg.Cluster, "primary", ss.addr,
			"timeline", p.TLI, "next_timeline", end.Next, "switch_point", end.At.String())
	}
	return fmt.Errorf("streaming from %s: more than 16 timeline ends in one session", ss.addr)
}

// prepare identifies the server, checks it against the store, stores its
// current timeline's history, and makes sure dbha's slot exists.
func (ss *session) prepare(ctx context.Context) error {
	info, err := identify(ctx, ss.conn)
	if err != nil {
		return fmt.Errorf("identify %s: %w", ss.addr, err)
	}
	ss.info = info
	if err := checkIdentity(ss.cfg.Dir, info, ss.addr, time.Now()); err != nil {
		return err
	}
	if err := ss.checkHistories(); err != nil {
		return err
	}
	if info.History != nil {
		if err := ss.storeHistory(info.Lineage.Current, info.History); err != nil {
			return err
		}
	}
	slot, created, err := ensureSlot(ctx, ss.conn, ss.cfg.Slot)
	if err != nil {
		return fmt.Errorf("replication slot on %s: %w", ss.addr, err)
	}
	ss.slot = slot
	if created {
		ss.cfg.Logger.Info("created replication slot", "cluster", ss.cfg.Cluster, "primary", ss.addr,
			"slot", ss.cfg.Slot, "restart_lsn", slot.Restart.String())
	}
	ss.ack = ss.cfg.Synchronous && listsStandby(info.SyncList, ss.cfg.applicationName())
	if w := syncWarning(ss.cfg.Synchronous, info.SyncList); w != "" {
		ss.cfg.Logger.Warn(w, "cluster", ss.cfg.Cluster, "primary", ss.addr)
	}
	return nil
}

// plan lists the store and chooses where to start.
func (ss *session) plan(ctx context.Context) (startPoint, error) {
	l, err := list(ss.walDir, ss.info.Seg)
	if err != nil {
		return startPoint{}, err
	}
	p, err := chooseStart(startInput{Files: l.Segments, Server: ss.info.Lineage, Flush: ss.info.Flush, Slot: ss.slot, Seg: ss.info.Seg})
	if err != nil {
		return startPoint{}, fmt.Errorf("resume from %s: %w", ss.addr, err)
	}
	if p.OffLineage > 0 {
		ss.cfg.Logger.Warn("the store holds segments on timelines the primary's history does not contain; they are kept",
			"cluster", ss.cfg.Cluster, "primary", ss.addr, "files", p.OffLineage, "timelines", ss.info.Lineage.timelines())
	}
	if p.TLI > 1 && p.TLI != ss.info.Lineage.Current {
		h, err := timelineHistory(ctx, ss.conn, p.TLI)
		if err != nil {
			return startPoint{}, err
		}
		if err := ss.storeHistory(p.TLI, h); err != nil {
			return startPoint{}, err
		}
	}
	ss.cfg.Logger.Info("streaming WAL", "cluster", ss.cfg.Cluster, "primary", ss.addr,
		"from", p.LSN.String(), "timeline", p.TLI, "why", p.Why)
	return p, nil
}

// streamTimeline streams timeline p.TLI from p.LSN until the server ends
// the timeline (the returned timelineEnd) or something fails.
func (ss *session) streamTimeline(ctx context.Context, p startPoint) (*timelineEnd, error) {
	end, err := startReplication(ctx, ss.conn, ss.cfg.Slot, p.LSN, p.TLI)
	if err != nil || end != nil {
		return end, ss.classify(err, p.LSN, p.TLI)
	}
	ss.w = newSegmentWriter(ss.walDir, ss.info.Seg, p.TLI, p.LSN, newArrivalLog(filepath.Join(ss.cfg.Dir, arrivalsSubdir)))
	ss.w.completed = func(segFile) { ss.prune() }
	defer func() {
		if err := ss.closeWriter(); err != nil {
			ss.cfg.Logger.Warn("closing the segment being written", "cluster", ss.cfg.Cluster, "err", err)
		}
	}()
	ss.tr.Connected(ss.addr, ss.ack)
	defer ss.tr.Disconnected()
	ss.streamed = true
	ss.prune()

	now := time.Now()
	ss.lastFlush, ss.lastHeard, ss.sent, ss.asked = now, now, feedback{}, false
	if err := ss.sendFeedback(now, feedbackFor(p.LSN, p.LSN)); err != nil {
		return nil, err
	}
	return ss.receive(ctx)
}

// receive is the loop of one timeline.
func (ss *session) receive(ctx context.Context) (*timelineEnd, error) {
	netConn := ss.conn.Conn()
	stop := context.AfterFunc(ctx, func() { netConn.SetReadDeadline(time.Now()) })
	defer stop()
	defer netConn.SetReadDeadline(time.Time{})
	for {
		if err := ctx.Err(); err != nil {
			return nil, context.Cause(ctx)
		}
		netConn.SetReadDeadline(ss.nextDue())
		msg, err := ss.conn.ReceiveMessage(context.Background())
		now := time.Now()
		switch {
		case err != nil && pgconn.Timeout(err):
			if err := ss.tick(now, true); err != nil {
				return nil, err
			}
			continue
		case err != nil:
			return nil, fmt.Errorf("receive WAL from %s: %w", ss.addr, err)
		}
		ss.lastHeard = now
		switch m := msg.(type) {
		case *pgproto3.CopyData:
			err = ss.handle(m.Data, now)
		case *pgproto3.CopyDone:
			return ss.endTimeline(ctx)
		case *pgproto3.ErrorResponse:
			return nil, ss.classify(pgconn.ErrorResponseToPgError(m), ss.w.Written(), ss.w.tli)
		}
		if err != nil {
			return nil, err
		}
		if err := ss.tick(now, ss.conn.Frontend().ReadBufferLen() == 0); err != nil {
			return nil, err
		}
	}
}

// handle processes one CopyData message: WAL ('w') or a keepalive ('k').
func (ss *session) handle(data []byte, now time.Time) error {
	if len(data) == 0 {
		return nil
	}
	switch data[0] {
	case pglogrepl.XLogDataByteID:
		x, err := pglogrepl.ParseXLogData(data[1:])
		if err != nil {
			return fmt.Errorf("WAL message from %s: %w", ss.addr, err)
		}
		if err := ss.w.Write(LSN(x.WALStart), x.WALData, arrival{Received: now, Server: x.ServerTime}); err != nil {
			return err
		}
		ss.eventTime = x.ServerTime
		ss.tr.Received(len(x.WALData), now)
		ss.tr.Event()
	case pglogrepl.PrimaryKeepaliveMessageByteID:
		k, err := pglogrepl.ParsePrimaryKeepaliveMessage(data[1:])
		if err != nil {
			return fmt.Errorf("keepalive from %s: %w", ss.addr, err)
		}
		ss.asked = ss.asked || k.ReplyRequested
		ss.tr.Heard(now)
	}
	return nil
}

// tick applies the flush and feedback rules. idle says no further message
// is buffered.
func (ss *session) tick(now time.Time, idle bool) error {
	unflushed := int64(ss.w.Written() - ss.w.Flushed())
	if ss.rule.due(unflushed, idle, now.Sub(ss.lastFlush)) {
		if err := ss.w.Flush(); err != nil {
			return err
		}
		ss.lastFlush = now
	}
	if f := ss.w.Flushed(); f != ss.reported {
		ss.reported = f
		ss.tr.Flushed(ss.position(f), ss.eventTime)
	}
	ping, dead := liveness(now.Sub(ss.lastHeard))
	if dead {
		return fmt.Errorf("no message from %s for %s: taking the connection for dead", ss.addr, now.Sub(ss.lastHeard).Round(time.Second))
	}
	fb := feedbackFor(ss.w.Written(), ss.w.Flushed())
	fb.Reply = ping
	if ss.rule.feedbackDue(ss.sent, fb, now.Sub(ss.lastFeedback), ss.asked) {
		return ss.sendFeedback(now, fb)
	}
	return nil
}

// position is the store's position at lsn on the timeline being written,
// with that timeline's history.
func (ss *session) position(lsn LSN) topology.Position {
	return topology.PostgresAt(lsn, ss.w.tli).WithHistory(ancestors(ss.info.Lineage, ss.w.tli))
}

// nextDue is when the loop must wake up without a message.
func (ss *session) nextDue() time.Time {
	next := ss.lastFeedback.Add(ss.rule.Interval)
	if ss.w.Written() > ss.w.Flushed() {
		if f := ss.lastFlush.Add(ss.rule.Interval); f.Before(next) {
			next = f
		}
	}
	return next
}

func (ss *session) sendFeedback(now time.Time, fb feedback) error {
	if err := ss.conn.Frontend().SendUnbufferedEncodedCopyData(fb.encode(now)); err != nil {
		return fmt.Errorf("send status update to %s: %w", ss.addr, err)
	}
	ss.sent, ss.lastFeedback, ss.asked = fb, now, false
	return nil
}

// endTimeline handles the server's CopyDone: the timeline streamed has
// ended. The segment being written stays .partial; the caller plans the
// next timeline from the store.
func (ss *session) endTimeline(ctx context.Context) (*timelineEnd, error) {
	if err := ss.closeWriter(); err != nil {
		return nil, err
	}
	fb := feedbackFor(ss.w.Written(), ss.w.Flushed())
	if err := ss.sendFeedback(time.Now(), fb); err != nil {
		return nil, err
	}
	end, err := endCopy(ctx, ss.conn)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", ss.addr, err)
	}
	return end, nil
}

// closeWriter closes the segment being written and publishes what it
// flushed. It may be called twice.
func (ss *session) closeWriter() error {
	if ss.w == nil {
		return nil
	}
	err := ss.w.Close()
	if f := ss.w.Flushed(); f != ss.reported {
		ss.reported = f
		ss.tr.Flushed(ss.position(f), ss.eventTime)
	}
	if aerr := ss.w.arrivals.Err(); aerr != nil && !ss.warned {
		ss.warned = true
		ss.cfg.Logger.Warn("arrival times not recorded; lag in seconds will be less precise", "cluster", ss.cfg.Cluster, "err", aerr)
	}
	return err
}

// classify turns a server error met while streaming from lsn into the
// stream's terms: WAL the server has removed breaks the stream.
func (ss *session) classify(err error, lsn LSN, tli uint32) error {
	if err == nil {
		return nil
	}
	if pgCode(err) != sqlUndefinedFile {
		return fmt.Errorf("stream from %s: %w", ss.addr, err)
	}
	upTo := "on"
	if ss.slot.Restart > lsn {
		upTo = "up to " + ss.slot.Restart.String() + " (the oldest WAL its replication slot " + ss.cfg.Slot + " keeps)"
	}
	return &brokenError{err: err, reason: fmt.Sprintf(
		"WAL missing: %s no longer has WAL from %s on timeline %d %s, which dbha does not hold (%v). "+
			"dbha holds WAL up to %s and never skips a gap; a failover can only use WAL up to there. "+
			"Was dbha's slot dropped, or invalidated by max_slot_wal_keep_size? To stream again, move the store %s aside "+
			"(a new store starts at the primary's current position), and take a new base backup for point-in-time recovery past the gap",
		ss.addr, lsn, tli, upTo, err, ss.tr.Status().Position, ss.cfg.Dir)}
}
