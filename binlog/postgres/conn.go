package postgres

import (
	"context"
	"fmt"
	"net"
	"strings"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/dbha/dbha/tlsconfig"
	"github.com/dbha/dbha/topology"
)

// dial opens a physical replication connection to addr. The password is
// set on the parsed configuration, never in the connection string, so it
// cannot reach a log or an error message.
func dial(ctx context.Context, addr string, cfg Config) (*pgconn.PgConn, error) {
	return dialAs(ctx, addr, cfg.User, cfg.Password, cfg.TLS, cfg.applicationName())
}

// dialAs is dial with the account, TLS settings and application_name
// given.
func dialAs(ctx context.Context, addr, user, password string, t *tlsconfig.Settings, appName string) (*pgconn.PgConn, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("server address %q: %w", addr, err)
	}
	conninfo := fmt.Sprintf("host=%s port=%s user=%s application_name=%s replication=true connect_timeout=10",
		quoteConninfo(host), quoteConninfo(port), quoteConninfo(user), quoteConninfo(appName))
	pc, err := pgconn.ParseConfig(conninfo)
	if err != nil {
		return nil, fmt.Errorf("replication connection settings for %s: %w", addr, err)
	}
	pc.Password = password
	if pc.TLSConfig, err = t.For(addr); err != nil {
		return nil, err
	}
	pc.Fallbacks = nil // encrypted as t says, or not at all
	conn, err := pgconn.ConnectConfig(ctx, pc)
	if err != nil {
		return nil, authError(user, addr, err)
	}
	return conn, nil
}

// quoteConninfo quotes a value for a key=value connection string.
func quoteConninfo(v string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(v) + "'"
}

// inRecovery reports whether the server said it is a hot standby
// (in_hot_standby, reported at login since PostgreSQL 14).
func inRecovery(conn *pgconn.PgConn) bool { return conn.ParameterStatus("in_hot_standby") == "on" }

// serverInfo is what the stream learns from the primary before streaming.
type serverInfo struct {
	SystemID string
	Flush    LSN // IDENTIFY_SYSTEM's xlogpos: the primary's flush position
	Lineage  lineage
	History  []byte // the current timeline's history file; nil on timeline 1
	Seg      segments
	SyncList string // synchronous_standby_names
}

// identify reads the system identifier, timeline, flush position, segment
// size, synchronous_standby_names and the current timeline's history.
func identify(ctx context.Context, conn *pgconn.PgConn) (serverInfo, error) {
	sys, err := pglogrepl.IdentifySystem(ctx, conn)
	if err != nil {
		return serverInfo{}, fmt.Errorf("IDENTIFY_SYSTEM: %w", err)
	}
	info := serverInfo{SystemID: sys.SystemID, Flush: LSN(sys.XLogPos), Lineage: lineage{Current: uint32(sys.Timeline)}}
	size, err := show(ctx, conn, "wal_segment_size")
	if err != nil {
		return serverInfo{}, err
	}
	if info.Seg, err = parseSegmentSize(size); err != nil {
		return serverInfo{}, err
	}
	if info.SyncList, err = show(ctx, conn, "synchronous_standby_names"); err != nil {
		return serverInfo{}, err
	}
	if sys.Timeline > 1 {
		if info.History, err = timelineHistory(ctx, conn, uint32(sys.Timeline)); err != nil {
			return serverInfo{}, err
		}
		if info.Lineage, err = lineageOf(uint32(sys.Timeline), info.History); err != nil {
			return serverInfo{}, err
		}
	}
	return info, nil
}

// show runs SHOW, which a replication connection accepts.
func show(ctx context.Context, conn *pgconn.PgConn, setting string) (string, error) {
	res, err := conn.Exec(ctx, "SHOW "+setting).ReadAll()
	if err != nil {
		return "", fmt.Errorf("SHOW %s: %w", setting, err)
	}
	if len(res) != 1 || len(res[0].Rows) != 1 || len(res[0].Rows[0]) != 1 {
		return "", fmt.Errorf("SHOW %s: unexpected reply", setting)
	}
	return string(res[0].Rows[0][0]), nil
}

