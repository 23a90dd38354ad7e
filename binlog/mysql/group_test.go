package mysql

import (
	"encoding/binary"
	"fmt"
	"slices"
	"testing"

	"github.com/go-mysql-org/go-mysql/replication"
	"github.com/google/uuid"
)

// Synthetic events, as the servers lay them out, with CRC32.

func synthetic(typ replication.EventType, payload []byte) []byte {
	return buildEvent(1_700_000_000, typ, 1, 0, 0, payload, true)
}

func mariaGTIDEvent(domain uint32, seq uint64, flags2 byte) []byte {
	b := binary.LittleEndian.AppendUint64(nil, seq)
	b = binary.LittleEndian.AppendUint32(b, domain)
	return synthetic(typeMariaGTID, append(b, flags2, 0, 0, 0, 0, 0, 0))
}

func mysqlGTIDEvent(sid uuid.UUID, gno uint64) []byte {
	b := append([]byte{1}, sid[:]...)
	return synthetic(typeMySQLGTID, append(binary.LittleEndian.AppendUint64(b, gno), make([]byte, 17)...))
}

func queryEvent(q string) []byte {
	b := make([]byte, 13) // thread id, exec time, db length 0, error code, status vars length 0
	return synthetic(typeQuery, append(append(b, 0), q...))
}

func xidEvent() []byte  { return synthetic(typeXid, make([]byte, 8)) }
func rowsEvent() []byte { return synthetic(replication.WRITE_ROWS_EVENTv1, make([]byte, 30)) }

var testFormat = format{checksum: true, queryPostHeader: 13}

// feedAll runs events through an assembler; it returns the completed
// transactions as "gtid/events" and whether one is left open.
func feedAll(events [][]byte) (done []string, open bool, err error) {
	a := assembler{f: testFormat}
	off := int64(4)
	for _, ev := range events {
		h, _ := parseHeader(ev)
		st, err := a.feed(h, ev, off)
		if err != nil {
			return done, a.inside(), err
		}
		if st.done {
			done = append(done, fmt.Sprintf("%s/%d", st.txn.GTID, st.txn.Events))
			if st.txn.End() != off+int64(len(ev)) {
				return done, a.inside(), fmt.Errorf("transaction ends at %d, its last event at %d", st.txn.End(), off+int64(len(ev)))
			}
		}
		off += int64(len(ev))
	}
	return done, a.inside(), nil
}

func TestAssembler(t *testing.T) {
	sid := uuid.MustParse("3e11fa47-71ca-11e1-9e33-c80aa9429562")
	const standalone = replication.BINLOG_MARIADB_FL_STANDALONE
	cases := []struct {
		name    string
		events  [][]byte
		want    []string
		open    bool
		wantErr bool
	}{
		{"MariaDB row transaction ended by Xid",
			[][]byte{mariaGTIDEvent(0, 5, 0), rowsEvent(), rowsEvent(), xidEvent()}, []string{"0-1-5/4"}, false, false},
		{"MariaDB DDL: standalone, ended by its statement",
			[][]byte{mariaGTIDEvent(0, 6, standalone), queryEvent("CREATE TABLE t (a INT)")}, []string{"0-1-6/2"}, false, false},
		{"MariaDB statement DML is not the end",
			[][]byte{mariaGTIDEvent(1, 7, 0), queryEvent("INSERT INTO t VALUES (1)")}, nil, true, false},
		{"MariaDB non-transactional statement ended by a COMMIT query",
			[][]byte{mariaGTIDEvent(0, 8, 0), queryEvent("INSERT INTO m VALUES (1)"), queryEvent("COMMIT")}, []string{"0-1-8/3"}, false, false},
		{"MariaDB XA PREPARE ends the prepared part",
			[][]byte{mariaGTIDEvent(0, 9, 0), rowsEvent(), queryEvent("XA END X'31',X'',1"), synthetic(typeXAPrepare, make([]byte, 20))},
			[]string{"0-1-9/4"}, false, false},
		{"MariaDB XA COMMIT",
			[][]byte{mariaGTIDEvent(0, 10, 0), queryEvent("XA COMMIT X'31',X'',1")}, []string{"0-1-10/2"}, false, false},
		{"MySQL BEGIN ... COMMIT",
			[][]byte{mysqlGTIDEvent(sid, 3), queryEvent("BEGIN"), queryEvent("INSERT INTO m VALUES (1)"), queryEvent("COMMIT")},
			[]string{sid.String() + ":3/4"}, false, false},
		{"MySQL row transaction ended by Xid",
			[][]byte{mysqlGTIDEvent(sid, 4), queryEvent("BEGIN"), rowsEvent(), xidEvent()}, []string{sid.String() + ":4/4"}, false, false},
		{"MySQL compressed transaction: one payload event",
			[][]byte{mysqlGTIDEvent(sid, 6), synthetic(typeTxnPayload, make([]byte, 40))}, []string{sid.String() + ":6/2"}, false, false},
		{"MySQL DDL: a statement without BEGIN",
			[][]byte{mysqlGTIDEvent(sid, 5), queryEvent("DROP TABLE t")}, []string{sid.String() + ":5/2"}, false, false},
		{"events between transactions belong to none",
			[][]byte{rowsEvent(), mariaGTIDEvent(0, 11, 0), xidEvent(), queryEvent("COMMIT")}, []string{"0-1-11/2"}, false, false},
		{"cut inside a transaction",
			[][]byte{mariaGTIDEvent(0, 12, 0), xidEvent(), mariaGTIDEvent(0, 13, 0), rowsEvent()}, []string{"0-1-12/2"}, true, false},
		{"a GTID while a transaction is open is an error",
			[][]byte{mariaGTIDEvent(0, 14, 0), rowsEvent(), mariaGTIDEvent(0, 15, 0)}, nil, true, true},
		{"a MySQL anonymous GTID is refused",
			[][]byte{synthetic(typeMySQLAnonGTID, make([]byte, 25))}, nil, false, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			done, open, err := feedAll(tc.events)
			if (err != nil) != tc.wantErr {
				t.Fatalf("error %v, want error %v", err, tc.wantErr)
			}
			if !slices.Equal(done, tc.want) || open != tc.open {
				t.Errorf("completed %v (open %v), want %v (open %v)", done, open, tc.want, tc.open)
			}
		})
	}
}
