package mysql

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/dbha/dbha/binlog"
)

// prune applies retention: binlog.Prune decides how many of the oldest
// files go, given r and the first file that a position in keep still needs
// (neededFile). The file being written is never removed (Prune keeps the
// newest). The index file is rewritten before the files are removed, so a
// crash in between leaves unlisted files, which the next start removes.
func (w *writer) prune(keep []state, r binlog.Retention, now time.Time) ([]string, error) {
	if r.MaxAge <= 0 && r.MaxSize <= 0 {
		return nil, nil
	}
	names := w.fileNames()
	files, starts, err := describeFiles(w.dir, names)
	if err != nil {
		return nil, err
	}
	ends := fileEnds(starts, w.position())
	n := binlog.Prune(files, neededFile(ends, keep), r, now)
	if n == 0 {
		return nil, nil
	}
	w.syncMu.Lock()
	defer w.syncMu.Unlock()
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.cur != nil && n >= len(w.names) {
		return nil, fmt.Errorf("retention would remove the file being written")
	}
	gone := append([]string(nil), w.names[:n]...)
	rest := append([]string(nil), w.names[n:]...)
	if err := writeIndexFile(w.dir, rest); err != nil {
		return nil, err
	}
	w.names = rest
	for _, name := range gone {
		if err := removeFiles(w.dir, name); err != nil {
			return gone, err
		}
	}
	return gone, syncDir(w.dir)
}

// describeFiles reads what retention needs of each file: size (data and
// index), the commit time of its newest transaction (the file's mtime when
// it has none), and its start position.
func describeFiles(dir string, names []string) ([]binlog.StoreFile, []state, error) {
	files := make([]binlog.StoreFile, len(names))
	starts := make([]state, len(names))
	for i, name := range names {
		path := filepath.Join(dir, name)
		fi, err := os.Stat(path)
		if err != nil {
			return nil, nil, fmt.Errorf("retention: %w", err)
		}
		start, _, err := walkIdx(path+idxSuffix, nil)
		if err != nil {
			return nil, nil, fmt.Errorf("retention: %w", err)
		}
		f := binlog.StoreFile{Name: name, Size: fi.Size(), Newest: fi.ModTime()}
		if ii, err := os.Stat(path + idxSuffix); err == nil {
			f.Size += ii.Size()
		}
		if t, ok := lastRecord(path + idxSuffix); ok {
			f.Newest = t.Time
		}
		files[i], starts[i] = f, start
	}
	return files, starts, nil
}

// retain applies retention when it is due (at most once a minute).
func (s *Stream) retain(ctx context.Context, w *writer) {
	now := time.Now()
	if (s.cfg.Retention.MaxAge <= 0 && s.cfg.Retention.MaxSize <= 0) || !s.pruneDue(now) {
		return
	}
	keep, err := s.keepPositions(ctx)
	if err != nil {
		s.log.Warn("retention skipped", "err", err)
		return
	}
	gone, err := w.prune(keep, s.cfg.Retention, now)
	if len(gone) > 0 {
		s.log.Info("retention removed store files", "files", gone, "kept_for", len(keep))
	}
	if err != nil && ctx.Err() == nil {
		s.log.Warn("retention failed", "err", err)
	}
}

// keepPositions converts KeepFor's answer. An error, an unknown position
// (zero) or one of another engine keeps everything: retention is skipped
// this time.
func (s *Stream) keepPositions(ctx context.Context) ([]state, error) {
	if s.cfg.KeepFor == nil {
		return nil, nil
	}
	positions, err := s.cfg.KeepFor(ctx)
	if err != nil {
		return nil, fmt.Errorf("ask which transactions the replicas still need: %w", err)
	}
	var keep []state
	for _, p := range positions {
		st, err := stateOf(p)
		if err != nil || st.flavor != s.cfg.Flavor {
			return nil, fmt.Errorf("a replica position %q is unknown or not a %s position: %v", p, s.cfg.Flavor, err)
		}
		keep = append(keep, st)
	}
	return keep, nil
}
