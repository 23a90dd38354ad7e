package postgres

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// segmentWriter writes received WAL into segment files exactly as
// pg_receivewal does: a segment is written as <name>.partial, zero-padded to
// the segment size when created, fsynced and renamed to <name> once
// complete. It never reports more as flushed than it has fsynced.
//
// Resuming rewrites an existing .partial from its first byte. The bytes
// already there must be the bytes the server sends again (or the zero
// padding): anything else means the server's WAL differs from what dbha
// holds, and the writer stops rather than overwrite it.
//
// A segmentWriter is used by one goroutine. After any error it must be
// closed and dropped; the stream starts again from what is on disk.
type segmentWriter struct {
	walDir   string
	seg      segments
	tli      uint32
	arrivals *arrivalLog

	f       *os.File // the open .partial; nil between segments
	segno   uint64
	verify  bool // f held data before: rewritten bytes must match
	written LSN  // everything before it is written
	flushed LSN  // everything before it is fsynced
	scratch []byte
	// completed is called with each segment made complete.
	completed func(segFile)
	// perm is the mode segment files are created with.
	perm os.FileMode
}

func newSegmentWriter(walDir string, seg segments, tli uint32, start LSN, arrivals *arrivalLog) *segmentWriter {
	return &segmentWriter{walDir: walDir, seg: seg, tli: tli, arrivals: arrivals, written: start, flushed: start, perm: 0o640}
}

// errDiverged: the server sent WAL that differs from the WAL dbha already
// holds for the same position and timeline.
var errDiverged = errors.New("the primary's WAL differs from the WAL dbha holds")

// Write stores data, which the server sent as starting at lsn; lsn must be
// where the previous write ended. at says when it arrived.
func (w *segmentWriter) Write(lsn LSN, data []byte, at arrival) error {
	if lsn != w.written {
		return fmt.Errorf("WAL arrived for %s, expected %s: the stream is not contiguous", lsn, w.written)
	}
	for len(data) > 0 {
		if w.f == nil {
			if err := w.open(w.seg.no(w.written)); err != nil {
				return err
			}
		}
		off := w.seg.offset(w.written)
		n := min(int64(len(data)), int64(w.seg)-off)
		chunk := data[:n]
		if w.verify {
			if err := w.check(off, chunk); err != nil {
				return err
			}
		}
		w.arrivals.note(w.written, w.flushed, at)
		if _, err := w.f.WriteAt(chunk, off); err != nil {
			return fmt.Errorf("write %s: %w", w.f.Name(), err)
		}
		w.written += LSN(n)
		data = data[n:]
		if off+n == int64(w.seg) {
			if err := w.complete(); err != nil {
				return err
			}
		}
	}
	return nil
}

// Flush fsyncs what was written; only then does Flushed move.
func (w *segmentWriter) Flush() error {
	if w.f == nil || w.flushed == w.written {
		return nil
	}
	if err := w.f.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", w.f.Name(), err)
	}
	w.flushed = w.written
	return nil
}

// Written and Flushed are the write and fsync positions.
func (w *segmentWriter) Written() LSN { return w.written }
func (w *segmentWriter) Flushed() LSN { return w.flushed }

// Close fsyncs and closes the open segment, leaving it .partial.
func (w *segmentWriter) Close() error {
	if w.f == nil {
		return nil
	}
	err := w.Flush()
	w.arrivals.close(w.written, w.flushed)
	if cerr := w.f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("close %s: %w", w.f.Name(), cerr)
	}
	w.f = nil
	return err
}

// open opens segment segno's .partial for writing, creating and padding it
// if needed.
func (w *segmentWriter) open(segno uint64) error {
	f := segFile{TLI: w.tli, SegNo: segno}
	final := filepath.Join(w.walDir, w.seg.fileName(f))
	if _, err := os.Stat(final); err == nil {
		return fmt.Errorf("segment %s is already complete in the store; refusing to write it again", final)
	}
	f.Partial = true
	path := filepath.Join(w.walDir, w.seg.fileName(f))
	file, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, w.perm)
	if err != nil {
		return fmt.Errorf("open %s: %w", path, err)
	}
	st, err := file.Stat()
	if err != nil {
		file.Close()
		return fmt.Errorf("stat %s: %w", path, err)
	}
	if err := w.pad(file, st.Size()); err != nil {
		file.Close()
		return err
	}
	w.f, w.segno, w.verify = file, segno, st.Size() > 0
	return w.arrivals.open(w.seg.name(w.tli, segno))
}

