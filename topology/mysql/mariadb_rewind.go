package mysql

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/dbha/dbha/topology"
)

// Bounds of the steps of a rewind that must finish once started: an undo
// cut off half-way leaves the instance's data in doubt, and a GTID reset cut
// off leaves it unable to replicate. They run on a context the caller's
// cancellation does not end.
const (
	undoLimit  = 15 * time.Minute
	resetLimit = time.Minute
)

// rewindState is what a rewind reads of an instance.
type rewindState struct {
	serverID     uint32
	readOnly     bool
	history      topology.Position // gtid_binlog_state
	binlogFormat string
	rowImage     string
	links        []*topology.Replication // configured replication connections
}

func (c mariadbControl) rewindState(ctx context.Context, addr string) (rewindState, error) {
	db, err := c.db(addr)
	if err != nil {
		return rewindState{}, err
	}
	conn, err := db.Conn(ctx)
	if err != nil {
		return rewindState{}, fmt.Errorf("connect to %s: %w", addr, err)
	}
	defer conn.Close()
	var (
		st    rewindState
		state string
	)
	err = conn.QueryRowContext(ctx, "SELECT @@server_id, @@read_only, @@gtid_binlog_state, @@binlog_format, @@binlog_row_image").
		Scan(&st.serverID, &st.readOnly, &state, &st.binlogFormat, &st.rowImage)
	if err != nil {
		return st, fmt.Errorf("read the GTID state of %s: %w", addr, err)
	}
	if st.history, err = topology.ParseMariaDB(state); err != nil {
		return st, fmt.Errorf("gtid_binlog_state of %s: %w", addr, err)
	}
	rows, err := queryStatus(ctx, conn, "SHOW ALL SLAVES STATUS")
	if err != nil {
		return st, fmt.Errorf("read replication status of %s: %w", addr, err)
	}
	for _, r := range rows {
		st.links = append(st.links, replicationFrom(r))
	}
	return st, nil
}

// source is the source the instance's first configured replication
// connection names, "" when it has none.
func (st rewindState) source() string {
	for _, r := range st.links {
		if r.Source != "" {
			return r.Source
		}
	}
	return ""
}

// serverID asks addr its server_id.
func (c mariadbControl) serverID(ctx context.Context, addr string) (uint32, error) {
	db, err := c.db(addr)
	if err != nil {
		return 0, err
	}
	var id uint32
	if err := db.QueryRowContext(ctx, "SELECT @@server_id").Scan(&id); err != nil {
		return 0, fmt.Errorf("ask %s its server_id: %w", addr, err)
	}
	return id, nil
}

// stopReplication stops both replication threads of every connection of
// addr, its IO threads without waiting on their source (StopFollowing).
func (c mariadbControl) stopReplication(ctx context.Context, addr string) error {
	if err := c.StopFollowing(ctx, addr); err != nil {
		return fmt.Errorf("stop receiving: %w", err)
	}
	db, err := c.db(addr)
	if err != nil {
		return err
	}
	_, err = db.ExecContext(ctx, "STOP ALL SLAVES")
	return wrapStmt("STOP ALL SLAVES", addr, err)
}

// replicating reports whether a replication thread runs on the instance.
func (st rewindState) replicating() bool {
	return slices.ContainsFunc(st.links, func(r *topology.Replication) bool { return r.IORunning || r.SQLRunning })
}

// follows reports whether the instance replicates from source, both
// threads running.
func (st rewindState) follows(source string) bool {
	return slices.ContainsFunc(st.links, func(r *topology.Replication) bool {
		return r.Source == source && r.IORunning && r.SQLRunning
	})
}

