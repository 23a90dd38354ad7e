package postgres

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/dbha/dbha/topology"
)

// lineage is a server's timeline history: its current timeline and, for
// every ancestor, the LSN where the ancestor ended and its successor began
// (the history file of the current timeline, parsed).
type lineage struct {
	Current  uint32
	Switches []topology.TimelineSwitch // ancestors, oldest first
}

// end says where timeline tli ends on this lineage. historic is false for
// the current timeline, which has no end yet; ok is false when tli is not
// on the lineage at all.
func (l lineage) end(tli uint32) (end LSN, historic, ok bool) {
	if tli == l.Current {
		return 0, false, true
	}
	for _, sw := range l.Switches {
		if sw.Timeline == tli {
			return sw.Switch, true, true
		}
	}
	return 0, false, false
}

// next is the timeline that followed the ancestor tli (timeline numbers
// may skip abandoned timelines); 0 when tli is not an ancestor.
func (l lineage) next(tli uint32) uint32 {
	for i, sw := range l.Switches {
		if sw.Timeline != tli {
			continue
		}
		if i+1 < len(l.Switches) {
			return l.Switches[i+1].Timeline
		}
		return l.Current
	}
	return 0
}

// contains reports whether the WAL at lsn on timeline tli is part of this
// lineage: tli is on it and lsn is before tli's end.
func (l lineage) contains(tli uint32, lsn LSN) bool {
	end, historic, ok := l.end(tli)
	return ok && (!historic || lsn < end)
}

// lineageOf parses the history file content of timeline tli (empty for
// timeline 1, which has none).
func lineageOf(tli uint32, content []byte) (lineage, error) {
	sw, err := topology.ParseTimelineHistory(string(content))
	if err != nil {
		return lineage{}, fmt.Errorf("history of timeline %d: %w", tli, err)
	}
	if n := len(sw); n > 0 && sw[n-1].Timeline >= tli {
		return lineage{}, fmt.Errorf("history of timeline %d lists timeline %d as an ancestor", tli, sw[n-1].Timeline)
	}
	return lineage{Current: tli, Switches: sw}, nil
}

// errHistoryConflict: the store already holds a different history file for
// the same timeline, so two servers created the same timeline number
// independently. Overwriting it would lose what the first one said.
var errHistoryConflict = errors.New("history file conflict")

// writeHistory stores a timeline history file atomically (temporary file,
// fsync, rename, fsync of the directory), as pg_receivewal does. A file
// already there with the same content is left alone; one with different
// content is never replaced.
func writeHistory(dir, name string, content []byte) error {
	path := filepath.Join(dir, name)
	old, err := os.ReadFile(path)
	switch {
	case err == nil && bytes.Equal(old, content):
		return nil
	case err == nil:
		return fmt.Errorf("%s already holds a different history (%q, the primary sends %q): %w",
			path, bytes.TrimSpace(old), bytes.TrimSpace(content), errHistoryConflict)
	case !errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("read %s: %w", path, err)
	}
	return writeFileSync(path, content)
}

// writeFileSync replaces path with content durably.
func writeFileSync(path string, content []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o640)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := f.Write(content); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("fsync %s: %w", tmp, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("rename %s: %w", tmp, err)
	}
	return syncDir(filepath.Dir(path))
}

// syncDir makes renames and creations in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("fsync directory %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("fsync directory %s: %w", dir, err)
	}
	return nil
}

// storeLineage is the lineage the store itself records: that of the highest
// timeline it has a history file for, or timeline 1 when it has none.
func storeLineage(walDir string, tlis []uint32) (lineage, error) {
	if len(tlis) == 0 {
		return lineage{Current: 1}, nil
	}
	top := slices.Max(tlis)
	content, err := os.ReadFile(filepath.Join(walDir, historyName(top)))
	if err != nil {
		return lineage{}, fmt.Errorf("read timeline history: %w", err)
	}
	return lineageOf(top, content)
}