// pad fills f with zeros from size to the segment size and makes that
// durable, so that later writes never need new blocks (a full disk shows
// when the segment is created, not halfway through it).
func (w *segmentWriter) pad(f *os.File, size int64) error {
	if size > int64(w.seg) {
		return fmt.Errorf("%s is %d bytes, larger than a segment (%d)", f.Name(), size, int64(w.seg))
	}
	if size == int64(w.seg) {
		return nil
	}
	zeros := make([]byte, 1<<20)
	for off := size; off < int64(w.seg); off += int64(len(zeros)) {
		n := min(int64(len(zeros)), int64(w.seg)-off)
		if _, err := f.WriteAt(zeros[:n], off); err != nil {
			return fmt.Errorf("pad %s: %w", f.Name(), err)
		}
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", f.Name(), err)
	}
	return syncDir(w.walDir)
}

// complete fsyncs the full segment and gives it its final name.
func (w *segmentWriter) complete() error {
	if err := w.f.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", w.f.Name(), err)
	}
	w.flushed = w.written
	w.arrivals.close(w.written, w.flushed)
	partial := w.f.Name()
	if err := w.f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", partial, err)
	}
	w.f = nil
	done := segFile{TLI: w.tli, SegNo: w.segno}
	final := filepath.Join(w.walDir, w.seg.fileName(done))
	if err := os.Rename(partial, final); err != nil {
		return fmt.Errorf("rename %s: %w", partial, err)
	}
	if err := syncDir(w.walDir); err != nil {
		return err
	}
	if w.completed != nil {
		w.completed(done)
	}
	return nil
}

// check compares a chunk about to be rewritten at off with what the file
// holds. Past the end of what an earlier run wrote the file is zero: from
// the first differing byte on, the rest of the file must be zero, and then
// there is nothing left to check.
func (w *segmentWriter) check(off int64, chunk []byte) error {
	if cap(w.scratch) < len(chunk) {
		w.scratch = make([]byte, len(chunk))
	}
	old := w.scratch[:len(chunk)]
	if _, err := w.f.ReadAt(old, off); err != nil {
		return fmt.Errorf("read %s: %w", w.f.Name(), err)
	}
	i := firstDiff(old, chunk)
	if i < 0 {
		return nil
	}
	zero, err := zeroFrom(w.f, off+int64(i))
	if err != nil {
		return err
	}
	if !zero {
		return &brokenError{err: errDiverged, reason: fmt.Sprintf(
			"%v at %s on timeline %d (offset %d of %s). dbha keeps its copy and stops: the primary's WAL was "+
				"rewritten without a new timeline (restored from a backup?). Move the store directory aside to start a new one",
			errDiverged, w.written+LSN(i), w.tli, off+int64(i), filepath.Base(w.f.Name()))}
	}
	w.verify = false
	return nil
}

// firstDiff is the index of the first byte where a and b differ, -1 if none.
func firstDiff(a, b []byte) int {
	if bytes.Equal(a, b) {
		return -1
	}
	for i := range a {
		if a[i] != b[i] {
			return i
		}
	}
	return -1
}

// zeroFrom reports whether f holds only zero bytes from off to its end.
func zeroFrom(f *os.File, off int64) (bool, error) {
	buf := make([]byte, 1<<16)
	for {
		n, err := f.ReadAt(buf, off)
		for _, b := range buf[:n] {
			if b != 0 {
				return false, nil
			}
		}
		off += int64(n)
		if errors.Is(err, io.EOF) {
			return true, nil
		}
		if err != nil {
			return false, fmt.Errorf("read %s: %w", f.Name(), err)
		}
	}
}
