package postgres

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/dbha/dbha/binlog"
	"github.com/dbha/dbha/topology"
)

// Store is a WAL store on disk as commands read it. It never writes, and
// reading does not disturb a stream writing to the store: every method
// reads the directory afresh.
type Store struct {
	dir    string
	walDir string
	seg    segments
}

var _ binlog.Store = (*Store)(nil)

// OpenStore opens the WAL store in dir (binlog.Dir(state_dir, cluster)).
// It fails with ErrNoStore when no stream has connected there yet.
func OpenStore(dir string) (*Store, error) {
	id, err := readIdentity(dir)
	if err != nil {
		return nil, err
	}
	return &Store{dir: dir, walDir: filepath.Join(dir, walSubdir), seg: segments(id.SegmentSize)}, nil
}

// view is one reading of the store: its files and its lineage (the
// history of the highest timeline it holds).
type view struct {
	files   []segFile
	lineage lineage
}

func (st *Store) read() (view, error) {
	l, err := list(st.walDir, st.seg)
	if err != nil {
		return view{}, err
	}
	tlis := slices.Clone(l.Histories)
	for _, f := range l.Segments {
		tlis = append(tlis, f.TLI)
	}
	top := uint32(1)
	if len(tlis) > 0 {
		top = slices.Max(tlis)
	}
	lin := lineage{Current: top}
	if top > 1 {
		if lin, err = storeLineage(st.walDir, []uint32{top}); err != nil {
			return view{}, err
		}
	}
	return view{files: l.Segments, lineage: lin}, nil
}

// Position is the last position the store holds fsynced on its newest
// timeline, with that timeline's history: what the running stream last
// published, or, without a status, what the files show (complete segments,
// and the flushed positions recorded in the arrivals of a .partial). The
// zero Position when the store holds nothing or cannot be read.
func (st *Store) Position() topology.Position {
	v, err := st.read()
	if err != nil {
		return topology.Position{}
	}
	return st.position(v)
}

func (st *Store) position(v view) topology.Position {
	var best topology.Position
	for _, f := range v.files {
		end := st.extent(f, v.lineage)
		if end > st.seg.start(f.SegNo) && v.lineage.contains(f.TLI, end-1) && (best.IsZero() || end > best.LSN()) {
			best = topology.PostgresAt(end, f.TLI)
		}
	}
	if s, err := binlog.ReadStatus(st.dir); err == nil && s.Position.Engine() == topology.Postgres &&
		v.lineage.contains(s.Position.Timeline(), s.Position.LSN()-1) && (best.IsZero() || s.Position.LSN() > best.LSN()) {
		best = topology.PostgresAt(s.Position.LSN(), s.Position.Timeline())
	}
	if best.IsZero() {
		return best
	}
	return best.WithHistory(ancestors(v.lineage, best.Timeline()))
}

// ancestors is the part of a lineage's history before timeline tli.
func ancestors(l lineage, tli uint32) []topology.TimelineSwitch {
	var out []topology.TimelineSwitch
	for _, sw := range l.Switches {
		if sw.Timeline < tli {
			out = append(out, sw)
		}
	}
	return out
}

// extent is the end of the WAL a file holds: the whole segment when it is
// complete; for a .partial, what the arrivals file recorded as flushed,
// capped at the end of its timeline on the lineage.
func (st *Store) extent(f segFile, l lineage) LSN {
	start := st.seg.start(f.SegNo)
	end := st.seg.start(f.SegNo + 1)
	if f.Partial {
		end = start
		for _, s := range st.samples(f) {
			end = max(end, min(s.Flushed, st.seg.start(f.SegNo+1)))
		}
	}
	if e, historic, ok := l.end(f.TLI); ok && historic && end > e {
		end = max(e, start)
	}
	return end
}

func (st *Store) samples(f segFile) []sample {
	raw, err := os.ReadFile(filepath.Join(st.dir, arrivalsSubdir, st.seg.name(f.TLI, f.SegNo)))
	if err != nil {
		return nil
	}
	return parseSamples(raw)
}

