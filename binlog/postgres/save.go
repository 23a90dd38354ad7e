package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/dbha/dbha/topology"
)

// DefaultMaxSave bounds the WAL one save keeps when Rewinder.MaxBytes is 0.
const DefaultMaxSave int64 = 1 << 30

// SaveApplicationName is the application_name a save connects with, so
// that pg_stat_replication on the former primary tells it from a standby.
const SaveApplicationName = "dbha_rewind"

// ErrTooMuchToSave: the WAL beyond the fork is larger than the save's
// limit. Nothing was written and nothing changed on the server.
var ErrTooMuchToSave = errors.New("more WAL beyond the fork than dbha saves")

// manifestFile describes a save; it sits beside the segments.
const manifestFile = "rewind.json"

// Saved is what a save wrote.
type Saved struct {
	// Dir holds the WAL segments (named as in pg_wal, for pg_waldump) and
	// rewind.json; "" when the former primary held nothing beyond the fork.
	Dir string
	// Fork is where the former primary's WAL leaves the primary's history;
	// End is the former primary's flush position, with its history.
	Fork, End topology.Position
	// Bytes is End − Fork: the WAL pg_rewind discards, all of it saved.
	Bytes int64
}

// manifest is rewind.json: what was saved, from where, and how to read it.
type manifest struct {
	Instance    string            `json:"instance"`
	Primary     string            `json:"primary"`
	SystemID    string            `json:"system_id"`
	Fork        topology.Position `json:"fork"`
	End         topology.Position `json:"end"`
	Bytes       int64             `json:"bytes"`
	SegmentSize int64             `json:"segment_size"`
	Started     time.Time         `json:"started"`
	Finished    time.Time         `json:"finished"`
	// Read is the pg_waldump command that lists the saved records.
	Read string `json:"read"`
}

// save writes the WAL that former holds beyond the fork from primary's
// history into a new directory under saveDir (see Rewinder.Save).
func (r Rewinder) save(ctx context.Context, former, primary, saveDir string) (Saved, error) {
	started := r.now()
	pinfo, err := r.identify(ctx, primary)
	if err != nil {
		return Saved{}, err
	}
	conn, err := dialAs(ctx, former, r.User, r.Password, r.TLS, SaveApplicationName)
	if err != nil {
		return Saved{}, err
	}
	defer closeConn(ctx, conn)
	if inRecovery(conn) {
		return Saved{}, fmt.Errorf("%s is a standby (in recovery) already, not a former primary", former)
	}
	finfo, err := identify(ctx, conn)
	if err != nil {
		return Saved{}, fmt.Errorf("identify %s: %w", former, err)
	}
	if finfo.SystemID != pinfo.SystemID {
		return Saved{}, fmt.Errorf("%s is PostgreSQL system %s and %s is system %s: not one cluster", former, finfo.SystemID, primary, pinfo.SystemID)
	}
	end := topology.PostgresAt(finfo.Flush, finfo.Lineage.Current).WithHistory(finfo.Lineage.Switches)
	f, err := forkPoint(finfo.Lineage, pinfo.Lineage)
	if errors.Is(err, errNotForked) && finfo.Flush <= pinfo.Flush {
		return Saved{End: end}, nil // behind on the primary's own timeline: nothing is discarded
	}
	if err != nil {
		return Saved{}, fmt.Errorf("where %s (at %s) leaves the history of %s (at %s): %w", former, end, primary,
			topology.PostgresAt(pinfo.Flush, pinfo.Lineage.Current), err)
	}
	out := Saved{Fork: topology.PostgresAt(f.At, f.TLI), End: end}
	if finfo.Flush <= f.At {
		return out, nil
	}
	out.Bytes = int64(finfo.Flush - f.At)
	if limit := r.maxBytes(); out.Bytes > limit {
		return Saved{}, fmt.Errorf("%w: %s holds %d bytes of WAL beyond %s (from %s to %s); dbha saves at most %d. "+
			"Copy its pg_wal aside (or save it with pg_receivewal) and rejoin it by hand",
			ErrTooMuchToSave, former, out.Bytes, primary, out.Fork, end, limit)
	}
	m := manifest{Instance: former, Primary: primary, SystemID: finfo.SystemID, Fork: out.Fork, End: end,
		Bytes: out.Bytes, SegmentSize: int64(finfo.Seg), Started: started.UTC()}
	out.Dir, err = r.write(ctx, conn, finfo, f, saveDir, m)
	return out, err
}

