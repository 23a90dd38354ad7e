package mysql

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/go-mysql-org/go-mysql/replication"

	"github.com/dbha/dbha/topology"
)

// The captured server binlog holds 0-1-14 .. 0-1-45 after 0-1-13: row
// transactions, DDL, statements, XA, and a non-transactional statement.
// Only the row transactions can be undone.
var (
	capturedRowTxns = []int{15, 16, 17, 22, 23, 24, 25, 29, 30, 31, 35, 36, 37, 43, 44, 45}
	capturedBadTxns = []int{14, 18, 19, 20, 21, 26, 27, 28, 32, 33, 34, 38, 39, 40, 41, 42}
)

func gtidRange(from, to int) []string {
	var out []string
	for n := from; n <= to; n++ {
		out = append(out, fmt.Sprintf("0-1-%d", n))
	}
	return out
}

func gtidsOf(seqs []int) []string {
	var out []string
	for _, n := range seqs {
		out = append(out, fmt.Sprintf("0-1-%d", n))
	}
	return out
}

func mustPosition(t *testing.T, s string) topology.Position {
	t.Helper()
	p, err := topology.ParseMariaDB(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// feedTail runs the captured server file through a tail file, each event
// first given to edit (which may change it, or drop it by returning nil),
// as the server would send it: a fake Rotate first, then the file. Like
// TailCopier, it stops once the tail file is complete.
func feedTail(t *testing.T, after, upto string, maxEvents int, edit func(rawEvent) []byte) (*tailFile, error) {
	t.Helper()
	tf, err := newTailFile(filepath.Join(t.TempDir(), "tail.bin"), mustPosition(t, after), mustPosition(t, upto), maxEvents)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tf.abort)
	fakeRotate := buildEvent(0, typeRotate, 1, replication.LOG_EVENT_ARTIFICIAL_F, 0, []byte("\x04\x00\x00\x00\x00\x00\x00\x00mariadb-bin.000004"), false)
	if err := tf.event(fakeRotate); err != nil {
		return tf, err
	}
	for _, e := range readEvents(t, capturedServer) {
		if tf.complete() {
			break
		}
		ev := e.ev
		if edit != nil {
			if ev = edit(e); ev == nil {
				continue
			}
		}
		if err := tf.event(ev); err != nil {
			return tf, err
		}
	}
	return tf, nil
}

func TestTailFileSavesAndJudgesEveryTransaction(t *testing.T) {
	tf, err := feedTail(t, "0-1-13", "0-1-45", 1000, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !tf.complete() || tf.lacking() != "" {
		t.Fatalf("complete %v, lacking %q after the whole file", tf.complete(), tf.lacking())
	}
	if err := tf.finish(); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(tf.gtids, gtidRange(14, 45)) {
		t.Errorf("saved %v, want 0-1-14 .. 0-1-45", tf.gtids)
	}
	if !slices.Equal(tf.bad, gtidsOf(capturedBadTxns)) {
		t.Errorf("refused %v, want %v (row transactions %v accepted)", tf.bad, gtidsOf(capturedBadTxns), capturedRowTxns)
	}
	err = tf.refusal()
	if !errors.Is(err, topology.ErrCannotRewind) {
		t.Fatalf("refusal = %v, want ErrCannotRewind", err)
	}
	for _, want := range []string{
		"0-1-14 is a statement, not row events: CREATE TABLE dbha_lab.t",
		"0-1-18 is a statement, not row events: CREATE TABLE dbha_lab.m",
		"0-1-19 is statement-based logging (IntVarEvent)",
		"0-1-20 is an XA transaction",
		fmt.Sprintf("and %d more", len(capturedBadTxns)-maxReasons),
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("refusal %q does not say %q", err, want)
		}
	}

	// Every row event is counted against its table, by kind (as
	// mariadb-binlog counts Write_rows, Update_rows, Delete_rows per table).
	want := map[string]topology.RowChanges{
		"dbha_lab.t": {Writes: 14, Updates: 1, Deletes: 3}, "dbha_lab.heartbeat": {Writes: 3},
		"cap.t": {Writes: 10, Updates: 1, Deletes: 3},
	}
	if got := tf.changed(); !maps.Equal(got, want) {
		t.Errorf("tables changed: %v, want %v", got, want)
	}

	// The file reads back as a finished binlog that starts after 0-1-13,
	// readable only by its owner.
	st, err := os.Stat(tf.path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("tail file: %v, mode %v; want 0600", err, st.Mode().Perm())
	}
	if inUse(tf.path) {
		t.Error("the tail file's Format_description event says it is still in use")
	}
	res, err := scanFile(tf.path, 0, nil)
	if err != nil || res.start.String() != "0-1-13" {
		t.Errorf("the file starts after %q (%v), want 0-1-13", res.start, err)
	}
	if _, err := os.Stat(tf.path + ".part"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the unfinished name is left: %v", err)
	}
}

func TestTailFileAcceptsRowTransactions(t *testing.T) {
	// Only the row transactions, renumbered as one tail 0-1-14.. as a
	// server holding just those would send them.
	keep := map[uint64]uint64{}
	for i, n := range capturedRowTxns {
		keep[uint64(n)] = uint64(14 + i)
	}
	var cur uint64
	last := 13 + len(capturedRowTxns)
	tf, err := feedTail(t, "0-1-13", fmt.Sprintf("0-1-%d", last), 1000, func(e rawEvent) []byte {
		if e.h.Type == typeMariaGTID {
			cur = binary.LittleEndian.Uint64(e.ev[headerSize:])
			if keep[cur] == 0 {
				return nil
			}
			ev := bytes.Clone(e.ev)
			binary.LittleEndian.PutUint64(ev[headerSize:], keep[cur])
			sealCRC(ev, true)
			return ev
		}
		if cur != 0 && keep[cur] == 0 && e.h.Type != typeFormat {
			return nil
		}
		return e.ev
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := tf.finish(); err != nil {
		t.Fatal(err)
	}
	if err := tf.refusal(); err != nil {
		t.Errorf("row transactions refused: %v", err)
	}
	if !slices.Equal(tf.gtids, gtidRange(14, last)) {
		t.Errorf("saved %v", tf.gtids)
	}
}

func TestTailFileRefuses(t *testing.T) {
	tests := []struct {
		name string
		edit func(rawEvent) []byte
		want string
	}{
		{"a transaction of another server", func(e rawEvent) []byte {
			if e.h.Type == typeMariaGTID && binary.LittleEndian.Uint64(e.ev[headerSize:]) == 16 {
				ev := bytes.Clone(e.ev)
				binary.LittleEndian.PutUint32(ev[5:], 9)
				sealCRC(ev, true)
				return ev
			}
			return e.ev
		}, "0-9-16 is written by server_id 9, not by the instance (1)"},
		{"a gap", dropTxn(16), "0-1-17 is seq_no 17 where 16 was next"},
		{"a partial row image", clearImageBit(15), "0-1-15 is a row event (UpdateRowsEventV1) without whole rows"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tf, err := feedTail(t, "0-1-13", "0-1-45", 1000, tc.edit)
			if err != nil {
				t.Fatal(err)
			}
			if err := tf.refusal(); !errors.Is(err, topology.ErrCannotRewind) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("refusal = %v, want one saying %q", err, tc.want)
			}
		})
	}
}

// dropTxn drops the transaction with seq_no n.
func dropTxn(n uint64) func(rawEvent) []byte {
	var cur uint64
	return func(e rawEvent) []byte {
		if e.h.Type == typeMariaGTID {
			cur = binary.LittleEndian.Uint64(e.ev[headerSize:])
		}
		if cur == n && e.h.Type != typeFormat {
			return nil
		}
		return e.ev
	}
}

// clearImageBit makes transaction n's first row event an update whose
// after image lacks a column, as binlog_row_image=MINIMAL writes it.
func clearImageBit(n uint64) func(rawEvent) []byte {
	var cur uint64
	done := false
	return func(e rawEvent) []byte {
		if e.h.Type == typeMariaGTID {
			cur = binary.LittleEndian.Uint64(e.ev[headerSize:])
		}
		if cur != n || done || e.h.Type != replication.WRITE_ROWS_EVENTv1 {
			return e.ev
		}
		done = true
		ev := bytes.Clone(e.ev)
		ev[4] = byte(replication.UPDATE_ROWS_EVENTv1)
		// table_id (6), flags (2), column count (1 byte), bitmap: clear column 2
		ev[headerSize+8+1] &^= 1 << 1
		sealCRC(ev, true)
		return ev
	}
}

func TestTailFileCompletesWithTheLastTransaction(t *testing.T) {
	tf, err := feedTail(t, "0-1-13", "0-1-16", 1000, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := tf.finish(); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(tf.gtids, gtidRange(14, 16)) || tf.events != 2+5+5 {
		t.Errorf("saved %v with %d events; want 0-1-14 .. 0-1-16 whole", tf.gtids, tf.events)
	}
}

func TestTailFileBoundsTheEvents(t *testing.T) {
	_, err := feedTail(t, "0-1-13", "0-1-45", 20, nil)
	if !errors.Is(err, topology.ErrCannotRewind) || !strings.Contains(err.Error(), "more than 20 events") {
		t.Fatalf("err = %v, want a refusal of more than 20 events", err)
	}
}

func TestFullRowImage(t *testing.T) {
	var rows rawEvent
	for _, e := range readEvents(t, capturedServer) {
		if e.h.Type == replication.UPDATE_ROWS_EVENTv1 {
			rows = e
			break
		}
	}
	if rows.ev == nil {
		t.Fatal("no Update_rows event in the captured file")
	}
	b := body(rows.ev, true)
	if full, err := fullRowImage(rows.h.Type, b, 8); err != nil || !full {
		t.Fatalf("captured update: full %v, %v; want a full image", full, err)
	}
	partial := bytes.Clone(b)
	partial[8+1+1] &^= 1 // the after image's first column
	if full, err := fullRowImage(rows.h.Type, partial, 8); err != nil || full {
		t.Errorf("update without a column in its after image: full %v, %v", full, err)
	}
	if _, err := fullRowImage(rows.h.Type, b[:9], 8); err == nil {
		t.Error("a truncated rows event reads as fine")
	}
}

func TestLengthEncoded(t *testing.T) {
	for _, tc := range []struct {
		in   []byte
		v    uint64
		n    int
		name string
	}{
		{[]byte{250}, 250, 1, "one byte"},
		{[]byte{0xfc, 0x10, 0x27}, 10000, 3, "two bytes"},
		{[]byte{0xfd, 1, 0, 1}, 65537, 4, "three bytes"},
		{[]byte{0xfe, 1, 0, 0, 0, 0, 0, 0, 1}, 1<<56 + 1, 9, "eight bytes"},
		{[]byte{0xfc, 1}, 0, 0, "short"},
		{nil, 0, 0, "empty"},
	} {
		if v, n := lengthEncoded(tc.in); v != tc.v || n != tc.n {
			t.Errorf("%s: lengthEncoded(%v) = %d, %d; want %d, %d", tc.name, tc.in, v, n, tc.v, tc.n)
		}
	}
}
