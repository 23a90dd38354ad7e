package postgres

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// fakeWAL is deterministic non-zero "WAL" bytes for [from, from+n).
func fakeWAL(from LSN, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte((uint64(from)+uint64(i))%251 + 1)
	}
	return b
}

// newTestStore makes a store directory with 1 MiB segments.
func newTestStore(t *testing.T) (dir string, seg segments) {
	t.Helper()
	dir = t.TempDir()
	if err := makeStore(dir); err != nil {
		t.Fatal(err)
	}
	seg = segments(mib)
	info := serverInfo{SystemID: "7710724122946958600", Seg: seg}
	if err := checkIdentity(dir, info, "127.0.0.1:5432", time.Now()); err != nil {
		t.Fatal(err)
	}
	return dir, seg
}

func newTestWriter(dir string, seg segments, tli uint32, start LSN) *segmentWriter {
	return newSegmentWriter(filepath.Join(dir, walSubdir), seg, tli, start, newArrivalLog(filepath.Join(dir, arrivalsSubdir)))
}

// writeWAL writes [from, to) in messages of random size, as a server would.
func writeWAL(t *testing.T, w *segmentWriter, from, to LSN, at time.Time) {
	t.Helper()
	r := rand.New(rand.NewPCG(1, uint64(from)))
	for lsn := from; lsn < to; {
		n := min(LSN(1+r.IntN(200_000)), to-lsn)
		if err := w.Write(lsn, fakeWAL(lsn, int(n)), arrival{Received: at, Server: at}); err != nil {
			t.Fatalf("write at %s: %v", lsn, err)
		}
		lsn += n
	}
}

func TestSegmentWriter(t *testing.T) {
	dir, seg := newTestStore(t)
	walDir := filepath.Join(dir, walSubdir)
	w := newTestWriter(dir, seg, 1, seg.start(3))
	var completed []segFile
	w.completed = func(f segFile) { completed = append(completed, f) }
	end := seg.start(5) + 1000
	writeWAL(t, w, seg.start(3), end, time.Now())

	t.Run("complete segments are renamed and byte-exact", func(t *testing.T) {
		for _, segno := range []uint64{3, 4} {
			got, err := os.ReadFile(filepath.Join(walDir, seg.name(1, segno)))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, fakeWAL(seg.start(segno), int(seg))) {
				t.Fatalf("segment %d content differs", segno)
			}
		}
		if len(completed) != 2 {
			t.Fatalf("completed = %v", completed)
		}
	})
	t.Run("the open segment is a zero-padded .partial", func(t *testing.T) {
		got, err := os.ReadFile(filepath.Join(walDir, seg.name(1, 5)+partialSuffix))
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != int(seg) || !bytes.Equal(got[:1000], fakeWAL(seg.start(5), 1000)) || !bytes.Equal(got[1000:], make([]byte, int(seg)-1000)) {
			t.Fatalf("partial: %d bytes, wrong content", len(got))
		}
	})
	t.Run("flush moves only on fsync", func(t *testing.T) {
		if w.Flushed() != seg.start(5) || w.Written() != end {
			t.Fatalf("written %s flushed %s before Flush", w.Written(), w.Flushed())
		}
		if err := w.Flush(); err != nil || w.Flushed() != end {
			t.Fatalf("after Flush: flushed %s, %v", w.Flushed(), err)
		}
	})
	t.Run("a gap in the stream is refused", func(t *testing.T) {
		if err := w.Write(end+1, []byte{1}, arrival{}); err == nil {
			t.Fatal("a write after a gap was accepted")
		}
	})
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}

	t.Run("resuming rewrites the .partial with the same bytes and continues", func(t *testing.T) {
		w2 := newTestWriter(dir, seg, 1, seg.start(5))
		writeWAL(t, w2, seg.start(5), seg.start(6)+10, time.Now())
		if err := w2.Close(); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join(walDir, seg.name(1, 5)))
		if err != nil || !bytes.Equal(got, fakeWAL(seg.start(5), int(seg))) {
			t.Fatalf("segment 5 after resume: %v", err)
		}
	})
	t.Run("a complete segment is never written again", func(t *testing.T) {
		w3 := newTestWriter(dir, seg, 1, seg.start(4))
		if err := w3.Write(seg.start(4), fakeWAL(seg.start(4), 10), arrival{}); err == nil {
			t.Fatal("rewriting a complete segment was accepted")
		}
	})
	t.Run("different bytes for WAL already held break the stream", func(t *testing.T) {
		w4 := newTestWriter(dir, seg, 1, seg.start(6))
		other := fakeWAL(seg.start(6)+7, 10) // shifted: differs from what is there
		err := w4.Write(seg.start(6), other, arrival{})
		if !errors.Is(err, ErrBroken) || !errors.Is(err, errDiverged) {
			t.Fatalf("err = %v, want ErrBroken/errDiverged", err)
		}
		w4.Close()
		got, _ := os.ReadFile(filepath.Join(walDir, seg.name(1, 6)+partialSuffix))
		if !bytes.Equal(got[:10], fakeWAL(seg.start(6), 10)) {
			t.Fatalf("the held WAL was overwritten")
		}
	})
	t.Run("an interrupted padding is completed", func(t *testing.T) {
		path := filepath.Join(walDir, seg.name(1, 9)+partialSuffix)
		if err := os.WriteFile(path, make([]byte, 4096), 0o640); err != nil {
			t.Fatal(err)
		}
		w5 := newTestWriter(dir, seg, 1, seg.start(9))
		if err := w5.Write(seg.start(9), fakeWAL(seg.start(9), 100), arrival{}); err != nil {
			t.Fatal(err)
		}
		w5.Close()
		if st, err := os.Stat(path); err != nil || st.Size() != int64(seg) {
			t.Fatalf("partial size after padding: %v %v", st.Size(), err)
		}
	})
}