// identify reads a server's identity and lineage over a connection of its
// own, closed at once.
func (r Rewinder) identify(ctx context.Context, addr string) (serverInfo, error) {
	conn, err := dialAs(ctx, addr, r.User, r.Password, r.TLS, SaveApplicationName)
	if err != nil {
		return serverInfo{}, err
	}
	defer closeConn(ctx, conn)
	info, err := identify(ctx, conn)
	if err != nil {
		return serverInfo{}, fmt.Errorf("identify %s: %w", addr, err)
	}
	return info, nil
}

func closeConn(ctx context.Context, conn *pgconn.PgConn) {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	conn.Close(cctx)
}

// write streams the WAL from the fork to the former primary's flush
// position into saveDir/rewind-<instance>-<time>, built under a .partial
// name and renamed once complete and durable: a directory without the
// suffix always holds the whole range. Earlier saves of the same range that
// this one covers are removed (a rejoin that failed after its save is
// saved again on the next attempt).
func (r Rewinder) write(ctx context.Context, conn *pgconn.PgConn, info serverInfo, f fork, saveDir string, m manifest) (string, error) {
	if err := os.MkdirAll(saveDir, 0o700); err != nil {
		return "", fmt.Errorf("create %s: %w", saveDir, err)
	}
	final := filepath.Join(saveDir, "rewind-"+fileSafe(m.Instance)+"-"+m.Started.Format("20060102T150405Z"))
	tmp := final + partialSuffix
	if err := os.Mkdir(tmp, 0o700); err != nil {
		return "", fmt.Errorf("create %s: %w", tmp, err)
	}
	done := false
	defer func() {
		if !done {
			os.RemoveAll(tmp) // the server still holds the WAL: nothing is lost
		}
	}()
	s := &saver{conn: conn, addr: m.Instance, dir: tmp, seg: info.Seg, end: info.Flush, endTLI: info.Lineage.Current}
	if err := s.run(ctx, f); err != nil {
		return "", err
	}
	if err := completeSegments(tmp, info.Seg); err != nil {
		return "", err
	}
	m.Finished = r.now().UTC()
	m.Read = fmt.Sprintf("pg_waldump --path %s --timeline %d --start %s --end %s", final, f.TLI, m.Fork.LSN(), m.End.LSN())
	raw, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return "", err
	}
	if err := writeFileSync(filepath.Join(tmp, manifestFile), append(raw, '\n')); err != nil {
		return "", err
	}
	if err := os.Chmod(filepath.Join(tmp, manifestFile), 0o600); err != nil {
		return "", err
	}
	if err := os.Rename(tmp, final); err != nil {
		return "", fmt.Errorf("rename %s: %w", tmp, err)
	}
	done = true
	if err := syncDir(saveDir); err != nil {
		return final, err
	}
	removeSuperseded(saveDir, final, m)
	return final, nil
}

// completeSegments gives every .partial segment its plain name, so that
// pg_waldump finds it: a saved range is final, and its last segment ends in
// zeros after the range's end.
func completeSegments(dir string, seg segments) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("list %s: %w", dir, err)
	}
	for _, e := range entries {
		f, ok := seg.parse(e.Name())
		if !ok || !f.Partial {
			continue
		}
		f.Partial = false
		if err := os.Rename(filepath.Join(dir, e.Name()), filepath.Join(dir, seg.fileName(f))); err != nil {
			return fmt.Errorf("rename %s: %w", e.Name(), err)
		}
	}
	return syncDir(dir)
}

// removeSuperseded removes earlier saves of the same instance that the
// save m covers: the same system, the same fork, and an end on the same
// timeline no later than m's. A server's WAL before its flush position on
// one timeline never changes, so such a save holds a prefix of m's bytes.
// It is best effort: a save left in place costs disk, never WAL.
func removeSuperseded(saveDir, keep string, m manifest) {
	entries, err := os.ReadDir(saveDir)
	if err != nil {
		return
	}
	prefix := "rewind-" + fileSafe(m.Instance) + "-"
	for _, e := range entries {
		path := filepath.Join(saveDir, e.Name())
		if !e.IsDir() || !strings.HasPrefix(e.Name(), prefix) || strings.HasSuffix(e.Name(), partialSuffix) || path == keep {
			continue
		}
		raw, err := os.ReadFile(filepath.Join(path, manifestFile))
		var old manifest
		if err != nil || json.Unmarshal(raw, &old) != nil {
			continue
		}
		if old.SystemID == m.SystemID && old.Instance == m.Instance &&
			old.Fork.LSN() == m.Fork.LSN() && old.Fork.Timeline() == m.Fork.Timeline() &&
			old.End.Timeline() == m.End.Timeline() && old.End.LSN() <= m.End.LSN() {
			os.RemoveAll(path)
		}
	}
}

var unsafeInName = regexp.MustCompile(`[^A-Za-z0-9._-]`)

