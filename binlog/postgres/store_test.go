package postgres

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/dbha/dbha/binlog"
	"github.com/dbha/dbha/topology"
)

var t0 = time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)

// syntheticStore writes, with 1 MiB segments: timeline 1 segments 3 and 4
// complete (arrived at t0 and t0+10s) and 5 up to +0x1000 (t0+20s); then
// timeline 2, which forked from 1 at 0/500800, from segment 5 to 0/600200
// (t0+40s). Timeline 1's .partial keeps 0x800 bytes timeline 2 never had.
func syntheticStore(t *testing.T) (dir string, seg segments) {
	t.Helper()
	dir, seg = newTestStore(t)
	w := newTestWriter(dir, seg, 1, seg.start(3))
	writeWAL(t, w, seg.start(3), seg.start(4), t0)
	writeWAL(t, w, seg.start(4), seg.start(5), t0.Add(10*time.Second))
	writeWAL(t, w, seg.start(5), seg.start(5)+0x1000, t0.Add(20*time.Second))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := writeHistory(filepath.Join(dir, walSubdir), historyName(2), []byte("1\t0/500800\tno recovery target specified\n")); err != nil {
		t.Fatal(err)
	}
	w = newTestWriter(dir, seg, 2, seg.start(5))
	writeWAL(t, w, seg.start(5), seg.start(6)+0x200, t0.Add(40*time.Second))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return dir, seg
}

func TestStorePositionAndTransactions(t *testing.T) {
	dir, _ := syntheticStore(t)
	st, err := OpenStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	history := []topology.TimelineSwitch{{Timeline: 1, Switch: 0x500800}}
	if got, want := st.Position(), topology.PostgresAt(0x600200, 2).WithHistory(history); !samePosition(got, want) {
		t.Fatalf("Position = %v, want %v", got, want)
	}
	all := []string{"0/300000-0/400000 tl1", "0/400000-0/500000 tl1", "0/500000-0/501000 tl1", "0/500000-0/600000 tl2", "0/600000-0/600200 tl2"}
	cases := []struct {
		name    string
		since   topology.Position
		limit   int
		want    []string
		offset0 int64
	}{
		{"everything", topology.Position{}, 0, all, 0},
		{"limited", topology.Position{}, 2, all[:2], 0},
		{"since inside a segment", topology.PostgresAt(0x400010, 1), 0,
			[]string{"0/400010-0/500000 tl1", "0/500000-0/501000 tl1", "0/500000-0/600000 tl2", "0/600000-0/600200 tl2"}, 0x10},
		{"since the end", topology.PostgresAt(0x600200, 2), 0, nil, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			txs, err := st.Transactions(tc.since, tc.limit)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, tx := range txs {
				got = append(got, tx.Position)
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("positions = %q, want %q", got, tc.want)
			}
			if len(txs) > 0 && txs[0].Offset != tc.offset0 {
				t.Fatalf("first offset %d, want %d", txs[0].Offset, tc.offset0)
			}
		})
	}
	t.Run("sizes, files and arrival times", func(t *testing.T) {
		txs, _ := st.Transactions(topology.Position{}, 0)
		if txs[0].Size != 0x100000 || txs[0].File != "wal/000000010000000000000003" || !txs[0].Time.Equal(t0) {
			t.Fatalf("first = %+v", txs[0])
		}
		if txs[2].File != "wal/000000010000000000000005.partial" || txs[2].Size != 0x1000 || !txs[2].Time.Equal(t0.Add(20*time.Second)) {
			t.Fatalf("tl1 partial = %+v", txs[2])
		}
	})
	t.Run("a published status is more precise than the files", func(t *testing.T) {
		pos := topology.PostgresAt(0x600300, 2)
		if err := binlog.WriteStatus(dir, binlog.Status{Position: pos}); err != nil {
			t.Fatal(err)
		}
		defer os.Remove(filepath.Join(dir, "status.json"))
		if got := st.Position(); got.LSN() != 0x600300 || got.Timeline() != 2 {
			t.Fatalf("Position = %v", got)
		}
		txs, _ := st.Transactions(topology.PostgresAt(0x600000, 2), 0)
		if len(txs) != 1 || txs[0].Position != "0/600000-0/600300 tl2" {
			t.Fatalf("partial with status: %+v", txs)
		}
	})
}

func samePosition(a, b topology.Position) bool {
	o, err := topology.Compare(a, b)
	return err == nil && o == topology.Equal && a.String() == b.String()
}

