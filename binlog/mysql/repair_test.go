package mysql

import (
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/go-mysql-org/go-mysql/replication"
)

var discard = slog.New(slog.NewTextHandler(io.Discard, nil))

// How a test store's index relates to its data before repair.
type idxState int

const (
	idxFull    idxState = iota // every record, possibly past the cut data (a power loss)
	idxMissing                 // no index at all
	idxTorn                    // three records and part of a fourth
)

func (s idxState) String() string {
	return [...]string{"index complete", "index missing", "index torn"}[s]
}

// testStore copies the captured store file, cut after cut bytes and marked
// in use (as a writer that died leaves it), into a new store directory with
// its index in the given state.
func testStore(t *testing.T, cut int64, idx idxState) string {
	t.Helper()
	dir := t.TempDir()
	data, _ := os.ReadFile(capturedStore)
	fde := events0(t)
	setInUse(fde, true, true)
	copy(data[4:], fde)
	index, _ := os.ReadFile(capturedStore + idxSuffix)
	name := filepath.Join(dir, fileName(1))
	if err := os.WriteFile(name, data[:cut], 0o644); err != nil {
		t.Fatal(err)
	}
	_, hdrLen, err := walkIdx(capturedStore+idxSuffix, nil)
	if err != nil {
		t.Fatal(err)
	}
	switch idx {
	case idxFull:
		os.WriteFile(name+idxSuffix, index, 0o644)
	case idxTorn:
		os.WriteFile(name+idxSuffix, index[:hdrLen+3*recordSize+20], 0o644)
	}
	if err := writeIndexFile(dir, []string{fileName(1)}); err != nil {
		t.Fatal(err)
	}
	return dir
}

// events0 is the captured file's Format_description event.
func events0(t *testing.T) []byte {
	return slices.Clone(readEvents(t, capturedStore)[0].ev)
}

func TestRepairTail(t *testing.T) {
	events := readEvents(t, capturedStore)
	_, golden, _, err := readIdx(capturedStore + idxSuffix)
	if err != nil || len(golden) != 14 {
		t.Fatalf("golden index: %d records, %v", len(golden), err)
	}
	headerEnd := events[1].off + int64(events[1].h.Size)
	big := golden[11] // 0-1-43, some 40 KB of row events
	cases := []struct {
		name    string
		cut     int64
		removed bool // the file is unusable: the store is empty
		kept    int  // complete transactions left
	}{
		{"cut inside the Format_description event", 50, true, 0},
		{"cut inside the Gtid_list event", events[1].off + 5, true, 0},
		{"cut right after the header events", headerEnd, false, 0},
		{"cut inside the first GTID event", headerEnd + 10, false, 0},
		{"cut between two events of a transaction", golden[5].Offset + 42, false, 5},
		{"cut inside the event that ends a transaction", golden[5].End() - 3, false, 5},
		{"cut exactly at the end of a transaction", golden[5].End(), false, 6},
		{"cut inside a 40 KB transaction", big.Offset + 20000, false, 11},
		{"the whole file", fileSize(t, capturedStore), false, 14},
	}
	for _, tc := range cases {
		for _, idx := range []idxState{idxFull, idxMissing, idxTorn} {
			t.Run(fmt.Sprintf("%s, %s", tc.name, idx), func(t *testing.T) {
				dir := testStore(t, tc.cut, idx)
				rep, err := repairStore(dir, "mariadb", discard)
				if err != nil {
					t.Fatal(err)
				}
				if tc.removed {
					if len(rep.names) != 0 || !rep.pos.isEmpty() {
						t.Fatalf("an unusable only file: names %v, position %q", rep.names, rep.pos)
					}
					return
				}
				checkRepaired(t, dir, rep, golden[:tc.kept], headerEnd)
			})
		}
	}
}

