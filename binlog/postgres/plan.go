package postgres

import (
	"errors"
	"fmt"
)

// slotState is what READ_REPLICATION_SLOT says about dbha's slot.
type slotState struct {
	Exists  bool
	Restart LSN    // 0: the slot has reserved no WAL
	TLI     uint32 // the timeline of Restart
}

// startInput is everything the start point depends on: the store's segment
// files, the primary's timeline lineage and flush position, its slot, and
// the segment size.
type startInput struct {
	Files  []segFile
	Server lineage
	Flush  LSN
	Slot   slotState
	Seg    segments
}

// startPoint is where to START_REPLICATION: always a segment boundary, as
// pg_receivewal and the walreceiver do, so every file dbha writes starts at
// its first byte.
type startPoint struct {
	LSN LSN
	TLI uint32
	Why string
	// OffLineage counts store files on timelines the primary's history does
	// not contain (left by an earlier, forked primary); they are kept.
	OffLineage int
}

// Errors chooseStart returns when the store cannot continue from this
// server (yet): the stream reports them and waits for another primary.
var (
	// errStoreAhead: the store holds WAL of the server's current timeline
	// beyond the server's flush position, so the server lost WAL or is not
	// the instance dbha followed. Streaming would overwrite what dbha holds.
	errStoreAhead = errors.New("the store holds WAL the primary does not have")
	// errOffLineage: every segment in the store is on a timeline the
	// server's history does not contain: a forked primary.
	errOffLineage = errors.New("the store's timelines are not in the primary's history")
)

// chooseStart decides where streaming resumes, as pg_receivewal does:
//
//   - after the newest complete segment in the store, or at the start of the
//     newest .partial (which is then rewritten with the same bytes);
//   - with an empty store, at the slot's restart_lsn;
//   - otherwise at the server's flush position.
//
// "Newest" counts only files on the server's lineage. A position at or past
// the segment where its timeline ended on the server continues on the
// successor timeline from the start of that segment: so the old timeline's
// segment stays as it is (a .partial, possibly holding WAL the new primary
// never had) and the new timeline's file of the same segment, which begins
// with the shared WAL, is written beside it.
func chooseStart(in startInput) (startPoint, error) {
	var best startPoint
	found, off := false, 0
	for _, f := range in.Files {
		if _, _, ok := in.Server.end(f.TLI); !ok {
			off++
			continue
		}
		r, why := in.Seg.start(f.SegNo+1), "after complete segment "+in.Seg.fileName(f)
		if f.Partial {
			r, why = in.Seg.start(f.SegNo), "resuming in "+in.Seg.fileName(f)+" (rewritten from its start)"
		}
		p, err := settle(in, r, f.TLI, why)
		if err != nil {
			return startPoint{}, err
		}
		if !found || p.LSN > best.LSN || p.LSN == best.LSN && p.TLI >= best.TLI {
			best, found = p, true
		}
	}
	if found {
		best.OffLineage = off
		return best, nil
	}
	if len(in.Files) > 0 {
		return startPoint{}, fmt.Errorf("%w: the store holds %d segment files, none on the primary's timelines %v",
			errOffLineage, len(in.Files), in.Server.timelines())
	}
	if in.Slot.Exists && in.Slot.Restart != 0 {
		tli := in.Slot.TLI
		if tli == 0 {
			tli = in.Server.Current
		}
		return settle(in, in.Seg.floor(in.Slot.Restart), tli, fmt.Sprintf("empty store: the slot's restart_lsn %s", in.Slot.Restart))
	}
	return settle(in, in.Seg.floor(in.Flush), in.Server.Current, fmt.Sprintf("empty store: the primary's position %s", in.Flush))
}

// settle moves a candidate start onto the timeline that holds it on the
// server's lineage.
func settle(in startInput, lsn LSN, tli uint32, why string) (startPoint, error) {
	for {
		end, historic, ok := in.Server.end(tli)
		switch {
		case !ok:
			return startPoint{}, fmt.Errorf("%w: timeline %d", errOffLineage, tli)
		case !historic && lsn > in.Flush:
			return startPoint{}, fmt.Errorf("%w: it resumes at %s on timeline %d, the primary has flushed only up to %s",
				errStoreAhead, lsn, tli, in.Flush)
		case !historic || lsn < in.Seg.floor(end):
			return startPoint{LSN: lsn, TLI: tli, Why: why}, nil
		}
		next := in.Server.next(tli)
		why = fmt.Sprintf("%s; but timeline %d ended at %s (its WAL is kept as it is), so continuing on timeline %d from %s",
			why, tli, end, next, in.Seg.floor(end))
		lsn, tli = in.Seg.floor(end), next
	}
}

// timelines lists the lineage's timelines, oldest first.
func (l lineage) timelines() []uint32 {
	out := make([]uint32, 0, len(l.Switches)+1)
	for _, sw := range l.Switches {
		out = append(out, sw.Timeline)
	}
	return append(out, l.Current)
}