// Rewind: see Controller.Rewind.
func (c mariadbControl) Rewind(ctx context.Context, addr, primary, saveDir string) (topology.Rewound, error) {
	if addr == primary {
		return topology.Rewound{}, fmt.Errorf("rewind %s: it is the primary", addr)
	}
	own, err := c.rewindState(ctx, addr)
	if err != nil {
		return topology.Rewound{}, fmt.Errorf("rewind %s: %w", addr, err)
	}
	prim, err := c.rewindState(ctx, primary)
	if err != nil {
		return topology.Rewound{}, fmt.Errorf("rewind %s: primary: %w", addr, err)
	}
	j, err := readJournal(saveDir, addr)
	if err != nil {
		return topology.Rewound{}, fmt.Errorf("rewind %s: %w", addr, err)
	}
	if j != nil && j.State != journalDone {
		if res, resumed, err := c.resume(ctx, *j, own, prim, primary, saveDir); resumed || err != nil {
			return res, err
		}
	}

	origins := []uint32{own.serverID}
	if src := own.source(); src != "" && src != primary {
		// A replica cut loose from the writer (a partition kept the
		// failover from repointing it): what it holds beyond the writer
		// came from the source it still names, the former primary.
		id, err := c.serverID(ctx, src)
		if err != nil {
			return topology.Rewound{}, fmt.Errorf("rewind %s: read the server_id of %s, the source whose transactions it may hold: %w", addr, src, err)
		}
		origins = append(origins, id)
	}
	tail, err := topology.MariaDBTail(own.history, prim.history, origins...)
	res := topology.Rewound{Tail: tail.Errant, From: tail.From}
	if err != nil {
		return res, fmt.Errorf("rewind %s (gtid_binlog_state %s) onto %s (%s): %w", addr, own.history, primary, prim.history, err)
	}
	if tail.Errant.String() != "" && own.replicating() && !own.follows(primary) {
		// It must receive and apply nothing more while its tail is undone.
		if err := c.stopReplication(ctx, addr); err != nil {
			return res, fmt.Errorf("rewind %s: %w", addr, err)
		}
		if own, err = c.rewindState(ctx, addr); err != nil {
			return res, fmt.Errorf("rewind %s: %w", addr, err)
		}
	}
	if tail.Errant.String() == "" {
		if own.follows(primary) {
			return res, nil
		}
		start := time.Now()
		if err := c.Repoint(ctx, addr, primary); err != nil {
			return res, fmt.Errorf("rewind %s: it holds nothing %s lacks; repoint: %w", addr, primary, err)
		}
		res.Rejoin = topology.Duration(time.Since(start))
		return res, nil
	}
	if err := own.readyToUndo(addr); err != nil {
		return res, err
	}
	if tail.Transactions > MaxRewindEvents {
		return res, fmt.Errorf("rewind %s: %w: its tail %s holds %d transactions, more than the %d events a rewind undoes: reseed it",
			addr, ErrCannotRewind, tail.Errant, tail.Transactions, MaxRewindEvents)
	}
	if err := requireTools("mariadb-binlog", "mariadb"); err != nil {
		return res, fmt.Errorf("rewind %s: %w", addr, err)
	}
	if c.tail == nil {
		return res, fmt.Errorf("rewind %s: %w", addr, errNoTailSaver)
	}
	if err := c.canUndo(ctx, addr); err != nil {
		return res, fmt.Errorf("rewind %s: %w", addr, err)
	}

	saved, err := c.saveTail(ctx, addr, primary, saveDir, own, tail, &res)
	if err != nil {
		return res, err
	}
	return c.undoAndRejoin(ctx, saved, saveDir)
}

// readyToUndo refuses an instance that is not fenced and idle, and one whose
// binlog may hold partial row images (which mariadb-binlog --flashback would
// silently get wrong).
func (st rewindState) readyToUndo(addr string) error {
	switch {
	case !st.readOnly:
		return fmt.Errorf("rewind %s: it is writable: fence it first", addr)
	case st.replicating():
		return fmt.Errorf("rewind %s: it replicates (from %s): a rewind undoes only a fenced instance that follows nobody", addr, st.links[0].Source)
	case !strings.EqualFold(st.binlogFormat, "ROW"):
		return fmt.Errorf("rewind %s: %w: binlog_format is %s, not ROW: its statements cannot be undone", addr, ErrCannotRewind, st.binlogFormat)
	case !strings.EqualFold(st.rowImage, "FULL"):
		return fmt.Errorf("rewind %s: %w: binlog_row_image is %s, not FULL: its row events do not hold whole rows to put back", addr, ErrCannotRewind, st.rowImage)
	}
	return nil
}