// setAside moves every file of timeline tli and later ones (segments,
// .partial files, history files, their arrivals) out of the store into
// Dir/forked/tl<tli>-<time>, and returns that directory. The stream does
// this when a primary's history contradicts the store's for tli: the same
// timeline number was created twice (a second failover promoted a standby
// that never saw the first one's timeline). The WAL is kept, never mixed
// with the new timeline's, and never overwritten.
func setAside(dir string, seg segments, tli uint32, now time.Time) (string, error) {
	walDir := filepath.Join(dir, walSubdir)
	l, err := list(walDir, seg)
	if err != nil {
		return "", err
	}
	dest := filepath.Join(dir, "forked", fmt.Sprintf("tl%d-%s", tli, now.UTC().Format("20060102T150405Z")))
	for _, d := range []string{walSubdir, arrivalsSubdir} {
		if err := os.MkdirAll(filepath.Join(dest, d), 0o750); err != nil {
			return "", fmt.Errorf("set forked timeline %d aside: %w", tli, err)
		}
	}
	var moves [][2]string
	for _, f := range l.Segments {
		if f.TLI >= tli {
			name := seg.fileName(f)
			moves = append(moves, [2]string{filepath.Join(walSubdir, name), filepath.Join(walSubdir, name)},
				[2]string{filepath.Join(arrivalsSubdir, seg.name(f.TLI, f.SegNo)), filepath.Join(arrivalsSubdir, seg.name(f.TLI, f.SegNo))})
		}
	}
	for _, h := range l.Histories {
		if h >= tli {
			moves = append(moves, [2]string{filepath.Join(walSubdir, historyName(h)), filepath.Join(walSubdir, historyName(h))})
		}
	}
	for _, m := range moves {
		err := os.Rename(filepath.Join(dir, m[0]), filepath.Join(dest, m[1]))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return "", fmt.Errorf("set forked timeline %d aside: %w", tli, err)
		}
	}
	if err := syncDir(walDir); err != nil {
		return "", err
	}
	return dest, nil
}

// sameAncestry reports whether the history the store holds for timeline
// tli (its switches) is the one the server's lineage implies: the same
// ancestors, ending at the same points. A timeline tli not on the lineage
// is an abandoned branch as far as the server knows, not a contradiction.
func sameAncestry(stored []topology.TimelineSwitch, server lineage, tli uint32) bool {
	if _, _, ok := server.end(tli); !ok {
		return true
	}
	return slices.Equal(stored, ancestors(server, tli))
}

// storeHistory writes a history file. One that contradicts the store's
// (the same timeline created twice) sets the store's files of that timeline
// and later ones aside, then stores the primary's.
func (ss *session) storeHistory(tli uint32, content []byte) error {
	err := writeHistory(ss.walDir, historyName(tli), content)
	if !errors.Is(err, errHistoryConflict) {
		return err
	}
	dest, aerr := setAside(ss.cfg.Dir, ss.info.Seg, tli, time.Now())
	if aerr != nil {
		return fmt.Errorf("%w; %w", err, aerr)
	}
	ss.cfg.Logger.Warn("the primary's timeline history contradicts the store's: the store's WAL of that timeline and later ones "+
		"was set aside, kept as it is", "cluster", ss.cfg.Cluster, "primary", ss.addr, "timeline", tli, "conflict", err.Error(), "kept_in", dest)
	return writeHistory(ss.walDir, historyName(tli), content)
}

// checkHistories compares the store's history files with the server's
// lineage. At the first timeline whose ancestry differs (the timeline
// number was created twice), that timeline and the later ones are set
// aside, so that the store never continues one primary's timeline with
// another's WAL.
func (ss *session) checkHistories() error {
	l, err := list(ss.walDir, ss.info.Seg)
	if err != nil {
		return err
	}
	for _, tli := range l.Histories {
		raw, err := os.ReadFile(filepath.Join(ss.walDir, historyName(tli)))
		if err != nil {
			return fmt.Errorf("read timeline history: %w", err)
		}
		stored, err := lineageOf(tli, raw)
		if err != nil {
			return fmt.Errorf("%s: %w", historyName(tli), err)
		}
		if sameAncestry(stored.Switches, ss.info.Lineage, tli) {
			continue
		}
		dest, err := setAside(ss.cfg.Dir, ss.info.Seg, tli, time.Now())
		if err != nil {
			return err
		}
		ss.cfg.Logger.Warn("the primary's timeline history contradicts the store's: the store's WAL of that timeline and later ones "+
			"was set aside, kept as it is", "cluster", ss.cfg.Cluster, "primary", ss.addr, "timeline", tli, "kept_in", dest)
		return nil
	}
	return nil
}