// fileSafe turns an address into a file name part ("127.0.0.1:5433" →
// "127.0.0.1_5433").
func fileSafe(s string) string { return unsafeInName.ReplaceAllString(s, "_") }

// saver streams one range of a former primary's WAL into a directory, as
// segment files.
type saver struct {
	conn   *pgconn.PgConn
	addr   string
	dir    string
	seg    segments
	end    LSN    // stop here, on timeline endTLI
	endTLI uint32 // the former primary's current timeline
}

// run streams from the start of the fork's segment (as pg_receivewal,
// every file starts at its first byte, whose page header pg_waldump
// checks) across timeline ends up to end.
func (s *saver) run(ctx context.Context, f fork) error {
	start, tli := s.seg.floor(f.At), f.TLI
	for range 16 {
		next, err := s.timeline(ctx, start, tli)
		if err != nil || next == nil {
			return err
		}
		start, tli = s.seg.floor(next.At), next.Next
	}
	return fmt.Errorf("saving WAL from %s: more than 16 timelines", s.addr)
}

// timeline streams timeline tli from start: up to end on the former
// primary's current timeline (nil, nil), or to the timeline's end, which
// names the next one.
func (s *saver) timeline(ctx context.Context, start LSN, tli uint32) (*timelineEnd, error) {
	ended, err := startPhysical(ctx, s.conn, start, tli)
	if err != nil || ended != nil {
		return ended, s.explain(err, start, tli)
	}
	w := newSegmentWriter(s.dir, s.seg, tli, start, newArrivalLog(""))
	w.perm = 0o600
	defer w.Close()
	for tli != s.endTLI || w.Written() < s.end {
		rctx, cancel := context.WithTimeout(ctx, receiveTimeout)
		msg, err := s.conn.ReceiveMessage(rctx)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("receive WAL from %s (at %s on timeline %d): %w", s.addr, w.Written(), tli, err)
		}
		switch m := msg.(type) {
		case *pgproto3.CopyData:
			err = s.handle(w, m.Data)
		case *pgproto3.CopyDone:
			if err := w.Close(); err != nil {
				return nil, err
			}
			end, err := endCopy(ctx, s.conn)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", s.addr, err)
			}
			return end, nil
		case *pgproto3.ErrorResponse:
			err = s.explain(pgconn.ErrorResponseToPgError(m), w.Written(), tli)
		}
		if err != nil {
			return nil, err
		}
	}
	return nil, w.Close()
}

// explain says what a server error met streaming from lsn means. WAL the
// former primary removed (the checkpoint that ended its crash recovery
// keeps only what a replication slot or wal_keep_size asks for) cannot be
// saved, and pg_rewind, which reads the same WAL, cannot rewind it either.
func (s *saver) explain(err error, lsn LSN, tli uint32) error {
	if err == nil {
		return nil
	}
	if pgCode(err) != sqlUndefinedFile {
		return fmt.Errorf("stream from %s: %w", s.addr, err)
	}
	return fmt.Errorf("%s no longer holds its WAL from %s on timeline %d (a checkpoint removed it: no replication slot or "+
		"wal_keep_size kept it), so what it wrote beyond the fork cannot be saved, and pg_rewind cannot rewind it without that "+
		"WAL either. Its data files still hold those writes: reseed it (dbha backup reseed keeps its data directory aside) or "+
		"rebuild it by hand: %w", s.addr, lsn, tli, err)
}

// handle writes a WAL message (cut at end) or answers a keepalive that
// asks for a reply, so that wal_sender_timeout does not end a long save.
func (s *saver) handle(w *segmentWriter, data []byte) error {
	if len(data) == 0 {
		return nil
	}
	switch data[0] {
	case pglogrepl.XLogDataByteID:
		x, err := pglogrepl.ParseXLogData(data[1:])
		if err != nil {
			return fmt.Errorf("WAL message from %s: %w", s.addr, err)
		}
		wal, at := x.WALData, LSN(x.WALStart)
		if w.tli == s.endTLI && at+LSN(len(wal)) > s.end {
			wal = wal[:max(0, int64(s.end)-int64(at))]
		}
		return w.Write(at, wal, arrival{})
	case pglogrepl.PrimaryKeepaliveMessageByteID:
		k, err := pglogrepl.ParsePrimaryKeepaliveMessage(data[1:])
		if err != nil {
			return fmt.Errorf("keepalive from %s: %w", s.addr, err)
		}
		if k.ReplyRequested {
			fb := feedbackFor(w.Written(), w.Flushed())
			if err := s.conn.Frontend().SendUnbufferedEncodedCopyData(fb.encode(time.Now())); err != nil {
				return fmt.Errorf("send status update to %s: %w", s.addr, err)
			}
		}
	}
	return nil
}