// canUndo checks, before anything is saved or journaled, that the account
// may run the undo without binlogging it: an undo that failed on its first
// statement would leave the journal saying the data is in doubt.
func (c mariadbControl) canUndo(ctx context.Context, addr string) error {
	db, err := c.db(addr)
	if err != nil {
		return err
	}
	conn, err := db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("connect to %s: %w", addr, err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "SET SESSION sql_log_bin = 0"); err != nil {
		return fmt.Errorf("the undo must not be binlogged, and SET sql_log_bin failed (grant BINLOG ADMIN): %w", err)
	}
	// The session goes back to the pool: it must binlog again.
	if _, err := conn.ExecContext(ctx, "SET SESSION sql_log_bin = 1"); err != nil {
		conn.Raw(func(any) error { return driver.ErrBadConn }) // never reuse it
		return fmt.Errorf("SET sql_log_bin back on %s: %w", addr, err)
	}
	return nil
}

// saveTail saves the tail under saveDir and checks that the file holds
// exactly the tail's GTIDs. It fills res with what was saved, and returns
// the journal the undo starts from.
func (c mariadbControl) saveTail(ctx context.Context, addr, primary, saveDir string, own rewindState, tail topology.Tail, res *topology.Rewound) (rewindJournal, error) {
	if err := os.MkdirAll(saveDir, 0o700); err != nil {
		return rewindJournal{}, fmt.Errorf("rewind %s: %w", addr, err)
	}
	now := time.Now()
	path := tailPath(saveDir, addr, now)
	saved, err := c.tail.SaveTail(ctx, TailRequest{Addr: addr, User: c.user, Password: c.password, TLS: c.tls,
		After: tail.From, Upto: tail.Errant, Path: path, MaxEvents: MaxRewindEvents})
	res.Save = topology.Duration(time.Since(now))
	if len(saved.GTIDs) > 0 {
		res.File, res.Transactions, res.Events, res.Tables = path, len(saved.GTIDs), saved.Events, saved.Tables
	}
	switch {
	case errors.Is(err, ErrCannotRewind):
		return rewindJournal{}, fmt.Errorf("rewind %s: %w", addr, err)
	case err != nil:
		return rewindJournal{}, fmt.Errorf("rewind %s: save its tail %s: %w", addr, tail.Errant, err)
	}
	if want := tail.GTIDs(); !slices.Equal(saved.GTIDs, want) {
		return rewindJournal{}, fmt.Errorf("rewind %s: %w: the saved tail %s holds %d transactions (%s), not the %d of %s after %s",
			addr, ErrCannotRewind, path, len(saved.GTIDs), span(saved.GTIDs), len(want), tail.Errant, tail.From)
	}
	if err := c.checkCascades(ctx, addr, saved.Tables); err != nil {
		return rewindJournal{}, fmt.Errorf("rewind %s: the tail saved in %s: %w", addr, path, err)
	}
	return rewindJournal{Addr: addr, Primary: primary, Time: now.UTC(), Before: own.history, Tail: tail.Errant,
		From: tail.From, Kept: tail.Kept, File: path, Transactions: res.Transactions, Events: res.Events, Tables: res.Tables,
		Save: res.Save}, nil
}

// span names a GTID list by its ends.
func span(gtids []string) string {
	if len(gtids) == 0 {
		return "none"
	}
	return gtids[0] + " .. " + gtids[len(gtids)-1]
}

// undoAndRejoin undoes the saved tail on the instance, then resets its GTID
// state and repoints it, recording each step in the journal first.
func (c mariadbControl) undoAndRejoin(ctx context.Context, j rewindJournal, saveDir string) (topology.Rewound, error) {
	j.State = journalUndoing
	if err := writeJournal(saveDir, j); err != nil {
		return j.rewound(), fmt.Errorf("rewind %s: %w", j.Addr, err)
	}
	start := time.Now()
	if err := c.undo(ctx, j.Addr, j.File); err != nil {
		return j.rewound(), fmt.Errorf("rewind %s: undo %s: %w (the data may be partly undone: reseed it)", j.Addr, j.File, err)
	}
	j.Undo = topology.Duration(time.Since(start))
	j.State = journalUndone
	if err := writeJournal(saveDir, j); err != nil {
		return j.rewound(), fmt.Errorf("rewind %s: undone, but: %w", j.Addr, err)
	}
	return c.finish(ctx, j, saveDir)
}