// timelineHistory fetches the history file of timeline tli.
func timelineHistory(ctx context.Context, conn *pgconn.PgConn, tli uint32) ([]byte, error) {
	h, err := pglogrepl.TimelineHistory(ctx, conn, int32(tli))
	if err != nil {
		return nil, fmt.Errorf("TIMELINE_HISTORY %d: %w", tli, err)
	}
	if h.FileName != historyName(tli) {
		return nil, fmt.Errorf("TIMELINE_HISTORY %d: the server sent file %q", tli, h.FileName)
	}
	return h.Content, nil
}

// readSlot reads dbha's slot with READ_REPLICATION_SLOT (PostgreSQL 15+),
// which answers a row of NULLs for a slot that does not exist.
func readSlot(ctx context.Context, conn *pgconn.PgConn, slot string) (slotState, error) {
	res, err := conn.Exec(ctx, "READ_REPLICATION_SLOT "+slot).ReadAll()
	if err != nil {
		return slotState{}, fmt.Errorf("READ_REPLICATION_SLOT %s: %w", slot, err)
	}
	if len(res) != 1 || len(res[0].Rows) != 1 || len(res[0].Rows[0]) != 3 {
		return slotState{}, fmt.Errorf("READ_REPLICATION_SLOT %s: unexpected reply", slot)
	}
	row := res[0].Rows[0]
	if row[0] == nil {
		return slotState{}, nil
	}
	if string(row[0]) != "physical" {
		return slotState{}, fmt.Errorf("replication slot %q is a %s slot; dbha needs a physical one (choose another stream.slot)", slot, row[0])
	}
	st := slotState{Exists: true}
	if row[1] != nil {
		if st.Restart, err = topology.ParseLSN(string(row[1])); err != nil {
			return slotState{}, fmt.Errorf("READ_REPLICATION_SLOT %s: restart_lsn: %w", slot, err)
		}
	}
	if row[2] != nil {
		var tli uint32
		if _, err := fmt.Sscan(string(row[2]), &tli); err != nil {
			return slotState{}, fmt.Errorf("READ_REPLICATION_SLOT %s: restart_tli: %w", slot, err)
		}
		st.TLI = tli
	}
	return st, nil
}

// ensureSlot makes sure dbha's physical slot exists, creating it with
// RESERVE_WAL so the primary keeps WAL for dbha from now on, and returns
// its state. created says the slot was not there.
func ensureSlot(ctx context.Context, conn *pgconn.PgConn, slot string) (st slotState, created bool, err error) {
	if st, err = readSlot(ctx, conn, slot); err != nil || st.Exists {
		return st, false, err
	}
	_, err = conn.Exec(ctx, "CREATE_REPLICATION_SLOT "+slot+" PHYSICAL RESERVE_WAL").ReadAll()
	if err != nil && pgCode(err) != sqlDuplicateObject {
		return slotState{}, false, fmt.Errorf("create replication slot %s: %w", slot, err)
	}
	st, err = readSlot(ctx, conn, slot)
	return st, err == nil, err
}

// startReplication sends START_REPLICATION for dbha's slot. ended is set
// when the server answers at once that timeline tli ends at or before
// start: it then names the next timeline and where it begins.
func startReplication(ctx context.Context, conn *pgconn.PgConn, slot string, start LSN, tli uint32) (ended *timelineEnd, err error) {
	err = pglogrepl.StartReplication(ctx, conn, slot, pglogrepl.LSN(start),
		pglogrepl.StartReplicationOptions{Mode: pglogrepl.PhysicalReplication, Timeline: int32(tli)})
	if next, at, ok := pglogrepl.IsErrEndTimeline(err); ok {
		return &timelineEnd{Next: uint32(next), At: LSN(at)}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("START_REPLICATION SLOT %s PHYSICAL %s TIMELINE %d: %w", slot, start, tli, err)
	}
	return nil, nil
}