// checkRepaired checks a repaired one-file store against the transactions
// it should hold.
func checkRepaired(t *testing.T, dir string, rep repaired, want []Txn, headerEnd int64) {
	t.Helper()
	path := filepath.Join(dir, fileName(1))
	wantSize, wantPos := headerEnd, "0-1-31"
	if len(want) > 0 {
		wantSize, wantPos = want[len(want)-1].End(), want[len(want)-1].GTID.String()
	}
	if rep.pos.String() != wantPos || rep.next != 2 || !slices.Equal(rep.names, []string{fileName(1)}) {
		t.Errorf("repaired: position %q next %d names %v; want %q, 2, [%s]", rep.pos, rep.next, rep.names, wantPos, fileName(1))
	}
	if got := fileSize(t, path); got != wantSize {
		t.Errorf("data file is %d bytes, want %d (the end of the last complete transaction)", got, wantSize)
	}
	_, recs, _, err := readIdx(path + idxSuffix)
	if err != nil || !slices.Equal(recs, want) {
		t.Errorf("index after repair: %d records (%v), want %d", len(recs), err, len(want))
	}
	if got := scanAll(t, path); !slices.Equal(got, want) {
		t.Errorf("the repaired file scans to %d transactions, want %d", len(got), len(want))
	}
	b, _ := os.ReadFile(path)
	if flags := binary.LittleEndian.Uint16(b[4+flagsAt:]); flags&replication.LOG_EVENT_BINLOG_IN_USE_F != 0 {
		t.Errorf("the repaired file is still marked in use")
	}
}

// keepRecords decides which index records still describe data.
func TestKeepRecords(t *testing.T) {
	rec := func(off, size int64) Txn { return Txn{Offset: off, Size: size} }
	recs := []Txn{rec(300, 100), rec(400, 50), rec(460, 40)}
	cases := []struct {
		name string
		recs []Txn
		size int64
		want int
	}{
		{"all within the data", recs, 500, 3},
		{"the last ends past the data", recs, 499, 2},
		{"only the first fits", recs, 420, 1},
		{"none fits", recs, 350, 0},
		{"overlapping records stop the run", []Txn{rec(300, 100), rec(350, 100)}, 1000, 1},
		{"an empty record stops the run", []Txn{rec(300, 100), rec(400, 0)}, 1000, 1},
		{"no records", nil, 1000, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := keepRecords(tc.recs, tc.size); got != tc.want {
				t.Errorf("keepRecords = %d, want %d", got, tc.want)
			}
		})
	}
}

// The file list: a lost index file is rebuilt from the directory; a file
// created but never listed is removed.
func TestRepairFileList(t *testing.T) {
	t.Run("index file lost", func(t *testing.T) {
		dir := testStore(t, fileSize(t, capturedStore), idxFull)
		os.Remove(filepath.Join(dir, indexName))
		rep, err := repairStore(dir, "mariadb", discard)
		if err != nil || !slices.Equal(rep.names, []string{fileName(1)}) || rep.pos.String() != "0-1-45" {
			t.Fatalf("names %v position %q err %v", rep.names, rep.pos, err)
		}
		if names, err := readIndexFile(dir); err != nil || !slices.Equal(names, rep.names) {
			t.Errorf("index file after repair: %v, %v", names, err)
		}
	})
	t.Run("unlisted file", func(t *testing.T) {
		dir := testStore(t, fileSize(t, capturedStore), idxFull)
		stray := filepath.Join(dir, fileName(2))
		os.WriteFile(stray, []byte{0xfe, 'b', 'i', 'n'}, 0o644)
		rep, err := repairStore(dir, "mariadb", discard)
		if err != nil || !slices.Equal(rep.names, []string{fileName(1)}) || rep.next != 2 {
			t.Fatalf("names %v next %d err %v", rep.names, rep.next, err)
		}
		if _, err := os.Stat(stray); !os.IsNotExist(err) {
			t.Errorf("the unlisted file is still there")
		}
	})
	t.Run("a cleanly closed file is not scanned", func(t *testing.T) {
		dir := t.TempDir()
		data, _ := os.ReadFile(capturedStore)
		index, _ := os.ReadFile(capturedStore + idxSuffix)
		os.WriteFile(filepath.Join(dir, fileName(1)), append(data, 0xde, 0xad), 0o644) // trailing bytes a scan would cut
		os.WriteFile(filepath.Join(dir, fileName(1)+idxSuffix), index, 0o644)
		writeIndexFile(dir, []string{fileName(1)})
		rep, err := repairStore(dir, "mariadb", discard)
		if err != nil || rep.pos.String() != "0-1-45" || fileSize(t, filepath.Join(dir, fileName(1))) != int64(len(data))+2 {
			t.Errorf("position %q, err %v, size %d: the file was touched", rep.pos, err, fileSize(t, filepath.Join(dir, fileName(1))))
		}
	})
	t.Run("wrong flavor", func(t *testing.T) {
		dir := testStore(t, fileSize(t, capturedStore), idxFull)
		if _, err := repairStore(dir, "mysql", discard); err == nil {
			t.Errorf("a MariaDB store opened as MySQL")
		}
	})
}