// undo runs mariadb-binlog --flashback over the saved tail into the
// instance, in a session that does not write the binlog: the undo creates
// no GTIDs, and the GTID reset that follows gives the instance the state it
// had before the tail.
func (c mariadbControl) undo(ctx context.Context, addr, file string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	tt, err := toolTLS(c.tls)
	if err != nil {
		return err
	}
	optFile, cleanup, err := ClientOptionFile(c.user, c.password, host, port, tt)
	if err != nil {
		return err
	}
	defer cleanup()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), undoLimit)
	defer cancel()
	// --skip-reconnect: a client that reconnected would go on after a lost
	// statement. The init command runs before anything else; if it fails
	// (BINLOG ADMIN missing) the client stops before the first undo.
	return pipeBinlog(ctx, []string{"--no-defaults", "--flashback", file},
		[]string{"--defaults-extra-file=" + optFile, "--batch", "--binary-mode", "--skip-reconnect",
			"--init-command=SET SESSION sql_log_bin=0"})
}

// finish gives the instance the GTID state it had before the tail (an
// empty binlog whose gtid_binlog_state is j.Kept, gtid_slave_pos j.From)
// and repoints it at the primary.
func (c mariadbControl) finish(ctx context.Context, j rewindJournal, saveDir string) (topology.Rewound, error) {
	res := j.rewound()
	start := time.Now()
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), resetLimit)
	defer cancel()
	err := c.exec(rctx, j.Addr, "STOP SLAVE", "RESET MASTER",
		"SET GLOBAL gtid_binlog_state = '"+quote(j.Kept.BinlogState())+"'",
		"SET GLOBAL gtid_slave_pos = '"+quote(j.From.String())+"'")
	if err != nil {
		return res, fmt.Errorf("rewind %s: undone; reset its GTID state to %s: %w", j.Addr, j.From, err)
	}
	if err := c.Repoint(rctx, j.Addr, j.Primary); err != nil {
		return res, fmt.Errorf("rewind %s: undone and reset to %s; repoint at %s: %w", j.Addr, j.From, j.Primary, err)
	}
	res.Rejoin = topology.Duration(time.Since(start))
	res.Undone = true
	j.State = journalDone
	if err := writeJournal(saveDir, j); err != nil {
		return res, fmt.Errorf("rewind %s: rejoined, but: %w", j.Addr, err)
	}
	return res, nil
}

// resume finishes a rewind of the instance that a crash interrupted, when
// the journal and the instance's state agree on where it stopped. It
// reports whether it handled the call.
func (c mariadbControl) resume(ctx context.Context, j rewindJournal, own, prim rewindState, primary, saveDir string) (topology.Rewound, bool, error) {
	finish, err := resumable(j, own.history, prim.history, primary)
	if err != nil {
		return j.rewound(), true, err
	}
	if !finish {
		return topology.Rewound{}, false, nil
	}
	j.Primary = primary
	res, err := c.finish(ctx, j, saveDir)
	return res, true, err
}

// resumable decides, from an unfinished journal and the GTID states
// (gtid_binlog_state) of the instance and the primary, whether a call
// finishes the interrupted rewind (the undo is done; the GTID reset or the
// repoint may not be), refuses (the undo itself was interrupted: the data
// is in doubt), or ignores the journal (it no longer describes the
// instance: reseeded, or rejoined since).
func resumable(j rewindJournal, own, prim topology.Position, primary string) (finish bool, err error) {
	now := own.String()
	before := now == j.Before.String()
	reset := now == "" || now == j.Kept.String() // RESET MASTER ran, or the state was set too
	switch {
	case j.State == journalUndoing && before:
		return false, fmt.Errorf("rewind %s: %w: an earlier rewind (%s) was interrupted while undoing %s: the data may be partly undone; reseed it",
			j.Addr, ErrCannotRewind, j.File, j.Tail)
	case j.State == journalUndone && (before || reset):
		if e := topology.Errant(j.Kept, prim); e.String() != "" {
			return false, fmt.Errorf("rewind %s: %w: an earlier rewind undid %s to go back to %s, which the primary %s lacks (%s)",
				j.Addr, ErrCannotRewind, j.Tail, j.From, primary, e)
		}
		return true, nil
	}
	return false, nil
}
