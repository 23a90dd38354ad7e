package mysql

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"strings"

	"github.com/go-mysql-org/go-mysql/mysql"
	"github.com/go-mysql-org/go-mysql/replication"
)

// The binlog event layout both server families share: a 19-byte header
// (timestamp, type, server_id, event_size, log_pos, flags), the body, and,
// when the Format_description event says so, a CRC32 of header and body.
const (
	headerSize = replication.EventHeaderSize // 19
	crcSize    = replication.BinlogChecksumLength
	logPosAt   = 13 // offset of log_pos ("end_log_pos") in the header
	flagsAt    = 17 // offset of the flags in the header
)

// Event types the store treats specially, named as the servers name them.
const (
	typeQuery           = replication.QUERY_EVENT
	typeRotate          = replication.ROTATE_EVENT
	typeFormat          = replication.FORMAT_DESCRIPTION_EVENT
	typeXid             = replication.XID_EVENT
	typeHeartbeat       = replication.HEARTBEAT_EVENT
	typeHeartbeatV2     = replication.HEARTBEAT_LOG_EVENT_V2
	typeXAPrepare       = replication.XA_PREPARE_LOG_EVENT
	typeMySQLGTID       = replication.GTID_EVENT
	typeMySQLAnonGTID   = replication.ANONYMOUS_GTID_EVENT
	typeMySQLTaggedGTID = replication.GTID_TAGGED_LOG_EVENT
	typePreviousGTIDs   = replication.PREVIOUS_GTIDS_EVENT
	typeCheckpoint      = replication.MARIADB_BINLOG_CHECKPOINT_EVENT
	typeMariaGTID       = replication.MARIADB_GTID_EVENT
	typeGTIDList        = replication.MARIADB_GTID_LIST_EVENT
	typeQueryCompressed = replication.MARIADB_QUERY_COMPRESSED_EVENT
	typeTxnPayload      = replication.TRANSACTION_PAYLOAD_EVENT
)

// header is an event's common header.
type header struct {
	Timestamp uint32
	Type      replication.EventType
	ServerID  uint32
	Size      uint32
	LogPos    uint32
	Flags     uint16
}

// errShortEvent: fewer bytes than a header, or than the header's size says.
var errShortEvent = errors.New("event shorter than its header says")

func parseHeader(b []byte) (header, error) {
	if len(b) < headerSize {
		return header{}, errShortEvent
	}
	h := header{
		Timestamp: binary.LittleEndian.Uint32(b[0:]),
		Type:      replication.EventType(b[4]),
		ServerID:  binary.LittleEndian.Uint32(b[5:]),
		Size:      binary.LittleEndian.Uint32(b[9:]),
		LogPos:    binary.LittleEndian.Uint32(b[logPosAt:]),
		Flags:     binary.LittleEndian.Uint16(b[flagsAt:]),
	}
	if h.Size < headerSize {
		return h, fmt.Errorf("event type %d: size %d is below the header size", h.Type, h.Size)
	}
	return h, nil
}

// disposition says what the store does with an event received from a
// primary.
type disposition int

const (
	keep          disposition = iota // write it to the store
	skip                             // drop it (see classify)
	newFormat                        // a Format_description event: the start of a primary's binlog
	primaryRotate                    // a real Rotate: the primary moved to its next binlog
)

// classify decides what happens to a received event. Dropped: heartbeats;
// fake Rotate events (timestamp or log_pos 0) and everything the server
// flags artificial (the fake Gtid_list a GTID connect sends); and the
// primary's own file bookkeeping (Gtid_list, Previous_gtids,
// Binlog_checkpoint), which describes the primary's files, not the
// store's: each store file gets its own Gtid_list (see gtidListEvent).
// Real Rotate events are not written either; the store names its own
// files.
func classify(h header) disposition {
	switch h.Type {
	case typeHeartbeat, typeHeartbeatV2:
		return skip
	case typeFormat:
		return newFormat
	case typeRotate:
		if h.Timestamp == 0 || h.LogPos == 0 || h.Flags&replication.LOG_EVENT_ARTIFICIAL_F != 0 {
			return skip
		}
		return primaryRotate
	case typeGTIDList, typePreviousGTIDs, typeCheckpoint:
		return skip
	}
	if h.Flags&replication.LOG_EVENT_ARTIFICIAL_F != 0 {
		return skip
	}
	return keep
}

