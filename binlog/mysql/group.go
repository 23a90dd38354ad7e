package mysql

import (
	"fmt"
	"time"
)

// Txn is one complete transaction in a binlog file: a GTID event and the
// events up to the one that ends it (Xid, COMMIT, XA PREPARE, or the single
// statement of a DDL group).
type Txn struct {
	GTID   GTID
	Time   time.Time // header timestamp of the event that ends it (the commit)
	Offset int64     // of its GTID event in the file
	Size   int64     // bytes, from the GTID event to the end of the last event
	Events int
}

// End is the offset just past the transaction.
func (t Txn) End() int64 { return t.Offset + t.Size }

// assembler groups events into transactions the way the servers do (MariaDB
// Gtid_log_event flags and is_group_ending; MySQL BEGIN ... COMMIT or a
// single statement). It is fed every event of a file in order and says
// when one completes; it does no I/O.
type assembler struct {
	f    format
	open bool
	cur  Txn
	// standalone: a MariaDB group without BEGIN/COMMIT (DDL), ended by its
	// statement. begun: the group is a BEGIN ... COMMIT one (a MariaDB
	// non-standalone GTID event, or a MySQL BEGIN / XA START).
	standalone, begun bool
}

// step is what one event did.
type step struct {
	done bool // it ended a transaction: txn is complete
	txn  Txn
	// inside is true while a transaction is open after the event: a file
	// cut here would hold part of one.
	inside bool
}

// feed takes the event ev (header h) found at offset off.
func (a *assembler) feed(h header, ev []byte, off int64) (step, error) {
	switch h.Type {
	case typeMariaGTID, typeMySQLGTID:
		return a.begin(h, ev, off)
	case typeMySQLAnonGTID, typeMySQLTaggedGTID:
		return step{}, errNoGTID
	}
	if !a.open {
		return step{}, nil // between transactions: Format_description, Gtid_list, Incident, ...
	}
	a.cur.Events++
	if a.ends(h, ev) {
		a.open = false
		t := a.cur
		t.Size = off + int64(h.Size) - t.Offset
		t.Time = time.Unix(int64(h.Timestamp), 0).UTC()
		return step{done: true, txn: t}, nil
	}
	return step{inside: true}, nil
}

func (a *assembler) begin(h header, ev []byte, off int64) (step, error) {
	if a.open {
		return step{}, fmt.Errorf("GTID event at offset %d while transaction %s (offset %d) is still open", off, a.cur.GTID, a.cur.Offset)
	}
	b := body(ev, a.f.checksum)
	var (
		g   GTID
		err error
	)
	a.standalone, a.begun = false, false
	if h.Type == typeMariaGTID {
		// A MariaDB GTID event is the BEGIN of a non-standalone group.
		g, a.standalone, err = decodeMariaGTID(h, b)
		a.begun = !a.standalone
	} else {
		g, err = decodeMySQLGTID(b)
	}
	if err != nil {
		return step{}, fmt.Errorf("at offset %d: %w", off, err)
	}
	a.open = true
	a.cur = Txn{GTID: g, Offset: off, Events: 1}
	return step{inside: true}, nil
}

// ends reports whether the event ends the open transaction.
func (a *assembler) ends(h header, ev []byte) bool {
	switch h.Type {
	case typeXid, typeXAPrepare:
		return true
	case typeTxnPayload: // MySQL binlog_transaction_compression: the whole transaction in one event
		return true
	case typeQueryCompressed: // never BEGIN or COMMIT, which are not compressed
		return a.standalone || !a.begun
	case typeQuery:
		q := queryText(ev, a.f)
		switch {
		case a.standalone:
			return true
		case !a.begun && queryBegins(q):
			a.begun = true
			return false
		case !a.begun:
			return true // a statement that is its own transaction (MySQL DDL)
		}
		return queryEnds(q)
	}
	return false
}

// inside reports whether a transaction is open.
func (a *assembler) inside() bool { return a.open }
