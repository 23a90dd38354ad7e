package postgres

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/dbha/dbha/binlog"
	"github.com/dbha/dbha/topology"
)

// neededFrom is the index of the first of files (complete segments, oldest
// first) that holds WAL a standby at one of keep still lacks: the first
// segment ending after the lowest position. No positions: nothing is
// needed (len(files)). A zero or non-PostgreSQL position means a standby
// whose position is unknown: everything is needed (0).
func neededFrom(files []segFile, seg segments, keep []topology.Position) int {
	if len(keep) == 0 {
		return len(files)
	}
	low := keep[0].LSN()
	for _, p := range keep {
		if p.IsZero() || p.Engine() != topology.Postgres {
			return 0
		}
		low = min(low, p.LSN())
	}
	for i, f := range files {
		if seg.start(f.SegNo+1) > low {
			return i
		}
	}
	return len(files)
}

// pruneStore applies retention to the store in dir: only complete
// segments are candidates (never a .partial, which may hold the last WAL of
// a timeline, and never a history file), oldest first, never one a standby
// still lacks, and never the newest (the stream resumes after it). It
// returns the names of the segments it deleted.
func pruneStore(ctx context.Context, dir string, r binlog.Retention,
	keepFor binlog.KeepFunc, now time.Time) ([]string, error) {
	id, err := readIdentity(dir)
	if err != nil {
		return nil, err
	}
	seg := segments(id.SegmentSize)
	walDir := filepath.Join(dir, walSubdir)
	l, err := list(walDir, seg)
	if err != nil {
		return nil, err
	}
	var complete []segFile
	var files []binlog.StoreFile
	for _, f := range l.Segments {
		if f.Partial {
			continue
		}
		info, err := os.Stat(filepath.Join(walDir, seg.fileName(f)))
		if err != nil {
			return nil, fmt.Errorf("retention: %w", err)
		}
		complete = append(complete, f)
		files = append(files, binlog.StoreFile{Name: info.Name(), Size: info.Size(), Newest: info.ModTime()})
	}
	var keep []topology.Position
	if keepFor != nil {
		if keep, err = keepFor(ctx); err != nil {
			return nil, fmt.Errorf("retention: ask which WAL the standbys still need: %w", err)
		}
	}
	n := binlog.Prune(files, neededFrom(complete, seg, keep), r, now)
	var removed []string
	for _, f := range files[:n] {
		if err := os.Remove(filepath.Join(walDir, f.Name)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return removed, fmt.Errorf("retention: %w", err)
		}
		removed = append(removed, f.Name)
		if err := os.Remove(filepath.Join(dir, arrivalsSubdir, f.Name)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return removed, fmt.Errorf("retention: %w", err)
		}
	}
	return removed, nil
}

// retain runs retention whenever a segment completes or a session starts,
// and every minute (for MaxAge), until ctx is done.
func (s *Stream) retain(ctx context.Context) {
	if s.cfg.Retention == (binlog.Retention{}) {
		return
	}
	tick := time.NewTicker(time.Minute)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.prune:
		case <-tick.C:
		}
		removed, err := pruneStore(ctx, s.cfg.Dir, s.cfg.Retention, s.cfg.KeepFor, time.Now())
		switch {
		case errors.Is(err, ErrNoStore):
		case err != nil:
			s.cfg.Logger.Warn("WAL retention", "cluster", s.cfg.Cluster, "err", err)
		case len(removed) > 0:
			s.cfg.Logger.Info("WAL retention removed segments", "cluster", s.cfg.Cluster,
				"count", len(removed), "oldest_kept_after", removed[len(removed)-1])
		}
	}
}