// format is what a Format_description event says about the events after
// it, and the event itself (a store file starts with a copy).
type format struct {
	checksum bool // events end with a CRC32
	// queryPostHeader is the Query event's post-header length (13).
	queryPostHeader int
	serverID        uint32 // the server that wrote the binlog
	flavor          string // mysql.MariaDBFlavor or mysql.MySQLFlavor, from the server version
	raw             []byte // the Format_description event, owned
}

func (f format) valid() bool { return f.raw != nil }

// parseFormat reads a Format_description event (header included).
func parseFormat(ev []byte) (format, error) {
	h, err := parseHeader(ev)
	if err != nil {
		return format{}, err
	}
	if h.Type != typeFormat || int(h.Size) != len(ev) {
		return format{}, fmt.Errorf("not a Format_description event (type %d, size %d of %d)", h.Type, h.Size, len(ev))
	}
	var fde replication.FormatDescriptionEvent
	if err := decodeFDE(&fde, ev[headerSize:]); err != nil {
		return format{}, fmt.Errorf("decode Format_description event: %w", err)
	}
	f := format{serverID: h.ServerID, raw: bytes.Clone(ev), queryPostHeader: 13, flavor: mysql.MySQLFlavor}
	if strings.Contains(strings.ToLower(fde.ServerVersion), "mariadb") {
		f.flavor = mysql.MariaDBFlavor
	}
	switch fde.ChecksumAlgorithm {
	case replication.BINLOG_CHECKSUM_ALG_CRC32:
		f.checksum = true
		if err := checkCRC(ev); err != nil {
			return format{}, fmt.Errorf("Format_description event: %w", err)
		}
	case replication.BINLOG_CHECKSUM_ALG_OFF, replication.BINLOG_CHECKSUM_ALG_UNDEF:
	default:
		return format{}, fmt.Errorf("Format_description event: unknown checksum algorithm %d", fde.ChecksumAlgorithm)
	}
	if i := int(typeQuery) - 1; i < len(fde.EventTypeHeaderLengths) {
		f.queryPostHeader = int(fde.EventTypeHeaderLengths[i])
	}
	return f, nil
}

// decodeFDE guards go-mysql's decoder, which indexes without bounds checks.
func decodeFDE(fde *replication.FormatDescriptionEvent, body []byte) (err error) {
	if len(body) < 2+50+4+1+5 {
		return errShortEvent
	}
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("malformed Format_description event: %v", r)
		}
	}()
	return fde.Decode(body)
}

// errChecksum: an event's CRC32 does not match its bytes.
var errChecksum = errors.New("binlog event checksum mismatch")

// checkCRC verifies the CRC32 that ends ev.
func checkCRC(ev []byte) error {
	if len(ev) < headerSize+crcSize {
		return errShortEvent
	}
	n := len(ev) - crcSize
	if eventCRC(ev[:n]) != binary.LittleEndian.Uint32(ev[n:]) {
		return errChecksum
	}
	return nil
}

// eventCRC is the checksum of an event without its CRC. A Format_description
// event's is computed as if LOG_EVENT_BINLOG_IN_USE_F were clear: servers
// flip that flag when they close a file without recomputing the checksum.
func eventCRC(b []byte) uint32 {
	flags := binary.LittleEndian.Uint16(b[flagsAt:])
	if replication.EventType(b[4]) != typeFormat || flags&replication.LOG_EVENT_BINLOG_IN_USE_F == 0 {
		return crc32.ChecksumIEEE(b)
	}
	crc := crc32.ChecksumIEEE(b[:flagsAt])
	crc = crc32.Update(crc, crc32.IEEETable, binary.LittleEndian.AppendUint16(nil, flags&^replication.LOG_EVENT_BINLOG_IN_USE_F))
	return crc32.Update(crc, crc32.IEEETable, b[flagsAt+2:])
}

