package mysql

import (
	"encoding/binary"
	"fmt"
	"strings"

	"github.com/go-mysql-org/go-mysql/replication"
)

// What of a tail mariadb-binlog --flashback undoes, and what not. It turns
// each row event around (a WRITE into a DELETE, an UPDATE's images
// swapped) and runs the transactions backwards; on MariaDB 10.11 it drops,
// without a word, what is not a row event: DDL, statements logged as
// statements, XA. A partial row image (binlog_row_image MINIMAL or NOBLOB)
// turns into a wrong undo. So a tail is undone only when every transaction
// is row events between a GTID event and its COMMIT, with whole rows.

// undoable says why the event ev (header h), inside a transaction of a
// tail, cannot be undone; "" when it can. rowsPostHeader is the
// Format_description event's post-header length for the event's type.
func undoable(h header, ev []byte, f format, rowsPostHeader func(replication.EventType) int) string {
	switch h.Type {
	case typeMariaGTID, typeXid, replication.TABLE_MAP_EVENT, replication.MARIADB_ANNOTATE_ROWS_EVENT:
		return ""
	case typeQuery:
		q := queryText(ev, f)
		switch {
		case q == "BEGIN" || q == "COMMIT":
			return ""
		case hasPrefixFold(q, "XA "):
			return "an XA transaction (" + q + "): mariadb-binlog --flashback does not undo XA"
		}
		return "a statement, not row events: " + shorten(q)
	case typeQueryCompressed:
		return "a compressed statement, not row events"
	case typeXAPrepare:
		return "an XA transaction: mariadb-binlog --flashback does not undo XA"
	case replication.INTVAR_EVENT, replication.RAND_EVENT, replication.USER_VAR_EVENT:
		return "statement-based logging (" + h.Type.String() + ")"
	case replication.WRITE_ROWS_EVENTv1, replication.UPDATE_ROWS_EVENTv1, replication.DELETE_ROWS_EVENTv1,
		replication.WRITE_ROWS_EVENTv2, replication.UPDATE_ROWS_EVENTv2, replication.DELETE_ROWS_EVENTv2:
		full, err := fullRowImage(h.Type, body(ev, f.checksum), rowsPostHeader(h.Type))
		switch {
		case err != nil:
			return fmt.Sprintf("an unreadable %s: %v", h.Type, err)
		case !full:
			return "a row event (" + h.Type.String() + ") without whole rows (binlog_row_image was not FULL)"
		}
		return ""
	}
	return fmt.Sprintf("an event of type %s (%d), not a row change", h.Type, int(h.Type))
}

// fullRowImage reports whether a rows event logs every column of its table
// in each image: its columns-present bitmaps (one, two for an update) have
// all bits set. The body is laid out as table_id and flags (the
// post-header; v2 events add a variable header), then the column count as a
// length-encoded integer, then the bitmaps.
func fullRowImage(t replication.EventType, b []byte, postHeader int) (bool, error) {
	p := postHeader
	if p < 8 || p > len(b) {
		return false, errShortEvent
	}
	if t == replication.WRITE_ROWS_EVENTv2 || t == replication.UPDATE_ROWS_EVENTv2 || t == replication.DELETE_ROWS_EVENTv2 {
		extra := int(binary.LittleEndian.Uint16(b[p-2:])) // counts its own two bytes
		if extra < 2 || p-2+extra > len(b) {
			return false, errShortEvent
		}
		p += extra - 2
	}
	width, n := lengthEncoded(b[p:])
	if n == 0 {
		return false, errShortEvent
	}
	p += n
	images := 1
	if t == replication.UPDATE_ROWS_EVENTv1 || t == replication.UPDATE_ROWS_EVENTv2 {
		images = 2
	}
	size := int((width + 7) / 8)
	if p+images*size > len(b) {
		return false, errShortEvent
	}
	for i := range images {
		if !allSet(b[p+i*size:p+(i+1)*size], width) {
			return false, nil
		}
	}
	return true, nil
}

// allSet reports whether the first n bits of bitmap are set.
func allSet(bitmap []byte, n uint64) bool {
	for i := range n {
		if bitmap[i/8]&(1<<(i%8)) == 0 {
			return false
		}
	}
	return true
}

// lengthEncoded reads a length-encoded integer; n is the bytes it took, 0
// when b is too short.
func lengthEncoded(b []byte) (v uint64, n int) {
	if len(b) == 0 {
		return 0, 0
	}
	switch b[0] {
	case 0xfc:
		n = 3
	case 0xfd:
		n = 4
	case 0xfe:
		n = 9
	default:
		return uint64(b[0]), 1
	}
	if len(b) < n {
		return 0, 0
	}
	for i := n - 1; i >= 1; i-- {
		v = v<<8 | uint64(b[i])
	}
	return v, n
}

// shorten keeps a statement's first line and words, for a refusal.
func shorten(q string) string {
	q = strings.Join(strings.Fields(q), " ")
	if len(q) > 80 {
		q = q[:77] + "..."
	}
	return q
}

// tableMapName reads a Table_map event's table id and "db.table".
func tableMapName(b []byte, postHeader int) (id uint64, name string, err error) {
	if postHeader != 6 && postHeader != 8 || len(b) < postHeader+1 {
		return 0, "", errShortEvent
	}
	id = tableID(b, postHeader)
	p := postHeader
	dbLen := int(b[p])
	if p+1+dbLen+2 > len(b) {
		return 0, "", errShortEvent
	}
	db := string(b[p+1 : p+1+dbLen])
	p += 1 + dbLen + 1 // the name, then a NUL
	tLen := int(b[p])
	if p+1+tLen > len(b) {
		return 0, "", errShortEvent
	}
	return id, db + "." + string(b[p+1:p+1+tLen]), nil
}

// tableID reads the table id that starts a Table_map or rows event's
// post-header: 6 bytes, or 4 in the old 6-byte post-header.
func tableID(b []byte, postHeader int) uint64 {
	n := 6
	if postHeader == 6 {
		n = 4
	}
	var id uint64
	for i := n - 1; i >= 0; i-- {
		id = id<<8 | uint64(b[i])
	}
	return id
}