// startPhysical sends START_REPLICATION PHYSICAL without a slot: a one-shot
// read of WAL the server must still hold, which reserves nothing on it
// (pglogrepl always names a slot). ended is set when the server answers at
// once that timeline tli ends at or before start.
func startPhysical(ctx context.Context, conn *pgconn.PgConn, start LSN, tli uint32) (ended *timelineEnd, err error) {
	query := fmt.Sprintf("START_REPLICATION PHYSICAL %s TIMELINE %d", start, tli)
	conn.Frontend().SendQuery(&pgproto3.Query{String: query})
	if err := conn.Frontend().Flush(); err != nil {
		return nil, fmt.Errorf("%s: %w", query, err)
	}
	var next timelineEnd
	for {
		msg, err := conn.ReceiveMessage(ctx)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", query, err)
		}
		switch m := msg.(type) {
		case *pgproto3.CopyBothResponse:
			return nil, nil
		case *pgproto3.ErrorResponse:
			return nil, fmt.Errorf("%s: %w", query, pgconn.ErrorResponseToPgError(m))
		case *pgproto3.DataRow: // next_tli, next_tli_startpos
			if len(m.Values) != 2 {
				return nil, fmt.Errorf("%s: the server named the next timeline in %d fields", query, len(m.Values))
			}
			var n uint32
			if _, err := fmt.Sscan(string(m.Values[0]), &n); err != nil {
				return nil, fmt.Errorf("%s: next timeline %q: %w", query, m.Values[0], err)
			}
			at, err := topology.ParseLSN(string(m.Values[1]))
			if err != nil {
				return nil, fmt.Errorf("%s: next timeline's start: %w", query, err)
			}
			next = timelineEnd{Next: n, At: at}
		case *pgproto3.ReadyForQuery:
			if next.Next == 0 {
				return nil, fmt.Errorf("%s: the server ended the command without streaming or naming a next timeline", query)
			}
			return &next, nil
		}
	}
}

// timelineEnd is the server's word that the timeline being streamed ended:
// Next begins at At.
type timelineEnd struct {
	Next uint32
	At   LSN
}

// endCopy answers the server's CopyDone at the end of a timeline and reads
// which timeline follows.
func endCopy(ctx context.Context, conn *pgconn.PgConn) (*timelineEnd, error) {
	res, err := pglogrepl.SendStandbyCopyDone(ctx, conn)
	if err != nil {
		return nil, fmt.Errorf("end of timeline: %w", err)
	}
	if res == nil {
		return nil, fmt.Errorf("end of timeline: the server named no next timeline")
	}
	return &timelineEnd{Next: uint32(res.Timeline), At: LSN(res.LSN)}, nil
}

// listsStandby reports whether synchronous_standby_names (in any of its
// forms: "a, b", "FIRST n (a, b)", "ANY n (a, b)", "*") names a standby
// whose application_name is name. Names compare case-insensitively, as
// PostgreSQL compares them; quoted names are unquoted.
func listsStandby(list, name string) bool {
	s := strings.TrimSpace(list)
	if open := strings.Index(s, "("); open >= 0 && strings.HasSuffix(s, ")") {
		s = s[open+1 : len(s)-1]
	}
	for _, n := range strings.Split(s, ",") {
		n = strings.TrimSpace(n)
		if unq, ok := strings.CutPrefix(n, `"`); ok {
			n = strings.ReplaceAll(strings.TrimSuffix(unq, `"`), `""`, `"`)
		}
		if n == "*" || n != "" && strings.EqualFold(n, name) {
			return true
		}
	}
	return false
}

// syncWarning says when synchronous_standby_names disagrees with the
// stream's setting.
func syncWarning(synchronous bool, list string) string {
	switch {
	case synchronous && !listsStandby(list, SyncApplicationName):
		return fmt.Sprintf("stream.synchronous is on, but synchronous_standby_names (%q) does not name %q: commits do not wait for dbha",
			list, SyncApplicationName)
	case !synchronous && listsStandby(list, AsyncApplicationName):
		return fmt.Sprintf("synchronous_standby_names (%q) matches dbha's application_name %q although stream.synchronous is off: commits may wait for dbha",
			list, AsyncApplicationName)
	}
	return ""
}
