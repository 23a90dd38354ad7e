package mysql

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// scanAll runs ScanFile and returns what it found.
func scanAll(t *testing.T, path string) []Txn {
	t.Helper()
	var txns []Txn
	if err := ScanFile(path, func(x Txn) error { txns = append(txns, x); return nil }); err != nil {
		t.Fatalf("ScanFile(%s): %v", path, err)
	}
	return txns
}

func gtids(txns []Txn) []string {
	out := make([]string, len(txns))
	for i, x := range txns {
		out[i] = x.GTID.String()
	}
	return out
}

func seqRange(from, to int) []string {
	var out []string
	for i := from; i <= to; i++ {
		out = append(out, fmt.Sprintf("0-1-%d", i))
	}
	return out
}

// The captured store file holds transactions 0-1-32..45; its index (written
// by the stream) and a scan of the data agree on every field.
func TestScanFileMatchesIndex(t *testing.T) {
	scanned := scanAll(t, capturedStore)
	start, indexed, _, err := readIdx(capturedStore + idxSuffix)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := gtids(scanned), seqRange(32, 45); !slices.Equal(got, want) {
		t.Fatalf("ScanFile found %v, want %v", got, want)
	}
	if !slices.Equal(scanned, indexed) {
		t.Errorf("ScanFile and the index differ:\n scan  %+v\n index %+v", scanned, indexed)
	}
	if start.String() != "0-1-31" {
		t.Errorf("index start position %q, want 0-1-31", start)
	}
	res, err := scanFile(capturedStore, 0, nil)
	if err != nil || !res.haveStart || res.start.String() != "0-1-31" || res.safe != fileSize(t, capturedStore) {
		t.Errorf("scanFile: start %q (%v), safe %d of %d, err %v", res.start, res.haveStart, res.safe, fileSize(t, capturedStore), err)
	}
}

// ScanFile also reads a server's own binlog (with its Gtid_list and
// Binlog_checkpoint events).
func TestScanServerFile(t *testing.T) {
	txns := scanAll(t, capturedServer)
	if len(txns) == 0 || txns[0].GTID.String() != "0-1-14" {
		t.Fatalf("server file: %d transactions, first %v", len(txns), gtids(txns))
	}
	for i := 1; i < len(txns); i++ {
		if txns[i].GTID.Seq != txns[i-1].GTID.Seq+1 || txns[i].Offset < txns[i-1].End() {
			t.Fatalf("transaction %d: %+v after %+v", i, txns[i], txns[i-1])
		}
	}
}

func TestScanFileErrors(t *testing.T) {
	dir := t.TempDir()
	full, _ := os.ReadFile(capturedStore)
	corrupt := slices.Clone(full)
	corrupt[len(corrupt)-100] ^= 0xff
	cases := []struct {
		name string
		data []byte
		want error
	}{
		{"ends inside an event", full[:len(full)-10], errTorn},
		{"a flipped bit", corrupt, errChecksum},
		{"not a binlog", []byte("hello, world"), nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, "f")
			os.WriteFile(path, tc.data, 0o644)
			err := ScanFile(path, func(Txn) error { return nil })
			if err == nil || (tc.want != nil && !errors.Is(err, tc.want)) {
				t.Errorf("ScanFile = %v, want %v", err, tc.want)
			}
		})
	}
	stop := errors.New("stop here")
	if err := ScanFile(capturedStore, func(Txn) error { return stop }); !errors.Is(err, stop) {
		t.Errorf("ScanFile returned %v, not the callback's error", err)
	}
}

// The reader handles events larger than its buffer and reads that straddle
// refills.
func TestEventReaderSmallReads(t *testing.T) {
	f, err := os.Open(capturedStore)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	f.Seek(4, io.SeekStart)
	er := newEventReader(oneByteReader{f}, 4)
	er.buf = make([]byte, 64) // smaller than most events
	var n int
	for {
		_, _, _, err := er.next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		n++
	}
	if want := len(readEvents(t, capturedStore)); n != want {
		t.Errorf("read %d events, want %d", n, want)
	}
}

type oneByteReader struct{ r io.Reader }

func (o oneByteReader) Read(p []byte) (int, error) { return o.r.Read(p[:min(len(p), 7)]) }

func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}
