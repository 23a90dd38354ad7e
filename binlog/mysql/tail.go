package mysql

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/go-mysql-org/go-mysql/mysql"
	"github.com/go-mysql-org/go-mysql/replication"

	"github.com/dbha/dbha/topology"
	tmysql "github.com/dbha/dbha/topology/mysql"
)

// tailHeartbeat is how often a server that has sent everything says so.
const tailHeartbeat = time.Second

// TailCopier saves the tail of a MariaDB server's binlog — the
// transactions a former primary holds that the new primary lacks — into a
// file, before a rewind undoes them (tmysql.Controller.Rewind). It reads
// them over the replication protocol, as the stream does, from the server
// itself: a GTID dump that starts after the position the two share and
// stops at the tail's last transaction. It implements tmysql.TailSaver.
type TailCopier struct {
	// ServerID is the server_id the copy registers with; no server of the
	// cluster may use it (the stream's, stream.server_id, is fit: the
	// stream never reads from a fenced former primary).
	ServerID uint32
	Logger   *slog.Logger // go-mysql's warnings; nil: none
}

var _ tmysql.TailSaver = TailCopier{}

// SaveTail: see tmysql.TailSaver.
func (tc TailCopier) SaveTail(ctx context.Context, req tmysql.TailRequest) (tmysql.SavedTail, error) {
	if tc.ServerID == 0 {
		return tmysql.SavedTail{}, errors.New("save a tail: the copy needs a server_id")
	}
	if _, err := os.Lstat(req.Path); err == nil {
		return tmysql.SavedTail{}, fmt.Errorf("save a tail: %s exists", req.Path)
	}
	t, err := newTailFile(req.Path, req.After, req.Upto, req.MaxEvents)
	if err != nil {
		return tmysql.SavedTail{}, fmt.Errorf("save the tail of %s: %w", req.Addr, err)
	}
	defer t.abort()
	endFile, endPos, err := binlogEnd(ctx, req)
	if err != nil {
		return tmysql.SavedTail{}, err
	}
	if err := tc.copy(ctx, req, t, endFile, endPos); err != nil {
		return tmysql.SavedTail{}, fmt.Errorf("save the tail of %s after %s up to %s: %w", req.Addr, req.After, req.Upto, err)
	}
	if err := t.finish(); err != nil {
		return tmysql.SavedTail{}, fmt.Errorf("save the tail of %s: %w", req.Addr, err)
	}
	saved := tmysql.SavedTail{GTIDs: t.gtids, Events: t.events, Tables: t.changed()}
	if err := t.refusal(); err != nil {
		return saved, fmt.Errorf("the tail of %s, saved in %s: %w", req.Addr, req.Path, err)
	}
	return saved, nil
}

// binlogEnd is where the server's binlog ends now (the server is fenced:
// it does not grow). A heartbeat from there means the server has sent
// everything.
func binlogEnd(ctx context.Context, req tmysql.TailRequest) (string, uint32, error) {
	db, err := tmysql.Open(req.Addr, req.User, req.Password, req.TLS)
	if err != nil {
		return "", 0, err
	}
	defer db.Close()
	var (
		file string
		pos  uint32
		skip sql.NullString
	)
	if err := db.QueryRowContext(ctx, "SHOW MASTER STATUS").Scan(&file, &pos, &skip, &skip); err != nil {
		return "", 0, fmt.Errorf("read where the binlog of %s ends: %w", req.Addr, err)
	}
	return file, pos, nil
}

// copy streams the tail into t until its last transaction is written.
func (tc TailCopier) copy(ctx context.Context, req tmysql.TailRequest, t *tailFile, endFile string, endPos uint32) error {
	host, portText, err := net.SplitHostPort(req.Addr)
	if err != nil {
		return err
	}
	port, err := strconv.ParseUint(portText, 10, 16)
	if err != nil {
		return fmt.Errorf("address %q: bad port", req.Addr)
	}
	log := tc.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	tlsCfg, err := req.TLS.For(req.Addr)
	if err != nil {
		return err
	}
	syncer := replication.NewBinlogSyncer(replication.BinlogSyncerConfig{
		ServerID: tc.ServerID, Flavor: mysql.MariaDBFlavor, Host: host, Port: uint16(port),
		User: req.User, Password: req.Password, Localhost: "dbha-rewind", TLSConfig: tlsCfg,
		RawModeEnabled: true, DisableRetrySync: true, // one pass: a broken connection fails the copy
		// A long read timeout: a server may be slow to reach the tail in a
		// large binlog; the caller's context bounds the whole copy.
		HeartbeatPeriod: tailHeartbeat, ReadTimeout: 60 * tailHeartbeat,
		DumpCommandFlag: replication.BINLOG_SEND_ANNOTATE_ROWS_EVENT, // keep the statements' text for readers
		Logger:          quiet(log),
	})
	defer syncer.Close()
	gset, err := t.after.gtidSet()
	if err != nil {
		return err
	}
	stream, err := syncer.StartSyncGTID(gset)
	if err != nil {
		return fmt.Errorf("connect as user %q: %w", req.User, err)
	}
	for !t.complete() {
		e, err := stream.GetEvent(ctx)
		if mysqlErrorNumber(err) == 1236 { // ER_MASTER_FATAL_ERROR_READING_BINLOG: purged, or not in its binlog
			return fmt.Errorf("%w: the server cannot send its binlog from %s: %v", topology.ErrCannotRewind, req.After, err)
		}
		if err != nil {
			return fmt.Errorf("read the binlog (lacking %s): %w", t.lacking(), err)
		}
		if typ := e.Header.EventType; typ == replication.HEARTBEAT_EVENT || typ == replication.HEARTBEAT_LOG_EVENT_V2 {
			if atEnd(e, endFile, endPos) {
				return fmt.Errorf("%w: the binlog ends (%s:%d) before %s: the server's GTID state names transactions its binlog does not hold",
					topology.ErrCannotRewind, endFile, endPos, t.lacking())
			}
			continue
		}
		if err := t.event(e.RawData); err != nil {
			return err
		}
	}
	return nil
}

// atEnd reports whether a heartbeat says the server has sent everything up
// to file:pos (a MariaDB heartbeat carries the file name as its body, the
// position as its log_pos; a checksum may follow the name).
func atEnd(e *replication.BinlogEvent, file string, pos uint32) bool {
	return len(e.RawData) > headerSize && strings.HasPrefix(string(e.RawData[headerSize:]), file) && e.Header.LogPos >= pos
}
