package postgres

import (
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/dbha/dbha/topology"
)

// Stage copies into dst what a standby at from may lack of the store,
// named as restore_command serves it: every segment from from's segment
// on, on from's timeline or a later one, a .partial under its final name
// (it is zero-padded to the full segment size, which a restore requires),
// and every history file. The files are readable by all, so that the
// database server's user can read them; dst should be a fresh directory
// removed once the standby has replayed them. It returns the names copied.
func (st *Store) Stage(dst string, from topology.Position) ([]string, error) {
	l, err := list(st.walDir, st.seg)
	if err != nil {
		return nil, err
	}
	first := st.seg.no(from.LSN())
	var copied []string
	for _, f := range l.Segments {
		if f.SegNo < first || f.TLI < from.Timeline() {
			continue
		}
		name := st.seg.name(f.TLI, f.SegNo)
		if f.Partial && hasComplete(l, f) {
			continue
		}
		if err := copyFile(filepath.Join(st.walDir, st.seg.fileName(f)), filepath.Join(dst, name)); err != nil {
			return copied, err
		}
		copied = append(copied, name)
	}
	for _, tli := range l.Histories {
		name := historyName(tli)
		if err := copyFile(filepath.Join(st.walDir, name), filepath.Join(dst, name)); err != nil {
			return copied, err
		}
		copied = append(copied, name)
	}
	return copied, nil
}

// hasComplete reports whether the store also holds f complete.
func hasComplete(l listing, f segFile) bool {
	for _, g := range l.Segments {
		if g.TLI == f.TLI && g.SegNo == f.SegNo && !g.Partial {
			return true
		}
	}
	return false
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("stage %s: %w", filepath.Base(src), err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("stage %s: %w", filepath.Base(src), err)
	}
	_, err = io.Copy(out, in)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("stage %s: %w", filepath.Base(src), err)
	}
	return nil
}

// Holds reports whether the store holds the WAL from from on, as Stage
// would serve it to a server at from: from's segment, on its timeline or a
// later one. Retention removes the oldest segments, so a store that holds
// that segment holds what follows it.
func (st *Store) Holds(from topology.Position) (bool, error) {
	l, err := list(st.walDir, st.seg)
	if err != nil {
		return false, err
	}
	first := st.seg.no(from.LSN())
	for _, f := range l.Segments {
		if f.SegNo == first && f.TLI >= from.Timeline() {
			return true, nil
		}
	}
	return false, nil
}