func TestWriteHistory(t *testing.T) {
	dir := t.TempDir()
	content := []byte("1\t0/5000100\tno recovery target specified\n")
	if err := writeHistory(dir, "00000002.history", content); err != nil {
		t.Fatal(err)
	}
	if err := writeHistory(dir, "00000002.history", content); err != nil {
		t.Fatalf("same content again: %v", err)
	}
	err := writeHistory(dir, "00000002.history", []byte("1\t0/6000000\tother\n"))
	if !errors.Is(err, errHistoryConflict) {
		t.Fatalf("conflicting history: %v", err)
	}
	got, _ := os.ReadFile(filepath.Join(dir, "00000002.history"))
	if !bytes.Equal(got, content) {
		t.Fatalf("the first history was replaced")
	}
}

func TestCheckIdentity(t *testing.T) {
	dir, seg := newTestStore(t)
	cases := []struct {
		name   string
		info   serverInfo
		broken bool
	}{
		{"same cluster", serverInfo{SystemID: "7710724122946958600", Seg: seg}, false},
		{"another cluster", serverInfo{SystemID: "7710724122946958601", Seg: seg}, true},
		{"another segment size", serverInfo{SystemID: "7710724122946958600", Seg: 2 * seg}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := checkIdentity(dir, tc.info, "127.0.0.1:5432", time.Now())
			if errors.Is(err, ErrBroken) != tc.broken || (err != nil) != tc.broken {
				t.Fatalf("checkIdentity = %v", err)
			}
		})
	}
}

// TestFailedWriteReportsNothing: when the disk fails (here: the file is
// gone from under the writer), Flushed stays at what was fsynced before.
func TestFailedWriteReportsNothing(t *testing.T) {
	dir, seg := newTestStore(t)
	w := newTestWriter(dir, seg, 1, seg.start(3))
	writeWAL(t, w, seg.start(3), seg.start(3)+5000, time.Now())
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	fsynced := w.Flushed()
	if err := w.Write(w.Written(), fakeWAL(w.Written(), 100), arrival{}); err != nil {
		t.Fatal(err)
	}
	w.f.Close() // the next fsync and write fail
	if err := w.Flush(); err == nil {
		t.Fatal("Flush on a failed file succeeded")
	}
	if err := w.Write(w.Written(), fakeWAL(w.Written(), 100), arrival{}); err == nil {
		t.Fatal("Write on a failed file succeeded")
	}
	if w.Flushed() != fsynced {
		t.Fatalf("Flushed moved to %s after a failed fsync, want %s", w.Flushed(), fsynced)
	}
	if fb := feedbackFor(w.Written(), w.Flushed()); fb.Flush != fsynced || fb.Apply != fsynced {
		t.Fatalf("feedback after a failure: %+v", fb)
	}
}