// Transactions lists the WAL the store holds after since, per segment file
// (the received part of a .partial included), oldest first; Position is
// "start-end tlN", Time when the last of it arrived (the file's time if no
// arrival was recorded), File the path under the store directory. WAL
// records are not decoded: an entry is a range of bytes, not a commit. since
// is compared by LSN alone; WAL of an old timeline beyond its end (kept
// after a failover) is listed too, under its timeline.
func (st *Store) Transactions(since topology.Position, limit int) ([]binlog.Transaction, error) {
	if !since.IsZero() && since.Engine() != topology.Postgres {
		return nil, fmt.Errorf("list WAL after %s: a %s position, not a PostgreSQL one", since, since.Engine())
	}
	v, err := st.read()
	if err != nil {
		return nil, err
	}
	var out []binlog.Transaction
	for _, f := range v.files {
		if limit > 0 && len(out) >= limit {
			break
		}
		if t, ok := st.transaction(f, v, since); ok {
			out = append(out, t)
		}
	}
	return out, nil
}

func (st *Store) transaction(f segFile, v view, since topology.Position) (binlog.Transaction, bool) {
	segStart := st.seg.start(f.SegNo)
	start, end := segStart, st.seg.start(f.SegNo+1)
	samples := st.samples(f)
	if f.Partial {
		end = st.partialEnd(f, v)
	}
	if !since.IsZero() {
		start = max(start, since.LSN())
	}
	if end <= start {
		return binlog.Transaction{}, false
	}
	name := st.seg.fileName(f)
	t := time.Time{}
	for _, s := range samples {
		if s.Received.After(t) {
			t = s.Received
		}
	}
	if t.IsZero() {
		if info, err := os.Stat(filepath.Join(st.walDir, name)); err == nil {
			t = info.ModTime()
		}
	}
	return binlog.Transaction{
		Position: fmt.Sprintf("%s-%s tl%d", start, end, f.TLI),
		Time:     t,
		Size:     int64(end - start),
		File:     filepath.Join(walSubdir, name),
		Offset:   int64(start - segStart),
	}, true
}

// partialEnd is how much of a .partial is held: the published flush
// position when the stream is writing it, else what its arrivals recorded.
func (st *Store) partialEnd(f segFile, v view) LSN {
	end := st.seg.start(f.SegNo)
	for _, s := range st.samples(f) {
		end = max(end, min(s.Flushed, st.seg.start(f.SegNo+1)))
	}
	if s, err := binlog.ReadStatus(st.dir); err == nil && s.Position.Timeline() == f.TLI &&
		st.seg.no(s.Position.LSN()-1) == f.SegNo && s.Position.LSN() > end {
		end = s.Position.LSN()
	}
	return end
}

// Lag says how far a standby at pos is behind the store: Bytes of WAL the
// store holds beyond pos, and Seconds since the first of them arrived
// (accurate to about a second). A standby that is not behind the store,
// including one on a forked timeline (topology.Compare says Diverged), has
// zero lag.
func (st *Store) Lag(pos topology.Position, now time.Time) (binlog.Lag, error) {
	if pos.IsZero() || pos.Engine() != topology.Postgres {
		return binlog.Lag{}, fmt.Errorf("WAL lag of position %q: not a PostgreSQL position", pos)
	}
	v, err := st.read()
	if err != nil {
		return binlog.Lag{}, err
	}
	held := st.position(v)
	if held.IsZero() {
		return binlog.Lag{}, nil
	}
	if o, err := topology.Compare(pos, held); err != nil || o != topology.Behind {
		return binlog.Lag{}, err
	}
	return lagOf(pos.LSN(), held.LSN(), st.samplesAround(pos.LSN(), v), now), nil
}

// samplesAround collects the arrival samples on the store's lineage from
// the segment before p's to the one after (those of the oldest segment
// when p is older than the store), sorted by LSN.
func (st *Store) samplesAround(p LSN, v view) []sample {
	n := st.seg.no(p)
	var out []sample
	for _, f := range v.files {
		near := f.SegNo+1 >= n && f.SegNo <= n+1
		if !near && (len(out) > 0 || f.SegNo < n) {
			continue
		}
		for _, s := range st.samples(f) {
			if v.lineage.contains(f.TLI, s.LSN) {
				out = append(out, s)
			}
		}
	}
	slices.SortStableFunc(out, func(a, b sample) int {
		switch {
		case a.LSN < b.LSN:
			return -1
		case a.LSN > b.LSN:
			return 1
		}
		return b.Received.Compare(a.Received) // the earliest arrival of the same LSN last, so it is found
	})
	return out
}

// DiskBytes is the size of everything in the store directory.
func (st *Store) DiskBytes() (int64, error) { return binlog.DirBytes(st.dir) }
