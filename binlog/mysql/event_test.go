package mysql

import (
	"bytes"
	"encoding/binary"
	"os"
	"testing"

	"github.com/go-mysql-org/go-mysql/replication"
)

// Test data, captured once from a lab (MariaDB 10.11.19) by running the
// stream against its primary while a script ran DDL, row and statement
// transactions, a non-transactional statement (ended by a COMMIT query), XA
// PREPARE / XA COMMIT and a 40 KB transaction:
//   - capturedStore: the store file dbha wrote (0-1-32..0-1-45), with its index;
//   - capturedServer: the primary's own binlog file of the same time.
const (
	capturedStore  = "testdata/dbha-bin.000001"
	capturedServer = "testdata/server-mariadb-bin.000004"
)

// rawEvent is one event of a file and where it lies.
type rawEvent struct {
	h   header
	ev  []byte
	off int64
}

func readEvents(t *testing.T, path string) []rawEvent {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	f.Seek(4, 0)
	er := newEventReader(f, 4)
	var out []rawEvent
	for {
		h, ev, off, err := er.next()
		if err != nil {
			break
		}
		out = append(out, rawEvent{h: h, ev: bytes.Clone(ev), off: off})
	}
	if len(out) < 10 {
		t.Fatalf("%s: only %d events", path, len(out))
	}
	return out
}

// A server writes each event with log_pos = its end offset and a CRC32 of
// the rest; setLogPos must reproduce exactly those bytes.
func TestSetLogPosReproducesServerEvents(t *testing.T) {
	for _, e := range readEvents(t, capturedServer) {
		if e.h.LogPos == 0 {
			continue
		}
		ev := bytes.Clone(e.ev)
		binary.LittleEndian.PutUint32(ev[logPosAt:], 12345)
		binary.LittleEndian.PutUint32(ev[len(ev)-4:], 0xdeadbeef)
		setLogPos(ev, uint32(e.off)+e.h.Size, true)
		if !bytes.Equal(ev, e.ev) {
			t.Fatalf("event type %d at %d: rewritten bytes differ from the server's", e.h.Type, e.off)
		}
	}
}

// Every event in a store file says where it ends in that file, and its
// checksum holds.
func TestStoreFileIsSelfConsistent(t *testing.T) {
	for _, e := range readEvents(t, capturedStore) {
		if int64(e.h.LogPos) != e.off+int64(e.h.Size) {
			t.Errorf("event type %d at %d: end_log_pos %d, want %d", e.h.Type, e.off, e.h.LogPos, e.off+int64(e.h.Size))
		}
		if err := checkCRC(e.ev); err != nil {
			t.Errorf("event type %d at %d: %v", e.h.Type, e.off, err)
		}
	}
	first := readEvents(t, capturedStore)[0]
	if first.h.Type != typeFormat || binary.LittleEndian.Uint16(first.ev[flagsAt:])&replication.LOG_EVENT_BINLOG_IN_USE_F != 0 {
		t.Errorf("a closed store file starts with event type %d, flags %#x; want a Format_description event not marked in use",
			first.h.Type, first.h.Flags)
	}
}

func TestSetInUse(t *testing.T) {
	fde := bytes.Clone(readEvents(t, capturedStore)[0].ev)
	for _, inUse := range []bool{true, false} {
		setInUse(fde, inUse, true)
		got := binary.LittleEndian.Uint16(fde[flagsAt:])&replication.LOG_EVENT_BINLOG_IN_USE_F != 0
		if got != inUse || checkCRC(fde) != nil {
			t.Errorf("setInUse(%v): flag %v, checksum %v", inUse, got, checkCRC(fde))
		}
	}
}

func TestClassify(t *testing.T) {
	cases := []struct {
		name string
		h    header
		want disposition
	}{
		{"heartbeat", header{Type: typeHeartbeat}, skip},
		{"heartbeat v2", header{Type: typeHeartbeatV2, Timestamp: 1, LogPos: 9}, skip},
		{"fake rotate: no timestamp", header{Type: typeRotate, LogPos: 100}, skip},
		{"fake rotate: no log_pos", header{Type: typeRotate, Timestamp: 1}, skip},
		{"artificial rotate", header{Type: typeRotate, Timestamp: 1, LogPos: 9, Flags: replication.LOG_EVENT_ARTIFICIAL_F}, skip},
		{"real rotate", header{Type: typeRotate, Timestamp: 1, LogPos: 9}, primaryRotate},
		{"format description", header{Type: typeFormat, Timestamp: 1, LogPos: 256}, newFormat},
		{"primary's Gtid_list", header{Type: typeGTIDList, Timestamp: 1, LogPos: 299}, skip},
		{"primary's binlog checkpoint", header{Type: typeCheckpoint, Timestamp: 1, LogPos: 344}, skip},
		{"MySQL Previous_gtids", header{Type: typePreviousGTIDs, Timestamp: 1, LogPos: 200}, skip},
		{"artificial event", header{Type: typeQuery, Timestamp: 1, LogPos: 9, Flags: replication.LOG_EVENT_ARTIFICIAL_F}, skip},
		{"GTID", header{Type: typeMariaGTID, Timestamp: 1, LogPos: 9}, keep},
		{"rows", header{Type: replication.WRITE_ROWS_EVENTv1, Timestamp: 1, LogPos: 9}, keep},
		{"annotate rows", header{Type: replication.MARIADB_ANNOTATE_ROWS_EVENT, Timestamp: 1, LogPos: 9}, keep},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := classify(tc.h); got != tc.want {
				t.Errorf("classify = %d, want %d", got, tc.want)
			}
		})
	}
}

func TestQueryBoundaries(t *testing.T) {
	cases := []struct {
		q            string
		begins, ends bool
	}{
		{"BEGIN", true, false},
		{"COMMIT", false, true},
		{"ROLLBACK", false, true},
		{"XA START X'7831',X'',1", true, false},
		{"XA END X'7831',X'',1", false, false},
		{"XA COMMIT X'7831',X'',1", false, true},
		{"xa rollback 'x'", false, true},
		{"ROLLBACK TO SAVEPOINT a", false, false},
		{"COMMIT WORK", false, false},
		{"INSERT INTO t VALUES (1)", false, false},
		{"", false, false},
	}
	for _, tc := range cases {
		t.Run(tc.q, func(t *testing.T) {
			if queryBegins(tc.q) != tc.begins || queryEnds(tc.q) != tc.ends {
				t.Errorf("begins %v ends %v, want %v %v", queryBegins(tc.q), queryEnds(tc.q), tc.begins, tc.ends)
			}
		})
	}
}

func TestParseHeaderRejectsShortEvents(t *testing.T) {
	if _, err := parseHeader(make([]byte, 10)); err == nil {
		t.Error("a 10-byte header parsed")
	}
	b := make([]byte, headerSize)
	binary.LittleEndian.PutUint32(b[9:], 5)
	if _, err := parseHeader(b); err == nil {
		t.Error("an event of size 5 parsed")
	}
}