// setLogPos rewrites ev's log_pos (the offset just past the event in the
// file that holds it) and, when the format has checksums, its CRC32, so
// that a copied event is consistent with its place in the store's file.
func setLogPos(ev []byte, end uint32, checksum bool) {
	binary.LittleEndian.PutUint32(ev[logPosAt:], end)
	sealCRC(ev, checksum)
}

func sealCRC(ev []byte, checksum bool) {
	if !checksum {
		return
	}
	n := len(ev) - crcSize
	binary.LittleEndian.PutUint32(ev[n:], eventCRC(ev[:n]))
}

// setInUse sets or clears LOG_EVENT_BINLOG_IN_USE_F in a Format_description
// event: set while a file is written, cleared once it is closed cleanly,
// as the servers do. The checksum does not cover the flag (see eventCRC).
func setInUse(fde []byte, inUse, checksum bool) {
	flags := binary.LittleEndian.Uint16(fde[flagsAt:])
	if inUse {
		flags |= replication.LOG_EVENT_BINLOG_IN_USE_F
	} else {
		flags &^= replication.LOG_EVENT_BINLOG_IN_USE_F
	}
	binary.LittleEndian.PutUint16(fde[flagsAt:], flags)
	sealCRC(fde, checksum)
}

// body returns an event's body without header and checksum.
func body(ev []byte, checksum bool) []byte {
	end := len(ev)
	if checksum {
		end -= crcSize
	}
	if end < headerSize {
		return nil
	}
	return ev[headerSize:end]
}

// queryText returns the statement of a Query event; "" when the event is
// malformed.
func queryText(ev []byte, f format) string {
	b := body(ev, f.checksum)
	if len(b) < f.queryPostHeader || f.queryPostHeader < 13 {
		return ""
	}
	dbLen := int(b[8])
	statusLen := int(binary.LittleEndian.Uint16(b[11:]))
	start := f.queryPostHeader + statusLen + dbLen + 1
	if start > len(b) {
		return ""
	}
	return string(b[start:])
}

// queryEnds reports whether a Query event's statement ends a transaction,
// as the servers decide it (MariaDB's is_group_ending): COMMIT, ROLLBACK,
// XA COMMIT, XA ROLLBACK.
func queryEnds(q string) bool {
	return q == "COMMIT" || q == "ROLLBACK" ||
		hasPrefixFold(q, "XA COMMIT") || hasPrefixFold(q, "XA ROLLBACK")
}

// queryBegins reports whether a Query event's statement opens a
// transaction (BEGIN, XA START) rather than being one by itself (DDL).
func queryBegins(q string) bool {
	return q == "BEGIN" || hasPrefixFold(q, "XA START") || hasPrefixFold(q, "XA BEGIN")
}

func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}

// buildEvent assembles an event from its header fields and body, with log_pos
// end and, when checksum is set, a CRC32.
func buildEvent(ts uint32, typ replication.EventType, serverID uint32, flags uint16, end uint32, payload []byte, checksum bool) []byte {
	size := headerSize + len(payload)
	if checksum {
		size += crcSize
	}
	ev := make([]byte, size)
	binary.LittleEndian.PutUint32(ev[0:], ts)
	ev[4] = byte(typ)
	binary.LittleEndian.PutUint32(ev[5:], serverID)
	binary.LittleEndian.PutUint32(ev[9:], uint32(size))
	binary.LittleEndian.PutUint32(ev[logPosAt:], end)
	binary.LittleEndian.PutUint16(ev[flagsAt:], flags)
	copy(ev[headerSize:], payload)
	sealCRC(ev, checksum)
	return ev
}