func TestStoreLag(t *testing.T) {
	dir, _ := syntheticStore(t)
	st, err := OpenStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	now := t0.Add(60 * time.Second)
	held := LSN(0x600200)
	cases := []struct {
		name    string
		pos     topology.Position
		bytes   int64
		seconds float64
	}{
		{"caught up", topology.PostgresAt(held, 2), 0, 0},
		{"ahead of the store", topology.PostgresAt(held+10, 2), 0, 0},
		{"inside timeline 2's second segment", topology.PostgresAt(0x600100, 2), 0x100, 20},
		{"on timeline 1, before the fork", topology.PostgresAt(0x400010, 1), int64(held - 0x400010), 50},
		{"at the first WAL held", topology.PostgresAt(0x300000, 1), int64(held - 0x300000), 60},
		{"older than the store: its oldest arrival", topology.PostgresAt(0x100000, 1), int64(held - 0x100000), 60},
		{"timeline 1 past the fork: diverged, not behind", topology.PostgresAt(0x500900, 1), 0, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			lag, err := st.Lag(tc.pos, now)
			if err != nil {
				t.Fatal(err)
			}
			if lag.Bytes != tc.bytes || lag.Seconds != tc.seconds {
				t.Fatalf("Lag = %+v, want %d bytes, %.0f s", lag, tc.bytes, tc.seconds)
			}
		})
	}
	if _, err := st.Lag(topology.Position{}, now); err == nil {
		t.Errorf("Lag of the zero position did not fail")
	}
}

func TestOpenStoreWithoutStream(t *testing.T) {
	if _, err := OpenStore(t.TempDir()); !errors.Is(err, ErrNoStore) {
		t.Fatalf("OpenStore on an empty directory: %v", err)
	}
}

func TestNeededFrom(t *testing.T) {
	seg := segments(mib)
	files := []segFile{{TLI: 1, SegNo: 1}, {TLI: 1, SegNo: 2}, {TLI: 1, SegNo: 3}, {TLI: 1, SegNo: 4}}
	pg := func(lsn LSN) topology.Position { return topology.PostgresAt(lsn, 1) }
	cases := []struct {
		name string
		keep []topology.Position
		want int
	}{
		{"no standbys", nil, 4},
		{"a standby inside segment 2", []topology.Position{pg(seg.start(2) + 5)}, 1},
		{"a standby at the end of segment 2 lacks nothing in it", []topology.Position{pg(seg.start(3))}, 2},
		{"the lowest standby decides", []topology.Position{pg(seg.start(4)), pg(seg.start(1) + 1)}, 0},
		{"all caught up", []topology.Position{pg(seg.start(9))}, 4},
		{"a standby of unknown position keeps everything", []topology.Position{pg(seg.start(9)), {}}, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := neededFrom(files, seg, tc.keep); got != tc.want {
				t.Fatalf("neededFrom = %d, want %d", got, tc.want)
			}
		})
	}
}

func TestPruneStore(t *testing.T) {
	cases := []struct {
		name    string
		keep    []topology.Position
		keepErr error
		want    []string // segments left, besides the .partial
		wantErr bool
	}{
		{"no standby: all but the newest complete segment go", nil, nil, []string{"000000010000000000000005"}, false},
		{"a standby in segment 3 keeps 3 onwards", []topology.Position{topology.PostgresAt(0x300005, 1)}, nil,
			[]string{"000000010000000000000003", "000000010000000000000004", "000000010000000000000005"}, false},
		{"the standbys cannot be asked: nothing goes", nil, errors.New("no answer"),
			[]string{"000000010000000000000001", "000000010000000000000002", "000000010000000000000003",
				"000000010000000000000004", "000000010000000000000005"}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir, seg := newTestStore(t)
			w := newTestWriter(dir, seg, 1, seg.start(1))
			writeWAL(t, w, seg.start(1), seg.start(6)+100, t0)
			w.Close()
			keepFor := func(context.Context) ([]topology.Position, error) { return tc.keep, tc.keepErr }
			_, err := pruneStore(context.Background(), dir, binlog.Retention{MaxAge: time.Nanosecond}, keepFor, time.Now().Add(time.Hour))
			if (err != nil) != tc.wantErr {
				t.Fatalf("pruneStore: %v", err)
			}
			l, _ := list(filepath.Join(dir, walSubdir), seg)
			var left []string
			for _, f := range l.Segments {
				if !f.Partial {
					left = append(left, seg.fileName(f))
				}
			}
			if !slices.Equal(left, tc.want) {
				t.Fatalf("left %q, want %q", left, tc.want)
			}
			if !slices.Contains(l.Segments, segFile{TLI: 1, SegNo: 6, Partial: true}) {
				t.Fatalf("the .partial was deleted")
			}
			for _, f := range l.Segments {
				if _, err := os.Stat(filepath.Join(dir, arrivalsSubdir, seg.name(f.TLI, f.SegNo))); err != nil {
					t.Errorf("arrivals of a kept segment: %v", err)
				}
			}
			if _, err := os.Stat(filepath.Join(dir, arrivalsSubdir, seg.name(1, 1))); len(tc.want) < 5 && err == nil {
				t.Errorf("arrivals of a deleted segment left behind")
			}
		})
	}
}
